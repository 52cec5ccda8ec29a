using System.Runtime.CompilerServices;
using Bptt.Fast.Kernels.Bodies;
using Bptt.Fast.Kernels.Functions;
using Bptt.Fast.Kernels.Isa;

namespace Bptt.Fast.Kernels;

/// <summary>
/// The kernels of one (instruction set, activation) pair, resolved once, when an engine, a model or an optimizer is
/// built (<see cref="KernelSets.For"/>). Callers hold the set and call it; nothing on a hot path dispatches on the ISA or
/// the activation again. Each member is one kernel; callers have validated every argument (the public checks live in
/// <see cref="FastKernels"/>), and each body restates its length preconditions with <c>Bounds</c>.
/// </summary>
internal abstract class KernelSet
{
    /// <summary>The instruction set.</summary>
    public abstract KernelIsa Isa { get; }

    /// <summary>f of equation (2), bound into the fused kernels.</summary>
    public abstract Activation Activation { get; }

    /// <summary>NR, the GEMM tile's columns (two vectors).</summary>
    public abstract int MicroColumns { get; }

    /// <summary>Floats that packing the whole op(B) of k×n needs (a B packed once and reused), in 64 bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public long PackedBLength(int k, int n) => Internals.Sizes.Product(k, Internals.Sizes.RoundUp(n, MicroColumns));

    /// <summary>Floats of the B block buffer <see cref="Gemm"/> needs when op(B) has at most <paramref name="maxColumns"/> columns.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public long PackBBlockLength(int maxColumns) =>
        Internals.Sizes.Product(GemmBlocking.KC, Math.Min(GemmBlocking.NC, Internals.Sizes.RoundUp(Math.Max(maxColumns, 1), MicroColumns)));

    /// <summary>y = A x, A m×n row-major.</summary>
    public abstract void Gemv(ReadOnlySpan<float> a, int m, int n, ReadOnlySpan<float> x, Span<float> y);

    /// <summary>y = Aᵀ x, A m×n row-major (axpy form).</summary>
    public abstract void GemvTransposed(ReadOnlySpan<float> a, int m, int n, ReadOnlySpan<float> x, Span<float> y);

    /// <summary>y = y + αx.</summary>
    public abstract void Axpy(float alpha, ReadOnlySpan<float> x, Span<float> y);

    /// <summary>v = αv.</summary>
    public abstract void Scale(float alpha, Span<float> v);

    /// <summary>d = x + y (d may be x or y); callers have checked the lengths.</summary>
    public abstract void Add(ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> d);

    /// <summary>y[j] = Σᵣ A[r, j] (+ y[j] when accumulating): the bias gradients (8) and (15).</summary>
    public abstract void ColumnSums(ReadOnlySpan<float> a, int rows, int cols, Span<float> y, bool accumulate);

    /// <summary>The index of the first NaN or ±∞, or −1.</summary>
    public abstract int FirstNonFinite(ReadOnlySpan<float> x);

    /// <summary>Σ xᵢ² in double (the clipping norm), exact where float squares would overflow.</summary>
    public abstract double SumOfSquares(ReadOnlySpan<float> x);

    /// <summary>Packs op(B), k×n, whole (see <see cref="GemmCore{TOps, TVec}.PackB"/>).</summary>
    public abstract void PackB(bool transposeB, int k, int n, ReadOnlySpan<float> b, int ldb, Span<float> packed);

    /// <summary>C = op(A)·B + βC with B as stored (k×n, row stride ldb, n a multiple of <see cref="MicroColumns"/>): the
    /// macro-kernel without packing B, for products of few rows (see <see cref="GemmCore{TOps, TVec}.MultiplyUnpackedB"/>).</summary>
    public abstract void MultiplyUnpackedB(bool transposeA, int m, int n, int k, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc, Span<float> packA);

    /// <summary>C = op(A)·op(B) + βC over a whole packed op(B) (the macro-kernel); C overlaps none of A, op(B) and packA.</summary>
    public abstract void Multiply(bool transposeA, int m, int n, int k, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> packedB, float beta, Span<float> c, int ldc, Span<float> packA);

    /// <summary>
    /// C = op(A)·op(B) + βC over caller-owned buffers: for each NC-column block and each KC-deep block, op(B)'s block is
    /// packed into <paramref name="packB"/> (at least <see cref="PackBBlockLength"/>(n) floats) and multiplied, β applying
    /// to the first depth block only, so the buffer never depends on k.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Gemm(bool transposeA, bool transposeB, int m, int n, int k, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc, Span<float> packA, Span<float> packB)
    {
        Internals.Bounds.Require(Internals.Bounds.Holds(a.Length, transposeA ? k : m, transposeA ? m : k, lda));
        Internals.Bounds.Require(Internals.Bounds.Holds(b.Length, transposeB ? n : k, transposeB ? k : n, ldb));
        Internals.Bounds.Require(Internals.Bounds.Holds(c.Length, m, n, ldc));
        Internals.Bounds.Require(packB.Length >= PackBBlockLength(n));
        if (m == 0 || n == 0)
        {
            return;
        }

        if (k == 0)
        {
            Multiply(transposeA, m, n, 0, a, lda, default, beta, c, ldc, packA);
            return;
        }

        // A product of few rows reads each panel of B a few times only: B as stored, unpacked, when it needs no padding.
        bool unpacked = !transposeB && m <= GemmBlocking.UnpackedBMaxRows && n % MicroColumns == 0;
        for (int j0 = 0; j0 < n; j0 += GemmBlocking.NC)
        {
            int nc = Math.Min(GemmBlocking.NC, n - j0);
            for (int p0 = 0; p0 < k; p0 += GemmBlocking.KC)
            {
                int kc = Math.Min(GemmBlocking.KC, k - p0);
                if (unpacked)
                {
                    MultiplyUnpackedB(transposeA, m, nc, kc, a.Slice(transposeA ? checked(p0 * lda) : p0), lda, b.Slice(checked((p0 * ldb) + j0)), ldb, p0 == 0 ? beta : 1f, c.Slice(j0), ldc, packA);
                    continue;
                }

                PackB(transposeB, kc, nc, b.Slice(transposeB ? checked((j0 * ldb) + p0) : checked((p0 * ldb) + j0)), ldb, packB);
                Multiply(transposeA, m, nc, kc, a.Slice(transposeA ? checked(p0 * lda) : p0), lda, packB, p0 == 0 ? beta : 1f, c.Slice(j0), ldc, packA);
            }
        }
    }

    /// <summary>The columns of one panel of <see cref="PackColumnBlocks"/>: an m×n matrix with n at most this is its own packing.</summary>
    public abstract int ColumnBlockWidth { get; }

    /// <summary>Packs A (m×n) into the column-block panels of <see cref="StepForward"/> and <see cref="StepBackward"/>.</summary>
    public abstract void PackColumnBlocks(ReadOnlySpan<float> a, int m, int n, Span<float> packed);

    /// <summary>y = addend + Aᵀx over A (m×n) packed by <see cref="PackColumnBlocks"/>, read in <paramref name="order"/>: equation (3) for one row, vₜ = b_y + W_hy hₜ, with W_hyᵀ packed.</summary>
    public abstract void PackedProduct(ReadOnlySpan<float> packed, int m, int n, ReadOnlySpan<float> x, ReadOnlySpan<float> addend, Span<float> y, ReadOrder order);

    /// <summary>Packs Aᵀ (A n×m row-major) the way <see cref="PackColumnBlocks"/> packs an m×n matrix, without forming Aᵀ.</summary>
    public abstract void PackTransposedColumnBlocks(ReadOnlySpan<float> a, int n, int m, Span<float> packed);

    /// <summary>
    /// The fused recurrent step, equations (1)–(2), in place: h = f(h + W_hh hPrevious), with h holding
    /// uₜ = W_xh xₜ + b_h on entry and W_hhᵀ packed by <see cref="PackColumnBlocks"/> (n×n), read in <paramref name="order"/>:
    /// a recurrence alternates <see cref="ReadOrder.Forward"/> and <see cref="ReadOrder.Backward"/>, which give the same bits,
    /// so that each step starts on the panels still in cache from the step before. hPrevious must not overlap h: each
    /// column block of h is written while later blocks still read all of hPrevious.
    /// </summary>
    public abstract void StepForward(ReadOnlySpan<float> packedWhhT, int n, ReadOnlySpan<float> hPrevious, Span<float> h, ReadOrder order);

    /// <summary>The fused recurrent step, equations (1)–(2), with uₜ apart from h: h = f(u + W_hh hPrevious), u read-only (a
    /// token's row b_h + W_xh xₜ of the model's table, n floats, never h) and h written; otherwise as <see cref="StepForward"/>
    /// (hPrevious must not overlap h).</summary>
    public abstract void StepForwardFrom(ReadOnlySpan<float> packedWhhT, int n, ReadOnlySpan<float> hPrevious, ReadOnlySpan<float> u, Span<float> h, ReadOrder order);

    /// <summary>
    /// The fused backward step, equation (12), in place: δ = (δ + W_hhᵀ δNext) ⊙ f′(h), with δ holding Gₜ = W_hyᵀ eₜ on
    /// entry and W_hh packed by <see cref="PackColumnBlocks"/>, read in <paramref name="order"/> as in <see cref="StepForward"/>.
    /// </summary>
    public abstract void StepBackward(ReadOnlySpan<float> packedWhh, int n, ReadOnlySpan<float> deltaNext, ReadOnlySpan<float> h, Span<float> delta, ReadOrder order);

    /// <summary>Equations (1)–(2) over unpacked W_hhᵀ: h = f(u + W_hh hPrevious); u may be h.</summary>
    public abstract void RnnStep(ReadOnlySpan<float> whhTransposed, ReadOnlySpan<float> hPrevious, ReadOnlySpan<float> u, Span<float> h);

    /// <summary>Equation (12) over unpacked W_hh: δ = (g + W_hhᵀ δNext) ⊙ f′(h); g may be δ.</summary>
    public abstract void RnnStepBackward(ReadOnlySpan<float> whh, ReadOnlySpan<float> deltaNext, ReadOnlySpan<float> g, ReadOnlySpan<float> h, Span<float> delta);

    /// <summary>Equation (2) element-wise: h = f(u); u may be h.</summary>
    public abstract void Activate(ReadOnlySpan<float> u, Span<float> h);

    /// <summary>Equations (1)–(2) after the product: h = f(u + addend) element-wise (u = a row of H₋₁ W_hhᵀ, addend = b_h + W_xh xₜ); h may be u.</summary>
    public abstract void ActivateSum(ReadOnlySpan<float> u, ReadOnlySpan<float> addend, Span<float> h);

    /// <summary>The ⊙ f′ of (12) on its own: δ = g ⊙ f′(u), f′ from h = f(u); g may be δ.</summary>
    public abstract void ActivationBackward(ReadOnlySpan<float> g, ReadOnlySpan<float> h, Span<float> delta);

    /// <summary>Equations (4), (6), (7) fused for one row: returns Lₜ and (when asked) writes eₜ = yₜ − ŷₜ; error may be logits.</summary>
    public abstract float SoftmaxCrossEntropy(ReadOnlySpan<float> logits, int target, Span<float> error, bool writeError);

    /// <summary>Equation (4) alone, each probability computed directly; y may be logits.</summary>
    public abstract void Softmax(ReadOnlySpan<float> logits, Span<float> y);

    /// <summary>One read of an update's inputs: the extent its rule's bounds need and Σg² (see <see cref="Updates{TOps, TVec}.Screen"/>).</summary>
    public abstract UpdateExtent Screen(ReadOnlySpan<float> theta, ReadOnlySpan<float> gradient, ReadOnlySpan<float> state0, ReadOnlySpan<float> state1, int stateBlocks);

    /// <summary>Runs an element-wise operation over the set's registers (the optimizers' update rules).</summary>
    public abstract bool Update<TRule>(TRule rule, Span<float> theta, ReadOnlySpan<float> gradient, Span<float> state0, Span<float> state1, bool commit)
        where TRule : struct, IUpdateRule;
}

/// <summary>The kernels of one ISA struct and one activation type, compiled by the JIT as straight-line code for both.</summary>
internal sealed class KernelSet<TOps, TVec, TAct> : KernelSet
    where TOps : struct, ISimd<TVec>
    where TVec : struct
    where TAct : struct, IActivationKind
{
    public KernelSet(KernelIsa isa) => Isa = isa;

    public override KernelIsa Isa { [MethodImpl(MethodImplOptions.AggressiveOptimization)] get; }

    public override Activation Activation
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        get => TAct.Kind;
    }

    public override int MicroColumns
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        get => GemmCore<TOps, TVec>.NR;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Gemv(ReadOnlySpan<float> a, int m, int n, ReadOnlySpan<float> x, Span<float> y) =>
        VectorKernels<TOps, TVec>.Gemv(a, m, n, x, y);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void GemvTransposed(ReadOnlySpan<float> a, int m, int n, ReadOnlySpan<float> x, Span<float> y) =>
        VectorKernels<TOps, TVec>.TransposedProduct<IdentityEpilogue>(a, m, n, x, default, default, y);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Axpy(float alpha, ReadOnlySpan<float> x, Span<float> y) => ElementWise<TOps, TVec>.Axpy(alpha, x, y);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Scale(float alpha, Span<float> v) => ElementWise<TOps, TVec>.Scale(alpha, v);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Add(ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> d) => ElementWise<TOps, TVec>.Add(x, y, d);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void ColumnSums(ReadOnlySpan<float> a, int rows, int cols, Span<float> y, bool accumulate) =>
        VectorKernels<TOps, TVec>.ColumnSums(a, rows, cols, y, accumulate);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override int FirstNonFinite(ReadOnlySpan<float> x) => ElementWise<TOps, TVec>.FirstNonFinite(x);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override double SumOfSquares(ReadOnlySpan<float> x) => ElementWise<TOps, TVec>.SumOfSquares(x);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void PackB(bool transposeB, int k, int n, ReadOnlySpan<float> b, int ldb, Span<float> packed) =>
        GemmCore<TOps, TVec>.PackB(transposeB, k, n, b, ldb, packed);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Multiply(bool transposeA, int m, int n, int k, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> packedB, float beta, Span<float> c, int ldc, Span<float> packA) =>
        GemmCore<TOps, TVec>.Multiply(transposeA, m, n, k, a, lda, packedB, beta, c, ldc, packA);

    public override int ColumnBlockWidth
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        get => VectorKernels<TOps, TVec>.BlockWidth;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void MultiplyUnpackedB(bool transposeA, int m, int n, int k, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc, Span<float> packA) =>
        GemmCore<TOps, TVec>.MultiplyUnpackedB(transposeA, m, n, k, a, lda, b, ldb, beta, c, ldc, packA);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void PackColumnBlocks(ReadOnlySpan<float> a, int m, int n, Span<float> packed) =>
        VectorKernels<TOps, TVec>.PackColumnBlocks(a, m, n, packed);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void PackedProduct(ReadOnlySpan<float> packed, int m, int n, ReadOnlySpan<float> x, ReadOnlySpan<float> addend, Span<float> y, ReadOrder order) =>
        VectorKernels<TOps, TVec>.PackedTransposedProduct<IdentityEpilogue>(packed, m, n, x, addend, default, y, order);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void PackTransposedColumnBlocks(ReadOnlySpan<float> a, int n, int m, Span<float> packed) =>
        VectorKernels<TOps, TVec>.PackTransposedColumnBlocks(a, n, m, packed);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void StepForward(ReadOnlySpan<float> packedWhhT, int n, ReadOnlySpan<float> hPrevious, Span<float> h, ReadOrder order) =>
        VectorKernels<TOps, TVec>.PackedTransposedProduct<ActivationEpilogue<TAct>>(packedWhhT, n, n, hPrevious, h, default, h, order);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void StepForwardFrom(ReadOnlySpan<float> packedWhhT, int n, ReadOnlySpan<float> hPrevious, ReadOnlySpan<float> u, Span<float> h, ReadOrder order)
    {
        Internals.Bounds.Require(u.Length >= n); // the product treats an empty addend as none: uₜ must be there
        VectorKernels<TOps, TVec>.PackedTransposedProduct<ActivationEpilogue<TAct>>(packedWhhT, n, n, hPrevious, u, default, h, order);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void StepBackward(ReadOnlySpan<float> packedWhh, int n, ReadOnlySpan<float> deltaNext, ReadOnlySpan<float> h, Span<float> delta, ReadOrder order) =>
        VectorKernels<TOps, TVec>.PackedTransposedProduct<DerivativeEpilogue<TAct>>(packedWhh, n, n, deltaNext, delta, h, delta, order);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void RnnStep(ReadOnlySpan<float> whhTransposed, ReadOnlySpan<float> hPrevious, ReadOnlySpan<float> u, Span<float> h) =>
        VectorKernels<TOps, TVec>.TransposedProduct<ActivationEpilogue<TAct>>(whhTransposed, h.Length, h.Length, hPrevious, u, default, h);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void RnnStepBackward(ReadOnlySpan<float> whh, ReadOnlySpan<float> deltaNext, ReadOnlySpan<float> g, ReadOnlySpan<float> h, Span<float> delta) =>
        VectorKernels<TOps, TVec>.TransposedProduct<DerivativeEpilogue<TAct>>(whh, delta.Length, delta.Length, deltaNext, g, h, delta);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Activate(ReadOnlySpan<float> u, Span<float> h) => ElementWise<TOps, TVec>.Map<ActivationEpilogue<TAct>>(u, default, h);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void ActivateSum(ReadOnlySpan<float> u, ReadOnlySpan<float> addend, Span<float> h) => ElementWise<TOps, TVec>.Map<BiasedActivationEpilogue<TAct>>(u, addend, h);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void ActivationBackward(ReadOnlySpan<float> g, ReadOnlySpan<float> h, Span<float> delta) =>
        ElementWise<TOps, TVec>.Map<DerivativeEpilogue<TAct>>(g, h, delta);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override float SoftmaxCrossEntropy(ReadOnlySpan<float> logits, int target, Span<float> error, bool writeError) =>
        VectorKernels<TOps, TVec>.SoftmaxCrossEntropy(logits, target, error, writeError);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Softmax(ReadOnlySpan<float> logits, Span<float> y) => VectorKernels<TOps, TVec>.Softmax(logits, y);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override UpdateExtent Screen(ReadOnlySpan<float> theta, ReadOnlySpan<float> gradient, ReadOnlySpan<float> state0, ReadOnlySpan<float> state1, int stateBlocks) =>
        Updates<TOps, TVec>.Screen(theta, gradient, state0, state1, stateBlocks);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override bool Update<TRule>(TRule rule, Span<float> theta, ReadOnlySpan<float> gradient, Span<float> state0, Span<float> state1, bool commit) =>
        Updates<TOps, TVec>.Run(rule, theta, gradient, state0, state1, commit);
}
