using Bptt.Fast.Kernels;
using FsCheck;
using Bptt.Fast.Reference;
using FsCheck.Fluent;
using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>
/// The public fast kernels and their scalar reference twins refuse the same calls with the same exception and the same
/// parameter named, and a refused call writes nothing: generated dimensions from −1 up, lengths one short or one long,
/// spans laid out apart, in place or overlapping by one element inside one shared buffer, and undefined activations.
/// </summary>
public sealed class KernelArgumentTests
{
    private const int Slot = 20, Slots = 6;

    private static readonly string[] Kernels =
        ["Gemv", "GemvTransposed", "RnnStep", "RnnStepBackward", "Axpy", "Ger", "ColumnSums", "Gemm", "Activate", "ActivationBackward", "Softmax", "SoftmaxCrossEntropy"];

    /// <summary>One call: the kernel, its dimensions, and each span's start and length in the shared buffer.</summary>
    public sealed record Call(string Kernel, int M, int N, Activation F, (int Offset, int Length)[] Spans)
    {
        public override string ToString() => $"{Kernel} m={M} n={N} f={F} spans=[{string.Join(", ", Spans.Select(s => $"{s.Offset}+{s.Length}"))}]";
    }

    [Fact]
    public void FastAndReferenceKernelsRefuseTheSameCallsAndARefusedCallWritesNothing()
    {
        var refused = new Dictionary<string, int>();
        var accepted = new Dictionary<string, int>();
        Generators.Check(
            Calls(),
            call =>
            {
                float[] fastMemory = Memory(), referenceMemory = Memory();
                Exception? fast = Record.Exception(() => Run(call, fastMemory, reference: false));
                Exception? slow = Record.Exception(() => Run(call, referenceMemory, reference: true));
                Assert.Equal(fast?.GetType(), slow?.GetType());

                // The rule is written once and both sides run it, so it is also held to this test's own reading of it:
                // a call is accepted exactly when its sizes, lengths, activation and overlaps are all allowed.
                Assert.True((fast is null) == Allowed(call), $"{call}: {(fast is null ? "accepted" : fast.Message)}");
                if (fast is null)
                {
                    accepted[call.Kernel] = accepted.GetValueOrDefault(call.Kernel) + 1;

                    // Accepted: both computed the same thing, and neither wrote outside its output span.
                    for (int k = 0; k < fastMemory.Length; k++)
                    {
                        Assert.True(Math.Abs(fastMemory[k] - referenceMemory[k]) <= 1e-5f, $"{call}: element {k} is {fastMemory[k]} fast, {referenceMemory[k]} reference");
                    }

                    return;
                }

                refused[call.Kernel] = refused.GetValueOrDefault(call.Kernel) + 1;
                Assert.True(fast is ArgumentException, $"{call}: {fast.GetType().Name}: {fast.Message}");
                Assert.Equal(((ArgumentException)fast).ParamName, ((ArgumentException)slow!).ParamName);
                Assert.Equal(Memory(), fastMemory);
                Assert.Equal(Memory(), referenceMemory);
            },
            count: 6000);

        // Every kernel reaches both outcomes (not a property that holds only because its calls are all refused).
        foreach (string kernel in Kernels)
        {
            Assert.True(refused.GetValueOrDefault(kernel) >= 20 && accepted.GetValueOrDefault(kernel) >= 5, $"{kernel}: refused {refused.GetValueOrDefault(kernel)}, accepted {accepted.GetValueOrDefault(kernel)}");
        }
    }

    /// <summary>
    /// This test's reading of the rule, apart from the library's code: non-negative sizes; exact lengths (the GEMM's
    /// operands at least their stored extent); a defined activation; a logit and a target among them; and no writable
    /// span sharing memory with another span, except exactly the same span where the kernel works in place.
    /// </summary>
    private static bool Allowed(Call call)
    {
        int m = call.M, n = call.N;
        (int Offset, int Length)[] spans = call.Spans;
        if ((m < 0 || n < 0) && call.Kernel is "Gemv" or "GemvTransposed" or "ColumnSums" or "Gemm")
        {
            return false; // the kernels that take m and n; the others' sizes are their spans' lengths
        }

        int[] l = [.. spans.Select(span => span.Length)];
        bool lengths = call.Kernel switch
        {
            "Gemv" => l[0] == m * n && l[1] == n && l[2] == m,
            "GemvTransposed" => l[0] == m * n && l[1] == m && l[2] == n,
            "RnnStep" => l[0] == l[3] * l[3] && l[1] == l[3] && l[2] == l[3], // H = h.Length
            "RnnStepBackward" => l[0] == l[4] * l[4] && l[1] == l[4] && l[2] == l[4] && l[3] == l[4], // H = δ.Length
            "Axpy" => l[1] == l[0],
            "Ger" => l[2] == l[0] * l[1],
            "ColumnSums" => l[0] == m * n && l[1] == n,
            "Gemm" => l[0] >= 2 * m && l[1] >= 2 * n && l[2] >= m * n, // k = 2, each operand's stored extent at least
            "ActivationBackward" => l[1] == l[0] && l[2] == l[0],
            _ => l[1] == l[0], // Activate, Softmax, SoftmaxCrossEntropy
        };
        if (!lengths)
        {
            return false;
        }

        if (call.Kernel is "RnnStep" or "RnnStepBackward" or "Activate" or "ActivationBackward" && !Enum.IsDefined(call.F))
        {
            return false;
        }

        if (call.Kernel is "Softmax" or "SoftmaxCrossEntropy" && spans[0].Length == 0)
        {
            return false;
        }

        if (call.Kernel == "SoftmaxCrossEntropy" && (uint)m >= (uint)spans[0].Length)
        {
            return false;
        }

        (int Writable, int InPlace) rule = call.Kernel switch
        {
            "Gemv" or "GemvTransposed" or "Ger" or "Gemm" => (2, -1),
            "RnnStep" => (3, 2),
            "RnnStepBackward" => (4, 2),
            "Axpy" or "ColumnSums" => (1, -1),
            "Activate" or "Softmax" or "SoftmaxCrossEntropy" => (1, 0),
            _ => (2, 0), // ActivationBackward: δ may be g
        };
        (int Offset, int Length) w = spans[rule.Writable];
        for (int s = 0; s < spans.Length; s++)
        {
            bool overlap = w.Length > 0 && spans[s].Length > 0 && w.Offset < spans[s].Offset + spans[s].Length && spans[s].Offset < w.Offset + w.Length;
            if (s != rule.Writable && overlap && !(s == rule.InPlace && spans[s] == w))
            {
                return false;
            }
        }

        return true;
    }

    [Fact]
    public void ReferenceSoftmaxOfNoLogitsIsAnArgumentExceptionNotAnIndexError()
    {
        Assert.Equal("logits", Assert.Throws<ArgumentException>(() => ReferenceKernels.Softmax<double>([], [])).ParamName);
        Assert.Equal("logits", Assert.Throws<ArgumentException>(() => ReferenceKernels.SoftmaxCrossEntropy<double>([], 0, [])).ParamName);
    }

    [Fact]
    public void ReferenceActivationBackwardChecksTheLengthOfH()
    {
        // It once checked only δ against g, then read h past its end after writing δ's first elements.
        double[] delta = new double[4];
        var e = Assert.Throws<ArgumentException>(() => ReferenceKernels.ActivationBackward<double>(Activation.Tanh, [1, 1, 1, 1], [0.5, 0.5], delta));
        Assert.Equal("h", e.ParamName);
        Assert.All(delta, v => Assert.Equal(0.0, v));
    }

    private static float[] Memory() => Enumerable.Range(0, Slot * (Slots + 1)).Select(i => ((i % 13) - 6) * 0.125f).ToArray();

    private static Gen<Call> Calls() =>
        from kernel in Gen.Elements(Kernels)
        from m in Gen.Choose(-1, 4)
        from n in Gen.Choose(-1, 4)
        from deltas in Gen.ArrayOf(Gen.Elements(-1, 0, 0, 0, 0, 0, 1), Slots)
        from places in Gen.ArrayOf(Gen.Elements(-1, -1, -1, -1, 0, 1, 2, 3, 4, 5), Slots)
        from shifts in Gen.ArrayOf(Gen.Elements(0, 0, 1), Slots)
        from f in Gen.Elements(Activation.Tanh, Activation.Relu, Activation.Sigmoid, Activation.Tanh, (Activation)3, (Activation)(-1))
        select Layout(kernel, m, n, f, deltas, places, shifts);

    /// <summary>Each span gets its expected length plus a delta, and its own slot, or the start (plus a shift) of an earlier span.</summary>
    private static Call Layout(string kernel, int m, int n, Activation f, int[] deltas, int[] places, int[] shifts)
    {
        int[] lengths = Lengths(kernel, Math.Max(m, 0), Math.Max(n, 0));
        var spans = new (int Offset, int Length)[lengths.Length];
        for (int s = 0; s < spans.Length; s++)
        {
            int offset = places[s] >= 0 && places[s] < s ? spans[places[s]].Offset + shifts[s] : s * Slot;
            spans[s] = (offset, Math.Max(0, lengths[s] + deltas[s]));
        }

        return new Call(kernel, m, n, f, spans);
    }

    /// <summary>The lengths each kernel's spans need, in parameter order (Gemm: k = 2).</summary>
    private static int[] Lengths(string kernel, int m, int n) => kernel switch
    {
        "Gemv" => [m * n, n, m],
        "GemvTransposed" => [m * n, m, n],
        "RnnStep" => [n * n, n, n, n],
        "RnnStepBackward" => [n * n, n, n, n, n],
        "Axpy" => [n, n],
        "Ger" => [m, n, m * n],
        "ColumnSums" => [m * n, n],
        "Gemm" => [m * 2, 2 * n, m * n],
        "ActivationBackward" => [n, n, n],
        _ => [n, n], // Activate, Softmax, SoftmaxCrossEntropy
    };

    private static void Run(Call call, float[] memory, bool reference)
    {
        Span<float> S(int s) => memory.AsSpan(call.Spans[s].Offset, call.Spans[s].Length);
        int m = call.M, n = call.N;
        Activation f = call.F;
        switch (call.Kernel, reference)
        {
            case ("Gemv", false): FastKernels.Gemv(S(0), m, n, S(1), S(2)); break;
            case ("Gemv", true): ReferenceKernels.Gemv<float>(S(0), m, n, S(1), S(2)); break;
            case ("GemvTransposed", false): FastKernels.GemvTransposed(S(0), m, n, S(1), S(2)); break;
            case ("GemvTransposed", true): ReferenceKernels.GemvTransposed<float>(S(0), m, n, S(1), S(2)); break;
            case ("RnnStep", false): FastKernels.RnnStep(S(0), S(1), S(2), S(3), f); break;
            case ("RnnStep", true): ReferenceKernels.RnnStep<float>(S(0), S(1), S(2), S(3), f); break;
            case ("RnnStepBackward", false): FastKernels.RnnStepBackward(S(0), S(1), S(2), S(3), S(4), f); break;
            case ("RnnStepBackward", true): ReferenceKernels.RnnStepBackward<float>(S(0), S(1), S(2), S(3), S(4), f); break;
            case ("Axpy", false): FastKernels.Axpy(0.5f, S(0), S(1)); break;
            case ("Axpy", true): ReferenceKernels.Axpy(0.5f, S(0), S(1)); break;
            case ("Ger", false): FastKernels.Ger(0.5f, S(0), S(1), S(2)); break;
            case ("Ger", true): ReferenceKernels.Ger(0.5f, S(0), S(1), S(2)); break;
            case ("ColumnSums", false): FastKernels.ColumnSums(S(0), m, n, S(1), accumulate: true); break;
            case ("ColumnSums", true): ReferenceKernels.ColumnSums<float>(S(0), m, n, S(1), accumulate: true); break;
            case ("Gemm", false): FastKernels.Gemm(false, false, m, n, 2, S(0), 2, S(1), Math.Max(n, 1), 0.5f, S(2), Math.Max(n, 1)); break;
            case ("Gemm", true): ReferenceKernels.Gemm<float>(false, false, m, n, 2, S(0), 2, S(1), Math.Max(n, 1), 0.5f, S(2), Math.Max(n, 1)); break;
            case ("Activate", false): FastKernels.Activate(f, S(0), S(1)); break;
            case ("Activate", true): ReferenceKernels.Activate<float>(f, S(0), S(1)); break;
            case ("ActivationBackward", false): FastKernels.ActivationBackward(f, S(0), S(1), S(2)); break;
            case ("ActivationBackward", true): ReferenceKernels.ActivationBackward<float>(f, S(0), S(1), S(2)); break;
            case ("Softmax", false): FastKernels.Softmax(S(0), S(1)); break;
            case ("Softmax", true): ReferenceKernels.Softmax<float>(S(0), S(1)); break;
            case ("SoftmaxCrossEntropy", false): FastKernels.SoftmaxCrossEntropy(S(0), m, S(1)); break;
            default: ReferenceKernels.SoftmaxCrossEntropy<float>(S(0), m, S(1)); break;
        }
    }
}
