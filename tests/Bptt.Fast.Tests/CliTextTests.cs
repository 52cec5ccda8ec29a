using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using Bptt.Fast.Cli;
using Bptt.Fast.Serving;
using Bptt.Fast.Tests.Adversarial;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>
/// bptt as a newcomer meets it: training on a real-looking text with a held-out tail, the parser's help and its refusals,
/// sampling with the defaults, and the SVG loss plot.
/// </summary>
public sealed partial class CliTextTests : CliHarness
{
    private static readonly string[] Words =
    [
        "the", "a", "old", "house", "stood", "by", "river", "and", "every", "morning", "fisher", "walked", "down", "to", "water",
        "with", "his", "net", "he", "said", "that", "nothing", "was", "ever", "lost", "only", "moved", "somewhere", "else",
        "children", "laughed", "when", "boats", "came", "home", "in", "evening", "light", "of", "summer", "rain", "fell",
    ];

    /// <summary>Sentences of English words, capitalized, punctuated and wrapped into lines and paragraphs; deterministic.</summary>
    private static string RealLookingText(int chars, int seed)
    {
        var random = new Random(seed);
        var text = new StringBuilder(chars + 200);
        int line = 0;
        while (text.Length < chars)
        {
            int words = random.Next(4, 14);
            for (int w = 0; w < words; w++)
            {
                string word = Words[random.Next(Words.Length)];
                word = w == 0 ? char.ToUpperInvariant(word[0]) + word[1..] : word;
                string piece = word + (w == words - 1 ? (random.Next(5) == 0 ? "?" : ".") : random.Next(9) == 0 ? "," : "");
                if (line + piece.Length + 1 > 72)
                {
                    text.Append('\n');
                    line = 0;
                }
                else if (line > 0)
                {
                    text.Append(' ');
                    line++;
                }

                text.Append(piece);
                line += piece.Length;
            }

            if (random.Next(6) == 0)
            {
                text.Append("\n\n");
                line = 0;
            }
        }

        return text.Append('\n').ToString();
    }

    [GeneratedRegex(@"held-out loss: (\d+\.\d+) nats/char = (\d+\.\d+) bits/char on the last 10% of the text \(([\d,]+) chars\)")]
    private static partial Regex HeldOutLine();

    [Fact]
    public void TrainingOnARealLookingTextReportsHeldOutBitsPerCharAndCoverage()
    {
        string text = RealLookingText(16_000, seed: 11);
        File.WriteAllText(P("story.txt"), text);
        (int code, string output, string error) = Run("train", "--text", P("story.txt"), "--hidden", "32", "--epochs", "2", "--checkpoint", P("story.ckpt"));
        Assert.True(code == 0, error);
        Assert.Equal(string.Empty, error);

        // The split: the last 10% is held out, and reported before training.
        int held = text.Length / 10, training = text.Length - held;
        Assert.Contains(string.Create(CultureInfo.InvariantCulture, $"training on the first {training:N0}, holding out the last {held:N0} (10%)"), output, StringComparison.Ordinal);

        // Held-out loss at each of the 10 evaluations, then the final line in nats and bits per char.
        Assert.Equal(10, Regex.Matches(output, @"^step \d+/\d+  held-out \d+\.\d+ nats/char \(\d+\.\d+ bits/char\)", RegexOptions.Multiline).Count);
        Match final = HeldOutLine().Match(output);
        Assert.True(final.Success, output);
        double nats = double.Parse(final.Groups[1].Value, CultureInfo.InvariantCulture), bits = double.Parse(final.Groups[2].Value, CultureInfo.InvariantCulture);
        Assert.InRange(Math.Abs((nats / Math.Log(2)) - bits), 0, 2e-4);
        Assert.Equal(held.ToString("N0", CultureInfo.InvariantCulture), final.Groups[3].Value);
        Assert.True(nats < 0.75 * Math.Log(new HashSet<char>(text).Count), $"the model learned little: {nats} nats/char");

        // Coverage: two whole passes over the training part.
        int perPass = (training - 1) / 20;
        Assert.Contains(string.Create(CultureInfo.InvariantCulture, $"text seen: 2.00 passes over the training part ({perPass * 20:N0} of its {training:N0} chars in each)"), output, StringComparison.Ordinal);

        // The files: the checkpoint, its vocabulary, one loss per update, and an SVG plot with the held-out curve.
        Assert.Equal(
            ["story.ckpt", "story.ckpt.loss.csv", "story.ckpt.loss.svg", "story.ckpt.vocab", "story.txt"],
            Directory.EnumerateFileSystemEntries(Dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(2 * perPass, File.ReadAllLines(P("story.ckpt.loss.csv")).Length);
        Assert.Equal(2 * perPass, Checkpoint.ReadInfo(P("story.ckpt")).StepCount);
        XDocument svg = XDocument.Load(P("story.ckpt.loss.svg"));
        Assert.Equal("svg", svg.Root!.Name.LocalName);
        Assert.Contains(svg.Descendants(), e => e.Name.LocalName == "text" && e.Value.StartsWith("held-out", StringComparison.Ordinal));
        Assert.Equal(10, svg.Descendants().Count(e => e.Name.LocalName == "circle"));

        // Sampling without --prime starts from a line break and writes the vocabulary's characters only.
        (code, output, error) = Run("sample", "--checkpoint", P("story.ckpt"), "--length", "300", "--seed", "2");
        Assert.True(code == 0, error);
        string sample = output.TrimEnd('\n');
        Assert.Equal(300, sample.Length);
        Assert.All(sample, c => Assert.Contains(c, text));
    }

    [Fact]
    public void AShortRunReportsThePartOfTheTextItSaw()
    {
        string text = RealLookingText(20_000, seed: 3);
        File.WriteAllText(P("story.txt"), text);
        (int code, string output, string error) = Run("train", "--text", P("story.txt"), "--hidden", "8", "--steps", "90", "--validation", "0.25", "--checkpoint", P("s.ckpt"));
        Assert.True(code == 0, error);
        int held = text.Length / 4, training = text.Length - held;
        Assert.Contains(string.Create(CultureInfo.InvariantCulture, $"text seen: {180_000.0 / training:F1}% of the training part (1,800 of {training:N0} chars, in order from its start)"), output, StringComparison.Ordinal);
        Assert.Contains(string.Create(CultureInfo.InvariantCulture, $"on the last 25% of the text ({held:N0} chars)"), output, StringComparison.Ordinal);

        (code, output, error) = Run("train", "--text", P("story.txt"), "--hidden", "8", "--steps", "5", "--validation", "0", "--checkpoint", P("n.ckpt"));
        Assert.True(code == 0, error);
        Assert.Contains("held-out loss: none (--validation 0)", output, StringComparison.Ordinal);
        Assert.DoesNotContain("held-out 0", output, StringComparison.Ordinal);
    }

    [Fact]
    public void ControlCharactersAreReportedOnceAndNeverTheDefaultPrime()
    {
        File.WriteAllText(P("bell.txt"), string.Concat(Enumerable.Repeat("ring\u0007 the bell\u0007\u0007\nand go\n", 30)));
        (int code, string output, string error) = Run("train", "--text", P("bell.txt"), "--hidden", "8", "--steps", "20", "--checkpoint", P("b.ckpt"));
        Assert.True(code == 0, error);
        Assert.Single(Regex.Matches(output, "^note: .*control character.*U\\+0007 \\(90x\\)", RegexOptions.Multiline));
        Assert.DoesNotContain("U+000A", output, StringComparison.Ordinal);

        Vocabulary vocabulary = Vocabulary.Parse(File.ReadAllBytes(P("b.ckpt.vocab")));
        Assert.Equal(new Rune(7), vocabulary[0]);
        Assert.Equal(new Rune('\n'), SampleCommand.DefaultPrime(vocabulary));
        Assert.Equal(new Rune(' '), SampleCommand.DefaultPrime(Vocabulary.Of("\u0007 ab".EnumerateRunes())));
        Assert.Equal(new Rune('B'), SampleCommand.DefaultPrime(Vocabulary.Of(ReberGrammar.Symbols.EnumerateRunes())));
        Assert.Equal(new Rune('x'), SampleCommand.DefaultPrime(Vocabulary.Of("\u0001\u0002x".EnumerateRunes())));
    }

    [Fact]
    public void SampleDefaultsToTheCheckpointThatTrainWritesByDefault()
    {
        Assert.Equal(TrainSettings.DefaultCheckpoint, new SampleSettings().Checkpoint);
        Assert.Equal(TrainSettings.DefaultCheckpoint, new TrainSettings().Checkpoint);
        Assert.SkipWhen(File.Exists(TrainSettings.DefaultCheckpoint), "the working folder holds a bptt-model.ckpt");
        string error = AssertRefused(2, ["--checkpoint", Path.GetFullPath(TrainSettings.DefaultCheckpoint), "bptt train"], "sample", "--length", "5");
        Assert.Contains("default", error, StringComparison.Ordinal);
    }

    public static TheoryData<string, Type> CommandsAndSettings() => new()
    {
        { "train", typeof(TrainSettings) },
        { "sample", typeof(SampleSettings) },
        { "check", typeof(CheckSettings) },
        { "info", typeof(InfoSettings) },
    };

    [Theory]
    [MemberData(nameof(CommandsAndSettings))]
    public void EachCommandsHelpExitsZeroAndListsEveryOption(string command, Type settings)
    {
        foreach (string[] args in new string[][] { [command, "--help"], [command, "-h"], ["help", command] })
        {
            (int code, string output, string error) = Run(args);
            Assert.Equal(0, code);
            Assert.Equal(string.Empty, error);
            Assert.Contains($"bptt {command} [OPTIONS]", output, StringComparison.Ordinal);
            foreach (OptionInfo option in OptionInfo.Of(settings))
            {
                Assert.Contains(option.TakesValue ? $"{option.Name} <" : option.Name, output, StringComparison.Ordinal);
            }
        }

        Assert.Equal(command == "train" ? 17 : command == "sample" ? 5 : command == "check" ? 1 : 0, OptionInfo.Of(settings).Count());
    }

    [Fact]
    public void TheToolsHelpExitsZeroAndListsEveryCommand()
    {
        foreach (string[] args in new[] { ["--help"], ["-h"], new[] { "help" } })
        {
            (int code, string output, string error) = Run(args);
            Assert.Equal(0, code);
            Assert.Equal(string.Empty, error);
            Assert.All(["train", "sample", "check", "info"], c => Assert.Contains($"    {c} ", output, StringComparison.Ordinal));
        }

        // No command at all: the same help, and the exit code of bad usage.
        (int none, string usage, _) = Run();
        Assert.Equal(2, none);
        Assert.Contains("COMMANDS", usage, StringComparison.Ordinal);
        Assert.Equal(0, Run("--version").Code);
    }

    public static TheoryData<string[], string[]> Misuses() => new()
    {
        { ["train", "--hidden", "8", "--hidden", "9"], ["--hidden", "twice"] },
        { ["train", "--hidden=8", "--hidden", "9"], ["--hidden", "twice"] },
        { ["train", "--force", "--force"], ["--force", "twice"] },
        { ["sample", "--seed", "1", "--seed=1"], ["--seed", "twice"] },
        { ["train", "--force=yes"], ["--force", "flag"] },
        { ["train", "--hidden=x"], ["--hidden", "'x'"] },
        { ["train", "--lr", "fast"], ["--lr", "'fast'"] },
        { ["train", "--hidden"], ["--hidden", "value"] },
        { ["train", "--text", "--force"], ["--text", "value"] },
        { ["train", "extra"], ["'extra'"] },
        { ["train", "-x"], ["-x"] },
        { ["train", "--Hidden", "8"], ["--Hidden"] },
        { ["train", "--validation", "0.6"], ["--validation", "0.5"] },
        { ["train", "--validation", "0.1"], ["--validation", "--text"] },
        { ["train", "--epochs", "2"], ["--epochs", "--text"] },
        { ["train", "--text", "t.txt", "--epochs", "2", "--steps", "5"], ["--epochs", "--steps"] },
        { ["train", "--epochs", "0", "--text", "t.txt"], ["--epochs"] },
        { ["help", "fly"], ["fly"] },
    };

    [Theory]
    [MemberData(nameof(Misuses))]
    public void MisusedOptionsAreRefusedWithOneLine(string[] args, string[] mentions)
    {
        AssertRefused(2, mentions, [.. args, .. args[0] == "train" && !args.Contains("--checkpoint") ? new[] { "--checkpoint", P("x.ckpt") } : []]);
    }

    [Fact]
    public void NameEqualsValueIsAccepted()
    {
        File.WriteAllText(P("t.txt"), RealLookingText(2000, seed: 5));
        (int code, string output, string error) = Run("train", "--text=" + P("t.txt"), "--steps=12", "--hidden=6", "--chunk=10", "--lr=0.01", "--validation=0.25", "--checkpoint=" + P("e.ckpt"));
        Assert.True(code == 0, error);
        Assert.Contains("model: 6 hidden units", output, StringComparison.Ordinal);
        Assert.Contains("adam at learning rate 0.01 decaying to a tenth (cosine), chunks of 10", output, StringComparison.Ordinal);
        Assert.Equal(12, File.ReadAllLines(P("e.ckpt.loss.csv")).Length);
        (code, output, error) = Run("sample", "--checkpoint=" + P("e.ckpt"), "--length=7", "--prime=The");
        Assert.True(code == 0, error);
        Assert.StartsWith("The", output, StringComparison.Ordinal);
    }

    [Fact]
    public void TextDefaultsSuitRealText()
    {
        Assert.Null(new TrainSettings { Text = "x" }.Lr);
        Assert.Equal(0.005f, TrainCommand.GrammarLearningRate);
        Assert.Equal(64, TrainCommand.GrammarHidden);
        Assert.Equal(128, TrainCommand.TextHidden);
        Assert.Equal(0.1f, TrainCommand.DefaultValidation);
        Assert.Equal("cosine", TrainCommand.DefaultSchedule);
        Assert.Equal(0.002f, TrainCommand.TextLearningRateFor(16, "cosine"));
        Assert.Equal(0.002f, TrainCommand.TextLearningRateFor(128, "cosine"));
        Assert.Equal(0.001f, TrainCommand.TextLearningRateFor(256, "cosine"));
        Assert.Equal(0.0005f, TrainCommand.TextLearningRateFor(512, "cosine"));
        Assert.Equal(0.002f, TrainCommand.TextLearningRateFor(64, "constant"));
        Assert.Equal(0.001f, TrainCommand.TextLearningRateFor(128, "constant"));
        Assert.Equal(0.0005f, TrainCommand.TextLearningRateFor(256, "constant"));

        File.WriteAllText(P("t.txt"), RealLookingText(3000, seed: 8));
        (int code, string output, string error) = Run("train", "--text", P("t.txt"), "--steps", "2", "--hidden", "256", "--checkpoint", P("t.ckpt"));
        Assert.True(code == 0, error);
        Assert.Contains("model: 256 hidden units", output, StringComparison.Ordinal);
        Assert.Contains("adam at learning rate 0.001 decaying to a tenth (cosine), chunks of 20, clipping at 5", output, StringComparison.Ordinal);
        (code, output, error) = Run("train", "--text", P("t.txt"), "--steps", "2", "--hidden", "256", "--schedule", "constant", "--checkpoint", P("c.ckpt"));
        Assert.True(code == 0, error);
        Assert.Contains("adam at learning rate 0.0005, chunks of 20, clipping at 5", output, StringComparison.Ordinal);
    }

    [Fact]
    public void TheCosineScheduleDecaysToATenthAndResumesExactly()
    {
        Assert.Equal(0.002f, TrainCommand.LearningRateAt("constant", 0.002f, 999, 1000));
        Assert.Equal(0.002f, TrainCommand.LearningRateAt("cosine", 0.002f, 0, 1000));
        Assert.Equal(0.002f, TrainCommand.LearningRateAt("cosine", 0.002f, 9, 1000)); // changed every 1% of the run
        Assert.Equal(0.0011f, TrainCommand.LearningRateAt("cosine", 0.002f, 500, 1000), 6);
        Assert.Equal(0.0002f, TrainCommand.LearningRateAt("cosine", 0.002f, 999, 1000), 5);

        File.WriteAllText(P("t.txt"), RealLookingText(4000, seed: 9));
        string[] common = ["train", "--text", P("t.txt"), "--hidden", "12", "--chunk", "10", "--schedule", "cosine", "--lr", "0.01"];
        (int code, string output, string error) = Run([.. common, "--steps", "60", "--checkpoint", P("full.ckpt")]);
        Assert.True(code == 0, error);
        Assert.Contains("learning rate 0.01 decaying to a tenth (cosine)", output, StringComparison.Ordinal);
        // The same 60-update run killed before update 28: its last save, every 5 updates, was at 25.
        TrainCommand.KillBeforeUpdate.Value = 27;
        try
        {
            Assert.Equal(0, Run([.. common, "--steps", "60", "--every", "5", "--checkpoint", P("part.ckpt")]).Code);
        }
        finally
        {
            TrainCommand.KillBeforeUpdate.Value = 0;
        }

        Assert.Equal(25, Checkpoint.ReadInfo(P("part.ckpt")).StepCount);
        (code, _, error) = Run([.. common, "--steps", "60", "--checkpoint", P("part.ckpt"), "--resume"]);
        Assert.True(code == 0, error);
        Assert.Equal(File.ReadAllLines(P("full.ckpt.loss.csv")), File.ReadAllLines(P("part.ckpt.loss.csv")));
        Assert.Equal(File.ReadAllBytes(P("full.ckpt")), File.ReadAllBytes(P("part.ckpt")));

        // The same run at a constant rate differs: the schedule is applied.
        Assert.Equal(0, Run(["train", "--text", P("t.txt"), "--hidden", "12", "--chunk", "10", "--schedule", "constant", "--lr", "0.01", "--steps", "60", "--checkpoint", P("flat.ckpt")]).Code);
        Assert.NotEqual(File.ReadAllBytes(P("full.ckpt")), File.ReadAllBytes(P("flat.ckpt")));
    }

    [Fact]
    public void HeldOutLossIsTheMeanNegativeLogLikelihoodOfTheNextSymbol()
    {
        var shape = new RnnShape(11, 16, 11);
        var theta = new RnnParameters(shape);
        theta.InitializeGlorot(3);
        var random = new Random(4);
        int[] tokens = [.. Enumerable.Range(0, 20_000).Select(_ => random.Next(11))];

        double Sequential(int[] t)
        {
            var model = new RnnModel(theta, Activation.Tanh);
            RnnState state = model.CreateState();
            var p = new float[11];
            double sum = 0;
            for (int k = 0; k + 1 < t.Length; k++)
            {
                model.Step(t[k], state, p);
                sum -= Math.Log(p[t[k + 1]]);
            }

            return sum / (t.Length - 1);
        }

        // Short: one stream, exactly the sequential loss; long: segments from h = 0, within a hair of it.
        Assert.Equal(Sequential(tokens[..5000]), TrainCommand.HeldOutLoss(theta, Activation.Tanh, tokens[..5000]), 5);
        Assert.InRange(TrainCommand.HeldOutLoss(theta, Activation.Tanh, tokens) - Sequential(tokens), -0.01, 0.01);
        Assert.Equal(Sequential(tokens[..2]), TrainCommand.HeldOutLoss(theta, Activation.Tanh, tokens[..2]), 5);
    }

    [Fact]
    public void ThePlotScalesToTheSmoothedCurvesNotToSpikes()
    {
        float[] losses = [.. Enumerable.Range(0, 3000).Select(i => i == 1500 ? 14f : 2f - (i / 3000f))];
        string svg = LossPlot.Render(losses, [(1000, 1.7), (3000, 1.2)], "a <b> & \"c\"\u0001", "char");
        XDocument doc = XDocument.Parse(svg);
        double[] yLabels = [.. doc.Descendants().Where(e => e.Name.LocalName == "text" && e.Attribute("text-anchor")?.Value == "end")
            .Select(e => double.Parse(e.Value, CultureInfo.InvariantCulture))];
        Assert.True(yLabels.Max() <= 2.2, string.Join(" ", yLabels));
        Assert.True(yLabels.Min() >= 0.9, string.Join(" ", yLabels));
        Assert.Contains("bptt train: a <b> & \"c\"?", doc.Descendants().Select(e => e.Value), StringComparer.Ordinal);
        Assert.Contains(doc.Descendants(), e => e.Value == "held-out (last: 1.200)");
        Assert.Contains(doc.Descendants(), e => e.Value == "training, per 2 steps");
    }
}
