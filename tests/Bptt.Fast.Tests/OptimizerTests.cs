using Bptt.Fast.Internals;
using Bptt.Fast.Training;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>Each optimizer against its published update rule, computed here in double, over 20 steps.</summary>
public sealed class OptimizerTests
{
    private static readonly RnnShape Shape = new(3, 5, 4); // 59 parameters: vector body and scalar tail both run

    /// <summary>The published rules, element by element, in double: (θ, g, state) → θ′, state′.</summary>
    private delegate double Rule(double theta, double grad, double[] state, int step);

    public static TheoryData<string> Names() => ["sgd", "sgd+decay", "momentum", "nesterov", "momentum+decay", "adagrad", "adam", "adam+decay", "adamw"];

    [Theory]
    [MemberData(nameof(Names))]
    public void MatchesThePublishedRuleOver20Steps(string name)
    {
        (Optimizer optimizer, Rule rule, int stateSize) = Create(name);
        var theta = new RnnParameters(Shape);
        theta.InitializeGlorot(7);
        theta.Bh.Fill(0.3f);
        double[] expected = theta.Values.ToArray().Select(v => (double)v).ToArray();
        var state = new double[expected.Length][];
        for (int k = 0; k < state.Length; k++)
        {
            state[k] = new double[stateSize];
        }

        var grad = new RnnParameters(Shape);
        var random = new SplitMix64(11);
        for (int step = 1; step <= 20; step++)
        {
            for (int k = 0; k < grad.Values.Length; k++)
            {
                grad.Values[k] = (random.NextSingle() - 0.5f) * (k % 7 == 0 ? 10f : 1f);
            }

            Assert.True(optimizer.Step(theta, grad, loss: 1f));
            for (int k = 0; k < expected.Length; k++)
            {
                expected[k] = rule(expected[k], grad.Values[k], state[k], step);
                Assert.True(Math.Abs(theta.Values[k] - expected[k]) <= 2e-6 * Math.Max(1, Math.Abs(expected[k])), $"{name} step {step} element {k}: {theta.Values[k]} vs {expected[k]}");
            }
        }

        Assert.Equal(20, optimizer.StepCount);
    }

    private static (Optimizer, Rule, int) Create(string name)
    {
        const double Eta = 0.05, Mu = 0.9, Decay = 0.01, Eps = 1e-8, B1 = 0.9, B2 = 0.999;
        return name switch
        {
            "sgd" => (new GradientDescent(Shape, 0.05f), (t, g, s, n) => t - (Eta * g), 0),
            "sgd+decay" => (new GradientDescent(Shape, 0.05f, weightDecay: 0.01f), (t, g, s, n) => t - (Eta * (g + (Decay * t))), 0),
            "momentum" => (new Momentum(Shape, 0.05f, 0.9f), (t, g, s, n) => { s[0] = (Mu * s[0]) + g; return t - (Eta * s[0]); }, 1),
            "nesterov" => (new Momentum(Shape, 0.05f, 0.9f, nesterov: true), (t, g, s, n) => { s[0] = (Mu * s[0]) + g; return t - (Eta * (g + (Mu * s[0]))); }, 1),
            "momentum+decay" => (new Momentum(Shape, 0.05f, 0.9f, weightDecay: 0.01f), (t, g, s, n) => { double gd = g + (Decay * t); s[0] = (Mu * s[0]) + gd; return t - (Eta * s[0]); }, 1),
            "adagrad" => (new Adagrad(Shape, 0.05f), (t, g, s, n) => { s[0] += g * g; return t - (Eta * g / (Math.Sqrt(s[0]) + Eps)); }, 1),
            // Kingma & Ba, Algorithm 1: m, v, bias-corrected m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ), θ ← θ − α m̂/(√v̂ + ε).
            "adam" => (new Adam(Shape, 0.05f), (t, g, s, n) => AdamRule(t, g, s, n, 0, false), 2),
            "adam+decay" => (new Adam(Shape, 0.05f, weightDecay: 0.01f), (t, g, s, n) => AdamRule(t, g, s, n, Decay, false), 2),
            // Loshchilov & Hutter: θ ← θ − α(m̂/(√v̂ + ε) + λθ), the decay decoupled from the moments.
            "adamw" => (new AdamW(Shape, 0.05f, weightDecay: 0.01f), (t, g, s, n) => AdamRule(t, g, s, n, Decay, true), 2),
            _ => throw new ArgumentOutOfRangeException(nameof(name)),
        };

        static double AdamRule(double t, double g, double[] s, int n, double decay, bool decoupled)
        {
            double gd = decoupled ? g : g + (decay * t);
            s[0] = (B1 * s[0]) + ((1 - B1) * gd);
            s[1] = (B2 * s[1]) + ((1 - B2) * gd * gd);
            double mHat = s[0] / (1 - Math.Pow(B1, n)), vHat = s[1] / (1 - Math.Pow(B2, n));
            return t - (Eta * mHat / (Math.Sqrt(vHat) + Eps)) - (decoupled ? Eta * decay * t : 0);
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void APoisonedGradientLeavesThetaAndTheStateBitIdentical(string name)
    {
        (Optimizer optimizer, _, _) = Create(name);
        var theta = new RnnParameters(Shape);
        theta.InitializeGlorot(3);
        var grad = new RnnParameters(Shape);
        grad.Values.Fill(0.25f);
        Assert.True(optimizer.Step(theta, grad));
        byte[] thetaBefore = Bits(theta.Values);
        byte[][] stateBefore = optimizer.State.Select(b => Bits(b.Values)).ToArray();
        grad.Why[3] = float.NaN;
        Assert.False(optimizer.Step(theta, grad));
        grad.Why[3] = float.PositiveInfinity;
        Assert.False(optimizer.Step(theta, grad));
        grad.Why[3] = 0.25f;
        Assert.False(optimizer.Step(theta, grad, loss: float.NaN));
        Assert.Equal(thetaBefore, Bits(theta.Values));
        Assert.Equal(stateBefore, optimizer.State.Select(b => Bits(b.Values)).ToArray());
        Assert.Equal(1, optimizer.StepCount);
    }

    /// <summary>WarmUp runs whole steps on throwaway data: every optimizer is left with bit-identical state and step count,
    /// and the next real step equals the one an optimizer that never warmed up takes.</summary>
    [Fact]
    public void WarmUpLeavesTheStateAndTheStepCountAsTheyWere()
    {
        var shape = new RnnShape(5, 7, 3);
        var random = new Bptt.Fast.Internals.SplitMix64(21);
        var theta = new RnnParameters(shape);
        theta.InitializeGlorot(2);
        var gradients = new RnnParameters(shape);
        foreach (Func<Bptt.Fast.Training.Optimizer> make in new Func<Bptt.Fast.Training.Optimizer>[]
        {
            () => new Bptt.Fast.Training.GradientDescent(shape, 0.1f), () => new Bptt.Fast.Training.Momentum(shape, 0.1f),
            () => new Bptt.Fast.Training.Adagrad(shape, 0.1f), () => new Bptt.Fast.Training.Adam(shape, 0.01f),
        })
        {
            Bptt.Fast.Training.Optimizer warmed = make(), plain = make();
            RnnParameters thetaWarmed = theta.Clone(), thetaPlain = theta.Clone();
            for (int step = 0; step < 3; step++)
            {
                for (int k = 0; k < gradients.Values.Length; k++)
                {
                    gradients.Values[k] = random.NextSingle() - 0.5f;
                }

                Assert.True(warmed.Step(thetaWarmed, gradients, 1f));
                Assert.True(plain.Step(thetaPlain, gradients, 1f));
            }

            float[][] before = [.. warmed.State.Select(b => b.Values.ToArray())];
            warmed.WarmUp();
            Assert.Equal(3, warmed.StepCount);
            for (int b = 0; b < before.Length; b++)
            {
                Assert.True(before[b].AsSpan().SequenceEqual(warmed.State[b].Values), $"{warmed.GetType().Name}: state block {b} changed");
            }

            Assert.True(warmed.Step(thetaWarmed, gradients, 1f));
            Assert.True(plain.Step(thetaPlain, gradients, 1f));
            Assert.True(thetaPlain.Values.SequenceEqual(thetaWarmed.Values), warmed.GetType().Name);
        }
    }

    /// <summary>A schedule sets the rate between steps: the next step equals the one a new optimizer of that rate, holding
    /// the same state and step count, takes (what the CLI did before the rate was settable), bit for bit.</summary>
    [Theory]
    [MemberData(nameof(Names))]
    public void SettingTheRateBetweenStepsEqualsANewOptimizerHoldingTheState(string name)
    {
        Optimizer scheduled = WithRate(name, 0.05f), plain = WithRate(name, 0.05f);
        var theta = new RnnParameters(Shape);
        theta.InitializeGlorot(4);
        RnnParameters thetaScheduled = theta.Clone(), thetaPlain = theta.Clone();
        var grad = new RnnParameters(Shape);
        var random = new SplitMix64(3);
        for (int step = 0; step < 4; step++)
        {
            for (int k = 0; k < grad.Values.Length; k++)
            {
                grad.Values[k] = random.NextSingle() - 0.5f;
            }

            if (step == 3)
            {
                scheduled.LearningRate = 0.0123f;
                Optimizer fresh = WithRate(name, 0.0123f);
                for (int b = 0; b < plain.State.Count; b++)
                {
                    plain.State[b].Values.CopyTo(fresh.State[b].Values);
                }

                fresh.RestoreStepCount(plain.StepCount);
                plain = fresh;
            }

            Assert.True(scheduled.Step(thetaScheduled, grad, 1f));
            Assert.True(plain.Step(thetaPlain, grad, 1f));
        }

        Assert.Equal(0.0123f, scheduled.LearningRate);
        Assert.True(thetaPlain.Values.SequenceEqual(thetaScheduled.Values), name);
        for (int b = 0; b < plain.State.Count; b++)
        {
            Assert.True(plain.State[b].Values.SequenceEqual(scheduled.State[b].Values), $"{name} state {b}");
        }

        foreach (float bad in new[] { 0f, -1f, float.NaN, float.PositiveInfinity })
        {
            var error = Assert.Throws<ArgumentOutOfRangeException>(() => scheduled.LearningRate = bad);
            Assert.Equal("LearningRate", error.ParamName);
            Assert.Equal(0.0123f, scheduled.LearningRate); // a refused value changes nothing
        }
    }

    private static Optimizer WithRate(string name, float rate) => name switch
    {
        "sgd" => new GradientDescent(Shape, rate),
        "sgd+decay" => new GradientDescent(Shape, rate, weightDecay: 0.01f),
        "momentum" => new Momentum(Shape, rate, 0.9f),
        "nesterov" => new Momentum(Shape, rate, 0.9f, nesterov: true),
        "momentum+decay" => new Momentum(Shape, rate, 0.9f, weightDecay: 0.01f),
        "adagrad" => new Adagrad(Shape, rate),
        "adam" => new Adam(Shape, rate),
        "adam+decay" => new Adam(Shape, rate, weightDecay: 0.01f),
        _ => new AdamW(Shape, rate),
    };

    [Fact]
    public void BadHyperparametersAreRejected()
    {
        Assert.Equal("momentum", Assert.Throws<ArgumentOutOfRangeException>(() => new Momentum(Shape, 0.1f, 1f)).ParamName);
        Assert.Equal("learningRate", Assert.Throws<ArgumentOutOfRangeException>(() => new Adam(Shape, -1f)).ParamName);
        Assert.Equal("beta2", Assert.Throws<ArgumentOutOfRangeException>(() => new Adam(Shape, beta2: float.NaN)).ParamName);
        Assert.Equal("epsilon", Assert.Throws<ArgumentOutOfRangeException>(() => new Adagrad(Shape, 0.1f, epsilon: 0f)).ParamName);
        Assert.Equal("weightDecay", Assert.Throws<ArgumentOutOfRangeException>(() => new AdamW(Shape, weightDecay: -0.1f)).ParamName);
        var other = new RnnParameters(new RnnShape(3, 5, 5));
        Assert.Equal("parameters", Assert.Throws<ArgumentException>(() => new Adam(Shape).Step(other, new RnnParameters(Shape))).ParamName);
    }

    [Fact]
    public void ClippingByGlobalNormScalesToTheLimitAndReturnsTheNormBefore()
    {
        var grad = new RnnParameters(Shape);
        for (int k = 0; k < grad.Values.Length; k++)
        {
            grad.Values[k] = (k % 5) - 2f;
        }

        double norm = Math.Sqrt(grad.Values.ToArray().Sum(v => (double)v * v));
        float[] before = grad.Values.ToArray();
        Assert.Equal(norm, GradientClipping.ClipByGlobalNorm(grad, 1000f), 1e-4);
        Assert.Equal(before, grad.Values.ToArray()); // under the limit: untouched
        Assert.Equal(norm, GradientClipping.ClipByGlobalNorm(grad, 2f), 1e-4);
        Assert.Equal(2.0, GradientClipping.GlobalNorm(grad.Values), 1e-5);
        for (int k = 0; k < before.Length; k++)
        {
            Assert.Equal(before[k] * 2 / norm, grad.Values[k], 1e-6);
        }
    }

    [Fact]
    public void ClippingByValueClampsAndReturnsTheNormBefore()
    {
        var grad = new RnnParameters(Shape);
        for (int k = 0; k < grad.Values.Length; k++)
        {
            grad.Values[k] = (k % 9) - 4f;
        }

        double norm = Math.Sqrt(grad.Values.ToArray().Sum(v => (double)v * v));
        Assert.Equal(norm, GradientClipping.ClipByValue(grad, 1.5f), 1e-4);
        Assert.All(grad.Values.ToArray(), v => Assert.True(v is >= -1.5f and <= 1.5f));
        Assert.Contains(1.5f, grad.Values.ToArray());
        Assert.Contains(-1.5f, grad.Values.ToArray());
        Assert.Contains(1f, grad.Values.ToArray());
    }

    [Fact]
    public void ClippingLeavesANonFiniteGradientForTheGuardToRefuse()
    {
        var grad = new RnnParameters(Shape);
        grad.Values.Fill(3f);
        grad.Bh[1] = float.NaN;
        Assert.True(float.IsNaN(GradientClipping.ClipByGlobalNorm(grad, 1f)));
        Assert.True(float.IsNaN(GradientClipping.ClipByValue(grad, 1f)));
        Assert.Equal(3f, grad.Wxh[0]);
        Assert.False(new Adam(Shape).Step(new RnnParameters(Shape), grad));
    }

    private static byte[] Bits(Span<float> values) => System.Runtime.InteropServices.MemoryMarshal.AsBytes(values).ToArray();
}
