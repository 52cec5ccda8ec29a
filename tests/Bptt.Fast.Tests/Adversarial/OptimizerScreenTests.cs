using Bptt.Fast.Internals;
using Bptt.Fast.Kernels;
using Bptt.Fast.Kernels.Bodies;
using Bptt.Fast.Training;
using FsCheck.Fluent;
using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>
/// The optimizer's screen: one pass that bounds an update's inputs so that the exact probe can be skipped. Sound (it
/// admits only updates the exact probe finds finite), measuring exactly what it reads, and not vacuous (ordinary
/// training inputs are admitted, so the fast path is the one that runs).
/// </summary>
public sealed class OptimizerScreenTests
{
    private static readonly int[] Lengths = [1, 3, 7, 15, 16, 17, 31, 32, 33, 100, 1023, 1024, 1025, 2049, 3000];

    /// <summary>Inputs drawn across float's whole range, with the state's sign free: whenever a rule's bounds admit the
    /// extent the screen measured, the exact probe (every new value computed) finds every value finite.</summary>
    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void TheScreenAdmitsOnlyUpdatesTheExactProbeFindsFinite(KernelIsa isa) =>
        Generators.Check(
            from rule in Gen.Choose(0, 5)
            from n in Gen.Elements(Lengths)
            from thetaExp in Gen.Choose(-3, 38)
            from gradExp in Gen.Choose(-30, 38)
            from stateExp in Gen.Choose(-40, 38)
            from lastExp in Gen.Choose(-45, 38)
            from rateExp in Gen.Choose(-8, 30)
            from epsExp in Gen.Choose(-40, -1)
            from decay in Gen.Elements(0f, 1e-2f, 0.5f, 3f)
            from scale in Gen.Elements(1f, 0.5f, 1e-3f, 7f)
            from step in Gen.Elements(1L, 2L, 10L, 100_000L)
            from negativeState in Gen.Elements(false, false, true)
            from seed in Gen.Choose(0, 100_000)
            select (rule, n, thetaExp, gradExp, stateExp, lastExp, rateExp, epsExp, decay, scale, step, negativeState, seed),
            c =>
            {
                KernelSet k = KernelSets.For(isa, Activation.Tanh);
                var random = new SplitMix64((ulong)c.seed);
                float[] theta = Draw(c.n, c.thetaExp, signed: true, ref random), gradient = Draw(c.n, c.gradExp, signed: true, ref random);
                float[] s0 = Draw(c.n, c.stateExp, signed: true, ref random), s1 = Draw(c.n, c.lastExp, signed: c.negativeState, ref random);
                if (c.rule == 2)
                {
                    s0 = Draw(c.n, c.lastExp, signed: c.negativeState, ref random); // Adagrad's G
                }

                float rate = MathF.Pow(10f, c.rateExp), eps = MathF.Pow(10f, c.epsExp);
                (bool admitted, bool exact) = c.rule switch
                {
                    0 => Decide(k, new GradientDescentRule(rate, c.decay, c.scale), theta, gradient, s0, s1, 0),
                    1 => Decide(k, new MomentumRule(rate, 0.9f, c.decay, c.seed % 2 == 0, c.scale), theta, gradient, s0, s1, 1),
                    2 => Decide(k, new AdagradRule(rate, eps, c.decay, c.scale), theta, gradient, s0, s1, 1),
                    3 => Decide(k, new AdamRule(rate, 0.9f, 0.999f, eps, c.decay, false, c.step, c.scale), theta, gradient, s0, s1, 2),
                    4 => Decide(k, new AdamRule(rate, 0.9f, 0.999f, eps, c.decay, true, c.step, c.scale), theta, gradient, s0, s1, 2),
                    _ => Decide(k, new AdamRule(rate, 0.5f, 0.9f, eps, c.decay, false, c.step, c.scale), theta, gradient, s0, s1, 2),
                };
                Assert.True(!admitted || exact, $"{isa}: rule {c.rule} admitted an update whose exact probe finds a non-finite value ({c})");
            },
            count: 1000);

    /// <summary>Ordinary training inputs are admitted by every built-in rule: the single-pass path is the one that runs.</summary>
    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void OrdinaryInputsAreAdmittedByEveryRule(KernelIsa isa)
    {
        KernelSet k = KernelSets.For(isa, Activation.Tanh);
        var random = new SplitMix64(5);
        float[] theta = Draw(1000, 0, signed: true, ref random), gradient = Draw(1000, 2, signed: true, ref random);
        float[] s0 = Draw(1000, 1, signed: true, ref random), s1 = Draw(1000, 4, signed: false, ref random);
        float[] g0 = Draw(1000, 4, signed: false, ref random);
        Assert.True(Decide(k, new GradientDescentRule(0.1f, 1e-4f, 1f), theta, gradient, s0, s1, 0).Admitted);
        Assert.True(Decide(k, new MomentumRule(0.1f, 0.9f, 1e-4f, true, 0.5f), theta, gradient, s0, s1, 1).Admitted);
        Assert.True(Decide(k, new AdagradRule(0.1f, 1e-8f, 0f, 1f), theta, gradient, g0, s1, 1).Admitted);
        Assert.True(Decide(k, new AdamRule(1e-3f, 0.9f, 0.999f, 1e-8f, 0f, false, 1, 0.25f), theta, gradient, s0, s1, 2).Admitted);
        Assert.True(Decide(k, new AdamRule(1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, true, 1_000_000, 1f), theta, gradient, s0, s1, 2).Admitted);
    }

    /// <summary>The screen's extent against the same facts computed here element by element, at every length around the
    /// register widths and the 1024-element chunk, with a NaN, an ∞ or a negative value planted at the first, a middle and
    /// the last position; and its Σg² bit-identical to the clipping norm's sum.</summary>
    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void TheScreenMeasuresExactlyWhatItReads(KernelIsa isa)
    {
        KernelSet k = KernelSets.For(isa, Activation.Tanh);
        var random = new SplitMix64(9);
        foreach (int n in Lengths)
        {
            float[] theta = Draw(n, 3, signed: true, ref random), gradient = Draw(n, 20, signed: true, ref random);
            float[] s0 = Draw(n, 1, signed: true, ref random), s1 = Draw(n, 5, signed: false, ref random);
            UpdateExtent e = k.Screen(theta, gradient, s0, s1, 2);
            Assert.True(e.Finite && e.LastStateNonNegative, $"{isa} n={n}");
            Assert.Equal(theta.Max(MathF.Abs), e.Theta);
            Assert.Equal(gradient.Max(MathF.Abs), e.Gradient);
            Assert.Equal(s0.Max(MathF.Abs), e.State0);
            Assert.Equal(s1.Max(MathF.Abs), e.State1);
            Assert.Equal(BitConverter.DoubleToInt64Bits(k.SumOfSquares(gradient)), BitConverter.DoubleToInt64Bits(e.SumOfSquares));
            Assert.Equal(gradient.Sum(x => (double)x * x), e.SumOfSquares, gradient.Sum(x => (double)x * x) * 1e-6);

            foreach (int at in new[] { 0, n / 2, n - 1 })
            {
                foreach (float bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
                {
                    foreach (float[] block in new[] { theta, gradient, s0, s1 })
                    {
                        float keep = block[at];
                        block[at] = bad;
                        Assert.False(k.Screen(theta, gradient, s0, s1, 2).Finite, $"{isa} n={n}: {bad} at {at}");
                        block[at] = keep;
                    }
                }

                float kept = s1[at];
                s1[at] = -1e-30f;
                Assert.False(k.Screen(theta, gradient, s0, s1, 2).LastStateNonNegative, $"{isa} n={n}: v < 0 at {at}");
                Assert.False(k.Screen(theta, gradient, s1, default, 1).LastStateNonNegative, $"{isa} n={n}: G < 0 at {at}");
                Assert.True(k.Screen(theta, gradient, s1, s0.Select(MathF.Abs).ToArray(), 2).LastStateNonNegative, $"{isa} n={n}: only m < 0");
                s1[at] = kept;

                // −0 has the smallest bit pattern of all: it must not hide a negative value beside it.
                float first = s1[0];
                s1[0] = -0f;
                s1[at] = -1e-44f;
                Assert.False(k.Screen(theta, gradient, s0, s1, 2).LastStateNonNegative, $"{isa} n={n}: −0 and v < 0 at {at}");
                s1[0] = first;
                s1[at] = kept;
            }
        }
    }

    /// <summary>Inputs too large for the screen's bounds but whose update is finite still step, through the exact probe.</summary>
    [Fact]
    public void AnUpdateOutsideTheBoundsStillAppliesWhenItIsFinite()
    {
        var shape = new RnnShape(3, 4, 5);
        var theta = new RnnParameters(shape);
        theta.Values.Fill(3e37f); // above the screen's limit (float.MaxValue / 16), the update itself is tiny
        var gradient = new RnnParameters(shape);
        gradient.Values.Fill(0.5f);
        var adam = new Adam(shape, 1e-3f);
        Assert.True(adam.Step(theta, gradient, 1f));
        Assert.All(adam.State[0].Values.ToArray(), m => Assert.Equal((1f - 0.9f) * 0.5f, m, 1e-9f)); // m = (1 − β₁)g in float
        Assert.All(adam.State[1].Values.ToArray(), v => Assert.Equal((1f - 0.999f) * 0.5f * 0.5f, v, 1e-12f)); // v = (1 − β₂)g²
        Assert.All(theta.Values.ToArray(), t => Assert.Equal(3e37f, t)); // 1e-3 is far below one ulp of 3e37
        Assert.Equal(1, adam.StepCount);
    }

    private static (bool Admitted, bool Exact) Decide<TRule>(KernelSet k, TRule rule, float[] theta, float[] gradient, float[] s0, float[] s1, int blocks)
        where TRule : struct, IUpdateRule
    {
        Span<float> state0 = blocks >= 1 ? s0 : default, state1 = blocks >= 2 ? s1 : default;
        UpdateExtent extent = k.Screen(theta, gradient, state0, state1, blocks);
        bool admitted = extent.Finite && rule.Admits(extent);
        float[] t = (float[])theta.Clone(), a = (float[])s0.Clone(), b = (float[])s1.Clone();
        bool exact = k.Update(rule, t, gradient, blocks >= 1 ? a : default, blocks >= 2 ? b : default, commit: false);
        Assert.True(t.AsSpan().SequenceEqual(theta) && a.AsSpan().SequenceEqual(s0) && b.AsSpan().SequenceEqual(s1), "the probe wrote");
        return (admitted, exact);
    }

    /// <summary>n values of magnitude up to 10^exponent (log-uniform over the 8 decades below it), signed or not.</summary>
    private static float[] Draw(int n, int exponent, bool signed, ref SplitMix64 random)
    {
        var values = new float[n];
        for (int i = 0; i < n; i++)
        {
            double magnitude = Math.Min(float.MaxValue, Math.Pow(10, exponent - (8 * random.NextSingle())) * random.NextSingle());
            values[i] = (float)(signed && random.NextSingle() < 0.5f ? -magnitude : magnitude);
        }

        return values;
    }
}
