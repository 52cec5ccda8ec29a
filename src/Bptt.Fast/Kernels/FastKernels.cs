namespace Bptt.Fast.Kernels;

/// <summary>
/// The hand-vectorised kernels of the fast path, one public static method per operation over spans, on the instruction
/// set <see cref="KernelInfo"/> chose for the process. Each has a scalar twin with the same signature in
/// <see cref="Bptt.Fast.Reference.ReferenceKernels"/>. Every method checks its lengths (products in 64 bits), accepts any
/// length ≥ 0 and any alignment, refuses a writable span that overlaps another argument (except where "may be the same
/// span" says so), and touches nothing outside the spans it is given. Bad arguments throw
/// <see cref="ArgumentException"/> or <see cref="ArgumentOutOfRangeException"/> naming the parameter.
/// Naming follows BLAS: <c>Transposed</c> means the matrix is used as its transpose.
/// </summary>
public static class FastKernels
{
    /// <summary>y = A x, with A m×n row-major (dot-product form, four rows in flight).</summary>
    /// <param name="a">A, m·n floats.</param>
    /// <param name="m">Rows of A.</param>
    /// <param name="n">Columns of A.</param>
    /// <param name="x">x, n floats.</param>
    /// <param name="y">y, m floats; must not overlap A or x.</param>
    /// <exception cref="ArgumentException">A length mismatch (m·n computed in 64 bits) or an overlap.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A negative dimension.</exception>
    public static void Gemv(ReadOnlySpan<float> a, int m, int n, ReadOnlySpan<float> x, Span<float> y) => CheckedKernels.Gemv(KernelSets.Current(), a, m, n, x, y);

    /// <summary>y = Aᵀ x, with A m×n row-major (axpy form: rows of A scaled by xᵢ, no horizontal sums).</summary>
    /// <param name="a">A, m·n floats.</param>
    /// <param name="m">Rows of A (the length of x).</param>
    /// <param name="n">Columns of A (the length of y).</param>
    /// <param name="x">x, m floats.</param>
    /// <param name="y">y, n floats; must not overlap A or x.</param>
    /// <exception cref="ArgumentException">A length mismatch or an overlap.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A negative dimension.</exception>
    public static void GemvTransposed(ReadOnlySpan<float> a, int m, int n, ReadOnlySpan<float> x, Span<float> y) => CheckedKernels.GemvTransposed(KernelSets.Current(), a, m, n, x, y);

    /// <summary>
    /// The fused recurrent step, equations (1)–(2): h = f(u + W_hh h₋₁), given W_hhᵀ (H×H row-major) so that the product runs in
    /// axpy form, and u = W_xh xₜ + b_h (the hoisted input projection). h is written once.
    /// </summary>
    /// <param name="whhTransposed">W_hhᵀ, H·H floats.</param>
    /// <param name="hPrevious">hₜ₋₁, H floats.</param>
    /// <param name="u">W_xh xₜ + b_h, H floats; may be the same span as <paramref name="h"/> (in place).</param>
    /// <param name="h">hₜ, H floats.</param>
    /// <param name="activation">f.</param>
    /// <exception cref="ArgumentException">A length mismatch or an overlap.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An undefined activation.</exception>
    public static void RnnStep(ReadOnlySpan<float> whhTransposed, ReadOnlySpan<float> hPrevious, ReadOnlySpan<float> u, Span<float> h, Activation activation) =>
        CheckedKernels.RnnStep(KernelSets.Current(activation), whhTransposed, hPrevious, u, h);

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
    /// <exception cref="ArgumentException">A length mismatch or an overlap.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An undefined activation.</exception>
    public static void RnnStepBackward(ReadOnlySpan<float> whh, ReadOnlySpan<float> deltaNext, ReadOnlySpan<float> g, ReadOnlySpan<float> h, Span<float> delta, Activation activation) =>
        CheckedKernels.RnnStepBackward(KernelSets.Current(activation), whh, deltaNext, g, h, delta);

    /// <summary>y = y + αx.</summary>
    /// <param name="alpha">α.</param>
    /// <param name="x">x.</param>
    /// <param name="y">y, the same length as x; must not overlap x.</param>
    /// <exception cref="ArgumentException">A length mismatch or an overlap.</exception>
    public static void Axpy(float alpha, ReadOnlySpan<float> x, Span<float> y) => CheckedKernels.Axpy(KernelSets.Current(), alpha, x, y);

    /// <summary>The rank-1 update A = A + α x yᵀ, with A m×n row-major (m = x.Length, n = y.Length).</summary>
    /// <param name="alpha">α.</param>
    /// <param name="x">x, m floats.</param>
    /// <param name="y">y, n floats.</param>
    /// <param name="a">A, m·n floats; must not overlap x or y.</param>
    /// <exception cref="ArgumentException">A length mismatch (m·n in 64 bits) or an overlap.</exception>
    public static void Ger(float alpha, ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> a) => CheckedKernels.Ger(KernelSets.Current(), alpha, x, y, a);

    /// <summary>y[j] = Σᵣ A[r, j] for A rows×cols row-major (added to y when <paramref name="accumulate"/>): the bias gradients (8) and (15).</summary>
    /// <param name="a">A, rows·cols floats.</param>
    /// <param name="rows">Rows of A.</param>
    /// <param name="cols">Columns of A.</param>
    /// <param name="y">y, cols floats; must not overlap A.</param>
    /// <param name="accumulate">Add to y instead of overwriting it.</param>
    /// <exception cref="ArgumentException">A length mismatch or an overlap.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A negative dimension.</exception>
    public static void ColumnSums(ReadOnlySpan<float> a, int rows, int cols, Span<float> y, bool accumulate) => CheckedKernels.ColumnSums(KernelSets.Current(), a, rows, cols, y, accumulate);

    /// <summary>The index of the first NaN or ±∞ in <paramref name="x"/>, or −1 when all are finite.</summary>
    /// <param name="x">The values.</param>
    /// <returns>An index, or −1.</returns>
    public static int FirstNonFinite(ReadOnlySpan<float> x) => KernelSets.Current().FirstNonFinite(x);

    /// <summary>
    /// C = op(A)·op(B) + βC, C m×n (row stride ldc), op(A) m×k, op(B) k×n, all row-major. op(A) is A (m×k, stride lda)
    /// or, when <paramref name="transposeA"/>, Aᵀ for A k×m; likewise op(B). Packed panels, a register-blocked FMA
    /// micro-kernel and L1/L2 blocking (BLIS structure). When β = 0, C is only written, never read. The packing buffers
    /// (about 4 MiB at most) are rented from the shared array pool for the call and returned.
    /// </summary>
    /// <param name="transposeA">Use Aᵀ.</param>
    /// <param name="transposeB">Use Bᵀ.</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">The reduction length.</param>
    /// <param name="a">A.</param>
    /// <param name="lda">Row stride of A as stored.</param>
    /// <param name="b">B.</param>
    /// <param name="ldb">Row stride of B as stored.</param>
    /// <param name="beta">β; 0 overwrites C, 1 accumulates.</param>
    /// <param name="c">C; must not overlap A or B.</param>
    /// <param name="ldc">Row stride of C (at least n).</param>
    /// <exception cref="ArgumentException">An operand too short for its shape and stride (in 64 bits), or an overlap.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A negative dimension, a stride below the row length, or a non-finite β.</exception>
    public static void Gemm(bool transposeA, bool transposeB, int m, int n, int k, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc) =>
        CheckedKernels.Gemm(KernelSets.Current(), transposeA, transposeB, m, n, k, a, lda, b, ldb, beta, c, ldc);

    /// <summary>
    /// Equation (2) element-wise: h = f(u). The approximations (exp and tanh after Cephes, see SimdMath) have absolute
    /// error below 3e−7; NaN stays NaN, and ±1e4 maps to the correct limit.
    /// </summary>
    /// <param name="activation">f.</param>
    /// <param name="u">uₜ.</param>
    /// <param name="h">hₜ, the same length; may be the same span as u.</param>
    /// <exception cref="ArgumentException">A length mismatch or a partial overlap.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An undefined activation.</exception>
    public static void Activate(Activation activation, ReadOnlySpan<float> u, Span<float> h) => CheckedKernels.Activate(KernelSets.Current(activation), u, h);

    /// <summary>The ⊙ of equation (12) on its own: δ = g ⊙ f′(u), with f′ taken from h = f(u).</summary>
    /// <param name="activation">f.</param>
    /// <param name="g">The incoming gradient ∂L/∂hₜ.</param>
    /// <param name="h">hₜ.</param>
    /// <param name="delta">δₜ, the same length; may be the same span as g.</param>
    /// <exception cref="ArgumentException">A length mismatch or an overlap.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An undefined activation.</exception>
    public static void ActivationBackward(Activation activation, ReadOnlySpan<float> g, ReadOnlySpan<float> h, Span<float> delta) =>
        CheckedKernels.ActivationBackward(KernelSets.Current(activation), g, h, delta);

    /// <summary>
    /// Equations (4), (6), (7) fused for one row: with m = max(v), returns Lₜ = ln Σₖ e^(vₖ−m) − (v_target − m) and writes
    /// eₖ = e^(vₖ−m)/Σ e^(v−m) − [k = target]. Stable for logits of any finite size (±1e4 included); NaN logits give a NaN loss.
    /// </summary>
    /// <param name="logits">vₜ, at least one float.</param>
    /// <param name="target">The target class, in [0, logits.Length).</param>
    /// <param name="error">eₜ, the same length; may be the same span as logits.</param>
    /// <returns>Lₜ.</returns>
    /// <exception cref="ArgumentException">No logits, a length mismatch or a partial overlap.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A target outside [0, O).</exception>
    public static float SoftmaxCrossEntropy(ReadOnlySpan<float> logits, int target, Span<float> error) => CheckedKernels.SoftmaxCrossEntropy(KernelSets.Current(), logits, target, error);

    /// <summary>
    /// Equation (4) alone: yₖ = e^(vₖ − max v) / Σ e^(v − max v), stable for logits of any finite size. Each probability is
    /// computed directly, so tiny ones keep float's relative precision (down to about 1e−37).
    /// </summary>
    /// <param name="logits">vₜ, at least one float.</param>
    /// <param name="probabilities">yₜ, the same length; may be the same span as logits.</param>
    /// <exception cref="ArgumentException">No logits, a length mismatch, or a partial overlap.</exception>
    public static void Softmax(ReadOnlySpan<float> logits, Span<float> probabilities) => CheckedKernels.Softmax(KernelSets.Current(), logits, probabilities);
}
