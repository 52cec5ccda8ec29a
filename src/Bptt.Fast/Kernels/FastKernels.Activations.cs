using System.Numerics;
using System.Runtime.Intrinsics;
using Bptt.Fast.Internals;
using Bptt.Fast.Kernels.Isa;

namespace Bptt.Fast.Kernels;

public static partial class FastKernels
{
    /// <summary>
    /// Equation (2) element-wise: h = f(u). The approximations (exp/tanh from Cephes, see SimdMath) have absolute error
    /// below 3e−7; NaN stays NaN, and ±1e4 maps to the correct limit.
    /// </summary>
    /// <param name="activation">f.</param>
    /// <param name="u">uₜ.</param>
    /// <param name="h">hₜ, the same length; may be the same span as u.</param>
    public static void Activate(Activation activation, ReadOnlySpan<float> u, Span<float> h) => Activate(KernelInfo.Isa, activation, u, h);

    internal static void Activate(KernelIsa isa, Activation activation, ReadOnlySpan<float> u, Span<float> h)
    {
        Guard.Length(u.Length, h.Length, nameof(h), "u.Length");
        Aliasing.DisjointOrSame<float, float>(h, nameof(h), u, nameof(u));
        switch (activation)
        {
            case Activation.Tanh: Map<ActivationEpilogue<TanhKind>>(isa, u, default, h); break;
            case Activation.Relu: Map<ActivationEpilogue<ReluKind>>(isa, u, default, h); break;
            case Activation.Sigmoid: Map<ActivationEpilogue<SigmoidKind>>(isa, u, default, h); break;
            default: throw new ArgumentOutOfRangeException(nameof(activation), activation, "Expected Tanh, Relu or Sigmoid.");
        }
    }

    /// <summary>The ⊙ of equation (12) on its own: δ = g ⊙ f′(u), with f′ taken from h = f(u).</summary>
    /// <param name="activation">f.</param>
    /// <param name="g">The incoming gradient ∂L/∂hₜ.</param>
    /// <param name="h">hₜ.</param>
    /// <param name="delta">δₜ, the same length; may be the same span as g.</param>
    public static void ActivationBackward(Activation activation, ReadOnlySpan<float> g, ReadOnlySpan<float> h, Span<float> delta) =>
        ActivationBackward(KernelInfo.Isa, activation, g, h, delta);

    internal static void ActivationBackward(KernelIsa isa, Activation activation, ReadOnlySpan<float> g, ReadOnlySpan<float> h, Span<float> delta)
    {
        Guard.Length(g.Length, h.Length, nameof(h), "g.Length");
        Guard.Length(g.Length, delta.Length, nameof(delta), "g.Length");
        Aliasing.DisjointOrSame<float, float>(delta, nameof(delta), g, nameof(g));
        Aliasing.Disjoint<float, float>(delta, nameof(delta), h, nameof(h));
        switch (activation)
        {
            case Activation.Tanh: Map<DerivativeEpilogue<TanhKind>>(isa, g, h, delta); break;
            case Activation.Relu: Map<DerivativeEpilogue<ReluKind>>(isa, g, h, delta); break;
            case Activation.Sigmoid: Map<DerivativeEpilogue<SigmoidKind>>(isa, g, h, delta); break;
            default: throw new ArgumentOutOfRangeException(nameof(activation), activation, "Expected Tanh, Relu or Sigmoid.");
        }
    }

    /// <summary>
    /// Equations (4), (6), (7) fused for one row: with m = max(v), returns Lₜ = ln Σₖ e^(vₖ−m) − (v_target − m) and writes
    /// eₖ = e^(vₖ−m)/Σ e^(v−m) − [k = target]. Stable for logits of any finite size (±1e4 included); NaN logits give a NaN loss.
    /// </summary>
    /// <param name="logits">vₜ, at least one float.</param>
    /// <param name="target">The target class, in [0, logits.Length).</param>
    /// <param name="error">eₜ, the same length; may be the same span as logits.</param>
    /// <returns>Lₜ.</returns>
    public static float SoftmaxCrossEntropy(ReadOnlySpan<float> logits, int target, Span<float> error) => SoftmaxCrossEntropy(KernelInfo.Isa, logits, target, error);

    internal static float SoftmaxCrossEntropy(KernelIsa isa, ReadOnlySpan<float> logits, int target, Span<float> error)
    {
        if (logits.IsEmpty)
        {
            throw new ArgumentException("Expected at least one logit, actual 0.", nameof(logits));
        }

        Guard.InRange(target, 0, logits.Length - 1, nameof(target));
        Guard.Length(logits.Length, error.Length, nameof(error), "logits.Length");
        Aliasing.DisjointOrSame<float, float>(error, nameof(error), logits, nameof(logits));
        return SoftmaxCrossEntropyUnchecked(isa, logits, target, error, writeError: true);
    }

    /// <summary>
    /// Equation (4) alone: yₖ = e^(vₖ − max v) / Σ e^(v − max v), stable for logits of any finite size. Each probability is
    /// computed directly, so tiny ones keep float's relative precision (down to about 1e−37).
    /// </summary>
    /// <param name="logits">vₜ, at least one float.</param>
    /// <param name="probabilities">yₜ, the same length; may be the same span as logits.</param>
    /// <exception cref="ArgumentException">No logits, a length mismatch, or a partial overlap.</exception>
    public static void Softmax(ReadOnlySpan<float> logits, Span<float> probabilities) => Softmax(KernelInfo.Isa, logits, probabilities);

    internal static void Softmax(KernelIsa isa, ReadOnlySpan<float> logits, Span<float> probabilities)
    {
        if (logits.IsEmpty)
        {
            throw new ArgumentException("Expected at least one logit, actual 0.", nameof(logits));
        }

        Guard.Length(logits.Length, probabilities.Length, nameof(probabilities), "logits.Length");
        Aliasing.DisjointOrSame<float, float>(probabilities, nameof(probabilities), logits, nameof(logits));
        SoftmaxUnchecked(isa, logits, probabilities);
    }

    internal static void SoftmaxUnchecked(KernelIsa isa, ReadOnlySpan<float> logits, Span<float> probabilities)
    {
        switch (isa)
        {
            case KernelIsa.Avx2: SimdKernels<Avx2Simd, Vector256<float>>.Softmax(logits, probabilities); break;
            case KernelIsa.AdvSimd: SimdKernels<AdvSimdSimd, Vector128<float>>.Softmax(logits, probabilities); break;
            case KernelIsa.Vector: SimdKernels<VectorSimd, Vector<float>>.Softmax(logits, probabilities); break;
            default: SimdKernels<ScalarSimd, float>.Softmax(logits, probabilities); break;
        }
    }

    internal static float SoftmaxCrossEntropyUnchecked(KernelIsa isa, ReadOnlySpan<float> logits, int target, Span<float> error, bool writeError) => isa switch
    {
        KernelIsa.Avx2 => SimdKernels<Avx2Simd, Vector256<float>>.SoftmaxCrossEntropy(logits, target, error, writeError),
        KernelIsa.AdvSimd => SimdKernels<AdvSimdSimd, Vector128<float>>.SoftmaxCrossEntropy(logits, target, error, writeError),
        KernelIsa.Vector => SimdKernels<VectorSimd, Vector<float>>.SoftmaxCrossEntropy(logits, target, error, writeError),
        _ => SimdKernels<ScalarSimd, float>.SoftmaxCrossEntropy(logits, target, error, writeError),
    };

    internal static void Map<TEpi>(KernelIsa isa, ReadOnlySpan<float> x, ReadOnlySpan<float> aux, Span<float> y)
        where TEpi : struct, IEpilogue
    {
        switch (isa)
        {
            case KernelIsa.Avx2: SimdKernels<Avx2Simd, Vector256<float>>.Map<TEpi>(x, aux, y); break;
            case KernelIsa.AdvSimd: SimdKernels<AdvSimdSimd, Vector128<float>>.Map<TEpi>(x, aux, y); break;
            case KernelIsa.Vector: SimdKernels<VectorSimd, Vector<float>>.Map<TEpi>(x, aux, y); break;
            default: SimdKernels<ScalarSimd, float>.Map<TEpi>(x, aux, y); break;
        }
    }
}
