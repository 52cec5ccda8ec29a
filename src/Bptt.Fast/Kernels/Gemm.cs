using System.Runtime.Intrinsics;
using Bptt.Fast.Kernels.Isa;

namespace Bptt.Fast.Kernels;

/// <summary>Constants and buffers of the packed GEMM (<see cref="GemmCore{TOps, TVec}"/>), shared by every ISA.</summary>
internal static class Gemm
{
    /// <summary>Rows of the register tile.</summary>
    public const int MicroRows = 6;

    /// <summary>Floats of the A packing buffer: MC×KC.</summary>
    public const int PackALength = 144 * 256;

    /// <summary>Columns of the register tile on <paramref name="isa"/>: two vectors.</summary>
    public static int MicroColumns(KernelIsa isa) => 2 * KernelInfo.WidthOf(isa);

    /// <summary>Floats that packing op(B) of k×n needs on <paramref name="isa"/>.</summary>
    public static int PackedBLength(KernelIsa isa, int k, int n) => isa switch
    {
        KernelIsa.Avx2 => GemmCore<Avx2Simd, Vector256<float>>.PackedBLength(k, n),
        KernelIsa.AdvSimd => GemmCore<AdvSimdSimd, Vector128<float>>.PackedBLength(k, n),
        KernelIsa.Vector => GemmCore<VectorSimd, System.Numerics.Vector<float>>.PackedBLength(k, n),
        _ => GemmCore<ScalarSimd, float>.PackedBLength(k, n),
    };

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

    /// <summary>Packs op(B) into <paramref name="packB"/> and multiplies: the whole GEMM over caller-owned buffers.</summary>
    public static void Run(KernelIsa isa, bool transposeA, bool transposeB, int m, int n, int k, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc, Span<float> packA, Span<float> packB)
    {
        PackB(isa, transposeB, k, n, b, ldb, packB);
        Multiply(isa, transposeA, m, n, k, a, lda, packB, beta, c, ldc, packA);
    }
}
