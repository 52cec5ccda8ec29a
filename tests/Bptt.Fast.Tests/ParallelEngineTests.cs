using FsCheck.Fluent;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>Data parallelism: the batch split across workers gives the single-thread result within float tolerance.</summary>
public sealed class ParallelEngineTests
{
    [Fact]
    public void SplittingTheBatchEqualsTheSingleThreadEngine() =>
        Generators.Check(
            from spec in Generators.Problems(maxSteps: 6, maxBatch: 9, maxSize: 17)
            from workers in Gen.Choose(2, 4)
            select (spec, workers),
            c =>
            {
                (ProblemSpec spec, int workers) = c;
                RnnShape s = spec.Shape;
                var p = new Problem<float>(spec);
                var theta = new RnnParameters(s);
                p.Theta.CopyTo(theta.Values);
                int bh = spec.Batch * s.HiddenSize;

                var single = new BpttEngine(s, spec.Steps, spec.Batch, spec.Activation);
                var g1 = new RnnParameters(s);
                float[] f1 = new float[bh], d1 = new float[bh], x1 = spec.Tokens ? [] : new float[p.Inputs.Length], h1 = new float[spec.Steps * bh];
                float l1 = single.ComputeGradients(theta, p.Batch(f1, d1, x1, h1), g1);

                using var parallel = new ParallelBpttEngine(s, spec.Steps, spec.Batch, spec.Activation, workers);
                var g2 = new RnnParameters(s);
                g2.Values.Fill(float.NaN); // overwritten, never read
                float[] f2 = new float[bh], d2 = new float[bh], x2 = spec.Tokens ? [] : new float[p.Inputs.Length], h2 = new float[spec.Steps * bh];
                float l2 = parallel.ComputeGradients(theta, p.Batch(f2, d2, x2, h2), g2);

                Assert.Equal(l1, l2, Math.Max(1e-5f, Math.Abs(l1) * 1e-5f));
                for (int k = 0; k < g1.Values.Length; k++)
                {
                    Assert.True(Math.Abs(g1.Values[k] - g2.Values[k]) <= 1e-5f * (1 + Math.Abs(g1.Values[k])), $"θ[{k}]: {g1.Values[k]} vs {g2.Values[k]} for {spec}, {workers} workers");
                }

                // Per-sequence outputs: the same rows, possibly on the other recurrence kernel (a worker's smaller batch may
                // use the fused steps where the whole batch used the GEMM), so equal up to rounding.
                foreach ((float[] a, float[] b) in new[] { (f1, f2), (d1, d2), (x1, x2), (h1, h2) })
                {
                    for (int k = 0; k < a.Length; k++)
                    {
                        Assert.True(Math.Abs(a[k] - b[k]) <= 1e-5f * (1 + Math.Abs(a[k])), $"output {k}: {a[k]} vs {b[k]} for {spec}");
                    }
                }
            },
            count: 40);

    [Fact]
    public void AccumulateAddsAndSteadyStateAllocatesNothing()
    {
        var spec = new ProblemSpec(new RnnShape(12, 20, 9), 8, 6, Activation.Tanh, false, true, true, 4);
        var p = new Problem<float>(spec);
        var theta = new RnnParameters(spec.Shape);
        p.Theta.CopyTo(theta.Values);
        using var parallel = new ParallelBpttEngine(spec.Shape, 8, 6, workers: 2);
        var once = new RnnParameters(spec.Shape);
        var twice = new RnnParameters(spec.Shape);
        parallel.ComputeGradients(theta, p.Batch(), once);
        parallel.ComputeGradients(theta, p.Batch(), twice);
        parallel.ComputeGradients(theta, p.Batch(), twice, accumulate: true);
        for (int k = 0; k < once.Values.Length; k++)
        {
            Assert.Equal(2 * once.Values[k], twice.Values[k], 1e-5f);
        }

        AllocationProbe.AssertSteadyStateAllocatesNothing(() => parallel.ComputeGradients(theta, p.Batch(), once), calls: 50);
    }

    [Fact]
    public void BadInputThrowsBeforeAnyWorkerRuns()
    {
        var shape = new RnnShape(3, 4, 5);
        using var parallel = new ParallelBpttEngine(shape, 4, 4, workers: 2);
        var theta = new RnnParameters(shape);
        var grad = new RnnParameters(shape);
        grad.Values.Fill(3f);
        int[] targets = [0, 1, 2, 7];
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => parallel.ComputeGradients(theta, new SequenceBatch<float>(1, 4, new int[] { 0, 1, 2, 0 }, targets), grad));
        Assert.Equal("batch.Targets", e.ParamName);
        Assert.All(grad.Values.ToArray(), v => Assert.Equal(3f, v));
        Assert.Equal(2, parallel.Workers);
        parallel.Dispose();
        Assert.Throws<ObjectDisposedException>(() => parallel.ComputeGradients(theta, new SequenceBatch<float>(1, 4, new int[] { 0, 1, 2, 0 }, [0, 1, 2, 3]), grad));
    }
}

/// <summary>Runs alone, so that the process-wide allocation counter sees only the engine's threads.</summary>
[CollectionDefinition(nameof(ProcessWideAllocation), DisableParallelization = true)]
public sealed class ProcessWideAllocation;

/// <summary>A data-parallel step allocates nothing on any thread: the calling thread and every worker.</summary>
[Collection(nameof(ProcessWideAllocation))]
public sealed class ParallelEngineAllocationTests
{
    [Theory]
    [InlineData(1, 1, 0f)]
    [InlineData(2, 2, 0.25f)]
    public void NoThreadAllocatesInASteadyStateDataParallelStep(int layers, int directions, float dropout)
    {
        var spec = new ProblemSpec(new RnnShape(12, 20, 9) { Layers = layers, Directions = directions }, 8, 6, Activation.Tanh, false, true, true, 4);
        var p = new Problem<float>(spec);
        var theta = new RnnParameters(spec.Shape);
        p.Theta.CopyTo(theta.Values);
        using var parallel = new ParallelBpttEngine(spec.Shape, 8, 6, workers: 3, dropout: dropout);
        var gradients = new RnnParameters(spec.Shape);
        for (int round = 0; round < 3; round++)
        {
            for (int k = 0; k < 60; k++)
            {
                parallel.ComputeGradients(theta, p.Batch(), gradients);
            }

            Thread.Sleep(250); // past the tiered JIT's delay, so promotions happen now, not in a measured window
        }

        // GC.GetTotalAllocatedBytes(precise) counts every thread of the process. A window in which the runtime itself
        // allocated (a tiering promotion, a finalizer) is measured again; one clean window of zero bytes passes.
        var windows = new List<long>();
        for (int attempt = 0; attempt < 20; attempt++)
        {
            long before = GC.GetTotalAllocatedBytes(precise: true);
            for (int k = 0; k < 50; k++)
            {
                parallel.ComputeGradients(theta, p.Batch(), gradients);
            }

            long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
            if (allocated == 0)
            {
                return;
            }

            windows.Add(allocated);
            Thread.Sleep(100);
        }

        Assert.Fail($"every window of 50 calls allocated somewhere in the process: {string.Join(", ", windows)} bytes");
    }
}
