using System.Runtime.CompilerServices;
namespace Bptt.Fast.Kernels.Bodies;

/// <summary>Layout changes that are the same on every ISA.</summary>
internal static class Layout
{
    /// <summary>B = Aᵀ for A rows×cols row-major (B is cols×rows), blocked 8×8 for cache lines.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Transpose(ReadOnlySpan<float> a, int rows, int cols, Span<float> b)
    {
        Internals.Bounds.Require(rows >= 0 && cols >= 0 && a.Length >= (long)rows * cols && b.Length >= (long)rows * cols);
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

    /// <summary>y[i] += A[i, column] for A rows×cols row-major: one column of W_xh added to a row (the token gather of (1)).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AddColumn(ReadOnlySpan<float> a, int rows, int cols, int column, Span<float> y)
    {
        Internals.Bounds.Require(rows >= 0 && (uint)column < (uint)cols && a.Length >= (long)rows * cols && y.Length >= rows);
        for (int i = 0; i < rows; i++)
        {
            y[i] += a[(i * cols) + column];
        }
    }

    /// <summary>A[i, column] += x[i] for A rows×cols row-major: δₜ scattered into one column of ∂L/∂W_xh (the token case of (14)).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AddToColumn(Span<float> a, int rows, int cols, int column, ReadOnlySpan<float> x)
    {
        Internals.Bounds.Require(rows >= 0 && (uint)column < (uint)cols && a.Length >= (long)rows * cols && x.Length >= rows);
        for (int i = 0; i < rows; i++)
        {
            a[(i * cols) + column] += x[i];
        }
    }
}
