using Bptt.Fast.Internals;
using Bptt.Fast.Training;
using FsCheck.Fluent;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>
/// Truncated BPTT of stacked networks: every layer's state carried, each update the engine's BPTT over its window from the
/// state one long forward pass reaches there, any split of a stream equal to one call, dropout masks from the seed and the
/// step count (so a resumed run repeats), a bidirectional engine refused, nothing allocated.
/// </summary>
public sealed class DeepTrainerTests
{
    [Theory]
    [InlineData(2, 3, 7, 0f)]
    [InlineData(3, 4, 4, 0f)]
    [InlineData(2, 2, 5, 0.3f)]
    [InlineData(3, 5, 5, 0.3f)]
    public void EachUpdateIsTheEnginesBpttOverItsWindowFromTheCarriedLayerStates(int layers, int k1, int k2, float dropout)
    {
        var shape = new RnnShape(6, 9, 6) { Layers = layers };
        const int N = 21;
        const ulong Seed = 77;
        (int[] tokens, int[] targets) = Stream(shape, N, (ulong)(layers + k1 + k2));
        RnnParameters theta = DeepServingTests.Theta(shape, 5);
        var recorder = new RecordingOptimizer(shape);
        var trainer = new TruncatedBpttTrainer(new BpttEngine(shape, k2, dropout: dropout), recorder, k1, k2, dropoutSeed: Seed);
        Assert.Equal(layers * shape.HiddenSize, trainer.State.Length);
        int half = N / 2;
        trainer.Train(theta, tokens.AsSpan(0, half), targets.AsSpan(0, half));
        trainer.Train(theta, tokens.AsSpan(half), targets.AsSpan(half));
        Assert.Equal(N / k1, recorder.Gradients.Count);

        // The expected chain, from the engine alone: window u covers steps [s, e), e = (u + 1)·k1, s = max(0, e − k2), and
        // starts from every layer's state at step s, reached by the training forward passes (mask u) of the windows before.
        var engine = new BpttEngine(shape, N, dropout: dropout);
        var gradient = new RnnParameters(shape);
        float[] start = new float[layers * shape.HiddenSize], next = new float[start.Length];
        int s = 0;
        for (int u = 0; u < recorder.Gradients.Count; u++)
        {
            int e = (u + 1) * k1, length = e - s;
            int[] windowTargets = targets.AsSpan(s, length).ToArray();
            windowTargets.AsSpan(0, length - k1).Fill(SequenceBatch<float>.IgnoreTarget);
            ulong maskSeed = TruncatedBpttTrainer.StepDropoutSeed(Seed, u);
            engine.ComputeGradients(theta, new SequenceBatch<float>(length, 1, tokens.AsSpan(s, length), windowTargets) { InitialState = start, DropoutSeed = maskSeed }, gradient);
            AssertClose(recorder.Gradients[u], gradient.Values, $"update {u} (window [{s}, {e}))");

            // The next window starts at step max(0, e + k1 − k2): the state there, by this window's forward pass.
            int nextStart = Math.Max(0, e + k1 - k2);
            if (nextStart > s)
            {
                int[] ignored = Enumerable.Repeat(SequenceBatch<float>.IgnoreTarget, nextStart - s).ToArray();
                engine.ComputeGradients(theta, new SequenceBatch<float>(nextStart - s, 1, tokens.AsSpan(s, nextStart - s), ignored) { InitialState = start, FinalState = next, DropoutSeed = maskSeed }, gradient);
                next.CopyTo(start);
                s = nextStart;
            }
        }

        // The carried state: every layer's state after the last trained step (without dropout, that of one long forward pass).
        int lastEnd = recorder.Gradients.Count * k1;
        var expectedState = new float[start.Length];
        int[] none = Enumerable.Repeat(SequenceBatch<float>.IgnoreTarget, N).ToArray();
        if (dropout == 0f)
        {
            engine.Evaluate(theta, new SequenceBatch<float>(lastEnd, 1, tokens.AsSpan(0, lastEnd), none.AsSpan(0, lastEnd)) { FinalState = expectedState });
            AssertClose(trainer.State.ToArray(), expectedState, "carried state (one long forward pass)");
        }
    }

    [Fact]
    public void AnySplitOfAStackedStreamGivesTheSameThetaAsOneCall() =>
        Generators.Check(
            from n in Gen.Choose(1, 40)
            from layers in Gen.Choose(2, 3)
            from k1 in Gen.Choose(1, 7)
            from extra in Gen.Choose(0, 5)
            from dense in Gen.Elements(false, true)
            from dropout in Gen.Elements(0f, 0.25f)
            from cuts in Gen.ListOf(Gen.Choose(0, 40))
            from seed in Gen.Choose(0, 1000)
            select (n, layers, k1, k2: k1 + extra, dense, dropout, cuts: cuts.Where(c => c < n).Distinct().Order().ToArray(), seed),
            c =>
            {
                var shape = new RnnShape(5, 7, 5) { Layers = c.layers };
                (int[] tokens, int[] targets) = Stream(shape, c.n, (ulong)c.seed);
                float[] inputs = new float[c.n * shape.InputSize];
                for (int t = 0; t < c.n; t++)
                {
                    inputs[(t * shape.InputSize) + tokens[t]] = 1f;
                }

                (float[] whole, int wholeUpdates, float[] wholeState) = TrainInPieces(shape, c.k1, c.k2, c.dropout, c.dense, inputs, tokens, targets, [0]);
                (float[] pieces, int pieceUpdates, float[] pieceState) = TrainInPieces(shape, c.k1, c.k2, c.dropout, c.dense, inputs, tokens, targets, [0, .. c.cuts.Where(x => x > 0)]);
                Assert.Equal(c.n / c.k1, wholeUpdates);
                Assert.Equal(wholeUpdates, pieceUpdates);
                Assert.True(whole.AsSpan().SequenceEqual(pieces), "θ differs between one call and the split");
                Assert.True(wholeState.AsSpan().SequenceEqual(pieceState), "the carried state differs between one call and the split");
            },
            count: 80);

    [Fact]
    public void ABidirectionalEngineIsRefused()
    {
        var shape = new RnnShape(4, 5, 3) { Layers = 2, Directions = 2 };
        var e = Assert.Throws<ArgumentException>(() => new TruncatedBpttTrainer(new BpttEngine(shape, 8), new Adam(shape), 4));
        Assert.Equal("engine", e.ParamName);
        Assert.Contains("reverse pass cannot be truncated over a stream", e.Message, StringComparison.Ordinal);
        Assert.Contains("actual 2", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DropoutMasksComeFromTheSeedAndTheStepCountSoAResumedRunRepeats()
    {
        var shape = new RnnShape(6, 8, 6) { Layers = 3 };
        const int N = 40, K = 5;
        (int[] tokens, int[] targets) = Stream(shape, N, 8);

        float[] Run(float dropout, ulong seed)
        {
            RnnParameters theta = DeepServingTests.Theta(shape, 3);
            var trainer = new TruncatedBpttTrainer(new BpttEngine(shape, K, dropout: dropout), new Adam(shape, 0.02f), K, dropoutSeed: seed);
            trainer.Train(theta, tokens, targets);
            return theta.Values.ToArray();
        }

        float[] first = Run(0.4f, 11);
        Assert.Equal(first, Run(0.4f, 11));
        Assert.NotEqual(first, Run(0.4f, 12));
        Assert.NotEqual(first, Run(0f, 11));

        // Stop after half the stream, restore θ, the optimizer (state and step count) and the carried state into new objects, go on.
        RnnParameters resumed = DeepServingTests.Theta(shape, 3);
        var adam = new Adam(shape, 0.02f);
        var before = new TruncatedBpttTrainer(new BpttEngine(shape, K, dropout: 0.4f), adam, K, dropoutSeed: 11);
        before.Train(resumed, tokens.AsSpan(0, N / 2), targets.AsSpan(0, N / 2));
        var adamAfter = new Adam(shape, 0.02f);
        for (int k = 0; k < adam.State.Count; k++)
        {
            adam.State[k].Values.CopyTo(adamAfter.State[k].Values);
        }

        adamAfter.RestoreStepCount(adam.StepCount);
        var after = new TruncatedBpttTrainer(new BpttEngine(shape, K, dropout: 0.4f), adamAfter, K, dropoutSeed: 11);
        before.State.CopyTo(after.State);
        after.Train(resumed, tokens.AsSpan(N / 2), targets.AsSpan(N / 2));
        Assert.Equal(first, resumed.Values.ToArray());
    }

    [Theory]
    [InlineData(4, 4, 0f)]
    [InlineData(4, 8, 0f)]
    [InlineData(4, 8, 0.2f)]
    public void AStackedTrainingCallAllocatesNothing(int k1, int k2, float dropout)
    {
        var shape = new RnnShape(16, 24, 16) { Layers = 3 };
        (int[] tokens, int[] targets) = Stream(shape, 64, 4);
        RnnParameters theta = DeepServingTests.Theta(shape, 2);
        var trainer = new TruncatedBpttTrainer(new BpttEngine(shape, k2, dropout: dropout), new Adam(shape, 1e-3f), k1, k2, clipNorm: 1f, dropoutSeed: 5);
        trainer.Train(theta, tokens, targets);
        AllocationProbe.AssertSteadyStateAllocatesNothing(() => trainer.Train(theta, tokens.AsSpan(0, 24), targets.AsSpan(0, 24)), calls: 10);
    }

    private static (float[] Theta, int Updates, float[] State) TrainInPieces(RnnShape shape, int k1, int k2, float dropout, bool dense, float[] inputs, int[] tokens, int[] targets, int[] starts)
    {
        RnnParameters theta = DeepServingTests.Theta(shape, 9);
        var trainer = new TruncatedBpttTrainer(new BpttEngine(shape, k2, dropout: dropout), new Adam(shape, 0.02f), k1, k2, clipNorm: 3f, dropoutSeed: 17);
        int updates = 0;
        for (int p = 0; p < starts.Length; p++)
        {
            int start = starts[p], end = p + 1 < starts.Length ? starts[p + 1] : tokens.Length;
            TrainingReport report = dense
                ? trainer.Train(theta, inputs.AsSpan(start * shape.InputSize, (end - start) * shape.InputSize), targets.AsSpan(start, end - start))
                : trainer.Train(theta, tokens.AsSpan(start, end - start), targets.AsSpan(start, end - start));
            updates += report.Updates;
        }

        return (theta.Values.ToArray(), updates, trainer.State.ToArray());
    }

    private static (int[] Tokens, int[] Targets) Stream(RnnShape shape, int n, ulong seed)
    {
        var random = new SplitMix64(seed);
        int[] tokens = Enumerable.Range(0, n).Select(_ => random.NextInt32(shape.InputSize)).ToArray();
        return (tokens, tokens.Select(t => (t + 2) % shape.OutputSize).ToArray());
    }

    /// <summary>max |actual − expected| ≤ 1e-4 · max(1e-3, max |expected|).</summary>
    private static void AssertClose(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = 1e-3, worst = 0;
        for (int k = 0; k < expected.Length; k++)
        {
            scale = Math.Max(scale, Math.Abs(expected[k]));
            worst = Math.Max(worst, Math.Abs((double)actual[k] - expected[k]));
        }

        Assert.True(worst <= 1e-4 * scale, $"{what}: max error {worst:E2} against a largest value of {scale:E2}");
    }
}
