using Bptt.Fast.Serving;
using Bptt.Fast.Training;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>The NuGet package READMEs: the library's example compiles and runs here, and no link is relative.</summary>
public sealed class PackageReadmeTests
{
    [Fact]
    public void TheLibraryPackageExampleRunsAndIsTheTextOfThePackageReadme()
    {
        string path = Path.Combine(Directory.CreateTempSubdirectory("bptt-package-").FullName, "model.ckpt");
        int next;
        TrainingReport last = default;

        // PACKAGE.md example begin
        int[] stream = [.. Enumerable.Range(0, 5000).Select(t => "abcab"[t % 5] - 'a')]; // token ids in [0, 3)
        var shape = new RnnShape(InputSize: 3, HiddenSize: 32, OutputSize: 3);
        var theta = new RnnParameters(shape);
        theta.InitializeGlorot(seed: 1);
        var engine = new BpttEngine(shape, maxSteps: 20);
        var optimizer = new Adam(shape, learningRate: 0.005f);
        var trainer = new TruncatedBpttTrainer(engine, optimizer, updateEvery: 20, backpropSteps: 20, clipNorm: 5f);
        for (int at = 0; at + 21 <= stream.Length; at += 20)
        {
            TrainingReport report = trainer.Train(theta, stream.AsSpan(at, 20), stream.AsSpan(at + 1, 20));
            last = report; // (not in the package README)
        }

        Checkpoint.Save(path, theta, Activation.Tanh, optimizer); // path: where to write, e.g. "model.ckpt"
        var model = new RnnModel(theta, Activation.Tanh);
        RnnState state = model.CreateState();
        var probabilities = new float[shape.OutputSize];
        model.Step(token: 0, state, probabilities);  // p(next token | "a")
        next = RnnModel.Greedy(probabilities);   // 1, that is "b"
        // PACKAGE.md example end

        Assert.Equal(1, next);
        Assert.True(last.Loss / 20 < 0.5, $"loss {last.Loss / 20} nats per step");
        Assert.Equal(249, Checkpoint.ReadInfo(path).StepCount);
        Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);

        string root = ReadmeExampleTests.RepositoryRoot();
        string source = File.ReadAllText(Path.Combine(root, "tests", "Bptt.Fast.Tests", "PackageReadmeTests.cs")).Replace("\r\n", "\n", StringComparison.Ordinal);
        const string Begin = "// PACKAGE.md example " + "begin\n", End = "        // PACKAGE.md example " + "end";
        int start = source.IndexOf(Begin, StringComparison.Ordinal) + Begin.Length;
        string[] lines = [.. source[start..source.IndexOf(End, start, StringComparison.Ordinal)].Split('\n')
            .Where(l => !l.Contains("(not in the package README)", StringComparison.Ordinal))
            .Select(l => l.Length >= 8 ? l[8..] : l.Trim())];
        string snippet = string.Join('\n', lines).Replace("next = ", "int next = ", StringComparison.Ordinal).TrimEnd('\n');
        string readme = File.ReadAllText(Path.Combine(root, "src", "Bptt.Fast", "PACKAGE.md")).Replace("\r\n", "\n", StringComparison.Ordinal);
        Assert.Contains("```csharp\n" + snippet + "\n```", readme, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("src/Bptt.Fast/PACKAGE.md")]
    [InlineData("src/Bptt.Fast.Cli/PACKAGE.md")]
    public void PackageReadmesLinkOnlyToAbsoluteAddresses(string file)
    {
        string text = File.ReadAllText(Path.Combine(ReadmeExampleTests.RepositoryRoot(), file));
        Assert.DoesNotContain("DESIGN.md", text, StringComparison.Ordinal);
        foreach (System.Text.RegularExpressions.Match link in System.Text.RegularExpressions.Regex.Matches(text, @"\]\(([^)]*)\)"))
        {
            Assert.StartsWith("https://", link.Groups[1].Value, StringComparison.Ordinal);
        }

        Assert.DoesNotContain("http://", text, StringComparison.Ordinal);
    }
}
