using Bptt.Fast.Internals;
using Bptt.Fast.Training;
using FsCheck.Fluent;
using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>Truncated BPTT over a stream updates every k1 new steps, whatever the boundaries of the calls.</summary>
public sealed class StreamSplitTests
{
    private static readonly RnnShape Shape = new(5, 7, 5);

    [Theory]
    [InlineData(new[] { 10 }, 1)]
    [InlineData(new[] { 5, 5 }, 1)]
    [InlineData(new[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }, 1)]
    [InlineData(new[] { 3, 9, 8 }, 2)]
    public void UpdatesFollowTheStreamNotTheCalls(int[] split, int updates)
    {
        (int[] tokens, int[] targets) = Stream(split.Sum(), 1);
        var theta = new RnnParameters(Shape);
        theta.InitializeGlorot(2);
        var trainer = new TruncatedBpttTrainer(new BpttEngine(Shape, 10), new Adam(Shape, 0.01f), updateEvery: 10);
        int total = 0, at = 0;
        foreach (int n in split)
        {
            TrainingReport report = trainer.Train(theta, tokens.AsSpan(at, n), targets.AsSpan(at, n));
            total += report.Updates;
            at += n;
            Assert.Equal(at % 10, report.PendingSteps);
        }

        Assert.Equal(updates, total);
    }

    [Fact]
    public void AnySplitOfAStreamGivesTheSameThetaAsOneCall() =>
        Generators.Check(
            from n in Gen.Choose(1, 60)
            from k1 in Gen.Choose(1, 9)
            from extra in Gen.Choose(0, 6)
            from dense in Gen.Elements(false, true)
            from cuts in Gen.ListOf(Gen.Choose(0, 60))
            from seed in Gen.Choose(0, 1000)
            select (n, k1, k2: k1 + extra, dense, cuts: cuts.Where(c => c < n).Distinct().Order().ToArray(), seed),
            c =>
            {
                (int[] tokens, int[] targets) = Stream(c.n, (ulong)c.seed);
                float[] inputs = new float[c.n * Shape.InputSize];
                for (int t = 0; t < c.n; t++)
                {
                    inputs[(t * Shape.InputSize) + tokens[t]] = 1f;
                }

                (float[] whole, int wholeUpdates) = TrainInPieces(c.k1, c.k2, c.dense, inputs, tokens, targets, [0]);
                (float[] pieces, int pieceUpdates) = TrainInPieces(c.k1, c.k2, c.dense, inputs, tokens, targets, [0, .. c.cuts.Where(x => x > 0)]);
                Assert.Equal(c.n / c.k1, wholeUpdates);
                Assert.Equal(wholeUpdates, pieceUpdates);
                Assert.True(whole.AsSpan().SequenceEqual(pieces), "θ differs between one call and the split");
            },
            count: 150);

    [Fact]
    public void FlushTrainsTheTailAndASwitchOfStreamKindIsRefused()
    {
        (int[] tokens, int[] targets) = Stream(7, 3);
        var theta = new RnnParameters(Shape);
        theta.InitializeGlorot(4);
        var trainer = new TruncatedBpttTrainer(new BpttEngine(Shape, 8), new GradientDescent(Shape, 0.1f), updateEvery: 4);
        Assert.Equal(1, trainer.Train(theta, tokens, targets).Updates);
        Assert.Equal(3, trainer.PendingSteps);
        float[] before = theta.Values.ToArray();
        var e = Assert.Throws<ArgumentException>(() => trainer.Train(theta, new float[Shape.InputSize], [0]));
        Assert.Equal("inputs", e.ParamName);
        Assert.Equal(before, theta.Values.ToArray());
        Assert.Equal(3, trainer.PendingSteps);
        TrainingReport flushed = trainer.Flush(theta);
        Assert.Equal(1, flushed.Updates);
        Assert.Equal(0, trainer.PendingSteps);
        Assert.NotEqual(before, theta.Values.ToArray());
        Assert.Equal(0, trainer.Flush(theta).Updates);
    }

    private static (float[] Theta, int Updates) TrainInPieces(int k1, int k2, bool dense, float[] inputs, int[] tokens, int[] targets, int[] starts)
    {
        var theta = new RnnParameters(Shape);
        theta.InitializeGlorot(9);
        var trainer = new TruncatedBpttTrainer(new BpttEngine(Shape, k2), new Adam(Shape, 0.02f), k1, k2, clipNorm: 3f);
        int updates = 0;
        for (int p = 0; p < starts.Length; p++)
        {
            int start = starts[p], end = p + 1 < starts.Length ? starts[p + 1] : tokens.Length;
            TrainingReport report = dense
                ? trainer.Train(theta, inputs.AsSpan(start * Shape.InputSize, (end - start) * Shape.InputSize), targets.AsSpan(start, end - start))
                : trainer.Train(theta, tokens.AsSpan(start, end - start), targets.AsSpan(start, end - start));
            updates += report.Updates;
        }

        return (theta.Values.ToArray(), updates);
    }

    private static (int[] Tokens, int[] Targets) Stream(int n, ulong seed)
    {
        var random = new SplitMix64(seed);
        int[] tokens = Enumerable.Range(0, n).Select(_ => random.NextInt32(Shape.InputSize)).ToArray();
        return (tokens, tokens.Select(t => (t + 2) % Shape.OutputSize).ToArray());
    }
}
