using Bptt.Fast.Internals;
using Bptt.Fast.Training;
using FsCheck.Fluent;
using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>Non-finite values never reach θ or optimizer state, including overflow produced from finite inputs.</summary>
public sealed class NonFiniteTests
{
    private static readonly RnnShape Shape = new(3, 4, 5);

    private static RnnParameters Theta(ulong seed)
    {
        var theta = new RnnParameters(Shape);
        theta.InitializeGlorot(seed);
        return theta;
    }

    private static RnnParameters Filled(float value)
    {
        var g = new RnnParameters(Shape);
        g.Values.Fill(value);
        return g;
    }

    private static float[][] Snapshot(RnnParameters theta, Optimizer optimizer) =>
        [theta.Values.ToArray(), .. optimizer.State.Select(s => s.Values.ToArray())];

    private static void AssertBitIdentical(float[][] before, RnnParameters theta, Optimizer optimizer)
    {
        float[][] after = Snapshot(theta, optimizer);
        for (int k = 0; k < before.Length; k++)
        {
            Assert.True(before[k].AsSpan().SequenceEqual(after[k]), $"block {k} changed");
        }
    }

    private static void AssertAllFinite(RnnParameters theta, Optimizer optimizer)
    {
        Assert.Equal(-1, Guard.FirstNonFinite<float>(theta.Values));
        foreach (RnnParameters block in optimizer.State)
        {
            Assert.Equal(-1, Guard.FirstNonFinite<float>(block.Values));
        }
    }

    public static TheoryData<string, float, float, int> OverflowCases() => new()
    {
        { "sgd", 1e30f, 1e10f, 1 },      // θ − 1e40: overflows θ on the first step
        { "momentum", 0.01f, 3e38f, 2 }, // v = 0.9·3e38 + 3e38: overflows the velocity on the second step
        { "adagrad", 0.01f, 2e19f, 1 },  // g² = 4e38: overflows the accumulator
        { "adam", 0.01f, 3e21f, 1 },     // (1 − β₂)·g·g = 9e39: overflows v
        { "adamw", 0.01f, 3e21f, 1 },
        { "nesterov", 1e38f, 3e38f, 1 },
    };

    [Theory]
    [MemberData(nameof(OverflowCases))]
    public void UpdateThatWouldOverflowFromFiniteInputsIsRefusedBitIdentically(string name, float learningRate, float gradient, int refusedAt)
    {
        RnnParameters theta = Theta(1);
        Optimizer optimizer = Make(name, learningRate);
        RnnParameters g = Filled(gradient);
        for (int step = 1; step < refusedAt; step++)
        {
            Assert.True(optimizer.Step(theta, g), $"step {step} should still be finite");
            AssertAllFinite(theta, optimizer);
        }

        float[][] before = Snapshot(theta, optimizer);
        long count = optimizer.StepCount;
        Assert.False(optimizer.Step(theta, g));
        AssertBitIdentical(before, theta, optimizer);
        Assert.Equal(count, optimizer.StepCount);
    }

    [Fact]
    public void NonFiniteStateFromOutsideIsNeverSpreadIntoTheta()
    {
        foreach (string name in new[] { "momentum", "adagrad", "adam" })
        {
            RnnParameters theta = Theta(2);
            Optimizer optimizer = Make(name, 0.01f);
            optimizer.State[0].Values[7] = float.NaN;
            float[][] before = Snapshot(theta, optimizer);
            Assert.False(optimizer.Step(theta, Filled(0.5f)));
            AssertBitIdentical(before, theta, optimizer);
        }
    }

    [Fact]
    public void GeneratedHugeGradientsNeverLeaveNonFiniteValues() =>
        Generators.Check(
            from name in Gen.Elements("sgd", "momentum", "nesterov", "adagrad", "adam", "adamw")
            from lrExp in Gen.Choose(-6, 38)
            from gExp in Gen.Choose(0, 38)
            from steps in Gen.Choose(1, 4)
            from seed in Gen.Choose(0, 1000)
            select (name, lrExp, gExp, steps, seed),
            c =>
            {
                RnnParameters theta = Theta((ulong)c.seed);
                Optimizer optimizer = Make(c.name, MathF.Pow(10f, c.lrExp));
                var random = new SplitMix64((ulong)c.seed);
                var g = new RnnParameters(Shape);
                for (int step = 0; step < c.steps; step++)
                {
                    for (int k = 0; k < g.Values.Length; k++)
                    {
                        g.Values[k] = ((2 * random.NextSingle()) - 1) * MathF.Pow(10f, c.gExp) * 3.3f;
                    }

                    float[][] before = Snapshot(theta, optimizer);
                    if (!optimizer.Step(theta, g))
                    {
                        AssertBitIdentical(before, theta, optimizer);
                    }

                    AssertAllFinite(theta, optimizer);
                }
            },
            count: 300);

    [Fact]
    public void ClippingSeesAHugeFiniteGradientAndClipsIt()
    {
        // 2e18 per element: its float sum of squares overflows, which once made the norm +∞ and skipped the clip.
        RnnParameters g = Filled(2e18f);
        double expected = 2e18 * Math.Sqrt(Shape.ParameterCount);
        Assert.Equal(expected, GradientClipping.GlobalNorm(g.Values), expected * 1e-5);
        float norm = GradientClipping.ClipByGlobalNorm(g, 5f);
        Assert.Equal(expected, norm, expected * 1e-5);
        Assert.Equal(5.0, GradientClipping.GlobalNorm(g.Values), 1e-4);

        // Larger than float's range: the returned norm saturates, the clip still happens.
        RnnParameters huge = Filled(float.MaxValue);
        Assert.Equal(float.PositiveInfinity, GradientClipping.ClipByGlobalNorm(huge, 1f));
        Assert.Equal(1.0, GradientClipping.GlobalNorm(huge.Values), 1e-4);

        RnnParameters byValue = Filled(-3e20f);
        Assert.True(float.IsFinite(GradientClipping.ClipByValue(byValue, 2f)));
        Assert.All(byValue.Values.ToArray(), v => Assert.Equal(-2f, v));

        // A NaN gradient stays as it is, so the optimizer still refuses it.
        RnnParameters nan = Filled(1f);
        nan.Values[3] = float.NaN;
        Assert.True(float.IsNaN(GradientClipping.ClipByGlobalNorm(nan, 1f)));
        Assert.Equal(1f, nan.Values[0]);
    }

    [Fact]
    public void HugeDenseInputWithReluNeverPoisonsAdam()
    {
        // One input of 1e38 with relu: the forward pass overflows; the step must be refused and Adam's state stay finite.
        var shape = new RnnShape(2, 3, 2);
        var theta = new RnnParameters(shape);
        theta.InitializeGlorot(5);
        theta.Values.Fill(1f);
        var engine = new BpttEngine(shape, 4, activation: Activation.Relu);
        var adam = new Adam(shape, 0.01f);
        var trainer = new TruncatedBpttTrainer(engine, adam, updateEvery: 2, clipNorm: 1f);
        float[] inputs = [1e38f, 1e38f, 1e38f, 1e38f];
        float[] before = theta.Values.ToArray();
        TrainingReport report = trainer.Train(theta, inputs, [1, 0]);
        Assert.Equal(0, report.Updates);
        Assert.Equal(1, report.Refused);
        Assert.Equal(before, theta.Values.ToArray());
        Assert.All(adam.State, block => Assert.Equal(-1, Guard.FirstNonFinite<float>(block.Values)));
    }

    /// <summary>The trainer screens θ and the optimizer's state once, as its call starts: a poisoned state (a NaN, an ∞, or
    /// a negative v that √ would turn into NaN) refuses the step without an exception, leaving θ, the state and the
    /// carried hidden state bit-identical; a non-finite θ throws, naming it, and changes nothing either.</summary>
    [Theory]
    [InlineData("adam", 0, float.NaN)]
    [InlineData("adam", 0, float.PositiveInfinity)]
    [InlineData("adam", 1, -1e-3f)]
    [InlineData("adam", 1, float.NaN)]
    [InlineData("momentum", 0, float.NaN)]
    [InlineData("nesterov", 0, float.NegativeInfinity)]
    [InlineData("adagrad", 0, -1e-3f)]
    [InlineData("adagrad", 0, float.NaN)]
    public void ATrainerWhoseOptimizerStateIsPoisonedRefusesItsStep(string name, int block, float poison)
    {
        var engine = new BpttEngine(Shape, 4);
        Optimizer adam = Make(name, 0.01f);
        var trainer = new TruncatedBpttTrainer(engine, adam, updateEvery: 4, clipNorm: 1f);
        RnnParameters theta = Theta(9);
        Assert.Equal(1, trainer.Train(theta, [0, 1, 2, 0], [1, 2, 0, 1]).Updates);
        adam.State[block].Values[5] = poison;
        float[][] before = Snapshot(theta, adam);
        float[] carried = trainer.State.ToArray();
        TrainingReport report = trainer.Train(theta, [2, 1, 0, 2], [0, 1, 2, 0]);
        Assert.Equal(0, report.Updates);
        Assert.Equal(1, report.Refused);
        AssertBitIdentical(before, theta, adam);
        Assert.True(carried.AsSpan().SequenceEqual(trainer.State));

        adam.State[block].Values[5] = 0f;
        theta.Wxh[2] = float.NaN;
        before = Snapshot(theta, adam);
        Assert.Equal("parameters", Assert.Throws<ArgumentException>(() => trainer.Train(theta, [2, 1, 0, 2], [0, 1, 2, 0])).ParamName);
        AssertBitIdentical(before, theta, adam);
        Assert.True(carried.AsSpan().SequenceEqual(trainer.State));
    }

    [Fact]
    public void StepCountCannotWrap()
    {
        var sgd = new GradientDescent(Shape, 0.1f);
        Assert.Equal("stepCount", Assert.Throws<ArgumentOutOfRangeException>(() => sgd.RestoreStepCount(long.MaxValue)).ParamName);
        Assert.Equal("stepCount", Assert.Throws<ArgumentOutOfRangeException>(() => sgd.RestoreStepCount(-1)).ParamName);
        Assert.Equal(0, sgd.StepCount);
        sgd.RestoreStepCount(Optimizer.MaxStepCount - 1);
        RnnParameters theta = Theta(3);
        Assert.True(sgd.Step(theta, Filled(1f)));
        Assert.Equal(Optimizer.MaxStepCount, sgd.StepCount);
        float[] before = theta.Values.ToArray();
        Assert.Throws<InvalidOperationException>(() => sgd.Step(theta, Filled(1f)));
        Assert.Equal(before, theta.Values.ToArray());
        Assert.Equal(Optimizer.MaxStepCount, sgd.StepCount);
    }

    private static Optimizer Make(string name, float learningRate) => name switch
    {
        "sgd" => new GradientDescent(Shape, learningRate),
        "momentum" => new Momentum(Shape, learningRate),
        "nesterov" => new Momentum(Shape, learningRate, nesterov: true),
        "adagrad" => new Adagrad(Shape, learningRate),
        "adam" => new Adam(Shape, learningRate),
        _ => new AdamW(Shape, learningRate),
    };
}
