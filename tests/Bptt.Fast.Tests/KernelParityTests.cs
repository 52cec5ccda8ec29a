using Bptt.Fast.Internals;
using Bptt.Fast.Kernels;
using Bptt.Fast.Kernels.Bodies;
using Bptt.Fast.Reference;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>
/// Every fast kernel against its reference twin on every ISA this machine supports: all lengths 0..70 and the sizes
/// around the vector widths, slices at offsets 1..7, and guard values around every destination.
/// </summary>
public sealed class KernelParityTests
{
    private static int OffsetFor(int length) => 1 + (length % 7);

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void AddIsTheCorrectlyRoundedSumOutOfPlaceAndInPlace(KernelIsa isa)
    {
        // d = x + y is one rounding of the exact sum, so every element must equal the float sum bit for bit, whether d is a
        // third span or x itself (the serving steps write u = b_h + column `token` of W_xh this way).
        var random = new SplitMix64(5);
        KernelSet k = KernelSets.For(isa, Activation.Tanh);
        foreach (int n in KernelCases.Lengths)
        {
            var x = new Guarded(n, OffsetFor(n), ref random);
            var y = new Guarded(n, OffsetFor(n + 1), ref random);
            var d = new Guarded(n, OffsetFor(n + 2), ref random);
            float[] expected = new float[n];
            for (int j = 0; j < n; j++)
            {
                expected[j] = x.Span[j] + y.Span[j];
            }

            k.Add(x.Span, y.Span, d.Span);
            Assert.Equal(expected, d.Span.ToArray());
            d.AssertGuardsIntact($"{isa} Add n={n}");
            k.Add(x.Span, y.Span, x.Span);
            Assert.Equal(expected, x.Span.ToArray());
            x.AssertGuardsIntact($"{isa} Add in place n={n}");
        }
    }

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void Axpy(KernelIsa isa)
    {
        var random = new SplitMix64(1);
        foreach (int n in KernelCases.Lengths)
        {
            var x = new Guarded(n, OffsetFor(n), ref random);
            var y = new Guarded(n, OffsetFor(n + 3), ref random);
            double[] expected = y.ToDouble(), magnitude = new double[n];
            double[] xd = x.ToDouble();
            for (int k = 0; k < n; k++)
            {
                magnitude[k] = Math.Abs(expected[k]) + Math.Abs(0.75 * xd[k]);
            }

            ReferenceKernels.Axpy(0.75, xd, expected);
            CheckedKernels.Axpy(KernelSets.For(isa, Activation.Tanh), 0.75f, x.Span, y.Span);
            KernelCases.AssertClose(y.Span, expected, magnitude, 1, $"{isa} Axpy n={n}");
            y.AssertGuardsIntact($"{isa} Axpy n={n}");
        }
    }

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void GerRankOneUpdate(KernelIsa isa)
    {
        var random = new SplitMix64(8);
        foreach (int len in KernelCases.Lengths)
        {
            foreach ((int m, int n) in new[] { (len, 5), (3, len) })
            {
                var x = new Guarded(m, OffsetFor(m), ref random);
                var y = new Guarded(n, OffsetFor(n + 1), ref random);
                var a = new Guarded(m * n, OffsetFor(m + n), ref random);
                double[] expected = a.ToDouble(), magnitude = expected.Select(Math.Abs).ToArray();
                ReferenceKernels.Ger(-1.5, x.ToDouble(), y.ToDouble(), expected);
                double[] xd = x.ToDouble(), yd = y.ToDouble();
                for (int i = 0; i < m; i++)
                {
                    for (int j = 0; j < n; j++)
                    {
                        magnitude[(i * n) + j] += Math.Abs(1.5 * xd[i] * yd[j]);
                    }
                }

                CheckedKernels.Ger(KernelSets.For(isa, Activation.Tanh), -1.5f, x.Span, y.Span, a.Span);
                KernelCases.AssertClose(a.Span, expected, magnitude, 2, $"{isa} Ger {m}x{n}");
                a.AssertGuardsIntact($"{isa} Ger {m}x{n}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void GemvAndGemvTransposed(KernelIsa isa)
    {
        var random = new SplitMix64(2);
        foreach (int len in KernelCases.Lengths)
        {
            foreach ((int m, int n) in new[] { (len, 7), (3, len), (len, Math.Min(len, 257)) })
            {
                CheckGemv(isa, m, n, ref random);
            }
        }
    }

    private static void CheckGemv(KernelIsa isa, int m, int n, ref SplitMix64 random)
    {
        var a = new Guarded(m * n, OffsetFor(m + n), ref random);
        var x = new Guarded(n, OffsetFor(n + 1), ref random);
        var y = new Guarded(m, OffsetFor(m + 2), ref random);
        double[] ad = a.ToDouble(), expected = new double[m], magnitude = new double[m];
        ReferenceKernels.Gemv<double>(ad, m, n, x.ToDouble(), expected);
        ReferenceKernels.Gemv<double>(ad.Select(Math.Abs).ToArray(), m, n, x.ToDouble().Select(Math.Abs).ToArray(), magnitude);
        CheckedKernels.Gemv(KernelSets.For(isa, Activation.Tanh), a.Span, m, n, x.Span, y.Span);
        KernelCases.AssertClose(y.Span, expected, magnitude, n, $"{isa} Gemv {m}x{n}");
        y.AssertGuardsIntact($"{isa} Gemv {m}x{n}");

        var xt = new Guarded(m, OffsetFor(m + 4), ref random);
        var yt = new Guarded(n, OffsetFor(n + 5), ref random);
        double[] expectedT = new double[n], magnitudeT = new double[n];
        ReferenceKernels.GemvTransposed<double>(ad, m, n, xt.ToDouble(), expectedT);
        ReferenceKernels.GemvTransposed<double>(ad.Select(Math.Abs).ToArray(), m, n, xt.ToDouble().Select(Math.Abs).ToArray(), magnitudeT);
        CheckedKernels.GemvTransposed(KernelSets.For(isa, Activation.Tanh), a.Span, m, n, xt.Span, yt.Span);
        KernelCases.AssertClose(yt.Span, expectedT, magnitudeT, m, $"{isa} GemvTransposed {m}x{n}");
        yt.AssertGuardsIntact($"{isa} GemvTransposed {m}x{n}");
    }

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void GemmAllTransposesAndBlockEdges(KernelIsa isa)
    {
        var random = new SplitMix64(3);
        int[] dims = [0, 1, 2, 3, 5, 6, 7, 8, 9, 13, 16, 17, 24, 31, 33, 64, 70];
        for (int c = 0; c < 160; c++)
        {
            int m = dims[random.NextInt32(dims.Length)], n = dims[random.NextInt32(dims.Length)], k = dims[random.NextInt32(dims.Length)];
            CheckGemm(isa, random.NextInt32(2) == 1, random.NextInt32(2) == 1, m, n, k, random.NextInt32(3) == 0 ? 1f : 0f, ref random);
        }

        // Every length of each dimension in turn (the other two small), all four transpose combinations.
        foreach (int len in KernelCases.Lengths)
        {
            bool ta = (len & 1) == 1, tb = (len & 2) == 2;
            CheckGemm(isa, ta, tb, len, 5, 3, 0f, ref random);
            CheckGemm(isa, tb, ta, 4, len, 3, 1f, ref random);
            CheckGemm(isa, ta, !tb, 3, 7, len, 0f, ref random);
        }

        // Few rows times B as stored (the unpacked-B path: m ≤ 24, B not transposed, n a multiple of every ISA's NR), with
        // a depth past KC, and the rows just above the threshold (packed again).
        foreach (int m in new[] { 1, 4, 5, 6, 8, 9, 13, 16, 17, 20, 24, 25 })
        {
            foreach ((int n, int k) in new[] { (32, 1), (64, 17), (128, 113), (96, 300) })
            {
                CheckGemm(isa, m % 2 == 0, false, m, n, k, m % 3 == 0 ? 1f : 0f, ref random);
            }
        }

        // Past the cache blocks: k > KC = 256, m > MC = 144, and long thin shapes.
        foreach ((int m, int n, int k) in new[] { (150, 33, 300), (7, 1000, 17), (1000, 5, 3), (145, 129, 257), (64, 128, 513) })
        {
            CheckGemm(isa, false, false, m, n, k, 1f, ref random);
            CheckGemm(isa, true, true, m, n, k, 0f, ref random);
        }
    }

    private static void CheckGemm(KernelIsa isa, bool ta, bool tb, int m, int n, int k, float beta, ref SplitMix64 random)
    {
        int lda = Math.Max(1, ta ? m : k) + random.NextInt32(3), ldb = Math.Max(1, tb ? k : n) + random.NextInt32(3), ldc = Math.Max(1, n) + random.NextInt32(3);
        int aRows = ta ? k : m, bRows = tb ? n : k;
        var a = new Guarded(Math.Max(0, ((aRows - 1) * lda) + (ta ? m : k)), OffsetFor(m), ref random);
        var b = new Guarded(Math.Max(0, ((bRows - 1) * ldb) + (tb ? k : n)), OffsetFor(n), ref random);
        var c = new Guarded(Math.Max(0, ((m - 1) * ldc) + n), OffsetFor(k), ref random);
        if (aRows == 0 || (ta ? m : k) == 0)
        {
            a = new Guarded(0, 1, ref random);
        }

        if (bRows == 0 || (tb ? k : n) == 0)
        {
            b = new Guarded(0, 1, ref random);
        }

        if (m == 0 || n == 0)
        {
            c = new Guarded(0, 1, ref random);
        }

        if (beta == 0f)
        {
            c.Span.Fill(float.NaN); // β = 0 must never read C
        }

        double[] cd = c.ToDouble(), expected = (double[])cd.Clone(), magnitude = cd.Select(v => double.IsNaN(v) ? 0 : Math.Abs(v)).ToArray();
        ReferenceKernels.Gemm(ta, tb, m, n, k, a.ToDouble(), lda, b.ToDouble(), ldb, (double)beta, expected, ldc);
        ReferenceKernels.Gemm(ta, tb, m, n, k, a.ToDouble().Select(Math.Abs).ToArray(), lda, b.ToDouble().Select(Math.Abs).ToArray(), ldb, (double)beta, magnitude, ldc);
        CheckedKernels.Gemm(KernelSets.For(isa, Activation.Tanh), ta, tb, m, n, k, a.Span, lda, b.Span, ldb, beta, c.Span, ldc);
        string what = $"{isa} Gemm ta={ta} tb={tb} m={m} n={n} k={k} β={beta}";
        for (int i = 0; i < (n == 0 ? 0 : m); i++)
        {
            int row = i * ldc;
            KernelCases.AssertClose(c.Span.Slice(row, n), expected[row..(row + n)], magnitude[row..(row + n)], k, what);
            for (int j = n; j < ldc && row + j < c.Length; j++)
            {
                Assert.True(double.IsNaN(cd[row + j]) ? float.IsNaN(c.Span[row + j]) : c.Span[row + j] == (float)cd[row + j], $"{what}: padding of row {i} changed");
            }
        }

        c.AssertGuardsIntact(what);
    }

    /// <summary>The transposing pack of the fused forward step moves every float exactly where packing the transposed
    /// matrix (built here by a plain loop) puts it, for every size around the 8×8 tiles and the column blocks.</summary>
    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void TransposingPackEqualsPackingTheTranspose(KernelIsa isa)
    {
        Kernels.KernelSet k = KernelSets.For(isa, Activation.Tanh);
        var random = new SplitMix64(11);
        int[] sizes = [1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200, 257];
        foreach (int n in sizes)
        {
            foreach (int m in sizes)
            {
                float[] a = new float[n * m];
                for (int e = 0; e < a.Length; e++)
                {
                    a[e] = random.NextSingle();
                }

                float[] transposed = new float[m * n];
                for (int r = 0; r < n; r++)
                {
                    for (int c = 0; c < m; c++)
                    {
                        transposed[(c * n) + r] = a[(r * m) + c];
                    }
                }

                float[] expected = new float[m * n], actual = new float[(m * n) + 8];
                actual.AsSpan().Fill(-1f);
                k.PackColumnBlocks(transposed, m, n, expected);
                k.PackTransposedColumnBlocks(a, n, m, actual.AsSpan(0, m * n));
                Assert.True(expected.AsSpan().SequenceEqual(actual.AsSpan(0, m * n)), $"{isa}: A {n}×{m}");
                Assert.All(actual[(m * n)..], v => Assert.Equal(-1f, v));
            }
        }
    }

    /// <summary>
    /// The served token step's two kernels against the forms they replace, bit for bit: StepForwardFrom (uₜ read from its
    /// own span, h written apart) against the in-place StepForward over a copy of uₜ, in every read order; ActivateSum,
    /// f(u + addend), against Add then Activate. Nothing outside h is written, and u and the addend are left as they were.
    /// </summary>
    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void TokenStepKernelsEqualTheFormsTheyReplaceBitForBit(KernelIsa isa)
    {
        var random = new SplitMix64(21);
        foreach (Activation f in Enum.GetValues<Activation>())
        {
            KernelSet k = KernelSets.For(isa, f);
            foreach (int h in (int[])[1, 7, 16, 17, 63, 64, 65, 127, 128, 129, 200, 257])
            {
                var w = new Guarded(h * h, OffsetFor(h), ref random, (float)(2 / Math.Sqrt(h)));
                var packed = new float[h * h];
                k.PackTransposedColumnBlocks(w.Span, h, h, packed);
                var hPrev = new Guarded(h, OffsetFor(h + 1), ref random);
                var u = new Guarded(h, OffsetFor(h + 2), ref random);
                float[] uBefore = u.Span.ToArray();
                foreach (ReadOrder order in Enum.GetValues<ReadOrder>())
                {
                    float[] expected = u.Span.ToArray();
                    k.StepForward(packed, h, hPrev.Span, expected, order);
                    var hOut = new Guarded(h, OffsetFor(h + 3), ref random);
                    k.StepForwardFrom(packed, h, hPrev.Span, u.Span, hOut.Span, order);
                    AssertSameBits(expected, hOut.Span, $"{isa} {f} StepForwardFrom H={h} {order}");
                    hOut.AssertGuardsIntact($"{isa} {f} StepForwardFrom H={h} {order}");
                    AssertSameBits(uBefore, u.Span, $"{isa} {f} StepForwardFrom H={h} {order}: u changed");
                }
            }

            foreach (int n in KernelCases.Lengths)
            {
                var u = new Guarded(n, OffsetFor(n), ref random, 4f);
                var addend = new Guarded(n, OffsetFor(n + 1), ref random, 4f);
                float[] uBefore = u.Span.ToArray(), addendBefore = addend.Span.ToArray();
                float[] expected = new float[n];
                k.Add(u.Span, addend.Span, expected);
                k.Activate(expected, expected);
                var hOut = new Guarded(n, OffsetFor(n + 2), ref random);
                k.ActivateSum(u.Span, addend.Span, hOut.Span);
                AssertSameBits(expected, hOut.Span, $"{isa} {f} ActivateSum n={n}");
                hOut.AssertGuardsIntact($"{isa} {f} ActivateSum n={n}");
                AssertSameBits(uBefore, u.Span, $"{isa} {f} ActivateSum n={n}: u changed");
                AssertSameBits(addendBefore, addend.Span, $"{isa} {f} ActivateSum n={n}: addend changed");
                k.ActivateSum(u.Span, addend.Span, u.Span); // in place over u, as the batched step runs it over U
                AssertSameBits(expected, u.Span, $"{isa} {f} ActivateSum in place n={n}");
            }
        }
    }

    private static void AssertSameBits(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(BitConverter.SingleToInt32Bits(expected[i]) == BitConverter.SingleToInt32Bits(actual[i]), $"{what} [{i}]: {actual[i]:R} vs {expected[i]:R}");
        }
    }

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void FusedRecurrentStepsForwardAndBackward(KernelIsa isa)
    {
        var random = new SplitMix64(4);
        foreach (int h in KernelCases.Lengths.Where(n => n <= 257))
        {
            foreach (Activation f in Enum.GetValues<Activation>())
            {
                double scale = 1.0 / Math.Sqrt(Math.Max(h, 1));
                var w = new Guarded(h * h, OffsetFor(h), ref random, (float)(2 * scale));
                var hPrev = new Guarded(h, OffsetFor(h + 1), ref random);
                var u = new Guarded(h, OffsetFor(h + 2), ref random);
                var hOut = new Guarded(h, OffsetFor(h + 3), ref random);
                double[] wd = w.ToDouble(), expected = new double[h], pre = new double[h], magnitude = new double[h];
                ReferenceKernels.GemvTransposed<double>(wd, h, h, hPrev.ToDouble(), pre);
                ReferenceKernels.GemvTransposed<double>(wd.Select(Math.Abs).ToArray(), h, h, hPrev.ToDouble().Select(Math.Abs).ToArray(), magnitude);
                double[] ud = u.ToDouble();
                ReferenceKernels.RnnStep<double>(wd, hPrev.ToDouble(), ud, expected, f);
                for (int k = 0; k < h; k++)
                {
                    magnitude[k] += Math.Abs(ud[k]); // f is 1-Lipschitz (¼ for sigmoid), so the pre-activation bound carries over
                }

                CheckedKernels.RnnStep(KernelSets.For(isa, f), w.Span, hPrev.Span, u.Span, hOut.Span);
                KernelCases.AssertClose(hOut.Span, expected, magnitude, h, $"{isa} RnnStep {f} H={h}", absolute: 4e-7);
                hOut.AssertGuardsIntact($"{isa} RnnStep {f} H={h}");

                // In place: u and h the same span.
                CheckedKernels.RnnStep(KernelSets.For(isa, f), w.Span, hPrev.Span, u.Span, u.Span);
                KernelCases.AssertClose(u.Span, expected, magnitude, h, $"{isa} RnnStep in place {f} H={h}", absolute: 4e-7);

                var deltaNext = new Guarded(h, OffsetFor(h + 4), ref random);
                var g = new Guarded(h, OffsetFor(h + 5), ref random);
                var delta = new Guarded(h, OffsetFor(h + 6), ref random);
                double[] hd = hOut.ToDouble(), gd = g.ToDouble(), expectedD = new double[h], magD = new double[h];
                ReferenceKernels.RnnStepBackward<double>(wd, deltaNext.ToDouble(), gd, hd, expectedD, f);
                ReferenceKernels.GemvTransposed<double>(wd.Select(Math.Abs).ToArray(), h, h, deltaNext.ToDouble().Select(Math.Abs).ToArray(), magD);
                for (int k = 0; k < h; k++)
                {
                    magD[k] = (magD[k] + Math.Abs(gd[k])) * Math.Max(1, Math.Abs(ReferenceKernels.FPrime(f, hd[k])));
                }

                CheckedKernels.RnnStepBackward(KernelSets.For(isa, f), w.Span, deltaNext.Span, g.Span, hOut.Span, delta.Span);
                KernelCases.AssertClose(delta.Span, expectedD, magD, h, $"{isa} RnnStepBackward {f} H={h}");
                delta.AssertGuardsIntact($"{isa} RnnStepBackward {f} H={h}");
            }
        }
    }

    /// <summary>
    /// The packed fused steps (1)–(2) and (12) read their panels first to last or last to first (a recurrence alternates, so
    /// that each step starts on the panels still in cache): both orders give the same bits, and they and the single-call
    /// order match the reference, at sizes on both sides of the quarter split (64 rows) and of the block width, with and
    /// without a tail panel.
    /// </summary>
    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void PackedStepsGiveTheSameBitsInEitherReadOrder(KernelIsa isa)
    {
        var random = new SplitMix64(12);
        foreach (int h in new[] { 1, 7, 16, 33, 63, 64, 65, 67, 100, 128, 129, 160, 192, 255, 256, 257 })
        {
            foreach (Activation f in Enum.GetValues<Activation>())
            {
                Kernels.KernelSet k = KernelSets.For(isa, f);
                double scale = 1.0 / Math.Sqrt(h);
                var w = new Guarded(h * h, 0, ref random, (float)(2 * scale));
                var hPrev = new Guarded(h, OffsetFor(h + 1), ref random);
                var u = new Guarded(h, OffsetFor(h + 2), ref random);
                double[] wd = w.ToDouble(), ud = u.ToDouble(), expected = new double[h], magnitude = new double[h];
                ReferenceKernels.RnnStep<double>(wd, hPrev.ToDouble(), ud, expected, f);
                ReferenceKernels.GemvTransposed<double>(wd.Select(Math.Abs).ToArray(), h, h, hPrev.ToDouble().Select(Math.Abs).ToArray(), magnitude);
                for (int j = 0; j < h; j++)
                {
                    magnitude[j] += Math.Abs(ud[j]);
                }

                float[] packed = new float[h * h]; // w is the A of y = Aᵀx in both steps (W_hhᵀ forward, W_hh backward)
                k.PackColumnBlocks(w.Span, h, h, packed);
                float[] uCopy = u.Span.ToArray();
                k.StepForward(packed, h, hPrev.Span, u.Span, ReadOrder.Forward);
                var reversed = new Guarded(h, OffsetFor(h + 3), ref random);
                uCopy.CopyTo(reversed.Span);
                k.StepForward(packed, h, hPrev.Span, reversed.Span, ReadOrder.Backward);
                var once = new Guarded(h, OffsetFor(h + 7), ref random);
                uCopy.CopyTo(once.Span);
                k.StepForward(packed, h, hPrev.Span, once.Span, ReadOrder.Once);
                KernelCases.AssertClose(once.Span, expected, magnitude, h, $"{isa} StepForward once {f} H={h}", absolute: 4e-7);
                once.AssertGuardsIntact($"{isa} StepForward once {f} H={h}");
                Assert.True(u.Span.SequenceEqual(reversed.Span), $"{isa} StepForward {f} H={h}: the read order changed a bit");
                KernelCases.AssertClose(u.Span, expected, magnitude, h, $"{isa} StepForward {f} H={h}", absolute: 4e-7);
                u.AssertGuardsIntact($"{isa} StepForward {f} H={h}");
                reversed.AssertGuardsIntact($"{isa} StepForward reverse {f} H={h}");

                var deltaNext = new Guarded(h, OffsetFor(h + 4), ref random);
                var g = new Guarded(h, OffsetFor(h + 5), ref random);
                double[] hd = u.ToDouble(), gd = g.ToDouble(), expectedD = new double[h], magD = new double[h];
                ReferenceKernels.RnnStepBackward<double>(wd, deltaNext.ToDouble(), gd, hd, expectedD, f);
                ReferenceKernels.GemvTransposed<double>(wd.Select(Math.Abs).ToArray(), h, h, deltaNext.ToDouble().Select(Math.Abs).ToArray(), magD);
                for (int j = 0; j < h; j++)
                {
                    magD[j] = (magD[j] + Math.Abs(gd[j])) * Math.Max(1, Math.Abs(ReferenceKernels.FPrime(f, hd[j])));
                }

                var deltaReversed = new Guarded(h, OffsetFor(h + 6), ref random);
                var deltaOnce = new Guarded(h, OffsetFor(h + 8), ref random);
                g.Span.CopyTo(deltaReversed.Span);
                g.Span.CopyTo(deltaOnce.Span);
                k.StepBackward(packed, h, deltaNext.Span, u.Span, g.Span, ReadOrder.Forward);
                k.StepBackward(packed, h, deltaNext.Span, u.Span, deltaReversed.Span, ReadOrder.Backward);
                k.StepBackward(packed, h, deltaNext.Span, u.Span, deltaOnce.Span, ReadOrder.Once);
                KernelCases.AssertClose(deltaOnce.Span, expectedD, magD, h, $"{isa} StepBackward once {f} H={h}");
                deltaOnce.AssertGuardsIntact($"{isa} StepBackward once {f} H={h}");
                Assert.True(g.Span.SequenceEqual(deltaReversed.Span), $"{isa} StepBackward {f} H={h}: the read order changed a bit");
                KernelCases.AssertClose(g.Span, expectedD, magD, h, $"{isa} StepBackward {f} H={h}");
                g.AssertGuardsIntact($"{isa} StepBackward {f} H={h}");
                deltaReversed.AssertGuardsIntact($"{isa} StepBackward reverse {f} H={h}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void ActivationsAndTheirDerivatives(KernelIsa isa)
    {
        var random = new SplitMix64(5);
        foreach (int n in KernelCases.Lengths)
        {
            foreach (Activation f in Enum.GetValues<Activation>())
            {
                var u = new Guarded(n, OffsetFor(n), ref random, 6f);
                var h = new Guarded(n, OffsetFor(n + 1), ref random);
                double[] expected = new double[n];
                ReferenceKernels.Activate<double>(f, u.ToDouble(), expected);
                CheckedKernels.Activate(KernelSets.For(isa, f), u.Span, h.Span);
                KernelCases.AssertClose(h.Span, expected, new double[n], 0, $"{isa} Activate {f} n={n}", absolute: 4e-7);
                h.AssertGuardsIntact($"{isa} Activate {f} n={n}");

                var g = new Guarded(n, OffsetFor(n + 2), ref random);
                var d = new Guarded(n, OffsetFor(n + 3), ref random);
                double[] expectedD = new double[n], magnitude = new double[n];
                double[] gd = g.ToDouble(), hd = h.ToDouble();
                ReferenceKernels.ActivationBackward<double>(f, gd, hd, expectedD);
                for (int k = 0; k < n; k++)
                {
                    magnitude[k] = Math.Abs(gd[k]) * (1 + Math.Abs(hd[k]) + (hd[k] * hd[k])); // f′ from h cancels: 1 − h², h − h²
                }

                CheckedKernels.ActivationBackward(KernelSets.For(isa, f), g.Span, h.Span, d.Span);
                KernelCases.AssertClose(d.Span, expectedD, magnitude, 2, $"{isa} ActivationBackward {f} n={n}");
                d.AssertGuardsIntact($"{isa} ActivationBackward {f} n={n}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void SoftmaxCrossEntropy(KernelIsa isa)
    {
        var random = new SplitMix64(6);
        foreach (int n in KernelCases.Lengths.Where(n => n > 0))
        {
            var v = new Guarded(n, OffsetFor(n), ref random, 8f);
            var e = new Guarded(n, OffsetFor(n + 1), ref random);
            int target = random.NextInt32(n);
            double[] expected = new double[n];
            double loss = ReferenceKernels.SoftmaxCrossEntropy<double>(v.ToDouble(), target, expected);
            float fastLoss = CheckedKernels.SoftmaxCrossEntropy(KernelSets.For(isa, Activation.Tanh), v.Span, target, e.Span);
            Assert.True(Math.Abs(fastLoss - loss) <= 1e-6 * (Math.Abs(loss) + Math.Log(n) + 1), $"{isa} loss n={n}: {fastLoss} vs {loss}");
            KernelCases.AssertClose(e.Span, expected, Enumerable.Repeat(1.0, n).ToArray(), n, $"{isa} softmax error n={n}");
            e.AssertGuardsIntact($"{isa} SoftmaxCrossEntropy n={n}");
        }
    }

    /// <summary>
    /// The serving head's Softmax and the training loss's SoftmaxCrossEntropy must be one function: yₜ bit for bit equal to
    /// eₜ = yₜ − ŷₜ away from the target, at every length 1..70 and 127–257 on every ISA (register bodies and scalar tails),
    /// in place and out of place, with guards; and a row holding NaN or ±∞ anywhere, in a register or in the tail, is NaN
    /// throughout (before, ±∞ in a tail or in a row shorter than a register was taken as a finite maximum).
    /// </summary>
    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void SoftmaxGivesTheBitsOfTheLossKernelAndNaNForAnyNonFiniteLogit(KernelIsa isa)
    {
        var random = new SplitMix64(22);
        KernelSet k = KernelSets.For(isa, Activation.Tanh);
        foreach (int n in KernelCases.Lengths.Where(n => n > 0 && n < 1000))
        {
            for (int variant = 0; variant < 3; variant++)
            {
                var v = new Guarded(n, OffsetFor(n), ref random, 12f);
                if (variant == 1)
                {
                    v.Span[random.NextInt32(n)] = float.NaN;
                }
                else if (variant == 2)
                {
                    v.Span[random.NextInt32(n)] = random.NextInt32(2) == 0 ? float.PositiveInfinity : float.NegativeInfinity;
                }

                int target = random.NextInt32(n);
                var error = new float[n];
                k.SoftmaxCrossEntropy(v.Span, target, error, writeError: true);
                var y = new Guarded(n, OffsetFor(n + 1), ref random);
                k.Softmax(v.Span, y.Span);
                y.AssertGuardsIntact($"{isa} Softmax n={n}");
                float[] inPlace = v.Span.ToArray();
                k.Softmax(inPlace, inPlace);
                AssertSameBits(y.Span, inPlace, $"{isa} Softmax in place n={n}");
                for (int i = 0; i < n; i++)
                {
                    if (i != target)
                    {
                        Assert.True(BitConverter.SingleToInt32Bits(y.Span[i]) == BitConverter.SingleToInt32Bits(error[i]), $"{isa} n={n} variant {variant} [{i}]: {y.Span[i]:R} vs the loss kernel's {error[i]:R}");
                    }
                }

                Assert.True(variant == 0 ? y.Span.ToArray().All(float.IsFinite) : y.Span.ToArray().All(float.IsNaN), $"{isa} n={n} variant {variant}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void ColumnSumsAndFirstNonFinite(KernelIsa isa)
    {
        var random = new SplitMix64(7);
        foreach (int n in KernelCases.Lengths)
        {
            int rows = 1 + (n % 5);
            var a = new Guarded(rows * n, OffsetFor(n), ref random);
            var y = new Guarded(n, OffsetFor(n + 1), ref random);
            double[] expected = y.ToDouble(), magnitude = new double[n];
            ReferenceKernels.ColumnSums<double>(a.ToDouble(), rows, n, expected, accumulate: true);
            ReferenceKernels.ColumnSums<double>(a.ToDouble().Select(Math.Abs).ToArray(), rows, n, magnitude, accumulate: false);
            CheckedKernels.ColumnSums(KernelSets.For(isa, Activation.Tanh), a.Span, rows, n, y.Span, accumulate: true);
            KernelCases.AssertClose(y.Span, expected, magnitude.Select(m => m + 1).ToArray(), rows, $"{isa} ColumnSums n={n}");
            y.AssertGuardsIntact($"{isa} ColumnSums n={n}");

            Assert.Equal(-1, KernelSets.For(isa, Activation.Tanh).FirstNonFinite(a.Span));
            foreach (float bad in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity })
            {
                if (n > 0)
                {
                    int at = random.NextInt32(n);
                    var x = new Guarded(n, OffsetFor(n), ref random);
                    x.Span[at] = bad;
                    Assert.Equal(ReferenceKernels.FirstNonFinite<float>(x.Span), KernelSets.For(isa, Activation.Tanh).FirstNonFinite(x.Span));
                    Assert.Equal(at, KernelSets.For(isa, Activation.Tanh).FirstNonFinite(x.Span));
                }
            }
        }
    }
}
