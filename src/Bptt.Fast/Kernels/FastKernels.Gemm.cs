using Bptt.Fast.Internals;

namespace Bptt.Fast.Kernels;

public static partial class FastKernels
{
    [ThreadStatic]
    private static AlignedBuffer? t_packA;

    [ThreadStatic]
    private static AlignedBuffer? t_packB;

    /// <summary>
    /// C = op(A)·op(B) + βC, C m×n (row stride ldc), op(A) m×k, op(B) k×n, all row-major. op(A) is A (m×k, stride lda)
    /// or, when <paramref name="transposeA"/>, Aᵀ for A k×m; likewise op(B). Packed panels, a register-blocked FMA
    /// micro-kernel and L1/L2 blocking (BLIS structure). When β = 0, C is only written, never read.
    /// The packing buffers are per thread, allocated on first use and grown at most to MC×KC + KC×NC floats (about 4 MiB);
    /// after that a call allocates nothing.
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
    public static void Gemm(bool transposeA, bool transposeB, int m, int n, int k, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc) =>
        Gemm(KernelInfo.Isa, transposeA, transposeB, m, n, k, a, lda, b, ldb, beta, c, ldc);

    internal static void Gemm(KernelIsa isa, bool transposeA, bool transposeB, int m, int n, int k, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        CheckGemm(transposeA, transposeB, m, n, k, a, lda, b, ldb, beta, c, ldc);
        if (m == 0 || n == 0)
        {
            return;
        }

        // Per-thread packing buffers, bounded: A needs MC×KC floats and B one KC×NC block at most (4 MiB), whatever m, n, k.
        int packBLength = (int)Kernels.Gemm.PackBBlockLength(isa, n);
        AlignedBuffer packA = t_packA ??= new AlignedBuffer(Kernels.Gemm.PackALength);
        AlignedBuffer packB = t_packB is { } existing && existing.Length >= packBLength ? existing : (t_packB = new AlignedBuffer(packBLength));
        Kernels.Gemm.Run(isa, transposeA, transposeB, m, n, k, a, lda, b, ldb, beta, c, ldc, packA.Span, packB.Span);
    }

    internal static void CheckGemm(bool transposeA, bool transposeB, int m, int n, int k, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, ReadOnlySpan<float> c, int ldc)
    {
        if (m < 0 || n < 0 || k < 0)
        {
            throw new ArgumentOutOfRangeException(m < 0 ? nameof(m) : n < 0 ? nameof(n) : nameof(k), $"Expected m, n, k >= 0, actual {m}, {n}, {k}.");
        }

        if (!float.IsFinite(beta))
        {
            throw new ArgumentOutOfRangeException(nameof(beta), beta, "Expected a finite β.");
        }

        CheckOperand(transposeA ? k : m, transposeA ? m : k, a, lda, nameof(a), nameof(lda));
        CheckOperand(transposeB ? n : k, transposeB ? k : n, b, ldb, nameof(b), nameof(ldb));
        CheckOperand(m, n, c, ldc, nameof(c), nameof(ldc));
        Aliasing.Disjoint(c, nameof(c), a, nameof(a));
        Aliasing.Disjoint(c, nameof(c), b, nameof(b));
    }

    /// <summary>A stored rows×cols with row stride ld needs ld ≥ cols and (rows − 1)·ld + cols floats.</summary>
    private static void CheckOperand(int rows, int cols, ReadOnlySpan<float> x, int ld, string name, string ldName)
    {
        if (ld < Math.Max(cols, 1))
        {
            throw new ArgumentOutOfRangeException(ldName, ld, $"Expected a row stride >= {Math.Max(cols, 1)} (the stored row length), actual {ld}.");
        }

        long needed = rows == 0 || cols == 0 ? 0 : ((long)(rows - 1) * ld) + cols;
        if (x.Length < needed)
        {
            throw new ArgumentException($"Length too small: expected at least {needed} ({rows}×{cols} with row stride {ld}), actual {x.Length}.", name);
        }
    }
}
