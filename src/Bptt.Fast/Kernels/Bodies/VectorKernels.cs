using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Bptt.Fast.Internals;

using Bptt.Fast.Kernels.Functions;
using Bptt.Fast.Kernels.Isa;

namespace Bptt.Fast.Kernels.Bodies;

/// <summary>
/// The matrix-vector, fused-step and softmax kernels, written once and compiled by the JIT for each ISA struct. Callers
/// (<see cref="KernelSet"/>) have validated every argument; each entry restates its length preconditions with
/// <see cref="Bounds"/>, and nothing bounds-checks the inner loops. Spans may start at any alignment.
/// </summary>
internal static class VectorKernels<TOps, TVec>
    where TOps : struct, ISimd<TVec>
    where TVec : struct
{
    private static int W => TOps.Count;

    /// <summary>y = A x for A m×n row-major: dot-product form, four rows in flight with two accumulators each.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Gemv(ReadOnlySpan<float> a, int m, int n, ReadOnlySpan<float> x, Span<float> y)
    {
        Bounds.Require(m >= 0 && n >= 0 && a.Length >= (long)m * n && x.Length >= n && y.Length >= m);
        ref float ar = ref MemoryMarshal.GetReference(a);
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float yr = ref MemoryMarshal.GetReference(y);
        int i = 0;
        for (; i <= m - 4; i += 4)
        {
            ref float r0 = ref Unsafe.Add(ref ar, (nint)i * n);
            ref float r1 = ref Unsafe.Add(ref r0, n);
            ref float r2 = ref Unsafe.Add(ref r1, n);
            ref float r3 = ref Unsafe.Add(ref r2, n);
            TVec s0 = TOps.Zero, s1 = TOps.Zero, s2 = TOps.Zero, s3 = TOps.Zero;
            TVec t0 = TOps.Zero, t1 = TOps.Zero, t2 = TOps.Zero, t3 = TOps.Zero;
            int j = 0;
            for (; j <= n - (2 * W); j += 2 * W)
            {
                TVec x0 = TOps.Load(ref Unsafe.Add(ref xr, j));
                TVec x1 = TOps.Load(ref Unsafe.Add(ref xr, j + W));
                s0 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref r0, j)), x0, s0);
                s1 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref r1, j)), x0, s1);
                s2 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref r2, j)), x0, s2);
                s3 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref r3, j)), x0, s3);
                t0 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref r0, j + W)), x1, t0);
                t1 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref r1, j + W)), x1, t1);
                t2 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref r2, j + W)), x1, t2);
                t3 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref r3, j + W)), x1, t3);
            }

            for (; j <= n - W; j += W)
            {
                TVec x0 = TOps.Load(ref Unsafe.Add(ref xr, j));
                s0 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref r0, j)), x0, s0);
                s1 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref r1, j)), x0, s1);
                s2 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref r2, j)), x0, s2);
                s3 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref r3, j)), x0, s3);
            }

            float y0 = TOps.Sum(TOps.Add(s0, t0)), y1 = TOps.Sum(TOps.Add(s1, t1));
            float y2 = TOps.Sum(TOps.Add(s2, t2)), y3 = TOps.Sum(TOps.Add(s3, t3));
            for (; j < n; j++)
            {
                float xj = Unsafe.Add(ref xr, j);
                y0 += Unsafe.Add(ref r0, j) * xj;
                y1 += Unsafe.Add(ref r1, j) * xj;
                y2 += Unsafe.Add(ref r2, j) * xj;
                y3 += Unsafe.Add(ref r3, j) * xj;
            }

            Unsafe.Add(ref yr, i) = y0;
            Unsafe.Add(ref yr, i + 1) = y1;
            Unsafe.Add(ref yr, i + 2) = y2;
            Unsafe.Add(ref yr, i + 3) = y3;
        }

        for (; i < m; i++)
        {
            Unsafe.Add(ref yr, i) = Dot(ref Unsafe.Add(ref ar, (nint)i * n), ref xr, n);
        }
    }

    /// <summary>Σ a[j]·b[j] over n elements.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Dot(ref float a, ref float b, int n)
    {
        TVec s0 = TOps.Zero, s1 = TOps.Zero;
        int j = 0;
        for (; j <= n - (2 * W); j += 2 * W)
        {
            s0 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref a, j)), TOps.Load(ref Unsafe.Add(ref b, j)), s0);
            s1 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref a, j + W)), TOps.Load(ref Unsafe.Add(ref b, j + W)), s1);
        }

        for (; j <= n - W; j += W)
        {
            s0 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref a, j)), TOps.Load(ref Unsafe.Add(ref b, j)), s0);
        }

        float sum = TOps.Sum(TOps.Add(s0, s1));
        for (; j < n; j++)
        {
            sum += Unsafe.Add(ref a, j) * Unsafe.Add(ref b, j);
        }

        return sum;
    }

    /// <summary>
    /// y = epilogue(addend + Aᵀ x, aux) for A m×n row-major, in axpy form: a block of columns stays in registers while
    /// the rows of A stream past, each scaled by xᵢ, so no horizontal sums are needed. <paramref name="addend"/> may be
    /// empty (zeros) and may be the same memory as <paramref name="y"/>; <paramref name="aux"/> is read only by epilogues that use it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void TransposedProduct<TEpi>(ReadOnlySpan<float> a, int m, int n, ReadOnlySpan<float> x, ReadOnlySpan<float> addend, ReadOnlySpan<float> aux, Span<float> y)
        where TEpi : struct, IEpilogue
    {
        Bounds.Require(m >= 0 && n >= 0 && a.Length >= (long)m * n && x.Length >= m && y.Length >= n);
        Bounds.Require((addend.IsEmpty || addend.Length >= n) && (!TEpi.UsesAux || aux.Length >= n));
        ref float ar = ref MemoryMarshal.GetReference(a);
        int col = 0;
        for (; col <= n - BlockWidth; col += BlockWidth)
        {
            ColumnBlock<TEpi>(ref m > 0 ? ref Unsafe.Add(ref ar, col) : ref ar, n, m, x, addend, aux, y, col); // no rows: A may be empty
        }

        ColumnTail<TEpi>(ref m > 0 ? ref Unsafe.Add(ref ar, col) : ref ar, n, m, n - col, x, addend, aux, y, col);
    }

    /// <summary>Columns kept in registers by <see cref="TransposedProduct{TEpi}"/>: eight vectors.</summary>
    public static int BlockWidth => 8 * W;

    /// <summary>
    /// Packs A (m×n row-major) for <see cref="PackedTransposedProduct{TEpi}"/>: each block of <see cref="BlockWidth"/>
    /// columns becomes one contiguous m×BlockWidth panel, then the remaining columns follow as an m×(n mod BlockWidth)
    /// row-major panel. The product then streams memory strictly in order, which the hardware prefetcher follows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackColumnBlocks(ReadOnlySpan<float> a, int m, int n, Span<float> packed)
    {
        Bounds.Require(m >= 0 && n >= 0 && a.Length >= (long)m * n && packed.Length >= (long)m * n);
        int bw = BlockWidth, blocks = n / bw, tail = n - (blocks * bw);
        for (int b = 0; b < blocks; b++)
        {
            for (int i = 0; i < m; i++)
            {
                a.Slice((i * n) + (b * bw), bw).CopyTo(packed.Slice(((b * m) + i) * bw, bw));
            }
        }

        for (int i = 0; i < m; i++)
        {
            a.Slice((i * n) + (blocks * bw), tail).CopyTo(packed.Slice((blocks * m * bw) + (i * tail), tail));
        }
    }

    /// <summary>
    /// Packs Aᵀ for A n×m row-major, as <see cref="PackColumnBlocks"/> would pack the m×n matrix Aᵀ, in one pass without
    /// forming Aᵀ (8×8 tiles, so that reads and writes both stay within a few cache lines).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackTransposedColumnBlocks(ReadOnlySpan<float> a, int n, int m, Span<float> packed)
    {
        Bounds.Require(m >= 0 && n >= 0 && a.Length >= (long)m * n && packed.Length >= (long)m * n);
        ref float ar = ref MemoryMarshal.GetReference(a);
        ref float pr = ref MemoryMarshal.GetReference(packed);
        int bw = BlockWidth, blocks = n / bw, tail = n - (blocks * bw);
        const int Tile = 8; // BlockWidth = 8 vectors, a multiple of the tile
        for (int b = 0; b < blocks; b++)
        {
            // Block b holds rows b·bw .. b·bw + bw − 1 of A as the columns of an m×bw panel: 8×8 tiles moved transposed, a
            // strip of eight panel rows at a time, so that each panel line is written whole while it is in L1 (and the
            // strip of A it reads, bw rows by 32 bytes, stays there for the next strip).
            nint start = (nint)b * m * bw;
            int i = 0;
            for (; i <= m - Tile; i += Tile)
            {
                for (int j0 = 0; j0 < bw; j0 += Tile)
                {
                    TOps.Transpose8x8(ref Unsafe.Add(ref ar, ((nint)((b * bw) + j0) * m) + i), m, ref Unsafe.Add(ref pr, start + ((nint)i * bw) + j0), bw);
                }
            }

            for (; i < m; i++)
            {
                for (int j = 0; j < bw; j++)
                {
                    Unsafe.Add(ref pr, start + ((nint)i * bw) + j) = Unsafe.Add(ref ar, ((nint)((b * bw) + j) * m) + i);
                }
            }
        }

        // The tail panel: the last n mod bw rows of A as the columns of an m×tail panel (row stride tail), by 8×8 tiles
        // where eight rows and eight columns remain, one float at a time for the rest.
        nint tailStart = (nint)blocks * m * bw;
        ref float tailRows = ref Unsafe.Add(ref ar, (nint)blocks * bw * m);
        int tiledColumns = tail & ~(Tile - 1), tiledRows = m & ~(Tile - 1);
        for (int i0 = 0; i0 < tiledRows; i0 += Tile)
        {
            for (int c0 = 0; c0 < tiledColumns; c0 += Tile)
            {
                TOps.Transpose8x8(ref Unsafe.Add(ref tailRows, ((nint)c0 * m) + i0), m, ref Unsafe.Add(ref pr, tailStart + ((nint)i0 * tail) + c0), tail);
            }
        }

        for (int c = 0; c < tail; c++)
        {
            ref float row = ref Unsafe.Add(ref tailRows, (nint)c * m);
            for (int i = c < tiledColumns ? tiledRows : 0; i < m; i++)
            {
                Unsafe.Add(ref pr, tailStart + ((nint)i * tail) + c) = Unsafe.Add(ref row, i);
            }
        }
    }

    /// <summary>
    /// The same product as <see cref="TransposedProduct{TEpi}"/> over A packed by <see cref="PackColumnBlocks"/>, its panels
    /// read in <paramref name="order"/>. Under <see cref="ReadOrder.Forward"/> and <see cref="ReadOrder.Backward"/> blocks of at
    /// least <see cref="QuarterMinRows"/> rows sum their rows as four quarters (<see cref="ColumnBlockQuarters{TEpi}"/>), so
    /// the two orders give the same bits. A recurrence that alternates them from one step to the next starts each step on
    /// the panels the previous step read last, which are still in cache: in L1 when the matrix is between about one and two
    /// L1 sizes (W_hhᵀ at H = 128 is 64 KiB against a 48 KiB L1), in L2 when it is about the L2's size (H = 512, 1 MiB).
    /// x must not overlap y (each block of y is written while later blocks still read all of x); the addend and aux may be y.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackedTransposedProduct<TEpi>(ReadOnlySpan<float> packed, int m, int n, ReadOnlySpan<float> x, ReadOnlySpan<float> addend, ReadOnlySpan<float> aux, Span<float> y, ReadOrder order)
        where TEpi : struct, IEpilogue
    {
        Bounds.Require(m >= 0 && n >= 0 && packed.Length >= (long)m * n && x.Length >= m && y.Length >= n);
        Bounds.Require((addend.IsEmpty || addend.Length >= n) && (!TEpi.UsesAux || aux.Length >= n));
        ref float pr = ref MemoryMarshal.GetReference(packed);
        int bw = BlockWidth, blocks = n / bw, tail = n - (blocks * bw);
        ref float tailPanel = ref Unsafe.Add(ref pr, (nint)blocks * m * bw);
        bool reverse = order == ReadOrder.Backward, quarters = order != ReadOrder.Once && m >= QuarterMinRows;
        if (reverse)
        {
            ColumnTail<TEpi>(ref tailPanel, tail, m, tail, x, addend, aux, y, blocks * bw);
        }

        for (int k = 0; k < blocks; k++)
        {
            int b = reverse ? blocks - 1 - k : k;
            ref float panel = ref Unsafe.Add(ref pr, (nint)b * m * bw);
            if (quarters)
            {
                ColumnBlockQuarters<TEpi>(ref panel, m, x, addend, aux, y, b * bw, reverse);
            }
            else
            {
                ColumnBlock<TEpi>(ref panel, bw, m, x, addend, aux, y, b * bw);
            }
        }

        if (!reverse)
        {
            ColumnTail<TEpi>(ref tailPanel, tail, m, tail, x, addend, aux, y, blocks * bw);
        }
    }

    /// <summary>Panels of at least this many rows are summed by quarters when the order may alternate (<see cref="ColumnBlockQuarters{TEpi}"/>); smaller ones fit L1 whole.</summary>
    public const int QuarterMinRows = 64;

    /// <summary>
    /// One packed block of eight vectors of output columns (rows <see cref="BlockWidth"/> apart), its m rows summed as four
    /// quarters qₖ = rows ⌊k·m/4⌋ .. ⌊(k+1)·m/4⌋ − 1, each into its own registers from zero, then combined in one fixed
    /// order, ((q₀ + q₁) + (q₂ + q₃)) + addend, so that <paramref name="reverse"/> (quarters read 3, 2, 1, 0) changes
    /// which rows come from L1, never a bit of the result. Preconditions (<see cref="PackedTransposedProduct{TEpi}"/>'s
    /// <see cref="Bounds.Require"/>): <paramref name="panel"/> holds m rows of <see cref="BlockWidth"/> floats, x at least m,
    /// and y, a non-empty addend and a used aux at least col + <see cref="BlockWidth"/>. The partial sums live in a
    /// stack buffer of 4·8·W + 16 floats (about 2 KiB at W = 16), of which 4·8·W from the first cache-line boundary are used.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)] // never inlined (it has a stackalloc): compiled fully optimised from its first call
    [SkipLocalsInit]
    private static void ColumnBlockQuarters<TEpi>(ref float panel, int m, ReadOnlySpan<float> x, ReadOnlySpan<float> addend, ReadOnlySpan<float> aux, Span<float> y, int col, bool reverse)
        where TEpi : struct, IEpilogue
    {
        int bw = BlockWidth;
        Span<float> raw = stackalloc float[(4 * 8 * W) + 16]; // the four quarters' raw sums, and a cache line's slack to align them
        int skip;
        unsafe
        {
            skip = (int)(((64 - ((nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(raw)) & 63)) & 63) / sizeof(float));
        }

        Span<float> sums = raw.Slice(skip, 4 * 8 * W);
        for (int k = 0; k < 4; k++)
        {
            int q = reverse ? 3 - k : k;
            int r0 = (int)((long)q * m / 4), r1 = (int)((long)(q + 1) * m / 4);
            ColumnBlock<IdentityEpilogue>(ref Unsafe.Add(ref panel, (nint)r0 * bw), bw, r1 - r0, x[r0..], default, default, sums, q * bw);
        }

        ref float s = ref MemoryMarshal.GetReference(sums);
        ref float cr = ref MemoryMarshal.GetReference(addend);
        ref float hr = ref MemoryMarshal.GetReference(aux);
        ref float yr = ref MemoryMarshal.GetReference(y);
        bool hasAddend = !addend.IsEmpty;
        for (int j = 0; j < bw; j += W)
        {
            TVec low = TOps.Add(TOps.Load(ref Unsafe.Add(ref s, j)), TOps.Load(ref Unsafe.Add(ref s, bw + j)));
            TVec high = TOps.Add(TOps.Load(ref Unsafe.Add(ref s, (2 * bw) + j)), TOps.Load(ref Unsafe.Add(ref s, (3 * bw) + j)));
            TVec sum = TOps.Add(low, high);
            if (hasAddend)
            {
                sum = TOps.Add(sum, TOps.Load(ref Unsafe.Add(ref cr, col + j)));
            }

            TOps.Store(sum, ref Unsafe.Add(ref yr, col + j));
        }

        if (typeof(TEpi) != typeof(IdentityEpilogue))
        {
            EpilogueInPlace<TEpi>(ref hr, ref yr, col, bw); // a separate pass, as in ColumnBlock: inlined here it spills the accumulators
        }
    }

    /// <summary>One block of eight vectors of output columns starting at <paramref name="col"/>; rows of A are <paramref name="stride"/> apart.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ColumnBlock<TEpi>(ref float a, int stride, int m, ReadOnlySpan<float> x, ReadOnlySpan<float> addend, ReadOnlySpan<float> aux, Span<float> y, int col)
        where TEpi : struct, IEpilogue
    {
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float hr = ref MemoryMarshal.GetReference(aux);
        ref float yr = ref MemoryMarshal.GetReference(y);
        TVec c0, c1, c2, c3, c4, c5, c6, c7;
        if (!addend.IsEmpty)
        {
            ref float c = ref Unsafe.Add(ref MemoryMarshal.GetReference(addend), col);
            c0 = TOps.Load(ref c);
            c1 = TOps.Load(ref Unsafe.Add(ref c, W));
            c2 = TOps.Load(ref Unsafe.Add(ref c, 2 * W));
            c3 = TOps.Load(ref Unsafe.Add(ref c, 3 * W));
            c4 = TOps.Load(ref Unsafe.Add(ref c, 4 * W));
            c5 = TOps.Load(ref Unsafe.Add(ref c, 5 * W));
            c6 = TOps.Load(ref Unsafe.Add(ref c, 6 * W));
            c7 = TOps.Load(ref Unsafe.Add(ref c, 7 * W));
        }
        else
        {
            c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = TOps.Zero;
        }

        // The row reference advances only between rows, never past the last one: a reference beyond the end of an array
        // could be reported to the GC as one into whatever object follows.
        ref float row = ref a;
        for (int i = 0; i < m;)
        {
            TVec xi = TOps.Broadcast(Unsafe.Add(ref xr, i));
            c0 = TOps.MultiplyAdd(TOps.Load(ref row), xi, c0);
            c1 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref row, W)), xi, c1);
            c2 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref row, 2 * W)), xi, c2);
            c3 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref row, 3 * W)), xi, c3);
            c4 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref row, 4 * W)), xi, c4);
            c5 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref row, 5 * W)), xi, c5);
            c6 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref row, 6 * W)), xi, c6);
            c7 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref row, 7 * W)), xi, c7);
            if (++i == m)
            {
                break;
            }

            row = ref Unsafe.Add(ref row, stride);
        }

        // Store the raw sums, then apply the epilogue in a separate, non-inlined pass over the now L1-hot block: inlining
        // tanh or exp here makes the JIT spill accumulators inside the loop above.
        ref float yc = ref Unsafe.Add(ref yr, col);
        TOps.Store(c0, ref yc);
        TOps.Store(c1, ref Unsafe.Add(ref yc, W));
        TOps.Store(c2, ref Unsafe.Add(ref yc, 2 * W));
        TOps.Store(c3, ref Unsafe.Add(ref yc, 3 * W));
        TOps.Store(c4, ref Unsafe.Add(ref yc, 4 * W));
        TOps.Store(c5, ref Unsafe.Add(ref yc, 5 * W));
        TOps.Store(c6, ref Unsafe.Add(ref yc, 6 * W));
        TOps.Store(c7, ref Unsafe.Add(ref yc, 7 * W));
        if (typeof(TEpi) != typeof(IdentityEpilogue))
        {
            EpilogueInPlace<TEpi>(ref hr, ref yr, col, 8 * W);
        }
    }

    /// <summary>
    /// The last <paramref name="cols"/> &lt; 8 vectors of output columns, starting at <paramref name="col"/>: single vectors,
    /// then scalars. Precondition (the callers' <see cref="Bounds.Require"/> of A ≥ m·n in 64 bits): <paramref name="a"/>
    /// starts m rows of <paramref name="stride"/> floats with <paramref name="cols"/> ≤ stride, so row i's columns
    /// j &lt; cols lie at i·stride + j &lt; m·stride; the row reference advances only while another row follows, and is not
    /// offset at all when m = 0. y, a non-empty addend and a used aux hold at least col + cols.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ColumnTail<TEpi>(ref float a, int stride, int m, int cols, ReadOnlySpan<float> x, ReadOnlySpan<float> addend, ReadOnlySpan<float> aux, Span<float> y, int col)
        where TEpi : struct, IEpilogue
    {
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float cr = ref MemoryMarshal.GetReference(addend);
        ref float hr = ref MemoryMarshal.GetReference(aux);
        ref float yr = ref MemoryMarshal.GetReference(y);
        bool hasAddend = !addend.IsEmpty;
        int j = 0;

        // Four vectors at a time, even and odd rows in separate accumulators: eight independent FMA chains of m/2, so the
        // pass runs at the FMA rate instead of waiting on one chain per vector (a 64-wide head on 512-bit registers is
        // all tail: four vectors, one pass over the rows instead of four).
        for (; j <= cols - (4 * W); j += 4 * W)
        {
            TVec c0 = TOps.Zero, c1 = TOps.Zero, c2 = TOps.Zero, c3 = TOps.Zero, d0 = TOps.Zero, d1 = TOps.Zero, d2 = TOps.Zero, d3 = TOps.Zero;
            if (hasAddend)
            {
                ref float c = ref Unsafe.Add(ref cr, col + j);
                c0 = TOps.Load(ref c);
                c1 = TOps.Load(ref Unsafe.Add(ref c, W));
                c2 = TOps.Load(ref Unsafe.Add(ref c, 2 * W));
                c3 = TOps.Load(ref Unsafe.Add(ref c, 3 * W));
            }

            ref float row = ref m > 0 ? ref Unsafe.Add(ref a, j) : ref a; // no rows: A may be empty
            int i = 0;
            for (; i <= m - 2; i += 2)
            {
                TVec x0 = TOps.Broadcast(Unsafe.Add(ref xr, i)), x1 = TOps.Broadcast(Unsafe.Add(ref xr, i + 1));
                ref float next = ref Unsafe.Add(ref row, stride);
                c0 = TOps.MultiplyAdd(TOps.Load(ref row), x0, c0);
                c1 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref row, W)), x0, c1);
                c2 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref row, 2 * W)), x0, c2);
                c3 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref row, 3 * W)), x0, c3);
                d0 = TOps.MultiplyAdd(TOps.Load(ref next), x1, d0);
                d1 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref next, W)), x1, d1);
                d2 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref next, 2 * W)), x1, d2);
                d3 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref next, 3 * W)), x1, d3);
                if (i + 2 < m) // another row follows (never point past the last one, as in ColumnBlock)
                {
                    row = ref Unsafe.Add(ref row, 2 * (nint)stride);
                }
            }

            if (i < m)
            {
                TVec x0 = TOps.Broadcast(Unsafe.Add(ref xr, i));
                c0 = TOps.MultiplyAdd(TOps.Load(ref row), x0, c0);
                c1 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref row, W)), x0, c1);
                c2 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref row, 2 * W)), x0, c2);
                c3 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref row, 3 * W)), x0, c3);
            }

            StoreWithEpilogue<TEpi>(TOps.Add(c0, d0), ref hr, ref yr, col + j);
            StoreWithEpilogue<TEpi>(TOps.Add(c1, d1), ref hr, ref yr, col + j + W);
            StoreWithEpilogue<TEpi>(TOps.Add(c2, d2), ref hr, ref yr, col + j + (2 * W));
            StoreWithEpilogue<TEpi>(TOps.Add(c3, d3), ref hr, ref yr, col + j + (3 * W));
        }

        for (; j <= cols - W; j += W)
        {
            TVec c0 = hasAddend ? TOps.Load(ref Unsafe.Add(ref cr, col + j)) : TOps.Zero, c1 = TOps.Zero;
            ref float row = ref m > 0 ? ref Unsafe.Add(ref a, j) : ref a; // no rows: A may be empty
            int i = 0;
            for (; i <= m - 2; i += 2)
            {
                c0 = TOps.MultiplyAdd(TOps.Load(ref row), TOps.Broadcast(Unsafe.Add(ref xr, i)), c0);
                c1 = TOps.MultiplyAdd(TOps.Load(ref Unsafe.Add(ref row, stride)), TOps.Broadcast(Unsafe.Add(ref xr, i + 1)), c1);
                if (i + 2 < m)
                {
                    row = ref Unsafe.Add(ref row, 2 * (nint)stride);
                }
            }

            if (i < m)
            {
                c0 = TOps.MultiplyAdd(TOps.Load(ref row), TOps.Broadcast(Unsafe.Add(ref xr, i)), c0);
            }

            StoreWithEpilogue<TEpi>(TOps.Add(c0, c1), ref hr, ref yr, col + j);
        }

        for (; j < cols; j++)
        {
            float sum = hasAddend ? Unsafe.Add(ref cr, col + j) : 0f;
            for (int i = 0; i < m; i++)
            {
                sum = ScalarSimd.MultiplyAdd(Unsafe.Add(ref a, ((nint)i * stride) + j), Unsafe.Add(ref xr, i), sum);
            }

            float h = TEpi.UsesAux ? Unsafe.Add(ref hr, col + j) : 0f;
            Unsafe.Add(ref yr, col + j) = TEpi.Apply<ScalarSimd, float>(sum, h);
        }
    }

    /// <summary>
    /// Equations (4), (6), (7) for one row: yₖ = e^(vₖ−m)/Σ e^(v−m) with m = max v, returns Lₜ = ln Σ e^(v−m) − (v_target − m),
    /// and writes eₖ = yₖ − [k = target]. <paramref name="error"/> may be the same memory as <paramref name="logits"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float SoftmaxCrossEntropy(ReadOnlySpan<float> logits, int target, Span<float> error, bool writeError)
    {
        Bounds.Require(!logits.IsEmpty && (uint)target < (uint)logits.Length && (!writeError || error.Length >= logits.Length));
        ref float vr = ref MemoryMarshal.GetReference(logits);
        ref float er = ref MemoryMarshal.GetReference(error);
        int n = logits.Length;
        float max = MaxOf(ref vr, n);
        float vt = Unsafe.Add(ref vr, target);
        float sum = ExpShifted(ref vr, ref er, n, max, writeError);
        float loss = MathF.Log(sum) - (vt - max);
        if (!float.IsFinite(max))
        {
            loss = float.NaN;
        }

        if (writeError)
        {
            ElementWise<TOps, TVec>.Scale(1f / sum, MemoryMarshal.CreateSpan(ref er, n));
            Unsafe.Add(ref er, target) -= 1f;
        }

        return loss;
    }

    /// <summary>
    /// Equation (4) on its own, stable: yₖ = e^(vₖ−m) / Σ e^(v−m) with m = max v, each yₖ computed directly (never as
    /// (yₖ − 1) + 1), so even a tiny probability keeps float's relative precision down to about 1e−37 (smaller ones lie below
    /// float's normal range). <paramref name="y"/> may be the same memory as <paramref name="logits"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Softmax(ReadOnlySpan<float> logits, Span<float> y)
    {
        Bounds.Require(!logits.IsEmpty && y.Length >= logits.Length);
        ref float vr = ref MemoryMarshal.GetReference(logits);
        ref float yr = ref MemoryMarshal.GetReference(y);
        int n = logits.Length;
        float sum = ExpShifted(ref vr, ref yr, n, MaxOf(ref vr, n), store: true);
        ElementWise<TOps, TVec>.Scale(1f / sum, MemoryMarshal.CreateSpan(ref yr, n));
    }

    /// <summary>Σₖ e^(vₖ − max), storing each term into <paramref name="e"/> when <paramref name="store"/>; e may be v.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float ExpShifted(ref float v, ref float e, int n, float max, bool store)
    {
        TVec mv = TOps.Broadcast(max);
        TVec s = TOps.Zero;
        int k = 0;
        for (; k <= n - W; k += W)
        {
            TVec ek = SimdMath<TOps, TVec>.Exp(TOps.Subtract(TOps.Load(ref Unsafe.Add(ref v, k)), mv));
            s = TOps.Add(s, ek);
            if (store)
            {
                TOps.Store(ek, ref Unsafe.Add(ref e, k));
            }
        }

        float sum = TOps.Sum(s);
        for (; k < n; k++)
        {
            float ek = SimdMath<ScalarSimd, float>.Exp(Unsafe.Add(ref v, k) - max);
            sum += ek;
            if (store)
            {
                Unsafe.Add(ref e, k) = ek;
            }
        }

        return sum;
    }

    /// <summary>The largest element of n ≥ 1, or NaN if any element is NaN or ±∞ wherever it sits (a register or the
    /// scalar tail), so that a softmax row with a non-finite logit is NaN throughout on every path.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float MaxOf(ref float v, int n)
    {
        float max;
        int k = 0;
        bool nan = false;
        if (n >= W)
        {
            TVec m = TOps.Load(ref v);
            TVec anyNaN = TOps.Zero;
            for (k = W; k <= n - W; k += W)
            {
                TVec x = TOps.Load(ref Unsafe.Add(ref v, k));
                m = TOps.Max(m, x);
                anyNaN = TOps.Add(anyNaN, TOps.Multiply(x, TOps.Zero));
            }

            nan = TOps.AnyNonFinite(anyNaN) || TOps.AnyNonFinite(TOps.Multiply(TOps.Load(ref v), TOps.Zero));
            max = TOps.MaxAcross(m);
        }
        else
        {
            max = float.NegativeInfinity;
        }

        for (; k < n; k++)
        {
            float x = Unsafe.Add(ref v, k);
            nan |= !float.IsFinite(x); // as the registers above: x·0 is NaN for NaN and ±∞
            max = x > max ? x : max;
        }

        return nan ? float.NaN : max;
    }

    /// <summary>y[j] = Σᵣ A[r, j] (+ y[j] when accumulating) for A rows×cols row-major: the bias gradients (8), (15).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ColumnSums(ReadOnlySpan<float> a, int rows, int cols, Span<float> y, bool accumulate)
    {
        Bounds.Require(rows >= 0 && cols >= 0 && a.Length >= (long)rows * cols && y.Length >= cols);
        if (!accumulate)
        {
            y.Clear();
        }

        for (int r = 0; r < rows; r++)
        {
            ElementWise<TOps, TVec>.Axpy(1f, a.Slice(r * cols, cols), y);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void EpilogueInPlace<TEpi>(ref float aux, ref float y, int col, int count)
        where TEpi : struct, IEpilogue
    {
        for (int k = col; k < col + count; k += W)
        {
            StoreWithEpilogue<TEpi>(TOps.Load(ref Unsafe.Add(ref y, k)), ref aux, ref y, k);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreWithEpilogue<TEpi>(TVec acc, ref float aux, ref float y, int offset)
        where TEpi : struct, IEpilogue
    {
        TVec h = TEpi.UsesAux ? TOps.Load(ref Unsafe.Add(ref aux, offset)) : TOps.Zero;
        TOps.Store(TEpi.Apply<TOps, TVec>(acc, h), ref Unsafe.Add(ref y, offset));
    }
}
