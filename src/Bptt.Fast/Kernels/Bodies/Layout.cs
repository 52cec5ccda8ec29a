using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
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

    /// <summary>
    /// y[offsets[q] + i] += A[i, columns[q]] for every i &lt; rows and every q: the token gather of (1) for a whole call, W_xh
    /// (A, rows×cols row-major) read row by row, so that each of its cache lines is read once per call rather than once per
    /// token. An element of y that several q reach (overlapping offsets; the engine never lists a row twice) sums them in ascending q.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AddColumns(ReadOnlySpan<float> a, int rows, int cols, ReadOnlySpan<int> columns, ReadOnlySpan<int> offsets, Span<float> y)
    {
        RequireList(a.Length, rows, cols, columns, offsets, y.Length);
        ref float y0 = ref MemoryMarshal.GetReference(y);
        ref int c0 = ref MemoryMarshal.GetReference(columns);
        ref int o0 = ref MemoryMarshal.GetReference(offsets);
        for (int i = 0; i < rows; i++)
        {
            // Unchecked: i·cols + columns[q] < rows·cols ≤ a.Length and offsets[q] + i < y.Length (RequireList).
            ref float row = ref Unsafe.Add(ref MemoryMarshal.GetReference(a), (nint)i * cols);
            ref float yi = ref Unsafe.Add(ref y0, i);
            for (int q = 0; q < columns.Length; q++)
            {
                Unsafe.Add(ref yi, Unsafe.Add(ref o0, q)) += Unsafe.Add(ref row, Unsafe.Add(ref c0, q));
            }
        }
    }

    /// <summary>
    /// A[i, columns[q]] += x[offsets[q] + i] for every i &lt; rows and every q: each δₜ scattered into its token's column of
    /// ∂L/∂W_xh (the token case of (14)) for a whole call, A read and written row by row. An element that several q hit
    /// sums them in ascending q.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void AddToColumns(Span<float> a, int rows, int cols, ReadOnlySpan<int> columns, ReadOnlySpan<int> offsets, ReadOnlySpan<float> x)
    {
        RequireList(a.Length, rows, cols, columns, offsets, x.Length);
        ref float x0 = ref MemoryMarshal.GetReference(x);
        ref int c0 = ref MemoryMarshal.GetReference(columns);
        ref int o0 = ref MemoryMarshal.GetReference(offsets);
        for (int i = 0; i < rows; i++)
        {
            // Unchecked: i·cols + columns[q] < rows·cols ≤ a.Length and offsets[q] + i < x.Length (RequireList).
            ref float row = ref Unsafe.Add(ref MemoryMarshal.GetReference(a), (nint)i * cols);
            ref float xi = ref Unsafe.Add(ref x0, i);
            for (int q = 0; q < columns.Length; q++)
            {
                Unsafe.Add(ref row, Unsafe.Add(ref c0, q)) += Unsafe.Add(ref xi, Unsafe.Add(ref o0, q));
            }
        }
    }

    /// <summary>
    /// The precondition of <see cref="AddColumns"/> and <see cref="AddToColumns"/>, in long: A holds rows×cols, the lists
    /// have one length, every column is in [0, cols) and every offset leaves room for rows elements of a vector of
    /// <paramref name="vectorLength"/>.
    /// </summary>
    private static void RequireList(int matrixLength, int rows, int cols, ReadOnlySpan<int> columns, ReadOnlySpan<int> offsets, int vectorLength)
    {
        Internals.Bounds.Require(rows >= 0 && cols >= 0 && matrixLength >= (long)rows * cols && columns.Length == offsets.Length);
        for (int q = 0; q < columns.Length; q++)
        {
            Internals.Bounds.Require((uint)columns[q] < (uint)cols && offsets[q] >= 0 && (long)offsets[q] + rows <= vectorLength);
        }
    }
}
