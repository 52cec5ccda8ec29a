using Bptt.Fast.Internals;
using Bptt.Fast.Training;
using FsCheck.Fluent;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>Truncated BPTT: chunked state carrying, the k1/k2 form and its limits.</summary>
public sealed class TruncatedBpttTests
{
    private static readonly RnnShape Shape = new(6, 10, 6);

    private static (int[] Tokens, int[] Targets) Stream(int n, ulong seed)
    {
        var random = new SplitMix64(seed);
        int[] tokens = Enumerable.Range(0, n).Select(_ => random.NextInt32(Shape.InputSize)).ToArray();
        return (tokens, tokens.Skip(1).Append(0).Select(t => (t + 1) % Shape.OutputSize).ToArray());
    }

    [Theory]
    [InlineData(KernelPath.Fast)]
    [InlineData(KernelPath.Reference)]
    public void ChunkedForwardStatesEqualOneLongForwardBitForBit(KernelPath path) =>
        Generators.Check(
            from n in Gen.Choose(1, 40)
            from k in Gen.Choose(1, 12)
            from seed in Gen.Choose(0, 10000)
            select (n, k, seed),
            c =>
            {
                (int n, int k, int seed) = c;
                var theta = new RnnParameters(Shape);
                theta.InitializeGlorot((ulong)seed);
                (int[] tokens, int[] targets) = Stream(n, (ulong)seed);
                var engine = new BpttEngine(Shape, 40, 1, Activation.Tanh, path);
                var longStates = new float[n * Shape.HiddenSize];
                engine.Evaluate(theta, new SequenceBatch<float>(n, 1, tokens, targets) { HiddenStates = longStates });

                var state = new float[Shape.HiddenSize];
                var next = new float[Shape.HiddenSize];
                var chunkStates = new float[n * Shape.HiddenSize];
                for (int start = 0; start < n; start += k)
                {
                    int len = Math.Min(k, n - start);
                    engine.Evaluate(theta, new SequenceBatch<float>(len, 1, tokens.AsSpan(start, len), targets.AsSpan(start, len))
                    {
                        InitialState = state,
                        FinalState = next,
                        HiddenStates = chunkStates.AsSpan(start * Shape.HiddenSize, len * Shape.HiddenSize),
                    });
                    next.CopyTo(state, 0);
                }

                Assert.Equal(longStates, chunkStates); // bit for bit
            },
            count: 40);

    [Theory]
    [InlineData(KernelPath.Fast)]
    [InlineData(KernelPath.Reference)]
    public void WithK1EqualK2EqualTheWholeLengthItIsOneFullBpttCall(KernelPath path)
    {
        const int N = 24;
        (int[] tokens, int[] targets) = Stream(N, 5);
        var theta = new RnnParameters(Shape);
        theta.InitializeGlorot(5);
        var engine = new BpttEngine(Shape, N, 1, Activation.Tanh, path);
        var full = new RnnParameters(Shape);
        float fullLoss = engine.ComputeGradients(theta, new SequenceBatch<float>(N, 1, tokens, targets), full);

        var recorder = new RecordingOptimizer(Shape);
        var trainer = new TruncatedBpttTrainer(engine, recorder, updateEvery: N, backpropSteps: N);
        TrainingReport report = trainer.Train(theta, tokens, targets);
        Assert.Equal(fullLoss, (float)report.Loss);
        Assert.Equal(1, report.Updates);
        Assert.Equal(full.Values.ToArray(), recorder.Gradients.Single());
    }

    [Fact]
    public void TheK1K2FormBackpropagatesK2StepsButCountsOnlyTheNewLosses()
    {
        const int N = 12, K1 = 3, K2 = 7;
        (int[] tokens, int[] targets) = Stream(N, 9);
        var theta = new RnnParameters(Shape);
        theta.InitializeGlorot(9);
        var engine = new BpttEngine(Shape, K2, 1);
        var recorder = new RecordingOptimizer(Shape); // applies nothing, so θ stays fixed and every window can be recomputed here
        var trainer = new TruncatedBpttTrainer(engine, recorder, K1, K2);
        TrainingReport report = trainer.Train(theta, tokens, targets);
        Assert.Equal(N / K1, report.Updates);

        var check = new BpttEngine(Shape, N, 1);
        var longStates = new float[N * Shape.HiddenSize];
        float total = check.Evaluate(theta, new SequenceBatch<float>(N, 1, tokens, targets) { HiddenStates = longStates });
        Assert.Equal(total, (float)report.Loss, 4);
        for (int u = 0; u < N / K1; u++)
        {
            int end = (u + 1) * K1, start = Math.Max(0, end - K2), len = end - start;
            int[] windowTargets = targets[start..end];
            windowTargets.AsSpan(0, len - K1).Fill(SequenceBatch<float>.IgnoreTarget);
            float[] h0 = start == 0 ? new float[Shape.HiddenSize] : longStates[((start - 1) * Shape.HiddenSize)..(start * Shape.HiddenSize)];
            var expected = new RnnParameters(Shape);
            check.ComputeGradients(theta, new SequenceBatch<float>(len, 1, tokens.AsSpan(start, len), windowTargets) { InitialState = h0 }, expected);
            float[] actual = recorder.Gradients[u];
            for (int k = 0; k < actual.Length; k++)
            {
                Assert.Equal(expected.Values[k], actual[k], 1e-5f);
            }
        }

        Assert.Equal(longStates[^Shape.HiddenSize..], trainer.State.ToArray());
    }

    [Fact]
    public void ChunkedTrainingLearnsAndAllocatesNothing()
    {
        const int N = 400;
        var random = new SplitMix64(3);
        int[] period = [0, 1, 2, 1, 3, 4];
        int[] tokens = Enumerable.Range(0, N).Select(t => period[t % period.Length]).ToArray();
        int[] targets = Enumerable.Range(0, N).Select(t => period[(t + 1) % period.Length]).ToArray();
        var theta = new RnnParameters(Shape);
        theta.InitializeGlorot(random.NextUInt64());
        var engine = new BpttEngine(Shape, 16, 1);
        var trainer = new TruncatedBpttTrainer(engine, new Adam(Shape, 0.02f), updateEvery: 8, backpropSteps: 16, clipNorm: 5f);
        double first = trainer.Train(theta, tokens, targets).Loss;
        TrainingReport last = default;
        for (int epoch = 0; epoch < 30; epoch++)
        {
            last = trainer.Train(theta, tokens, targets);
        }

        Assert.True(last.Loss < 0.1 * first, $"loss {first} -> {last.Loss}");
        Assert.Equal(0, last.Refused);
        AllocationProbe.AssertSteadyStateAllocatesNothing(() => trainer.Train(theta, tokens.AsSpan(0, 64), targets.AsSpan(0, 64)), calls: 10);
    }

    [Fact]
    public void BadArgumentsAreRejected()
    {
        var engine = new BpttEngine(Shape, 8, 1);
        Assert.Equal("backpropSteps", Assert.Throws<ArgumentOutOfRangeException>(() => new TruncatedBpttTrainer(engine, new Adam(Shape), 4, 2)).ParamName);
        Assert.Equal("backpropSteps", Assert.Throws<ArgumentOutOfRangeException>(() => new TruncatedBpttTrainer(engine, new Adam(Shape), 4, 9)).ParamName);
        Assert.Equal("optimizer", Assert.Throws<ArgumentException>(() => new TruncatedBpttTrainer(engine, new Adam(new RnnShape(6, 10, 7)), 4)).ParamName);
        var trainer = new TruncatedBpttTrainer(engine, new Adam(Shape), 4);
        var theta = new RnnParameters(Shape);
        byte[] before = System.Runtime.InteropServices.MemoryMarshal.AsBytes(theta.Values).ToArray();
        Assert.Equal("tokens", Assert.Throws<ArgumentOutOfRangeException>(() => trainer.Train(theta, [0, 6], [0, 1])).ParamName);
        Assert.Equal("targets", Assert.Throws<ArgumentOutOfRangeException>(() => trainer.Train(theta, [0, 1], [0, 9])).ParamName);
        Assert.Equal("tokens", Assert.Throws<ArgumentException>(() => trainer.Train(theta, [0, 1, 2], [0, 1])).ParamName);
        Assert.Equal(before, System.Runtime.InteropServices.MemoryMarshal.AsBytes(theta.Values).ToArray());
    }

    [Theory]
    [InlineData(float.NaN, false)]
    [InlineData(float.PositiveInfinity, false)]
    [InlineData(float.NaN, true)]
    public void ANonFiniteStateIsRefusedBeforeThePendingStepsChange(float poison, bool flush)
    {
        // The carried state is writable (to restore it). A NaN written there once reached the engine's check of the
        // window's initial state only after the pending steps had been taken into the window: the call threw
        // "batch.InitialState" (not a parameter of Train) and the earlier call's steps were lost.
        (_, _, TruncatedBpttTrainer trainer, RnnParameters theta) = NewStream(updateEvery: 4);
        Assert.Equal(2, trainer.Train(theta, [0, 1], [1, 2]).PendingSteps);
        trainer.State[1] = poison;
        float[] thetaBefore = theta.Values.ToArray(), stateBefore = trainer.State.ToArray();
        var e = Assert.Throws<ArgumentException>(() => flush ? trainer.Flush(theta) : trainer.Train(theta, [2, 3], [3, 4]));
        Assert.Equal("State", e.ParamName);
        Assert.Equal(2, trainer.PendingSteps);
        Assert.Equal(thetaBefore, theta.Values.ToArray());
        Assert.Equal(stateBefore, trainer.State.ToArray());

        // Restored, the stream goes on with its two pending steps.
        trainer.State[1] = 0f;
        TrainingReport report = trainer.Train(theta, [2, 3], [3, 4]);
        Assert.Equal(1, report.Updates);
        Assert.Equal(0, trainer.PendingSteps);
    }

    [Fact]
    public void ACallInsideTheSharedEngineOrOptimizerRefusesTheTrainerBeforeAnythingChanges()
    {
        // The trainer once took no gate of its own: another thread's call on the same engine failed the trainer's engine
        // call after it had taken its pending steps into a window, and two threads on one optimizer lost step counts.
        (BpttEngine engine, Adam optimizer, TruncatedBpttTrainer trainer, RnnParameters theta) = NewStream(updateEvery: 4);
        Assert.Equal(2, trainer.Train(theta, [0, 1], [1, 2]).PendingSteps);
        float[] thetaBefore = theta.Values.ToArray(), stateBefore = trainer.State.ToArray(), momentBefore = optimizer.State[0].Values.ToArray();
        long stepsBefore = optimizer.StepCount;

        engine.Gate.Enter(engine); // another thread inside a call of the engine
        Assert.Throws<InvalidOperationException>(() => trainer.Train(theta, [2, 3], [3, 4]));
        Assert.Throws<InvalidOperationException>(() => trainer.Flush(theta));
        Assert.Throws<InvalidOperationException>(trainer.Reset);
        engine.Gate.Exit();
        optimizer.Gate.Enter(optimizer); // another thread inside a call of the optimizer
        Assert.Throws<InvalidOperationException>(() => trainer.Train(theta, [2, 3], [3, 4]));
        Assert.Throws<InvalidOperationException>(() => optimizer.Step(theta, new RnnParameters(Shape)));
        Assert.Throws<InvalidOperationException>(optimizer.Reset);
        Assert.Throws<InvalidOperationException>(() => optimizer.RestoreStepCount(5));
        optimizer.Gate.Exit();

        Assert.Equal(2, trainer.PendingSteps);
        Assert.Equal(thetaBefore, theta.Values.ToArray());
        Assert.Equal(stateBefore, trainer.State.ToArray());
        Assert.Equal(momentBefore, optimizer.State[0].Values.ToArray());
        Assert.Equal(stepsBefore, optimizer.StepCount);

        // Both gates were released: the engine is usable on its own, and the trainer goes on.
        Assert.True(float.IsFinite(engine.Evaluate(theta, new SequenceBatch<float>(1, 1, [0], [1]))));
        Assert.Equal(1, trainer.Train(theta, [2, 3], [3, 4]).Updates);
        Assert.Equal(stepsBefore + 1, optimizer.StepCount);
    }

    [Fact]
    public void ACallThatWouldPassTheStepLimitIsRefusedBeforeAnythingChanges()
    {
        // The optimizer refuses a step at MaxStepCount with InvalidOperationException; inside Train that came after the
        // window's pending steps and carried state had moved. The trainer now counts the updates a call would make first.
        (BpttEngine engine, Adam optimizer, TruncatedBpttTrainer trainer, RnnParameters theta) = NewStream(updateEvery: 2);
        Assert.Equal(1, trainer.Train(theta, [0], [1]).PendingSteps);
        optimizer.RestoreStepCount(Optimizer.MaxStepCount - 1);
        float[] thetaBefore = theta.Values.ToArray(), stateBefore = trainer.State.ToArray();
        Assert.Throws<InvalidOperationException>(() => trainer.Train(theta, [1, 2, 3], [2, 3, 4])); // two updates: one too many
        Assert.Equal(1, trainer.PendingSteps);
        Assert.Equal(thetaBefore, theta.Values.ToArray());
        Assert.Equal(stateBefore, trainer.State.ToArray());
        Assert.Equal(Optimizer.MaxStepCount - 1, optimizer.StepCount);

        Assert.Equal(1, trainer.Train(theta, [1], [2]).Updates); // one update fits
        Assert.Equal(Optimizer.MaxStepCount, optimizer.StepCount);
        Assert.Equal(0, trainer.Train(theta, [2], [3]).Updates); // buffered only: no update, no refusal
        Assert.Throws<InvalidOperationException>(() => trainer.Flush(theta));
        Assert.Equal(1, trainer.PendingSteps);
    }

    /// <summary>A one-stream trainer of k1 = <paramref name="updateEvery"/> over a 4-step engine, Adam, and a Glorot θ.</summary>
    private static (BpttEngine Engine, Adam Optimizer, TruncatedBpttTrainer Trainer, RnnParameters Theta) NewStream(int updateEvery)
    {
        var engine = new BpttEngine(Shape, 4, 1);
        var optimizer = new Adam(Shape);
        var theta = new RnnParameters(Shape);
        theta.InitializeGlorot(3);
        return (engine, optimizer, new TruncatedBpttTrainer(engine, optimizer, updateEvery), theta);
    }
}
