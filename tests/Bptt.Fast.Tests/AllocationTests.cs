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

        // A per-call allocation shows in every window of calls; the runtime's own one-off work (tier-up, OSR, done later
        // when the machine is busy) shows in one window at most. So: up to five windows, and one of them must be clean.
        Span<long> windows = stackalloc long[5];
        for (int attempt = 0; attempt < windows.Length; attempt++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int k = 0; k < calls; k++)
            {
                step();
            }

            windows[attempt] = GC.GetAllocatedBytesForCurrentThread() - before;
            if (windows[attempt] == 0)
            {
                return;
            }

            Thread.Sleep(250);
        }

        Assert.Fail($"every window of {calls} calls allocated: {string.Join(", ", windows.ToArray())} bytes");
    }
}
