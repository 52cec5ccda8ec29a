using System.Runtime.Intrinsics;
using Bptt.Fast.Internals;
using Bptt.Fast.Kernels.Isa;

namespace Bptt.Fast.Kernels;

/// <summary>
/// The blocking of the packed GEMM (<see cref="GemmCore{TOps, TVec}"/>), shared by every ISA, and its driver. Every
/// buffer size derives from the constants here, in 64-bit arithmetic: MR×NR register tiles, MC×KC panels of op(A) (L2),
/// KC×NC blocks of op(B) (L1 per panel, L3 per block), as in BLIS.
/// </summary>
internal static class Gemm
{
    /// <summary>MR, rows of the register tile.</summary>
    public const int MicroRows = 6;

    /// <summary>KC, depth of one packed block: an MR×KC panel of A and a KC×NR panel of B sit in L1.</summary>
    public const int KC = 256;

    /// <summary>MC, rows of op(A) packed at a time (a multiple of MR), sized for L2: 144×256 floats = 144 KiB.</summary>
    public const int MC = 144;

    /// <summary>NC, columns of op(B) packed at a time by <see cref="Run"/> (a multiple of every NR).</summary>
    public const int NC = 4096;

    /// <summary>Floats of the A packing buffer: MC×KC.</summary>
    public const int PackALength = MC * KC;

    /// <summary>Columns of the register tile on <paramref name="isa"/>: two vectors.</summary>
    public static int MicroColumns(KernelIsa isa) => 2 * KernelInfo.WidthOf(isa);

    /// <summary>Floats that packing the whole op(B) of k×n needs on <paramref name="isa"/> (for a B packed once and reused).</summary>
    public static long PackedBLength(KernelIsa isa, int k, int n) => Sizes.Product(k, Sizes.RoundUp(n, MicroColumns(isa)));

    /// <summary>Floats of the B block buffer that <see cref="Run"/> needs for any GEMM whose op(B) has at most <paramref name="maxColumns"/> columns.</summary>
    public static long PackBBlockLength(KernelIsa isa, int maxColumns) => Sizes.Product(KC, Math.Min(NC, Sizes.RoundUp(Math.Max(maxColumns, 1), MicroColumns(isa))));

    /// <summary>Packs op(B) on <paramref name="isa"/>; see <see cref="GemmCore{TOps, TVec}.PackB"/>.</summary>
    public static void PackB(KernelIsa isa, bool transposeB, int k, int n, ReadOnlySpan<float> b, int ldb, Span<float> packed)
    {
        switch (isa)
        {
            case KernelIsa.Avx2: GemmCore<Avx2Simd, Vector256<float>>.PackB(transposeB, k, n, b, ldb, packed); break;
            case KernelIsa.AdvSimd: GemmCore<AdvSimdSimd, Vector128<float>>.PackB(transposeB, k, n, b, ldb, packed); break;
            case KernelIsa.Vector: GemmCore<VectorSimd, System.Numerics.Vector<float>>.PackB(transposeB, k, n, b, ldb, packed); break;
            default: GemmCore<ScalarSimd, float>.PackB(transposeB, k, n, b, ldb, packed); break;
        }
    }

    /// <summary>C = op(A)·op(B) + βC with op(B) packed; see <see cref="GemmCore{TOps, TVec}.Multiply"/>.</summary>
    public static void Multiply(KernelIsa isa, bool transposeA, int m, int n, int k, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> packedB, float beta, Span<float> c, int ldc, Span<float> packA)
    {
        switch (isa)
        {
            case KernelIsa.Avx2: GemmCore<Avx2Simd, Vector256<float>>.Multiply(transposeA, m, n, k, a, lda, packedB, beta, c, ldc, packA); break;
            case KernelIsa.AdvSimd: GemmCore<AdvSimdSimd, Vector128<float>>.Multiply(transposeA, m, n, k, a, lda, packedB, beta, c, ldc, packA); break;
            case KernelIsa.Vector: GemmCore<VectorSimd, System.Numerics.Vector<float>>.Multiply(transposeA, m, n, k, a, lda, packedB, beta, c, ldc, packA); break;
            default: GemmCore<ScalarSimd, float>.Multiply(transposeA, m, n, k, a, lda, packedB, beta, c, ldc, packA); break;
        }
    }

    /// <summary>
    /// The whole GEMM C = op(A)·op(B) + βC over caller-owned buffers: for each NC-column block and each KC-deep block,
    /// op(B)'s block is packed into <paramref name="packB"/> (at least <see cref="PackBBlockLength"/>(n) floats) and
    /// multiplied, β applying to the first depth block only. The buffer therefore never depends on k, however many rows
    /// a weight-gradient GEMM sums over.
    /// </summary>
    public static void Run(KernelIsa isa, bool transposeA, bool transposeB, int m, int n, int k, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc, Span<float> packA, Span<float> packB)
    {
        Bounds.Require(Bounds.Holds(a.Length, transposeA ? k : m, transposeA ? m : k, lda));
        Bounds.Require(Bounds.Holds(b.Length, transposeB ? n : k, transposeB ? k : n, ldb));
        Bounds.Require(Bounds.Holds(c.Length, m, n, ldc));
        Bounds.Require(packB.Length >= PackBBlockLength(isa, n));
        if (m == 0 || n == 0)
        {
            return;
        }

        if (k == 0)
        {
            Multiply(isa, transposeA, m, n, 0, a, lda, default, beta, c, ldc, packA);
            return;
        }

        for (int j0 = 0; j0 < n; j0 += NC)
        {
            int nc = Math.Min(NC, n - j0);
            for (int p0 = 0; p0 < k; p0 += KC)
            {
                int kc = Math.Min(KC, k - p0);
                ReadOnlySpan<float> bBlock = b.Slice(transposeB ? checked((j0 * ldb) + p0) : checked((p0 * ldb) + j0));
                PackB(isa, transposeB, kc, nc, bBlock, ldb, packB);
                ReadOnlySpan<float> aBlock = a.Slice(transposeA ? checked(p0 * lda) : p0);
                Multiply(isa, transposeA, m, nc, kc, aBlock, lda, packB, p0 == 0 ? beta : 1f, c.Slice(j0), ldc, packA);
            }
        }
    }
}
