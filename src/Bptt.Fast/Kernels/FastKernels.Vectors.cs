using System.Numerics;
using System.Runtime.Intrinsics;
using Bptt.Fast.Internals;
using Bptt.Fast.Kernels.Isa;

namespace Bptt.Fast.Kernels;

public static partial class FastKernels
{
    /// <summary>y = y + αx.</summary>
    /// <param name="alpha">α.</param>
    /// <param name="x">x.</param>
    /// <param name="y">y, the same length as x; must not overlap x.</param>
    public static void Axpy(float alpha, ReadOnlySpan<float> x, Span<float> y) => Axpy(KernelInfo.Isa, alpha, x, y);

    internal static void Axpy(KernelIsa isa, float alpha, ReadOnlySpan<float> x, Span<float> y)
    {
        Guard.Length(x.Length, y.Length, nameof(y), "x.Length");
        Aliasing.Disjoint<float, float>(y, nameof(y), x, nameof(x));
        AxpyUnchecked(isa, alpha, x, y);
    }

    /// <summary>The rank-1 update A = A + α x yᵀ, with A m×n row-major (m = x.Length, n = y.Length).</summary>
    /// <param name="alpha">α.</param>
    /// <param name="x">x, m floats.</param>
    /// <param name="y">y, n floats.</param>
    /// <param name="a">A, m·n floats; must not overlap x or y.</param>
    public static void Ger(float alpha, ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> a) => Ger(KernelInfo.Isa, alpha, x, y, a);

    internal static void Ger(KernelIsa isa, float alpha, ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> a)
    {
        int m = x.Length, n = y.Length;
        Guard.Length((long)m * n, a.Length, nameof(a), $"x.Length × y.Length = {m}×{n}");
        Aliasing.Disjoint<float, float>(a, nameof(a), x, nameof(x));
        Aliasing.Disjoint<float, float>(a, nameof(a), y, nameof(y));
        for (int i = 0; i < m; i++)
        {
            AxpyUnchecked(isa, alpha * x[i], y, a.Slice(i * n, n));
        }
    }

    /// <summary>y[j] = Σᵣ A[r, j] for A rows×cols row-major (added to y when <paramref name="accumulate"/>): the bias gradients (8) and (15).</summary>
    /// <param name="a">A, rows·cols floats.</param>
    /// <param name="rows">Rows of A.</param>
    /// <param name="cols">Columns of A.</param>
    /// <param name="y">y, cols floats; must not overlap A.</param>
    /// <param name="accumulate">Add to y instead of overwriting it.</param>
    public static void ColumnSums(ReadOnlySpan<float> a, int rows, int cols, Span<float> y, bool accumulate) => ColumnSums(KernelInfo.Isa, a, rows, cols, y, accumulate);

    internal static void ColumnSums(KernelIsa isa, ReadOnlySpan<float> a, int rows, int cols, Span<float> y, bool accumulate)
    {
        CheckMatrix(a, rows, cols, nameof(a));
        Guard.Length(cols, y.Length, nameof(y), "cols");
        Aliasing.Disjoint<float, float>(y, nameof(y), a, nameof(a));
        switch (isa)
        {
            case KernelIsa.Avx2: SimdKernels<Avx2Simd, Vector256<float>>.ColumnSums(a, rows, cols, y, accumulate); break;
            case KernelIsa.AdvSimd: SimdKernels<AdvSimdSimd, Vector128<float>>.ColumnSums(a, rows, cols, y, accumulate); break;
            case KernelIsa.Vector: SimdKernels<VectorSimd, Vector<float>>.ColumnSums(a, rows, cols, y, accumulate); break;
            default: SimdKernels<ScalarSimd, float>.ColumnSums(a, rows, cols, y, accumulate); break;
        }
    }

    /// <summary>The index of the first NaN or ±∞ in <paramref name="x"/>, or −1 when all are finite.</summary>
    /// <param name="x">The values.</param>
    /// <returns>An index, or −1.</returns>
    public static int FirstNonFinite(ReadOnlySpan<float> x) => FirstNonFinite(KernelInfo.Isa, x);

    internal static int FirstNonFinite(KernelIsa isa, ReadOnlySpan<float> x) => isa switch
    {
        KernelIsa.Avx2 => SimdKernels<Avx2Simd, Vector256<float>>.FirstNonFinite(x),
        KernelIsa.AdvSimd => SimdKernels<AdvSimdSimd, Vector128<float>>.FirstNonFinite(x),
        KernelIsa.Vector => SimdKernels<VectorSimd, Vector<float>>.FirstNonFinite(x),
        _ => SimdKernels<ScalarSimd, float>.FirstNonFinite(x),
    };

    internal static void AxpyUnchecked(KernelIsa isa, float alpha, ReadOnlySpan<float> x, Span<float> y)
    {
        switch (isa)
        {
            case KernelIsa.Avx2: SimdKernels<Avx2Simd, Vector256<float>>.Axpy(alpha, x, y); break;
            case KernelIsa.AdvSimd: SimdKernels<AdvSimdSimd, Vector128<float>>.Axpy(alpha, x, y); break;
            case KernelIsa.Vector: SimdKernels<VectorSimd, Vector<float>>.Axpy(alpha, x, y); break;
            default: SimdKernels<ScalarSimd, float>.Axpy(alpha, x, y); break;
        }
    }

    /// <summary>B = Aᵀ for A rows×cols row-major (B is cols×rows), blocked 8×8 for cache lines.</summary>
    internal static void Transpose(ReadOnlySpan<float> a, int rows, int cols, Span<float> b)
    {
        const int Block = 8;
        for (int i0 = 0; i0 < rows; i0 += Block)
        {
            int i1 = Math.Min(i0 + Block, rows);
            for (int j0 = 0; j0 < cols; j0 += Block)
            {
                int j1 = Math.Min(j0 + Block, cols);
                for (int i = i0; i < i1; i++)
                {
                    for (int j = j0; j < j1; j++)
                    {
                        b[(j * rows) + i] = a[(i * cols) + j];
                    }
                }
            }
        }
    }
}
