using System.Numerics;
using System.Runtime.Intrinsics;
using Bptt.Fast.Internals;
using Bptt.Fast.Kernels.Isa;

namespace Bptt.Fast.Kernels;

/// <summary>
/// The hand-vectorised kernels of the fast path, one public static method per operation over spans. Each dispatches
/// once per call to the ISA chosen by <see cref="KernelInfo"/> (AVX2+FMA, AdvSimd, <see cref="Vector{T}"/>, scalar).
/// Each has a scalar twin with the same signature in <see cref="Bptt.Fast.Reference.ReferenceKernels"/>. Every method checks its
/// lengths, accepts any length ≥ 0 and any alignment, and touches nothing outside the spans it is given.
/// Naming follows BLAS: <c>Transposed</c> means the matrix is used as its transpose.
/// </summary>
public static partial class FastKernels
{
    /// <summary>y = A x, with A m×n row-major (dot-product form, four rows in flight).</summary>
    /// <param name="a">A, m·n floats.</param>
    /// <param name="m">Rows of A.</param>
    /// <param name="n">Columns of A.</param>
    /// <param name="x">x, n floats.</param>
    /// <param name="y">y, m floats; must not overlap A or x.</param>
    public static void Gemv(ReadOnlySpan<float> a, int m, int n, ReadOnlySpan<float> x, Span<float> y) => Gemv(KernelInfo.Isa, a, m, n, x, y);

    internal static void Gemv(KernelIsa isa, ReadOnlySpan<float> a, int m, int n, ReadOnlySpan<float> x, Span<float> y)
    {
        CheckMatrix(a, m, n, nameof(a));
        Guard.Length(n, x.Length, nameof(x), "n");
        Guard.Length(m, y.Length, nameof(y), "m");
        Aliasing.Disjoint<float, float>(y, nameof(y), a, nameof(a));
        Aliasing.Disjoint<float, float>(y, nameof(y), x, nameof(x));
        switch (isa)
        {
            case KernelIsa.Avx2: SimdKernels<Avx2Simd, Vector256<float>>.Gemv(a, m, n, x, y); break;
            case KernelIsa.AdvSimd: SimdKernels<AdvSimdSimd, Vector128<float>>.Gemv(a, m, n, x, y); break;
            case KernelIsa.Vector: SimdKernels<VectorSimd, Vector<float>>.Gemv(a, m, n, x, y); break;
            default: SimdKernels<ScalarSimd, float>.Gemv(a, m, n, x, y); break;
        }
    }

    /// <summary>y = Aᵀ x, with A m×n row-major (axpy form: rows of A scaled by xᵢ, no horizontal sums).</summary>
    /// <param name="a">A, m·n floats.</param>
    /// <param name="m">Rows of A (the length of x).</param>
    /// <param name="n">Columns of A (the length of y).</param>
    /// <param name="x">x, m floats.</param>
    /// <param name="y">y, n floats; must not overlap A or x.</param>
    public static void GemvTransposed(ReadOnlySpan<float> a, int m, int n, ReadOnlySpan<float> x, Span<float> y) => GemvTransposed(KernelInfo.Isa, a, m, n, x, y);

    internal static void GemvTransposed(KernelIsa isa, ReadOnlySpan<float> a, int m, int n, ReadOnlySpan<float> x, Span<float> y)
    {
        CheckMatrix(a, m, n, nameof(a));
        Guard.Length(m, x.Length, nameof(x), "m");
        Guard.Length(n, y.Length, nameof(y), "n");
        Aliasing.Disjoint<float, float>(y, nameof(y), a, nameof(a));
        Aliasing.Disjoint<float, float>(y, nameof(y), x, nameof(x));
        TransposedProduct<IdentityEpilogue>(isa, a, m, n, x, default, default, y);
    }

    /// <summary>
    /// The fused recurrent step, equations (1)–(2): h = f(u + W_hh h₋₁), given W_hhᵀ (H×H row-major) so that the product runs in
    /// axpy form, and u = W_xh xₜ + b_h (the hoisted input projection). h is written once.
    /// </summary>
    /// <param name="whhTransposed">W_hhᵀ, H·H floats.</param>
    /// <param name="hPrevious">hₜ₋₁, H floats.</param>
    /// <param name="u">W_xh xₜ + b_h, H floats; may be the same span as <paramref name="h"/> (in place).</param>
    /// <param name="h">hₜ, H floats.</param>
    /// <param name="activation">f.</param>
    public static void RnnStep(ReadOnlySpan<float> whhTransposed, ReadOnlySpan<float> hPrevious, ReadOnlySpan<float> u, Span<float> h, Activation activation) =>
        RnnStep(KernelInfo.Isa, whhTransposed, hPrevious, u, h, activation);

    internal static void RnnStep(KernelIsa isa, ReadOnlySpan<float> whhTransposed, ReadOnlySpan<float> hPrevious, ReadOnlySpan<float> u, Span<float> h, Activation activation)
    {
        int hidden = h.Length;
        CheckMatrix(whhTransposed, hidden, hidden, nameof(whhTransposed));
        Guard.Length(hidden, hPrevious.Length, nameof(hPrevious), "H = h.Length");
        Guard.Length(hidden, u.Length, nameof(u), "H = h.Length");
        Aliasing.Disjoint<float, float>(h, nameof(h), whhTransposed, nameof(whhTransposed));
        Aliasing.Disjoint<float, float>(h, nameof(h), hPrevious, nameof(hPrevious));
        Aliasing.DisjointOrSame<float, float>(h, nameof(h), u, nameof(u));
        switch (activation)
        {
            case Activation.Tanh: TransposedProduct<ActivationEpilogue<TanhKind>>(isa, whhTransposed, hidden, hidden, hPrevious, u, default, h); break;
            case Activation.Relu: TransposedProduct<ActivationEpilogue<ReluKind>>(isa, whhTransposed, hidden, hidden, hPrevious, u, default, h); break;
            case Activation.Sigmoid: TransposedProduct<ActivationEpilogue<SigmoidKind>>(isa, whhTransposed, hidden, hidden, hPrevious, u, default, h); break;
            default: throw new ArgumentOutOfRangeException(nameof(activation), activation, "Expected Tanh, Relu or Sigmoid.");
        }
    }

    /// <summary>
    /// The fused backward step, equation (12): δₜ = (g + W_hhᵀ δₜ₊₁) ⊙ f′(uₜ), with g = W_hyᵀ eₜ precomputed and f′ taken
    /// from hₜ. W_hh is used as stored (H×H row-major): W_hhᵀ v accumulates rows of W_hh scaled by vᵢ.
    /// </summary>
    /// <param name="whh">W_hh, H·H floats.</param>
    /// <param name="deltaNext">δₜ₊₁, H floats.</param>
    /// <param name="g">W_hyᵀ eₜ, H floats; may be the same span as <paramref name="delta"/> (in place).</param>
    /// <param name="h">hₜ, H floats.</param>
    /// <param name="delta">δₜ, H floats.</param>
    /// <param name="activation">f.</param>
    public static void RnnStepBackward(ReadOnlySpan<float> whh, ReadOnlySpan<float> deltaNext, ReadOnlySpan<float> g, ReadOnlySpan<float> h, Span<float> delta, Activation activation) =>
        RnnStepBackward(KernelInfo.Isa, whh, deltaNext, g, h, delta, activation);

    internal static void RnnStepBackward(KernelIsa isa, ReadOnlySpan<float> whh, ReadOnlySpan<float> deltaNext, ReadOnlySpan<float> g, ReadOnlySpan<float> h, Span<float> delta, Activation activation)
    {
        int hidden = delta.Length;
        CheckMatrix(whh, hidden, hidden, nameof(whh));
        Guard.Length(hidden, deltaNext.Length, nameof(deltaNext), "H = delta.Length");
        Guard.Length(hidden, g.Length, nameof(g), "H = delta.Length");
        Guard.Length(hidden, h.Length, nameof(h), "H = delta.Length");
        Aliasing.Disjoint<float, float>(delta, nameof(delta), whh, nameof(whh));
        Aliasing.Disjoint<float, float>(delta, nameof(delta), deltaNext, nameof(deltaNext));
        Aliasing.Disjoint<float, float>(delta, nameof(delta), h, nameof(h));
        Aliasing.DisjointOrSame<float, float>(delta, nameof(delta), g, nameof(g));
        switch (activation)
        {
            case Activation.Tanh: TransposedProduct<DerivativeEpilogue<TanhKind>>(isa, whh, hidden, hidden, deltaNext, g, h, delta); break;
            case Activation.Relu: TransposedProduct<DerivativeEpilogue<ReluKind>>(isa, whh, hidden, hidden, deltaNext, g, h, delta); break;
            case Activation.Sigmoid: TransposedProduct<DerivativeEpilogue<SigmoidKind>>(isa, whh, hidden, hidden, deltaNext, g, h, delta); break;
            default: throw new ArgumentOutOfRangeException(nameof(activation), activation, "Expected Tanh, Relu or Sigmoid.");
        }
    }

    internal static void TransposedProduct<TEpi>(KernelIsa isa, ReadOnlySpan<float> a, int m, int n, ReadOnlySpan<float> x, ReadOnlySpan<float> addend, ReadOnlySpan<float> aux, Span<float> y)
        where TEpi : struct, IEpilogue
    {
        switch (isa)
        {
            case KernelIsa.Avx2: SimdKernels<Avx2Simd, Vector256<float>>.TransposedProduct<TEpi>(a, m, n, x, addend, aux, y); break;
            case KernelIsa.AdvSimd: SimdKernels<AdvSimdSimd, Vector128<float>>.TransposedProduct<TEpi>(a, m, n, x, addend, aux, y); break;
            case KernelIsa.Vector: SimdKernels<VectorSimd, Vector<float>>.TransposedProduct<TEpi>(a, m, n, x, addend, aux, y); break;
            default: SimdKernels<ScalarSimd, float>.TransposedProduct<TEpi>(a, m, n, x, addend, aux, y); break;
        }
    }

    /// <summary>Packs A (m×n) into column-block panels for <see cref="PackedTransposedProduct{TEpi}"/> on <paramref name="isa"/>.</summary>
    internal static void PackColumnBlocks(KernelIsa isa, ReadOnlySpan<float> a, int m, int n, Span<float> packed)
    {
        switch (isa)
        {
            case KernelIsa.Avx2: SimdKernels<Avx2Simd, Vector256<float>>.PackColumnBlocks(a, m, n, packed); break;
            case KernelIsa.AdvSimd: SimdKernels<AdvSimdSimd, Vector128<float>>.PackColumnBlocks(a, m, n, packed); break;
            case KernelIsa.Vector: SimdKernels<VectorSimd, Vector<float>>.PackColumnBlocks(a, m, n, packed); break;
            default: SimdKernels<ScalarSimd, float>.PackColumnBlocks(a, m, n, packed); break;
        }
    }

    /// <summary>y = epilogue(addend + Aᵀ x, aux) over A packed by <see cref="PackColumnBlocks"/>: the engine's fused steps (1)–(2) and (12).</summary>
    internal static void PackedTransposedProduct<TEpi>(KernelIsa isa, ReadOnlySpan<float> packed, int m, int n, ReadOnlySpan<float> x, ReadOnlySpan<float> addend, ReadOnlySpan<float> aux, Span<float> y)
        where TEpi : struct, IEpilogue
    {
        switch (isa)
        {
            case KernelIsa.Avx2: SimdKernels<Avx2Simd, Vector256<float>>.PackedTransposedProduct<TEpi>(packed, m, n, x, addend, aux, y); break;
            case KernelIsa.AdvSimd: SimdKernels<AdvSimdSimd, Vector128<float>>.PackedTransposedProduct<TEpi>(packed, m, n, x, addend, aux, y); break;
            case KernelIsa.Vector: SimdKernels<VectorSimd, Vector<float>>.PackedTransposedProduct<TEpi>(packed, m, n, x, addend, aux, y); break;
            default: SimdKernels<ScalarSimd, float>.PackedTransposedProduct<TEpi>(packed, m, n, x, addend, aux, y); break;
        }
    }

    private static void CheckMatrix(ReadOnlySpan<float> a, int m, int n, string name)
    {
        if (m < 0 || n < 0)
        {
            throw new ArgumentOutOfRangeException(m < 0 ? "m" : "n", m < 0 ? m : n, $"Expected dimensions >= 0, actual {m}×{n}.");
        }

        Guard.Length((long)m * n, a.Length, name, $"{m}×{n}");
    }
}
