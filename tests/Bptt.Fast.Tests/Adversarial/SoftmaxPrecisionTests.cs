using Bptt.Fast.Internals;
using Bptt.Fast.Kernels;
using Bptt.Fast.Reference;
using Bptt.Fast.Serving;
using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>Every class's probability right to float precision, relative, tiny ones included (never (y − 1) + 1).</summary>
public sealed class SoftmaxPrecisionTests
{
    /// <summary>Relative error allowed: a few float ulps of exp and the normalising division.</summary>
    private const double RelativeTolerance = 2e-6;

    /// <summary>Probabilities below this lie near or below float's normal range and are not held to relative precision.</summary>
    private const double Smallest = 1e-36;

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void SoftmaxKernelMatchesTheDoubleOracleRelativelyEvenForTinyProbabilities(KernelIsa isa)
    {
        var random = new SplitMix64(99);
        foreach (int n in new[] { 1, 2, 3, 7, 8, 9, 16, 17, 31, 33, 64, 100, 257 })
        {
            for (int trial = 0; trial < 20; trial++)
            {
                float spread = trial * 4f; // logit gaps up to ~76 nats: probabilities down to ~1e-33
                float[] v = Enumerable.Range(0, n).Select(_ => ((2 * random.NextSingle()) - 1) * spread).ToArray();
                float[] y = new float[n];
                CheckedKernels.Softmax(KernelSets.For(isa, Activation.Tanh), v, y);
                double[] expected = new double[n];
                ReferenceKernels.Softmax<double>(v.Select(x => (double)x).ToArray(), expected);
                AssertRelative(y, expected, $"{isa} n={n} spread={spread}");
            }
        }
    }

    [Fact]
    public void StreamingProbabilitiesAreExactForClassZeroToo()
    {
        // The reported defect: class 0 came back exactly 0 whenever its probability was below ~6e-8.
        var shape = new RnnShape(20, 32, 20);
        var theta = new RnnParameters(shape);
        theta.InitializeGlorot(8);
        foreach (int k in new[] { shape.WhyOffset, shape.ByOffset })
        {
            // Scale the head so that many probabilities are tiny.
            Span<float> head = theta.Values[k..];
            for (int j = 0; j < head.Length; j++)
            {
                head[j] *= 20f;
            }
        }

        var model = new RnnModel(theta, Activation.Tanh);
        RnnState state = model.CreateState();
        RnnStateBatch states = model.CreateStateBatch(3);
        var random = new SplitMix64(4);
        float[] y = new float[shape.OutputSize], logits = new float[shape.OutputSize], batchY = new float[3 * shape.OutputSize];
        int tiny = 0;
        for (int step = 0; step < 300; step++)
        {
            int token = random.NextInt32(shape.InputSize);
            state.Hidden.CopyTo(states.Hidden);
            model.Step(token, state, y, StepOutput.Probabilities);
            model.StepBatch([token, token, token], states, batchY, StepOutput.Probabilities);

            // The oracle: the same logits, recomputed, then softmax in double.
            double[] expected = new double[shape.OutputSize];
            for (int o = 0; o < shape.OutputSize; o++)
            {
                double v = theta.By[o];
                for (int j = 0; j < shape.HiddenSize; j++)
                {
                    v += (double)theta.Why[(o * shape.HiddenSize) + j] * state.Hidden[j];
                }

                logits[o] = (float)v;
                expected[o] = v;
            }

            ReferenceKernels.Softmax<double>(expected.ToArray(), expected);
            AssertRelative(y, expected, $"Step, step {step}", logitRounding: 1e-5);
            AssertRelative(batchY.AsSpan(0, shape.OutputSize), expected, $"StepBatch, step {step}", logitRounding: 1e-5);
            tiny += expected.Count(p => p < 6e-8 && p > Smallest);
        }

        Assert.True(tiny > 100, $"the data must exercise tiny probabilities; only {tiny} were below 6e-8");
    }

    private static void AssertRelative(ReadOnlySpan<float> actual, double[] expected, string what, double logitRounding = 0)
    {
        for (int k = 0; k < expected.Length; k++)
        {
            if (expected[k] < Smallest)
            {
                Assert.True(actual[k] >= 0 && actual[k] < 1e-30, $"{what}: class {k} = {actual[k]}, expected ~{expected[k]}");
                continue;
            }

            // Beyond that, a relative error δ in the logits (float rounding of W_hy h) moves a probability by a relative amount of order
            // |v|·δ, so the model comparison allows for it; the kernel comparison (exact logits) does not.
            // exp(v − m) inherits the rounding of v − m itself, |v − m|·2⁻²⁴ ≈ |ln p|·6e−8, as a relative error.
            double tolerance = RelativeTolerance + (Math.Abs(Math.Log(expected[k])) * 1.2e-7) + (logitRounding * 50);
            double error = Math.Abs(actual[k] - expected[k]) / expected[k];
            Assert.True(error <= tolerance, $"{what}: class {k} = {actual[k]:R}, expected {expected[k]:R} (relative error {error:E2})");
        }
    }
}
