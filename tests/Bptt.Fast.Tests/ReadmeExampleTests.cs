// The README's examples are pasted here verbatim and keep their one-line ifs.
#pragma warning disable IDE0011
using Bptt.Fast.Serving;
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
    public void TrainingExampleLearnsAStream()
    {
        (double first, double last) = TrainingExample();
        Assert.True(last < 0.5 * first, $"nats per symbol {first} -> {last}");
    }

    [Fact]
    public void ReadmeShowsTheseExamples()
    {
        string root = RepositoryRoot();
        string source = File.ReadAllText(Path.Combine(root, "tests", "Bptt.Fast.Tests", "ReadmeExampleTests.cs"));
        string readme = File.ReadAllText(Path.Combine(root, "README.md")).Replace("\r\n", "\n", StringComparison.Ordinal);
        const string Begin = "// README example " + "begin", End = "// README example " + "end";
        int found = 0;
        for (int at = source.IndexOf(Begin, StringComparison.Ordinal); at >= 0; at = source.IndexOf(Begin, at + 1, StringComparison.Ordinal))
        {
            int start = at + Begin.Length;
            string[] lines = source[start..source.IndexOf(End, start, StringComparison.Ordinal)]
                .Split('\n').Select(l => l.TrimEnd()).Where(l => l.Length > 0).ToArray();
            int indent = lines.Min(l => l.Length - l.TrimStart().Length);
            string snippet = string.Join('\n', lines.Select(l => l[indent..]));
            Assert.Contains(snippet, readme, StringComparison.Ordinal);
            found++;
        }

        Assert.Equal(3, found);
    }

    private static (double First, double Last) TrainingExample()
    {
        int[] period = [0, 1, 2, 1, 3, 0, 2];
        int[] streamTokens = Enumerable.Range(0, 700).Select(t => period[t % period.Length]).ToArray();
        int[] streamTargets = Enumerable.Range(0, 700).Select(t => period[(t + 1) % period.Length]).ToArray();
        double first = 0, last = 0;
        // README example begin
        var shape = new RnnShape(InputSize: 4, HiddenSize: 24, OutputSize: 4);
        var theta = new RnnParameters(shape);
        theta.InitializeGlorot(seed: 1);
        var engine = new BpttEngine(shape, maxSteps: 32);
        var optimizer = new Adam(shape, learningRate: 0.01f);        // or Momentum, Adagrad, AdamW, GradientDescent
        var trainer = new TruncatedBpttTrainer(engine, optimizer, updateEvery: 16, backpropSteps: 32, clipNorm: 5f);
        for (int epoch = 0; epoch < 20; epoch++)
        {
            trainer.Reset();                                          // start the stream again from h = 0
            TrainingReport report = trainer.Train(theta, streamTokens, streamTargets);
            double natsPerSymbol = report.Loss / report.Steps;        // report.Refused counts non-finite steps skipped
            if (epoch == 0) first = natsPerSymbol;
            last = natsPerSymbol;
        }
        // README example end
        return (first, last);
    }

    [Fact]
    public void ServingExampleSamplesAndRoundTripsACheckpoint()
    {
        var shape = new RnnShape(InputSize: 4, HiddenSize: 24, OutputSize: 4);
        var theta = new RnnParameters(shape);
        theta.InitializeGlorot(seed: 3);
        var optimizer = new Adam(shape);
        var random = new Random(5);
        string path = Path.Combine(Path.GetTempPath(), $"bptt-readme-{Environment.ProcessId}.ckpt");
        var generated = new List<int>();
#pragma warning disable BPTT0001 // the README still shows the one-argument constructor; the proposed README text passes the activation
        // README example begin
        var model = new RnnModel(theta, Activation.Tanh);          // read-only copy of θ; f is required; share it between threads
        RnnState state = model.CreateState();                       // one small state per caller or stream
        var logits = new float[shape.OutputSize];
        int token = 0;
        for (int t = 0; t < 20; t++)
        {
            model.Step(token, state, logits, StepOutput.Logits);    // equations (1)–(3), no allocation
            token = RnnModel.Sample(logits, temperature: 0.8f, random);
            generated.Add(token);
        }

        Checkpoint.Save(path, theta, Activation.Tanh, optimizer);   // atomic: temp file, flush, rename
        var restored = new RnnParameters(shape);
        CheckpointInfo info = Checkpoint.Load(path, restored, optimizer);
        // README example end
#pragma warning restore BPTT0001
        File.Delete(path);
        Assert.Equal(20, generated.Count);
        Assert.All(generated, g => Assert.InRange(g, 0, 3));
        Assert.Equal(theta.Values.ToArray(), restored.Values.ToArray());
        Assert.Equal(shape, info.Shape);
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
