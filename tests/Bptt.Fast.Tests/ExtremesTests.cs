using Bptt.Fast.Kernels;
using Bptt.Fast.Kernels.Isa;
using Bptt.Fast.Training;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>Extreme values and the NaN policy (docs/design.md, section 6), and the stated accuracy of the approximations.</summary>
public sealed class ExtremesTests
{
    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void SoftmaxSurvivesLogitsOfPlusMinus1e4(KernelIsa isa)
    {
        float[] logits = [1e4f, -1e4f, 0f, 1e4f - 1f, -1e4f, 3f, 2f, 1f, 0.5f, -2f];
        var error = new float[logits.Length];
        float loss = CheckedKernels.SoftmaxCrossEntropy(KernelSets.For(isa, Activation.Tanh), logits, 0, error);
        double expected = Math.Log(1 + Math.Exp(-1)); // the other terms are below e^-9990
        Assert.Equal(expected, loss, 1e-6);
        Assert.All(error, e => Assert.True(float.IsFinite(e)));
        Assert.Equal(0.0, error.Sum(), 1e-6);

        float lossLow = CheckedKernels.SoftmaxCrossEntropy(KernelSets.For(isa, Activation.Tanh), logits, 1, error);
        Assert.Equal(2e4 + Math.Log(1 + Math.Exp(-1)), lossLow, 1e-2);
        Assert.True(float.IsFinite(lossLow));
    }

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void ActivationsSurvivePlusMinus1e4AndKeepNaN(KernelIsa isa)
    {
        float[] u = [1e4f, -1e4f, 88.8f, -88.8f, 1e30f, -1e30f, float.NaN, 0f, -0f, 9.5f, -20f, 20f];
        var h = new float[u.Length];
        CheckedKernels.Activate(KernelSets.For(isa, Activation.Tanh), u, h);
        Assert.Equal([1f, -1f, 1f, -1f, 1f, -1f], h[..6]);
        Assert.True(float.IsNaN(h[6]));
        Assert.Equal(0f, h[7]);
        CheckedKernels.Activate(KernelSets.For(isa, Activation.Sigmoid), u, h);
        Assert.Equal(1f, h[0]);
        Assert.True(h[1] >= 0f && h[1] < 1e-30f);
        Assert.True(float.IsNaN(h[6]));
        Assert.Equal(0.5f, h[7]);
        CheckedKernels.Activate(KernelSets.For(isa, Activation.Relu), u, h);
        Assert.Equal(1e4f, h[0]);
        Assert.Equal(0f, h[1]);
        Assert.True(float.IsNaN(h[6]));
    }

    /// <summary>
    /// tanh is one expm1-based formula for every x, so its precision near 0 (where tanh x ≈ x) must come from expm1 itself:
    /// on every path, over x from 1e−38 to 10 at 64 points per decade, both signs, the relative error stays below 5e−7,
    /// tanh is exactly odd, and ±0 keep their signs — in vector lanes (one long span) and in the scalar form that spans
    /// shorter than a register take (each value alone).
    /// </summary>
    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void TanhKeepsRelativePrecisionDownToTinyArgumentsAndIsOdd(KernelIsa isa)
    {
        var x = new List<float>();
        for (double e = -38; e <= 1; e += 1.0 / 64)
        {
            x.Add((float)Math.Pow(10, e));
        }

        x.AddRange([0.173f, 0.1733f, 0.3466f, 0.5199f, 0.625f, 1f, 8.49f, 8.66f, 9f, 9.02f, 0f]); // around the reduction's steps, and 0
        float[] u = [.. x], minus = [.. x.Select(v => -v)];
        KernelSet k = KernelSets.For(isa, Activation.Tanh);
        var h = new float[u.Length];
        var hMinus = new float[u.Length];
        CheckedKernels.Activate(k, u, h);
        CheckedKernels.Activate(k, minus, hMinus); // the same lanes as u, so oddness is compared within one formula
        var one = new float[1];
        var oneMinus = new float[1];
        for (int i = 0; i < u.Length; i++)
        {
            CheckedKernels.Activate(k, u.AsSpan(i, 1), one); // a one-element span: the scalar form
            CheckedKernels.Activate(k, minus.AsSpan(i, 1), oneMinus);
            foreach ((float plus, float negative, string where) in new[] { (h[i], hMinus[i], "vector"), (one[0], oneMinus[0], "scalar") })
            {
                double exact = Math.Tanh(u[i]);
                Assert.True(Math.Abs(plus - exact) <= 5e-7 * exact, $"{isa} {where}: tanh({u[i]:R}) = {plus:R}, exact {exact:R}");
                Assert.True(BitConverter.SingleToInt32Bits(-plus) == BitConverter.SingleToInt32Bits(negative), $"{isa} {where}: tanh(−{u[i]:R}) = {negative:R}, not −{plus:R}");
            }
        }

        Assert.Equal(BitConverter.SingleToInt32Bits(0f), BitConverter.SingleToInt32Bits(h[^1]));
        Assert.Equal(BitConverter.SingleToInt32Bits(-0f), BitConverter.SingleToInt32Bits(hMinus[^1]));
    }

    /// <summary>NaN and ±∞ in every lane position of a span longer than two registers of every ISA (the 12-element test
    /// above stays in AVX-512's scalar form): NaN stays NaN, ±∞ gives ±1, for tanh, sigmoid and relu alike.</summary>
    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void ActivationsKeepNaNAndSaturateOnInfinityInEveryVectorLane(KernelIsa isa)
    {
        const int N = 37;
        foreach (Activation activation in Enum.GetValues<Activation>())
        {
            KernelSet k = KernelSets.For(isa, activation);
            for (int at = 0; at < N; at++)
            {
                var u = Enumerable.Range(0, N).Select(i => (i - 18) * 0.25f).ToArray();
                u[at] = float.NaN;
                u[(at + 5) % N] = float.PositiveInfinity;
                u[(at + 11) % N] = float.NegativeInfinity;
                var h = new float[N];
                CheckedKernels.Activate(k, u, h);
                Assert.True(float.IsNaN(h[at]), $"{isa} {activation}: f(NaN) at lane {at} = {h[at]}");
                float high = activation == Activation.Relu ? float.PositiveInfinity : 1f, low = h[(at + 11) % N];
                Assert.Equal(high, h[(at + 5) % N]);
                Assert.True(activation switch { Activation.Tanh => low == -1f, Activation.Relu => low == 0f, _ => low >= 0f && low < 1e-30f }, $"{isa} {activation}: f(−∞) = {low}");
                Assert.All(h.Where((_, i) => i != at), v => Assert.False(float.IsNaN(v)));
            }
        }
    }

    /// <summary>The accuracy stated in SimdMath's remarks, measured over a dense sweep.</summary>
    [Fact]
    public void ApproximationsMeetTheirStatedErrorOverADenseSweep()
    {
        double expRel = 0, tanhAbs = 0, tanhRel = 0, sigmoidAbs = 0;
        for (double x = -87; x <= 88; x += 0.000731)
        {
            double e = Bptt.Fast.Kernels.Functions.SimdMath<ScalarSimd, float>.Exp((float)x);
            double exact = Math.Exp((float)x);
            expRel = Math.Max(expRel, Math.Abs(e - exact) / exact);
        }

        for (double x = -12; x <= 12; x += 0.0000917)
        {
            float xf = (float)x;
            double t = Bptt.Fast.Kernels.Functions.SimdMath<ScalarSimd, float>.Tanh(xf), exact = Math.Tanh(xf);
            tanhAbs = Math.Max(tanhAbs, Math.Abs(t - exact));
            if (Math.Abs(exact) > 1e-30)
            {
                tanhRel = Math.Max(tanhRel, Math.Abs(t - exact) / Math.Abs(exact));
            }

            double s = Bptt.Fast.Kernels.Functions.SimdMath<ScalarSimd, float>.Sigmoid(xf);
            sigmoidAbs = Math.Max(sigmoidAbs, Math.Abs(s - (1 / (1 + Math.Exp(-xf)))));
        }

        Assert.True(expRel < 3e-7, $"exp relative error {expRel:E2}");
        Assert.True(tanhAbs < 3e-7, $"tanh absolute error {tanhAbs:E2}");
        Assert.True(tanhRel < 5e-7, $"tanh relative error {tanhRel:E2}");
        Assert.True(sigmoidAbs < 3e-7, $"sigmoid absolute error {sigmoidAbs:E2}");
    }

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void VectorAndScalarLanesAgreeExactlyOnTheApproximations(KernelIsa isa)
    {
        // The tail of every kernel uses the scalar formula; the body uses the vector one. Both must be the same function.
        var u = Enumerable.Range(0, 4001).Select(k => (k - 2000) * 0.00731f).ToArray();
        var h = new float[u.Length];
        CheckedKernels.Activate(KernelSets.For(isa, Activation.Tanh), u, h);
        for (int k = 0; k < u.Length; k++)
        {
            Assert.True(Math.Abs(h[k] - Bptt.Fast.Kernels.Functions.SimdMath<ScalarSimd, float>.Tanh(u[k])) <= 1.2e-7, $"{isa}: tanh({u[k]}) {h[k]} vs scalar {Bptt.Fast.Kernels.Functions.SimdMath<ScalarSimd, float>.Tanh(u[k])}");
        }
    }

    [Theory]
    [InlineData(KernelPath.Fast)]
    [InlineData(KernelPath.Reference)]
    public void OverflowingReluNetworkReportsNonFiniteLossAndTheStepIsNotApplied(KernelPath path)
    {
        // Finite, valid θ whose relu activations grow by 1e6 per step overflow float within a few steps.
        var shape = new RnnShape(2, 3, 2);
        var theta = new RnnParameters(shape);
        theta.Wxh.Fill(1f);
        theta.Whh.Fill(1e6f);
        theta.Why.Fill(1f);
        var grad = new RnnParameters(shape);
        var engine = new BpttEngine(shape, 12, 1, Activation.Relu, path);
        float[] x = Enumerable.Repeat(1f, 24).ToArray();
        int[] targets = new int[12];
        float loss = engine.ComputeGradients(theta, new SequenceBatch<float>(12, 1, x, targets), grad);
        Assert.False(float.IsFinite(loss) && KernelsAllFinite(grad.Values));

        byte[] before = System.Runtime.InteropServices.MemoryMarshal.AsBytes(theta.Values).ToArray();
        var optimizer = new GradientDescent(shape, 0.1f);
        Assert.False(optimizer.Step(theta, grad, loss));
        Assert.Equal(before, System.Runtime.InteropServices.MemoryMarshal.AsBytes(theta.Values).ToArray());
    }

    private static bool KernelsAllFinite(ReadOnlySpan<float> values) => FastKernels.FirstNonFinite(values) < 0;
}
