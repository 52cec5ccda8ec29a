using Bptt.Fast.Training;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>The README's API example compiles and runs here; a test checks the README holds the same text.</summary>
public sealed class ReadmeExampleTests
{
    [Fact]
    public void ExampleTrainsAndTheLossFalls()
    {
        (float first, float last) = Example();
        Assert.True(last < first, $"loss {first} -> {last}");
    }

    [Fact]
    public void ReadmeShowsThisExample()
    {
        string root = RepositoryRoot();
        string source = File.ReadAllText(Path.Combine(root, "tests", "Bptt.Fast.Tests", "ReadmeExampleTests.cs"));
        string readme = File.ReadAllText(Path.Combine(root, "README.md"));
        const string Begin = "// README example " + "begin", End = "// README example " + "end";
        int start = source.IndexOf(Begin, StringComparison.Ordinal) + Begin.Length;
        string[] lines = source[start..source.IndexOf(End, StringComparison.Ordinal)]
            .Split('\n').Select(l => l.TrimEnd()).Where(l => l.Length > 0).ToArray();
        int indent = lines.Min(l => l.Length - l.TrimStart().Length);
        string snippet = string.Join('\n', lines.Select(l => l[indent..]));
        Assert.Contains(snippet, readme.Replace("\r\n", "\n", StringComparison.Ordinal), StringComparison.Ordinal);
    }

    internal static string RepositoryRoot()
    {
        for (string? dir = AppContext.BaseDirectory; dir is not null; dir = Path.GetDirectoryName(dir))
        {
            if (File.Exists(Path.Combine(dir, "Bptt.Fast.sln")))
            {
                return dir;
            }
        }

        throw new InvalidOperationException("Bptt.Fast.sln not found above " + AppContext.BaseDirectory);
    }

    private static (float First, float Last) Example()
    {
        float first = 0, last = 0;
        // README example begin
        var shape = new RnnShape(InputSize: 4, HiddenSize: 32, OutputSize: 4);
        var theta = new RnnParameters(shape);
        theta.InitializeGlorot(seed: 42);
        var gradients = new RnnParameters(shape);
        var engine = new BpttEngine(shape, maxSteps: 8);          // Fast path; allocates its workspace once
        var optimizer = new GradientDescent(shape, learningRate: 0.05f);

        int[] tokens = [0, 1, 2, 3, 0, 1, 2, 3];                  // x_t as token ids, [T, B] with B = 1
        int[] targets = [1, 2, 3, 0, 1, 2, 3, 0];                 // the next token
        var batch = new SequenceBatch<float>(steps: 8, batchSize: 1, tokens, targets);

        for (int step = 0; step < 200; step++)
        {
            float loss = engine.ComputeGradients(theta, batch, gradients); // L and ∂L/∂θ, no allocation
            if (step == 0) first = loss;
            optimizer.Step(theta, gradients, loss);                  // θ ← θ − η ∂L/∂θ, refused if non-finite
        }

        last = engine.Evaluate(theta, batch);
        // README example end
        return (first, last);
    }
}
