using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Jobs;
using Bptt.Fast.Training;

namespace Bptt.Fast.Bench;

/// <summary>One training step (forward, backward, gradient-descent update) of the S workload, reference against fast.</summary>
[MemoryDiagnoser]
[SimpleJob(BenchmarkDotNet.Engines.RunStrategy.Throughput, launchCount: 1, warmupCount: 2, iterationCount: 5)]
public class TrainingStepBenchmarks
{
    private RnnParameters _theta = null!, _grad = null!;
    private BpttEngine _reference = null!, _fast = null!;
    private GradientDescent _optimizer = null!;
    private float[] _inputs = null!;
    private int[] _targets = null!;

    [GlobalSetup]
    public void Setup()
    {
        var shape = new RnnShape(64, 128, 64);
        _theta = new RnnParameters(shape);
        _theta.InitializeGlorot(1);
        _grad = new RnnParameters(shape);
        _reference = new BpttEngine(shape, 64, 1, Activation.Tanh, KernelPath.Reference);
        _fast = new BpttEngine(shape, 64, 1, Activation.Tanh, KernelPath.Fast);
        _optimizer = new GradientDescent(shape, 1e-4f);
        var random = new Random(1);
        _inputs = Enumerable.Range(0, 64 * 64).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        _targets = Enumerable.Range(0, 64).Select(_ => random.Next(64)).ToArray();
    }

    [Benchmark(Baseline = true)]
    public float Reference() => Step(_reference);

    [Benchmark]
    public float Fast() => Step(_fast);

    private float Step(BpttEngine engine)
    {
        float loss = engine.ComputeGradients(_theta, new SequenceBatch<float>(64, 1, _inputs, _targets), _grad);
        _optimizer.Step(_theta, _grad, loss);
        return loss;
    }
}
