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
        RnnShape shape = w.Shape;
        _theta = new RnnParameters(shape);
        _theta.InitializeGlorot(1);
        _grad = new RnnParameters(shape);
        _engine = IsReference
            ? new BpttEngine(shape, w.T, w.B, Activation.Tanh, KernelPath.Reference)
            : new BpttEngine(shape, w.T, w.B, Activation.Tanh, KernelPath.Fast, Path.Isa);
        _optimizer = new GradientDescent(shape, 1e-6f);
        (_inputs, _tokens, _targets) = w.Data();
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
