using Bptt.Fast.Serving;
using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>
/// Hostile files and numbers given to <c>bptt</c>: each is refused with one line on stderr and a non-zero exit code, and
/// leaves every file as it was. None may end in an unhandled exception.
/// </summary>
public sealed class CliHostileInputTests : CliHarness
{
    public static TheoryData<string, string> MalformedLossLogs() => new()
    {
        { "not csv", "bad\n" },
        { "not a number", "1,abc\n2,1.5\n3,1.4\n" },
        { "wrong step", "1,1.5\n3,1.4\n2,1.3\n" },
        { "NaN", "1,1.5\n2,NaN\n3,1.3\n" },
        { "infinite", "1,1.5\n2,1e999\n3,1.3\n" },
        { "negative", "1,1.5\n2,-1\n3,1.3\n" },
        { "overflowing step", "99999999999,1\n" },
        { "too short", "1,1.5\n2,1.4\n" },
        { "empty", "" },
        { "one huge line", new string('7', 100_000) },
        { "binary", "\0\0\0\0\0\0" },
    };

    [Theory]
    [MemberData(nameof(MalformedLossLogs))]
    public void ResumeWithAMalformedLossLogIsRefused(string what, string content)
    {
        _ = what;
        TrainSmall("m.ckpt", steps: 3);
        File.WriteAllText(P("m.ckpt.loss.csv"), content);
        AssertRefused(1, ["--resume", "m.ckpt.loss.csv"], "train", "--text", P("small.txt"), "--steps", "6", "--hidden", "4", "--chunk", "5", "--checkpoint", P("m.ckpt"), "--resume");
    }

    [Fact]
    public void ResumeWithAMissingOrFolderLossLogIsRefused()
    {
        TrainSmall("m.ckpt", steps: 3);
        string[] resume = ["train", "--text", P("small.txt"), "--steps", "6", "--hidden", "4", "--chunk", "5", "--checkpoint", P("m.ckpt"), "--resume"];
        File.Delete(P("m.ckpt.loss.csv"));
        AssertRefused(1, ["--resume", "m.ckpt.loss.csv"], resume);
        Directory.CreateDirectory(P("m.ckpt.loss.csv"));
        AssertRefused(1, ["--resume", "m.ckpt.loss.csv", "folder"], resume);
    }

    [Fact]
    public void ResumeWithALongerLossLogKeepsOnlyTheCheckpointsSteps()
    {
        // A crash between the log and the checkpoint leaves extra lines; they are dropped, not an error.
        TrainSmall("m.ckpt", steps: 3);
        File.AppendAllLines(P("m.ckpt.loss.csv"), ["4,1.25", "5,1.5"]);
        (int code, _, string error) = Run("train", "--text", P("small.txt"), "--steps", "6", "--hidden", "4", "--chunk", "5", "--checkpoint", P("m.ckpt"), "--resume");
        Assert.True(code == 0, error);
        string[] lines = File.ReadAllLines(P("m.ckpt.loss.csv"));
        Assert.Equal(6, lines.Length);
        Assert.Equal(Enumerable.Range(1, 6).Select(i => $"{i},"), lines.Select(l => l[..(l.IndexOf(',', StringComparison.Ordinal) + 1)]));
        Assert.NotEqual("4,1.25", lines[3]);
    }

    [Fact]
    public void ResumeWithADifferentTextIsRefusedUnlessForced()
    {
        TrainSmall("m.ckpt", text: "abcabcaabbcc", steps: 3);
        File.WriteAllText(P("other.txt"), string.Concat(Enumerable.Repeat("xyzxyzxxyyzz", 10))); // also 3 symbols
        string[] resume = ["train", "--text", P("other.txt"), "--steps", "6", "--hidden", "4", "--chunk", "5", "--checkpoint", P("m.ckpt"), "--resume"];
        AssertRefused(2, ["--resume", "--text", "other.txt", "--force"], resume);

        File.WriteAllText(P("more.txt"), string.Concat(Enumerable.Repeat("abcdabcd", 10))); // 4 symbols: the model cannot read it
        AssertRefused(2, ["--resume", "more.txt", "4 symbols"], ["train", "--text", P("more.txt"), "--steps", "6", "--hidden", "4", "--chunk", "5", "--checkpoint", P("m.ckpt"), "--resume", "--force"]);

        (int code, string output, string error) = Run([.. resume, "--force"]);
        Assert.True(code == 0, error);
        Assert.Contains("resumed", output, StringComparison.Ordinal);
        Assert.Equal([0xEF, 0xBB, 0xBF, .. "xyz"u8], File.ReadAllBytes(P("m.ckpt.vocab")));
    }

    [Fact]
    public void ResumeWithAMissingOrMalformedVocabularyIsRefusedUnlessForced()
    {
        TrainSmall("m.ckpt", steps: 3);
        string[] resume = ["train", "--text", P("small.txt"), "--steps", "6", "--hidden", "4", "--chunk", "5", "--checkpoint", P("m.ckpt"), "--resume"];
        File.WriteAllBytes(P("m.ckpt.vocab"), [0xEF, 0xBB, 0xBF, (byte)'a', 0xC3]);
        AssertRefused(1, ["--resume", "m.ckpt.vocab", "UTF-8", "--force"], resume);
        File.Delete(P("m.ckpt.vocab"));
        AssertRefused(1, ["--resume", "m.ckpt.vocab", "--force"], resume);
        Assert.Equal(0, Run([.. resume, "--force"]).Code);
    }

    [Fact]
    public void ResumeThatDoesNotMatchTheCheckpointIsRefused()
    {
        TrainSmall("m.ckpt", steps: 3);
        string[] common = ["train", "--text", P("small.txt"), "--chunk", "5", "--checkpoint", P("m.ckpt"), "--resume"];
        AssertRefused(2, ["--resume", "--hidden", "4 hidden units"], [.. common, "--steps", "6", "--hidden", "5"]);
        AssertRefused(2, ["--resume", "--optimizer sgd", "Adam"], [.. common, "--steps", "6", "--optimizer", "sgd"]);
        AssertRefused(2, ["--resume", "--steps 3", "step 3"], [.. common, "--steps", "3"]);
        AssertRefused(2, ["--resume", "no checkpoint", "none.ckpt"], ["train", "--text", P("small.txt"), "--checkpoint", P("none.ckpt"), "--resume"]);
        File.WriteAllText(P("m.ckpt"), "BPTTCKPT and then garbage, not a checkpoint");
        AssertRefused(1, ["--resume", "m.ckpt"], [.. common, "--steps", "6"]);

        // Without --hidden and --optimizer, resuming takes them from the checkpoint.
        File.Delete(P("m.ckpt"));
        TrainSmallWith("n.ckpt", "--optimizer", "adagrad", "--lr", "0.1");
        (int code, string output, string error) = Run("train", "--text", P("small.txt"), "--chunk", "5", "--steps", "6", "--checkpoint", P("n.ckpt"), "--resume");
        Assert.True(code == 0, error);
        Assert.Contains("resumed", output, StringComparison.Ordinal);
    }

    private void TrainSmallWith(string checkpoint, params string[] extra)
    {
        (int code, _, string error) = Run(["train", "--text", P("small.txt"), "--steps", "3", "--hidden", "4", "--chunk", "5", "--checkpoint", P(checkpoint), .. extra]);
        Assert.True(code == 0, error);
    }

    public static TheoryData<string> BadSampleFiles() =>
    [
        "output size exceeds the vocabulary",
        "input size differs from output size",
        "vocabulary too short",
        "vocabulary too long",
        "vocabulary not UTF-8",
        "vocabulary with a lone surrogate",
        "vocabulary repeats a symbol",
        "vocabulary empty",
        "vocabulary missing",
        "vocabulary is a folder",
        "checkpoint empty",
        "checkpoint truncated",
        "model output not finite",
    ];

    [Theory]
    [MemberData(nameof(BadSampleFiles))]
    public void SampleFromABadModelIsRefused(string what)
    {
        RnnShape shape = what switch
        {
            "output size exceeds the vocabulary" => new RnnShape(3, 4, 5),
            "input size differs from output size" => new RnnShape(5, 4, 3),
            _ => new RnnShape(3, 4, 3),
        };
        var theta = new RnnParameters(shape);
        theta.InitializeGlorot(1);
        if (what == "model output not finite")
        {
            theta.Wxh.Fill(100f);  // h = tanh(100) = 1
            theta.Why.Fill(3e38f); // v = 4 × 3e38 overflows to +∞
        }

        Checkpoint.Save(P("s.ckpt"), theta, Activation.Tanh);
        byte[] vocab = [0xEF, 0xBB, 0xBF, (byte)'a', (byte)'b', (byte)'c'];
        switch (what)
        {
            case "vocabulary too short": vocab = [(byte)'a', (byte)'b']; break;
            case "vocabulary too long": vocab = "abcd"u8.ToArray(); break;
            case "vocabulary not UTF-8": vocab = [(byte)'a', 0xFF, (byte)'c']; break;
            case "vocabulary with a lone surrogate": vocab = [(byte)'a', 0xED, 0xA0, 0xBD, (byte)'c']; break;
            case "vocabulary repeats a symbol": vocab = "aba"u8.ToArray(); break;
            case "vocabulary empty": vocab = []; break;
            case "checkpoint empty": File.WriteAllBytes(P("s.ckpt"), []); break;
            case "checkpoint truncated": File.WriteAllBytes(P("s.ckpt"), File.ReadAllBytes(P("s.ckpt"))[..40]); break;
            default: break;
        }

        if (what == "vocabulary is a folder")
        {
            Directory.CreateDirectory(P("s.ckpt.vocab"));
        }
        else if (what != "vocabulary missing")
        {
            File.WriteAllBytes(P("s.ckpt.vocab"), vocab);
        }

        string[] mentions = what.StartsWith("vocabulary", StringComparison.Ordinal) ? ["--checkpoint", "s.ckpt.vocab"] : ["--checkpoint", "s.ckpt"];
        AssertRefused(1, mentions, "sample", "--checkpoint", P("s.ckpt"), "--length", "20");
    }

    [Fact]
    public void SampleFromAFolderOrAMissingCheckpointIsRefused()
    {
        Directory.CreateDirectory(P("dir.ckpt"));
        AssertRefused(2, ["--checkpoint", "dir.ckpt", "folder"], "sample", "--checkpoint", P("dir.ckpt"));
        AssertRefused(2, ["--checkpoint", "none.ckpt"], "sample", "--checkpoint", P("none.ckpt"));
        AssertRefused(2, ["--checkpoint"], "sample", "--checkpoint", "");
    }

    [Fact]
    public void SampleFromADeviceIsRefusedWithoutReadingIt()
    {
        Assert.SkipUnless(File.Exists("/dev/zero"), "needs /dev/zero");
        AssertRefused(1, ["--checkpoint", "/dev/zero", "not a regular file"], "sample", "--checkpoint", "/dev/zero");
    }

    [Fact]
    public void APrimeOutsideTheVocabularyIsRefused()
    {
        TrainSmall("m.ckpt", steps: 2);
        AssertRefused(2, ["--prime", "'z'"], "sample", "--checkpoint", P("m.ckpt"), "--prime", "abz");
        AssertRefused(2, ["--prime", "U+1F600"], "sample", "--checkpoint", P("m.ckpt"), "--prime", "a😀");
        AssertRefused(2, ["--prime", "empty"], "sample", "--checkpoint", P("m.ckpt"), "--prime", "");
        AssertRefused(2, ["--prime", "surrogate"], "sample", "--checkpoint", P("m.ckpt"), "--prime", "a\uD83D");
        AssertRefused(2, ["--prime", "U+000A"], "sample", "--checkpoint", P("m.ckpt"), "--prime", "a\nb");
    }

    public static TheoryData<string, string> BadTexts() => new()
    {
        { "only a BOM", "EFBBBF" },
        { "one distinct symbol", "616161616161616161616161616161616161616161616161" },
        { "BOM and one distinct symbol", "EFBBBF61616161616161616161616161616161616161616161" },
        { "shorter than a chunk", "616263" },
        { "invalid UTF-8", "6162FF6364" },
        { "UTF-8 encoded surrogate", "6162EDA0BD6364" },
        { "overlong encoding", "6162C0AF6364" },
        { "truncated sequence", "616263646566F09F98" },
        { "NUL byte", "61620063" },
        { "UTF-16 with BOM", "FFFE610062006300" },
    };

    [Theory]
    [MemberData(nameof(BadTexts))]
    public void ABadTextIsRefused(string what, string hex)
    {
        _ = what;
        File.WriteAllBytes(P("t.txt"), Convert.FromHexString(hex));
        AssertRefused(2, ["--text", "t.txt"], "train", "--text", P("t.txt"), "--chunk", "5", "--checkpoint", P("x.ckpt"));
    }

    [Fact]
    public void ATextLargerThanTheLimitIsRefusedBeforeItIsRead()
    {
        using (var file = new FileStream(P("huge.txt"), FileMode.CreateNew))
        {
            file.SetLength(Bptt.Fast.Cli.InputFiles.MaxTextBytes + 1); // sparse: nothing is written, and nothing should be read
        }

        AssertRefused(2, ["--text", "huge.txt", "128 MiB"], "train", "--text", P("huge.txt"), "--checkpoint", P("x.ckpt"));
    }

    [Fact]
    public void AnEndlessTextIsReadOnlyUpToTheBound()
    {
        Assert.SkipUnless(File.Exists("/dev/zero"), "needs /dev/zero");

        // /dev/zero claims length 0: it is refused at its first NUL byte, not read into memory without end.
        AssertRefused(2, ["--text", "/dev/zero", "NUL"], "train", "--text", "/dev/zero", "--checkpoint", P("x.ckpt"));
    }

    [Fact]
    public void AFolderAsTextIsRefused()
    {
        Directory.CreateDirectory(P("folder.txt"));
        AssertRefused(2, ["--text", "folder.txt", "folder"], "train", "--text", P("folder.txt"), "--checkpoint", P("x.ckpt"));
    }

    public static TheoryData<string[], string> BadNumbers() => new()
    {
        { ["train", "--steps", "99999999999"], "--steps" },
        { ["train", "--steps", "-1"], "--steps" },
        { ["train", "--steps", "1e3"], "--steps" },
        { ["train", "--chunk", "0"], "--chunk" },
        { ["train", "--chunk", "1001"], "--chunk" },
        { ["train", "--hidden", "0"], "--hidden" },
        { ["train", "--hidden", "4097"], "--hidden" },
        { ["train", "--hidden", "2147483648"], "--hidden" },
        { ["train", "--lr", "NaN"], "--lr" },
        { ["train", "--lr", "1e999"], "--lr" },
        { ["train", "--lr", "-0.1"], "--lr" },
        { ["train", "--clip", "Infinity"], "--clip" },
        { ["train", "--every", "0"], "--every" },
        { ["train", "--seed", "-5"], "--seed" },
        { ["train", "--optimizer", "adamax"], "--optimizer" },
        { ["train", "--steps"], "--steps" },
        { ["train", "--checkpoint", ""], "--checkpoint" },
        { ["train", "--checkpoint", "a\0b"], "--checkpoint" },
        { ["sample", "--checkpoint", "x", "--length", "99999999999"], "--length" },
        { ["sample", "--checkpoint", "x", "--length", "0"], "--length" },
        { ["sample", "--checkpoint", "x", "--temperature", "0"], "--temperature" },
        { ["sample", "--checkpoint", "x", "--temperature", "-1"], "--temperature" },
        { ["check", "--seed", "99999999999"], "--seed" },
        { ["info", "--verbose"], "--verbose" },
    };

    [Theory]
    [MemberData(nameof(BadNumbers))]
    public void ABadNumberOrOptionIsRefused(string[] args, string option)
    {
        AssertRefused(2, [option], [.. args, .. args[0] == "train" && !args.Contains("--checkpoint") ? new[] { "--checkpoint", P("x.ckpt") } : []]);
    }
}
