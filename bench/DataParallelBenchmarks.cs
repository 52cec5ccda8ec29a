using BenchmarkDotNet.Attributes;
using Bptt.Fast.Training;

namespace Bptt.Fast.Bench;

/// <summary>
/// The batched workloads on one worker and on every core (<see cref="ParallelBpttEngine"/>): the "vs reference" column
/// of the multi-worker row is its speed-up over one worker.
/// </summary>
public class DataParallel : IHasWork, IDisposable
{
    private RnnParameters _theta = null!, _grad = null!;
    private ParallelBpttEngine _engine = null!;
    private GradientDescent _optimizer = null!;
    private float[] _inputs = null!;
    private int[] _targets = null!;

    [ParamsSource(nameof(Workloads))]
    public Workload Workload { get; set; } = Workload.BM;

    [ParamsSource(nameof(WorkerCounts))]
    public int Workers { get; set; } = 1;

    public static IEnumerable<Workload> Workloads => [Workload.BM, Workload.L];

    public static IEnumerable<int> WorkerCounts => Environment.ProcessorCount > 1 ? [1, Environment.ProcessorCount] : [1];

    public double Flops => Workload.TrainingFlops;

    public string Group => Workload.Name;

    public bool IsReference => Workers == 1;

    [GlobalSetup]
    public void Setup()
    {
        Workload w = Workload;
        RnnShape shape = w.Shape;
        _theta = new RnnParameters(shape);
        _theta.InitializeGlorot(1);
        _grad = new RnnParameters(shape);
        _engine = new ParallelBpttEngine(shape, w.T, w.B, Activation.Tanh, Workers);
        _optimizer = new GradientDescent(shape, 1e-6f);
        (_inputs, _, _targets) = w.Data();
        Paths.WarmUp(() => Step());
    }

    [Benchmark]
    public float Step()
    {
        float loss = _engine.ComputeGradients(_theta, new SequenceBatch<float>(Workload.T, Workload.B, _inputs, _targets), _grad);
        _optimizer.Step(_theta, _grad, loss);
        return loss;
    }

    [GlobalCleanup]
    public void Dispose()
    {
        _engine?.Dispose();
        GC.SuppressFinalize(this);
    }
}
