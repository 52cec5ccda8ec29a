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

    /// <summary>Every configuration of issue #13: stacked, bidirectional, with dropout, both recurrence paths (batch 2 and 6).</summary>
    [Theory]
    [InlineData(2, 1, 0f, false, 2)]
    [InlineData(2, 1, 0.3f, true, 6)]
    [InlineData(3, 2, 0f, true, 2)]
    [InlineData(2, 2, 0.2f, false, 6)]
    [InlineData(1, 2, 0f, true, 6)]
    public void StackedAndBidirectionalTrainingStepsAllocateZeroBytes(int layers, int directions, float dropout, bool tokens, int batch)
    {
        var shape = new RnnShape(12, 20, 9) { Layers = layers, Directions = directions };
        var spec = new ProblemSpec(shape, 10, batch, Activation.Tanh, tokens, true, true, 19);
        var p = new Problem<float>(spec);
        var engine = new BpttEngine(shape, spec.Steps, batch, dropout: dropout);
        var theta = new RnnParameters(shape);
        theta.InitializeGlorot(3);
        var grad = new RnnParameters(shape);
        var optimizer = new Adam(shape, 1e-3f);
        var final = new float[shape.BlockCount * batch * shape.HiddenSize];
        var dh0 = new float[shape.BlockCount * batch * shape.HiddenSize];
        var states = new float[spec.Steps * batch * shape.LayerOutputSize];
        ulong seed = 0;

        void Step()
        {
            float loss = engine.ComputeGradients(theta, p.Batch(final, dh0, default, states) with { DropoutSeed = seed++ }, grad);
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

        // A per-call allocation grows with the number of calls. Two runtime effects do not: the tiered JIT's one-off
        // work, and the accounting of this thread's allocation context when other threads allocate or collect (seen as a
        // constant 24–240 bytes per measured window, whether the window holds 100 calls or 1000). So each attempt
        // measures a window of n calls and one of 10n calls: zero bytes in either, or the same count in both, means
        // nothing is allocated per call. A window during which a collection ran proves nothing and is measured again.
        var windows = new List<string>();
        for (int attempt = 0; attempt < 20; attempt++)
        {
            (long shortWindow, bool shortCollected) = Window(step, calls);
            (long longWindow, bool longCollected) = Window(step, 10 * calls);
            if (shortWindow == 0 || longWindow == 0 || (!shortCollected && !longCollected && shortWindow == longWindow))
            {
                return;
            }

            windows.Add($"{shortWindow}{(shortCollected ? " (a GC ran)" : "")} / {longWindow}{(longCollected ? " (a GC ran)" : "")}");
            Thread.Sleep(100);
        }

        Assert.Fail($"every pair of windows of {calls} / {10 * calls} calls allocated per call: {string.Join(", ", windows)} bytes");
    }

    private static (long Bytes, bool Collected) Window(Action step, int calls)
    {
        int collections = GC.CollectionCount(0);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int k = 0; k < calls; k++)
        {
            step();
        }

        return (GC.GetAllocatedBytesForCurrentThread() - before, GC.CollectionCount(0) != collections);
    }
}
