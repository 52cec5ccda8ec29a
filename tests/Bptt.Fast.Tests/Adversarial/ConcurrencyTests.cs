using System.Runtime.CompilerServices;
using Bptt.Fast.Internals;
using Bptt.Fast.Serving;
using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>Misuse and lifetime: shared engines, shared states, failing workers and dropped engines.</summary>
public sealed class ConcurrencyTests
{
    private static readonly ProblemSpec Spec = new(new RnnShape(16, 32, 16), 24, 4, Activation.Tanh, Tokens: true, WithH0: false, Ragged: false, Seed: 3);

    [Fact]
    public void TheGateRefusesASecondCallerAndReopens()
    {
        var gate = default(SingleCaller);
        gate.Enter(this);
        Assert.Throws<InvalidOperationException>(() => EnterOnce(ref gate));
        gate.Exit();
        gate.Enter(this);
        gate.Exit();
    }

    [Fact]
    public void TwoThreadsSharingOneEngineGetCorrectResultsOrAClearError()
    {
        (Problem<float> p, RnnParameters theta) = NewProblem(Spec);
        var engine = new BpttEngine(Spec.Shape, Spec.Steps, Spec.Batch);
        var expectedGradients = new RnnParameters(Spec.Shape);
        float expected = engine.ComputeGradients(theta, p.Batch(), expectedGradients);
        RaceOutcome outcome = Race(() =>
        {
            var gradients = new RnnParameters(Spec.Shape);
            float loss = engine.ComputeGradients(theta, p.Batch(), gradients);
            return loss == expected && gradients.Values.SequenceEqual(expectedGradients.Values);
        });
        Assert.Equal(0, outcome.Wrong);
        Assert.True(outcome.Refused > 0, $"no overlap was detected in {outcome.Calls} calls");
        Assert.True(outcome.Calls - outcome.Refused > 0);
    }

    [Fact]
    public void TwoThreadsSharingOneParallelEngineNeverCrashTheProcess()
    {
        (Problem<float> p, RnnParameters theta) = NewProblem(Spec);
        using var engine = new ParallelBpttEngine(Spec.Shape, Spec.Steps, Spec.Batch, workers: 2);
        var expectedGradients = new RnnParameters(Spec.Shape);
        float expected = engine.ComputeGradients(theta, p.Batch(), expectedGradients);
        RaceOutcome outcome = Race(() =>
        {
            var gradients = new RnnParameters(Spec.Shape);
            float loss = engine.ComputeGradients(theta, p.Batch(), gradients);
            return loss == expected && gradients.Values.SequenceEqual(expectedGradients.Values);
        });
        Assert.Equal(0, outcome.Wrong);
        Assert.True(outcome.Refused > 0, $"no overlap was detected in {outcome.Calls} calls");
    }

    [Fact]
    public void TwoThreadsSteppingOneStateAreRefused()
    {
        var theta = new RnnParameters(Spec.Shape);
        theta.InitializeGlorot(1);
        var model = new RnnModel(theta, Activation.Tanh);
        RnnState shared = model.CreateState();
        RaceOutcome outcome = Race(() =>
        {
            float[] y = new float[Spec.Shape.OutputSize];
            model.Step(3, shared, y);
            return float.IsFinite(y[0]);
        });
        Assert.True(outcome.Refused > 0, $"no overlap was detected in {outcome.Calls} calls");
    }

    [Fact]
    public void AFailingWorkerSurfacesOnTheCallerAndLeavesEveryOutputUntouched()
    {
        (Problem<float> p, RnnParameters theta) = NewProblem(Spec with { Tokens = false, WithH0 = true });
        using var engine = new ParallelBpttEngine(Spec.Shape, Spec.Steps, Spec.Batch, workers: 2);
        var gradients = new RnnParameters(Spec.Shape);
        gradients.Values.Fill(9f);
        int bh = Spec.Batch * Spec.Shape.HiddenSize, rows = Spec.Steps * Spec.Batch;
        float[] final = Filled(bh, 1f), dh0 = Filled(bh, 2f), dx = Filled(rows * Spec.Shape.InputSize, 3f), states = Filled(rows * Spec.Shape.HiddenSize, 4f);
        foreach (int failing in new[] { 0, 1 })
        {
            engine.InjectFault = w => w == failing;
            var e = Assert.Throws<InvalidOperationException>(() => engine.ComputeGradients(theta, p.Batch(final, dh0, dx, states), gradients));
            Assert.Contains($"worker {failing}", e.Message, StringComparison.Ordinal);
            Assert.All(gradients.Values.ToArray(), v => Assert.Equal(9f, v));
            Assert.All(final, v => Assert.Equal(1f, v));
            Assert.All(dh0, v => Assert.Equal(2f, v));
            Assert.All(dx, v => Assert.Equal(3f, v));
            Assert.All(states, v => Assert.Equal(4f, v));
        }

        engine.InjectFault = null;
        engine.ComputeGradients(theta, p.Batch(final, dh0, dx, states), gradients);
        Assert.NotEqual(9f, gradients.Values[0]);
        Assert.DoesNotContain(1f, final);
    }

    [Fact]
    public void DisposeDuringACallIsRefusedAndTheCallCompletes()
    {
        // Dispose once took no gate: stopping a worker that had been signalled but had not started left the caller
        // waiting forever, or let it leave its fixed block while another worker still read the caller's memory.
        (Problem<float> p, RnnParameters theta) = NewProblem(Spec);
        var engine = new ParallelBpttEngine(Spec.Shape, Spec.Steps, Spec.Batch, workers: 2);
        float expected = engine.ComputeGradients(theta, p.Batch(), new RnnParameters(Spec.Shape));
        using var inside = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        engine.InjectFault = HeldSecondWorker(inside, release);
        float loss = float.NaN;
        Exception? error = null;
        var caller = new Thread(() =>
        {
            try
            {
                loss = engine.ComputeGradients(theta, p.Batch(), new RnnParameters(Spec.Shape));
            }
            catch (Exception e)
            {
                error = e;
            }
        });
        caller.IsBackground = true; // a hung caller must not keep the test host alive
        caller.Start();
        Assert.True(inside.Wait(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken));
        Assert.Throws<InvalidOperationException>(engine.Dispose); // worker 1 is held: the call cannot have ended
        release.Set();
        Assert.True(caller.Join(TimeSpan.FromSeconds(30)), "the call never returned");
        Assert.Null(error);
        Assert.Equal(expected, loss);

        engine.InjectFault = null;
        engine.Dispose();
        engine.Dispose();
        Assert.Throws<ObjectDisposedException>(() => engine.ComputeGradients(theta, p.Batch(), new RnnParameters(Spec.Shape)));
    }

    [Fact]
    public void AnInterruptedCallerWaitsForItsWorkersAndKeepsTheInterrupt()
    {
        // Thread.Interrupt once broke the caller out of its wait while a worker still read the caller's memory through
        // the pointers of its fixed block; the call now completes and the interrupt is raised again afterwards.
        (Problem<float> p, RnnParameters theta) = NewProblem(Spec);
        using var engine = new ParallelBpttEngine(Spec.Shape, Spec.Steps, Spec.Batch, workers: 2);
        var expectedGradients = new RnnParameters(Spec.Shape);
        float expected = engine.ComputeGradients(theta, p.Batch(), expectedGradients);
        using var inside = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        engine.InjectFault = HeldSecondWorker(inside, release);
        var gradients = new RnnParameters(Spec.Shape);
        float loss = float.NaN;
        bool interruptKept = false;
        Exception? error = null;
        var caller = new Thread(() =>
        {
            try
            {
                loss = engine.ComputeGradients(theta, p.Batch(), gradients);
                try
                {
                    Thread.Sleep(TimeSpan.FromSeconds(30));
                }
                catch (ThreadInterruptedException)
                {
                    interruptKept = true;
                }
            }
            catch (Exception e)
            {
                error = e;
            }
        });
        caller.IsBackground = true; // a hung caller must not keep the test host alive
        caller.Start();
        Assert.True(inside.Wait(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken));
        // The caller has run worker 0's share and blocks waiting for worker 1, which is held: interrupt it there.
        var blocked = System.Diagnostics.Stopwatch.StartNew();
        while ((caller.ThreadState & ThreadState.WaitSleepJoin) == 0 && blocked.Elapsed < TimeSpan.FromSeconds(30))
        {
            Thread.Yield();
        }

        Assert.True((caller.ThreadState & ThreadState.WaitSleepJoin) != 0, "the caller never waited");
        caller.Interrupt();
        Thread.Sleep(50); // an interrupt that broke the wait would now let the caller leave with worker 1 still running
        release.Set();
        Assert.True(caller.Join(TimeSpan.FromSeconds(30)), "the caller never finished");
        Assert.Null(error);
        Assert.Equal(expected, loss);
        Assert.Equal(expectedGradients.Values.ToArray(), gradients.Values.ToArray());
        Assert.True(interruptKept, "the interrupt was swallowed");
    }

    [Fact]
    public void AnEngineDroppedWithoutDisposeStopsItsThreads()
    {
        int before = ParallelBpttEngine.LiveWorkerThreads;
        WeakReference dropped = CreateAndDrop();
        for (int attempt = 0; attempt < 50 && (dropped.IsAlive || ParallelBpttEngine.LiveWorkerThreads > before); attempt++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            Thread.Sleep(20);
        }

        Assert.False(dropped.IsAlive, "the worker threads kept the engine alive");
        Assert.True(ParallelBpttEngine.LiveWorkerThreads <= before, $"{ParallelBpttEngine.LiveWorkerThreads - before} worker threads still run");
    }

    /// <summary>A generated problem of <paramref name="spec"/> and its θ as a parameter block.</summary>
    private static (Problem<float> Problem, RnnParameters Theta) NewProblem(ProblemSpec spec)
    {
        var problem = new Problem<float>(spec);
        var theta = new RnnParameters(spec.Shape);
        problem.Theta.CopyTo(theta.Values);
        return (problem, theta);
    }

    /// <summary>A fault hook that fails nothing: worker 1 signals <paramref name="inside"/>, then waits for <paramref name="release"/>.</summary>
    private static Func<int, bool> HeldSecondWorker(ManualResetEventSlim inside, ManualResetEventSlim release) => w =>
    {
        if (w == 1)
        {
            inside.Set();
            release.Wait(TimeSpan.FromSeconds(60));
        }

        return false;
    };

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference CreateAndDrop()
    {
        var engine = new ParallelBpttEngine(Spec.Shape, Spec.Steps, Spec.Batch, workers: 3);
        (Problem<float> p, RnnParameters theta) = NewProblem(Spec);
        engine.ComputeGradients(theta, p.Batch(), new RnnParameters(Spec.Shape));
        Assert.True(ParallelBpttEngine.LiveWorkerThreads >= 2);
        return new WeakReference(engine);
    }

    private static void EnterOnce(ref SingleCaller gate) => gate.Enter(new object());

    private static float[] Filled(int n, float value)
    {
        float[] a = new float[n];
        a.AsSpan().Fill(value);
        return a;
    }

    private readonly record struct RaceOutcome(int Calls, int Refused, int Wrong);

    /// <summary>Two threads call <paramref name="call"/> in a loop until an overlap has been refused a few times (bounded).</summary>
    private static RaceOutcome Race(Func<bool> call)
    {
        int calls = 0, refused = 0, wrong = 0;
        var stop = DateTime.UtcNow.AddSeconds(10);
        void Loop()
        {
            for (int k = 0; k < 200_000 && Volatile.Read(ref refused) < 20 && DateTime.UtcNow < stop; k++)
            {
                Interlocked.Increment(ref calls);
                try
                {
                    if (!call())
                    {
                        Interlocked.Increment(ref wrong);
                    }
                }
                catch (InvalidOperationException)
                {
                    Interlocked.Increment(ref refused);
                }
            }
        }

        var other = new Thread(Loop);
        other.Start();
        Loop();
        other.Join();
        return new RaceOutcome(calls, refused, wrong);
    }
}
