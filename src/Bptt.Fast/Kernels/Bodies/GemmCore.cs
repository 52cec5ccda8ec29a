using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Bptt.Fast.Internals;
using Bptt.Fast.Kernels.Isa;

namespace Bptt.Fast.Kernels.Bodies;

/// <summary>
/// C = op(A)·op(B) + βC in the BLIS structure (<see cref="GemmBlocking"/>). op(B) is packed into KC×NR column panels,
/// op(A) into MR×KC row panels (MC rows at a time), and the micro-kernel multiplies one pair of panels into one MR×NR
/// tile. Packing zero-pads partial panels, and the micro-kernel computes full tiles only: the macro-kernel passes it C
/// itself for a full tile and a temporary tile (after the A panels in the packing buffer) for an edge, then copies the
/// valid part. β = 0 never reads C (it may hold NaN).
/// </summary>
internal static class GemmCore<TOps, TVec>
    where TOps : struct, ISimd<TVec>
    where TVec : struct
{
    private const int MR = GemmBlocking.MR;

    /// <summary>Columns of the micro-tile: two vectors.</summary>
    public static int NR
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => 2 * TOps.Count;
    }

    /// <summary>Floats that <see cref="PackB"/> writes for op(B) of k×n, in 64 bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long PackedBLength(int k, int n) => Sizes.Product(k, Sizes.RoundUp(n, NR));

    /// <summary>
    /// Packs op(B), k×n, into [KC-block][column panel][p][NR] with zero padding. op(B) = B (k×n, row stride ldb) or,
    /// when <paramref name="transposeB"/>, Bᵀ with B n×k (row stride ldb).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void PackB(bool transposeB, int k, int n, ReadOnlySpan<float> b, int ldb, Span<float> packed)
    {
        // Every read is B[r, c] with r < (transposeB ? n : k) and c < (transposeB ? k : n), at r·ldb + c ≤ (rows − 1)·ldb + cols − 1
        // < b.Length (Holds, in long); offsets are formed in nint. Every write lies in block p0 (p0·nPad), panel j0 (j0·kc),
        // depth p < kc, column < NR: below p0·nPad + kc·nPad ≤ k·nPad = PackedBLength.
        Bounds.Require(Bounds.Holds(b.Length, transposeB ? n : k, transposeB ? k : n, ldb));
        Bounds.Require(packed.Length >= PackedBLength(k, n));
        ref float br = ref MemoryMarshal.GetReference(b);
        ref float pr = ref MemoryMarshal.GetReference(packed);
        int nr = NR, nPad = RoundUp(n, nr), kcMax = GemmBlocking.KC;
        for (int p0 = 0; p0 < k; p0 += kcMax)
        {
            int kc = Math.Min(kcMax, k - p0);
            ref float block = ref Unsafe.Add(ref pr, (nint)p0 * nPad);
            for (int j0 = 0; j0 < n; j0 += nr)
            {
                int nc = Math.Min(nr, n - j0);
                ref float panel = ref Unsafe.Add(ref block, (nint)j0 * kc);
                if (transposeB)
                {
                    PackTransposedPanel(ref Unsafe.Add(ref br, ((nint)j0 * ldb) + p0), ldb, kc, nc, ref panel);
                    continue;
                }

                ref float src = ref Unsafe.Add(ref br, ((nint)p0 * ldb) + j0);
                for (int p = 0; p < kc; p++)
                {
                    ref float row = ref Unsafe.Add(ref src, (nint)p * ldb);
                    ref float dst = ref Unsafe.Add(ref panel, (nint)p * nr);
                    int j = 0;
                    for (; j <= nc - TOps.Count; j += TOps.Count)
                    {
                        TOps.Store(TOps.Load(ref Unsafe.Add(ref row, j)), ref Unsafe.Add(ref dst, j));
                    }

                    for (; j < nc; j++)
                    {
                        Unsafe.Add(ref dst, j) = Unsafe.Add(ref row, j);
                    }

                    if (nc < nr)
                    {
                        ZeroPad(ref dst, nc, nr);
                    }
                }
            }
        }
    }

    /// <summary>
    /// One column panel of Bᵀ: panel[p·NR + j] = B[j, p] for the nc ≤ NR rows of B at <paramref name="b"/> (row stride ldb)
    /// and depths p &lt; kc, zero beyond nc. Groups of eight rows move as 8×8 transposed tiles, eight depths at a time;
    /// the depths and rows left over move one float at a time. Preconditions (<see cref="PackB"/>'s checks): rows j &lt; nc and
    /// depths p &lt; kc of B lie at b + j·ldb + p; the panel holds kc·NR floats. A tile reads rows jj..jj+7 &lt; tiled ≤ nc and
    /// depths p..p+7 &lt; kc, and writes panel rows p..p+7, columns jj..jj+7 &lt; NR.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PackTransposedPanel(ref float b, int ldb, int kc, int nc, ref float panel)
    {
        int nr = NR, tiled = nc & ~7, p = 0;
        for (; p <= kc - 8; p += 8)
        {
            for (int jj = 0; jj < tiled; jj += 8)
            {
                TOps.Transpose8x8(ref Unsafe.Add(ref b, ((nint)jj * ldb) + p), ldb, ref Unsafe.Add(ref panel, ((nint)p * nr) + jj), nr);
            }
        }

        if (tiled == nr && p == kc)
        {
            return; // a full panel, every depth tiled
        }

        for (int q = 0; q < kc; q++)
        {
            ref float dst = ref Unsafe.Add(ref panel, (nint)q * nr);
            for (int j = q < p ? tiled : 0; j < nc; j++)
            {
                Unsafe.Add(ref dst, j) = Unsafe.Add(ref b, ((nint)j * ldb) + q);
            }

            if (nc < nr)
            {
                ZeroPad(ref dst, nc, nr);
            }
        }
    }

    /// <summary>Zeroes dst[nc..nr): the padding of a partial panel row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ZeroPad(ref float dst, int nc, int nr)
    {
        int j = nc;
        for (; j <= nr - TOps.Count; j += TOps.Count)
        {
            TOps.Store(TOps.Zero, ref Unsafe.Add(ref dst, j));
        }

        for (; j < nr; j++)
        {
            Unsafe.Add(ref dst, j) = 0f;
        }
    }

    /// <summary>
    /// The macro-kernel: C (m×n, row stride ldc) = op(A)·op(B) + βC, with op(B) already packed by <see cref="PackB"/>.
    /// op(A) = A (m×k, row stride lda) or, when <paramref name="transposeA"/>, Aᵀ with A k×m.
    /// <paramref name="packA"/> holds <see cref="GemmBlocking.PackALength"/> floats. C must not overlap A, op(B) or
    /// packA: tiles of C are written while later tiles still read A (read in place for few rows) and the packed panels.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Multiply(bool transposeA, int m, int n, int k, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> packedB, float beta, Span<float> c, int ldc, Span<float> packA)
    {
        Bounds.Require(Bounds.Holds(c.Length, m, n, ldc));
        Bounds.Require(k == 0 || m == 0 || n == 0 || (Bounds.Holds(a.Length, transposeA ? k : m, transposeA ? m : k, lda)
            && packedB.Length >= PackedBLength(k, n) && packA.Length >= GemmBlocking.PackALength));
        Macro(transposeA, m, n, k, a, lda, packedB, ldb: 0, beta, c, ldc, packA);
    }

    /// <summary>
    /// The macro-kernel over op(B) = B as stored (k×n, row stride ldb), not packed: each micro-tile reads its NR columns
    /// of B straight from B's rows. For a product of few rows (m ≤ <see cref="GemmBlocking.UnpackedBMaxRows"/>) the micro-kernels read
    /// each B panel only a few times, so packing B, a pass over all of it, would cost about as much as the product. n must
    /// be a multiple of <see cref="NR"/> (no partial panel to pad).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void MultiplyUnpackedB(bool transposeA, int m, int n, int k, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc, Span<float> packA)
    {
        Bounds.Require(Bounds.Holds(c.Length, m, n, ldc) && n % NR == 0 && ldb > 0);
        Bounds.Require(k == 0 || m == 0 || n == 0 || (Bounds.Holds(a.Length, transposeA ? k : m, transposeA ? m : k, lda)
            && Bounds.Holds(b.Length, k, n, ldb) && packA.Length >= GemmBlocking.PackALength));
        Macro(transposeA, m, n, k, a, lda, b, ldb, beta, c, ldc, packA);
    }

    /// <summary>The macro-kernel over op(B) packed (<paramref name="ldb"/> = 0) or as stored (row stride ldb); the callers proved the bounds.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Macro(bool transposeA, int m, int n, int k, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc, Span<float> packA)
    {
        ReadOnlySpan<float> packedB = b;
        ref float cr = ref MemoryMarshal.GetReference(c);
        if (m == 0 || n == 0)
        {
            return; // C is empty; the callers' checks skip A and packA in this case, so nothing below may touch them
        }

        if (k == 0)
        {
            for (int i = 0; i < m; i++)
            {
                Span<float> row = c.Slice(i * ldc, n);
                if (beta == 0f)
                {
                    row.Clear();
                }
                else
                {
                    ElementWise<TOps, TVec>.Scale(beta, row);
                }
            }

            return;
        }

        ref float ar = ref MemoryMarshal.GetReference(a);
        ref float pbr = ref MemoryMarshal.GetReference(packedB);
        ref float par = ref MemoryMarshal.GetReference(packA);
        int kcMax = GemmBlocking.KC, mcMax = GemmBlocking.MC;
        ref float edge = ref Unsafe.Add(ref par, (nint)mcMax * kcMax);
        int nr = NR, nPad = RoundUp(n, nr);
        bool packed = ldb == 0;
        nint bStride = packed ? nr : ldb; // floats from one depth of a B panel to the next
        // Few rows: the micro-kernels read op(A) as stored (each panel's six rows from their own places), and only a last
        // panel of other than four or six rows is packed (zero-padded), so that no kernel reads past A.
        bool unpackedA = m <= GemmBlocking.UnpackedMaxRows(TOps.Count);
        nint aRow = unpackedA ? (transposeA ? 1 : lda) : 1, aDepth = unpackedA ? (transposeA ? lda : 1) : MR;
        bool eight = unpackedA && TOps.Count >= 16 && n % nr == 0;
        for (int p0 = 0; p0 < k; p0 += kcMax)
        {
            int kc = Math.Min(kcMax, k - p0);
            float betaBlock = p0 == 0 ? beta : 1f;
            ref float bBlock = ref Unsafe.Add(ref pbr, packed ? (nint)p0 * nPad : (nint)p0 * ldb);
            for (int i0 = 0; i0 < m; i0 += mcMax)
            {
                // With 32 registers and no partial column panel, whole eight-row panels come first (16 accumulators: a
                // 16-stream step is two panels, not 6 + 6 + 4); the rows after them take the six-row panels.
                int mc = Math.Min(mcMax, m - i0), start6 = eight ? mc / 8 * 8 : 0, rest = mc - start6;
                int lastStart = start6 + rest - (rest % MR == 0 ? MR : rest % MR);
                bool packLast = unpackedA && rest > 0 && mc - lastStart != MR && mc - lastStart != 4;
                if (!unpackedA)
                {
                    PackA(transposeA, ref ar, lda, i0, p0, mc, kc, ref par);
                }
                else if (packLast)
                {
                    PackA(transposeA, ref ar, lda, i0 + lastStart, p0, mc - lastStart, kc, ref par);
                }

                for (int j0 = 0; j0 < n; j0 += nr)
                {
                    int nc = Math.Min(nr, n - j0);
                    ref float bPanel = ref Unsafe.Add(ref bBlock, packed ? (nint)j0 * kc : j0);
                    for (int ii = 0; ii < start6; ii += 8)
                    {
                        ref float a8 = ref Unsafe.Add(ref ar, transposeA ? ((nint)p0 * lda) + i0 + ii : ((nint)(i0 + ii) * lda) + p0);
                        MicroKernel<EightRows>(kc, ref a8, aRow, aDepth, ref bPanel, bStride, ref Unsafe.Add(ref cr, ((nint)(i0 + ii) * ldc) + j0), ldc, betaBlock);
                    }

                    for (int ii = start6; ii < mc; ii += MR)
                    {
                        int mr = Math.Min(MR, mc - ii);
                        bool stored = unpackedA && !(packLast && ii == lastStart);
                        ref float aPanel = ref stored
                            ? ref Unsafe.Add(ref ar, transposeA ? ((nint)p0 * lda) + i0 + ii : ((nint)(i0 + ii) * lda) + p0)
                            : ref Unsafe.Add(ref par, unpackedA ? 0 : (nint)ii * kc);
                        nint rowStride = stored ? aRow : 1, depthStride = stored ? aDepth : MR;
                        ref float cTile = ref Unsafe.Add(ref cr, ((nint)(i0 + ii) * ldc) + j0);
                        // A short last panel (at most four rows, e.g. 16 = 6 + 6 + 4 streams) runs the four-row
                        // instance, which skips the two padding rows' FMAs.
                        if (mr == MR && nc == nr)
                        {
                            MicroKernel<SixRows>(kc, ref aPanel, rowStride, depthStride, ref bPanel, bStride, ref cTile, ldc, betaBlock);
                        }
                        else if (mr == 4 && nc == nr)
                        {
                            MicroKernel<FourRows>(kc, ref aPanel, rowStride, depthStride, ref bPanel, bStride, ref cTile, ldc, betaBlock);
                        }
                        else if (mr <= 4)
                        {
                            MicroKernel<FourRows>(kc, ref aPanel, rowStride, depthStride, ref bPanel, bStride, ref edge, nr, 0f);
                            StoreEdge(ref edge, nr, ref cTile, ldc, mr, nc, betaBlock);
                        }
                        else
                        {
                            MicroKernel<SixRows>(kc, ref aPanel, rowStride, depthStride, ref bPanel, bStride, ref edge, nr, 0f);
                            StoreEdge(ref edge, nr, ref cTile, ldc, mr, nc, betaBlock);
                        }
                    }
                }
            }
        }
    }

    /// <summary>Packs rows i0..i0+mc of op(A), depths p0..p0+kc, into MR-row panels [panel][p][MR], zero-padded.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackA(bool transposeA, ref float a, int lda, int i0, int p0, int mc, int kc, ref float packed)
    {
        for (int ii = 0; ii < mc; ii += MR)
        {
            int mr = Math.Min(MR, mc - ii);
            ref float panel = ref Unsafe.Add(ref packed, (nint)ii * kc);
            if (mr == MR && !transposeA)
            {
                // Full panel of A as stored: six row streams, interleaved.
                ref float r0 = ref Unsafe.Add(ref a, ((nint)(i0 + ii) * lda) + p0);
                ref float r1 = ref Unsafe.Add(ref r0, lda);
                ref float r2 = ref Unsafe.Add(ref r1, lda);
                ref float r3 = ref Unsafe.Add(ref r2, lda);
                ref float r4 = ref Unsafe.Add(ref r3, lda);
                ref float r5 = ref Unsafe.Add(ref r4, lda);
                for (int p = 0; p < kc; p++)
                {
                    ref float dst = ref Unsafe.Add(ref panel, (nint)p * MR);
                    dst = Unsafe.Add(ref r0, p);
                    Unsafe.Add(ref dst, 1) = Unsafe.Add(ref r1, p);
                    Unsafe.Add(ref dst, 2) = Unsafe.Add(ref r2, p);
                    Unsafe.Add(ref dst, 3) = Unsafe.Add(ref r3, p);
                    Unsafe.Add(ref dst, 4) = Unsafe.Add(ref r4, p);
                    Unsafe.Add(ref dst, 5) = Unsafe.Add(ref r5, p);
                }

                continue;
            }

            if (mr == MR)
            {
                // Full panel of Aᵀ: each depth p is six consecutive floats of one stored row.
                for (int p = 0; p < kc; p++)
                {
                    ref float src = ref Unsafe.Add(ref a, ((nint)(p0 + p) * lda) + i0 + ii);
                    ref float dst = ref Unsafe.Add(ref panel, (nint)p * MR);
                    dst = src;
                    Unsafe.Add(ref dst, 1) = Unsafe.Add(ref src, 1);
                    Unsafe.Add(ref dst, 2) = Unsafe.Add(ref src, 2);
                    Unsafe.Add(ref dst, 3) = Unsafe.Add(ref src, 3);
                    Unsafe.Add(ref dst, 4) = Unsafe.Add(ref src, 4);
                    Unsafe.Add(ref dst, 5) = Unsafe.Add(ref src, 5);
                }

                continue;
            }

            for (int p = 0; p < kc; p++)
            {
                ref float dst = ref Unsafe.Add(ref panel, (nint)p * MR);
                for (int i = 0; i < mr; i++)
                {
                    Unsafe.Add(ref dst, i) = transposeA
                        ? Unsafe.Add(ref a, ((nint)(p0 + p) * lda) + i0 + ii + i)
                        : Unsafe.Add(ref a, ((nint)(i0 + ii + i) * lda) + p0 + p);
                }

                for (int i = mr; i < MR; i++)
                {
                    Unsafe.Add(ref dst, i) = 0f;
                }
            }
        }
    }

    /// <summary>
    /// The micro-kernel: a full tile C = A panel · B panel + βC over depth kc, of <typeparamref name="TRows"/>.Count rows
    /// (6; 4 for a short last panel; 8, on 32-register ISAs, for op(A) read as stored) and NR columns: up to sixteen vector
    /// accumulators. Row r of A at depth p is
    /// a[r·aRow + p·aDepth] (aRow = 1, aDepth = MR in a packed panel; the strides of A as stored otherwise); B's depths are
    /// <paramref name="bStride"/> floats apart: NR in a packed panel, the row stride when B is read as stored. One body; the row count is a
    /// type, so each instance compiles to straight-line code without the unused rows. It has no edge case and no stack
    /// buffer, and is compiled fully optimised from its first call, so that every compilation mode (tiered with or
    /// without dynamic PGO, NativeAOT) keeps the accumulators in registers.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void MicroKernel<TRows>(int kc, ref float a, nint aRow, nint aDepth, ref float b, nint bStride, ref float c, int ldc, float beta)
        where TRows : struct, IRowCount
    {
        int w = TOps.Count;
        bool six = TRows.Count >= 6, eight = TRows.Count == 8;
        TVec c00 = TOps.Zero, c01 = TOps.Zero, c10 = TOps.Zero, c11 = TOps.Zero, c20 = TOps.Zero, c21 = TOps.Zero, c30 = TOps.Zero, c31 = TOps.Zero;
        TVec c40 = TOps.Zero, c41 = TOps.Zero, c50 = TOps.Zero, c51 = TOps.Zero, c60 = TOps.Zero, c61 = TOps.Zero, c70 = TOps.Zero, c71 = TOps.Zero;
        nint row2 = 2 * aRow, row3 = 3 * aRow;
        // Rows 4–7 from a second base, so that three offsets serve both halves; a four-row tile keeps it on row 0, so that
        // no reference ever points past the rows the tile has (a stored A may end after them).
        ref float a4 = ref six ? ref Unsafe.Add(ref a, 4 * aRow) : ref a;
        // The body runs before the first test: kc ≥ 1 because Macro returns before any tile when k = 0 and takes
        // kc = min(KC, k − p0) with p0 < k (a check here would cost a spilled register in this loop; JitRegisterTests).
        // The references advance only between depths, never past the last one, so that none of them points beyond the
        // panels even when A or B ends right after them.
        for (int p = 0; ;)
        {
            TVec b0 = TOps.Load(ref b);
            TVec b1 = TOps.Load(ref Unsafe.Add(ref b, w));
            TVec av = TOps.Broadcast(a);
            c00 = TOps.MultiplyAdd(av, b0, c00);
            c01 = TOps.MultiplyAdd(av, b1, c01);
            av = TOps.Broadcast(Unsafe.Add(ref a, aRow));
            c10 = TOps.MultiplyAdd(av, b0, c10);
            c11 = TOps.MultiplyAdd(av, b1, c11);
            av = TOps.Broadcast(Unsafe.Add(ref a, row2));
            c20 = TOps.MultiplyAdd(av, b0, c20);
            c21 = TOps.MultiplyAdd(av, b1, c21);
            av = TOps.Broadcast(Unsafe.Add(ref a, row3));
            c30 = TOps.MultiplyAdd(av, b0, c30);
            c31 = TOps.MultiplyAdd(av, b1, c31);
            if (six)
            {
                av = TOps.Broadcast(a4);
                c40 = TOps.MultiplyAdd(av, b0, c40);
                c41 = TOps.MultiplyAdd(av, b1, c41);
                av = TOps.Broadcast(Unsafe.Add(ref a4, aRow));
                c50 = TOps.MultiplyAdd(av, b0, c50);
                c51 = TOps.MultiplyAdd(av, b1, c51);
            }

            if (eight)
            {
                av = TOps.Broadcast(Unsafe.Add(ref a4, row2));
                c60 = TOps.MultiplyAdd(av, b0, c60);
                c61 = TOps.MultiplyAdd(av, b1, c61);
                av = TOps.Broadcast(Unsafe.Add(ref a4, row3));
                c70 = TOps.MultiplyAdd(av, b0, c70);
                c71 = TOps.MultiplyAdd(av, b1, c71);
            }

            if (++p == kc)
            {
                break;
            }

            a = ref Unsafe.Add(ref a, aDepth);
            a4 = ref Unsafe.Add(ref a4, aDepth);
            b = ref Unsafe.Add(ref b, bStride);
        }

        StoreRow(c00, c01, ref c, beta, w);
        StoreRow(c10, c11, ref Unsafe.Add(ref c, ldc), beta, w);
        StoreRow(c20, c21, ref Unsafe.Add(ref c, 2 * (nint)ldc), beta, w);
        StoreRow(c30, c31, ref Unsafe.Add(ref c, 3 * (nint)ldc), beta, w);
        if (six)
        {
            StoreRow(c40, c41, ref Unsafe.Add(ref c, 4 * (nint)ldc), beta, w);
            StoreRow(c50, c51, ref Unsafe.Add(ref c, 5 * (nint)ldc), beta, w);
        }

        if (eight)
        {
            StoreRow(c60, c61, ref Unsafe.Add(ref c, 6 * (nint)ldc), beta, w);
            StoreRow(c70, c71, ref Unsafe.Add(ref c, 7 * (nint)ldc), beta, w);
        }
    }

    /// <summary>Copies the valid mr×nc part of the temporary tile (row stride ld) into C, with β.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void StoreEdge(ref float t, int ld, ref float c, int ldc, int mr, int nc, float beta)
    {
        TVec bv = TOps.Broadcast(beta);
        for (int i = 0; i < mr; i++)
        {
            ref float src = ref Unsafe.Add(ref t, (nint)i * ld);
            ref float dst = ref Unsafe.Add(ref c, (nint)i * ldc);
            int j = 0;
            for (; j <= nc - TOps.Count; j += TOps.Count)
            {
                TVec v = TOps.Load(ref Unsafe.Add(ref src, j));
                TOps.Store(beta == 0f ? v : TOps.MultiplyAdd(bv, TOps.Load(ref Unsafe.Add(ref dst, j)), v), ref Unsafe.Add(ref dst, j));
            }

            for (; j < nc; j++)
            {
                float v = Unsafe.Add(ref src, j);
                Unsafe.Add(ref dst, j) = beta == 0f ? v : ScalarSimd.MultiplyAdd(beta, Unsafe.Add(ref dst, j), v);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(TVec v0, TVec v1, ref float c, float beta, int w)
    {
        if (beta != 0f)
        {
            TVec bv = TOps.Broadcast(beta);
            v0 = TOps.MultiplyAdd(bv, TOps.Load(ref c), v0);
            v1 = TOps.MultiplyAdd(bv, TOps.Load(ref Unsafe.Add(ref c, w)), v1);
        }

        TOps.Store(v0, ref c);
        TOps.Store(v1, ref Unsafe.Add(ref c, w));
    }

    private static int RoundUp(int value, int multiple) => (int)Sizes.RoundUp(value, multiple);
}

/// <summary>The row count of a micro-kernel instance, as a type.</summary>
internal interface IRowCount
{
    /// <summary>Rows of the tile.</summary>
    static abstract int Count { get; }
}

/// <summary>The full tile: MR = 6 rows.</summary>
internal readonly struct SixRows : IRowCount
{
    public static int Count => GemmBlocking.MR;
}

/// <summary>Eight rows, for products of few rows read as stored on ISAs with 32 vector registers (16 accumulators).</summary>
internal readonly struct EightRows : IRowCount
{
    public static int Count => 8;
}

/// <summary>A short last panel: 4 rows (the panel is still packed 6 wide; rows 4 and 5 are padding).</summary>
internal readonly struct FourRows : IRowCount
{
    public static int Count => 4;
}
