using BenchmarkDotNet.Attributes;
using Bptt.Fast.Training;

namespace Bptt.Fast.Bench;

/// <summary>One full training step: ComputeGradients (forward, backward) plus the gradient-descent update, one thread.</summary>
public class TrainingStep : IHasWork
{
    private RnnParameters _theta = null!, _grad = null!;
    private BpttEngine _engine = null!;
    private GradientDescent _optimizer = null!;
    private float[] _inputs = null!;
    private int[] _tokens = null!, _targets = null!;

    [ParamsSource(nameof(Workloads))]
    public Workload Workload { get; set; } = Workload.S;

    [ParamsSource(nameof(PathValues))]
    public PathParam Path { get; set; } = Paths.Default;

    public static IEnumerable<Workload> Workloads => Workload.All;

    public static IEnumerable<PathParam> PathValues => Paths.All;

    public double Flops => Workload.TrainingFlops;

    public string Group => Workload.Name;

    public bool IsReference => Path.IsReference;

    [GlobalSetup]
    public void Setup()
    {
        Workload w = Workload;
        var shape = new RnnShape(w.I, w.H, w.O);
        _theta = new RnnParameters(shape);
        _theta.InitializeGlorot(1);
        _grad = new RnnParameters(shape);
        _engine = IsReference
            ? new BpttEngine(shape, w.T, w.B, Activation.Tanh, KernelPath.Reference)
            : new BpttEngine(shape, w.T, w.B, Activation.Tanh, KernelPath.Fast, Path.Isa);
        _optimizer = new GradientDescent(shape, 1e-6f);
        var random = new Random(1);
        _inputs = w.Tokens ? [] : Enumerable.Range(0, w.T * w.B * w.I).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        _tokens = w.Tokens ? Enumerable.Range(0, w.T * w.B).Select(_ => random.Next(w.I)).ToArray() : [];
        _targets = Enumerable.Range(0, w.T * w.B).Select(_ => random.Next(w.O)).ToArray();
        Paths.WarmUp(() => Step());
    }

    [Benchmark]
    public float Step()
    {
        SequenceBatch<float> batch = Workload.Tokens
            ? new SequenceBatch<float>(Workload.T, Workload.B, _tokens, _targets)
            : new SequenceBatch<float>(Workload.T, Workload.B, _inputs, _targets);
        float loss = _engine.ComputeGradients(_theta, batch, _grad);
        _optimizer.Step(_theta, _grad, loss);
        return loss;
    }
}
