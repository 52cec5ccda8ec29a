using Bptt.Fast.Training;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>After warm-up a training step allocates nothing (GC.GetAllocatedBytesForCurrentThread unchanged over 100 calls).</summary>
public sealed class AllocationTests
{
    [Theory]
    [InlineData(false, 1)]
    [InlineData(false, 8)]
    [InlineData(true, 1)]
    [InlineData(true, 8)]
    public void HundredTrainingStepsAllocateZeroBytes(bool tokens, int batch)
    {
        var spec = new ProblemSpec(new RnnShape(24, 40, 20), 16, batch, Activation.Tanh, tokens, true, batch > 1, 9);
        var p = new Problem<float>(spec);
        var engine = new BpttEngine(spec.Shape, spec.Steps, batch);
        var theta = new RnnParameters(spec.Shape);
        theta.InitializeGlorot(3);
        var grad = new RnnParameters(spec.Shape);
        var optimizer = new GradientDescent(spec.Shape, 1e-3f);
        var final = new float[batch * spec.Shape.HiddenSize];
        var dh0 = new float[batch * spec.Shape.HiddenSize];

        void Step()
        {
            float loss = engine.ComputeGradients(theta, p.Batch(final, dh0), grad);
            optimizer.Step(theta, grad, loss);
            engine.Evaluate(theta, p.Batch());
        }

        AllocationProbe.AssertSteadyStateAllocatesNothing(Step, calls: 100);
    }
}

/// <summary>Measures the bytes a steady-state call allocates on the calling thread.</summary>
internal static class AllocationProbe
{
    /// <summary>Runs the whole probe on a thread of its own, so that nothing else the test host runs can land on it.</summary>
    public static void AssertSteadyStateAllocatesNothing(Action step, int calls)
    {
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                Probe(step, calls);
            }
            catch (Exception e)
            {
                failure = e;
            }
        });
        thread.Start();
        thread.Join();
        if (failure is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
        }
    }

    private static void Probe(Action step, int calls)
    {
        // Warm-up over the tiering delay, three times: the runtime's tiered JIT allocates on the calling thread when it
        // starts promoting hot methods; that is start-up work of the runtime, not a steady-state allocation.
        for (int round = 0; round < 3; round++)
        {
            for (int k = 0; k < 40; k++)
            {
                step();
            }

            Thread.Sleep(250);
        }

        // A per-call allocation shows in every window of calls. Two runtime effects do not: the tiered JIT's one-off work,
        // and a garbage collection started by another thread, which retires this thread's allocation context and counts
        // the 24-byte filler left in it. So a window during which a collection ran proves nothing and is measured again,
        // and one clean window of zero bytes passes.
        var windows = new List<string>();
        for (int attempt = 0; attempt < 20; attempt++)
        {
            int collections = GC.CollectionCount(0);
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int k = 0; k < calls; k++)
            {
                step();
            }

            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            bool collected = GC.CollectionCount(0) != collections;
            if (allocated == 0)
            {
                return;
            }

            windows.Add(collected ? $"{allocated} (a GC ran)" : $"{allocated}");
            Thread.Sleep(100);
        }

        Assert.Fail($"every window of {calls} calls allocated: {string.Join(", ", windows)} bytes");
    }
}
