using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Bptt.Fast.Bench;

/// <summary>
/// The machine's single-core fp32 FMA peak, measured: 12 independent FMA chains (enough to cover latency × throughput
/// on current cores), each FMA counting 2 flops per lane, best of 5 timed runs, on the widest registers the process
/// can use (AVX-512, else AVX2+FMA on x64; AdvSimd on arm64). The benchmarks report their speed as a share of it.
/// </summary>
public static class FmaPeak
{
    /// <summary>The last measured peak in GFLOP/s, or NaN before <see cref="Measure"/>.</summary>
    public static double GflopsPerSecond { get; private set; } = double.NaN;

    /// <summary>The CPU model name, as the library reads it.</summary>
    public static string Cpu => KernelInfo.CpuModel;

    /// <summary>Measures the peak (about a second) and returns it in GFLOP/s.</summary>
    /// <returns>GFLOP/s.</returns>
    public static double Measure()
    {
        double best = 0;
        for (int trial = 0; trial < 5; trial++)
        {
            const long Iterations = 20_000_000;
            var sw = Stopwatch.StartNew();
            float sink = Loop(Iterations, out int lanes);
            sw.Stop();
            GC.KeepAlive(sink);
            double flops = Iterations * 12.0 * lanes * 2;
            best = Math.Max(best, flops / sw.Elapsed.TotalSeconds / 1e9);
        }

        GflopsPerSecond = best;
        return best;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static float Loop(long iterations, out int lanes)
    {
        if (Avx512F.IsSupported)
        {
            lanes = 16;
            Vector512<float> a = Vector512.Create(0.999999f), b = Vector512.Create(1e-7f);
            Vector512<float> c0 = Vector512.Create(0.1f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
            for (long k = 0; k < iterations; k++)
            {
                c0 = Avx512F.FusedMultiplyAdd(c0, a, b); c1 = Avx512F.FusedMultiplyAdd(c1, a, b); c2 = Avx512F.FusedMultiplyAdd(c2, a, b); c3 = Avx512F.FusedMultiplyAdd(c3, a, b);
                c4 = Avx512F.FusedMultiplyAdd(c4, a, b); c5 = Avx512F.FusedMultiplyAdd(c5, a, b); c6 = Avx512F.FusedMultiplyAdd(c6, a, b); c7 = Avx512F.FusedMultiplyAdd(c7, a, b);
                c8 = Avx512F.FusedMultiplyAdd(c8, a, b); c9 = Avx512F.FusedMultiplyAdd(c9, a, b); c10 = Avx512F.FusedMultiplyAdd(c10, a, b); c11 = Avx512F.FusedMultiplyAdd(c11, a, b);
            }

            return Vector512.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
        }

        if (Fma.IsSupported)
        {
            lanes = 8;
            Vector256<float> a = Vector256.Create(0.999999f), b = Vector256.Create(1e-7f);
            Vector256<float> c0 = Vector256.Create(0.1f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
            for (long k = 0; k < iterations; k++)
            {
                c0 = Fma.MultiplyAdd(c0, a, b); c1 = Fma.MultiplyAdd(c1, a, b); c2 = Fma.MultiplyAdd(c2, a, b); c3 = Fma.MultiplyAdd(c3, a, b);
                c4 = Fma.MultiplyAdd(c4, a, b); c5 = Fma.MultiplyAdd(c5, a, b); c6 = Fma.MultiplyAdd(c6, a, b); c7 = Fma.MultiplyAdd(c7, a, b);
                c8 = Fma.MultiplyAdd(c8, a, b); c9 = Fma.MultiplyAdd(c9, a, b); c10 = Fma.MultiplyAdd(c10, a, b); c11 = Fma.MultiplyAdd(c11, a, b);
            }

            return Vector256.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
        }

        if (AdvSimd.IsSupported)
        {
            lanes = 4;
            Vector128<float> a = Vector128.Create(0.999999f), b = Vector128.Create(1e-7f);
            Vector128<float> c0 = Vector128.Create(0.1f), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
            for (long k = 0; k < iterations; k++)
            {
                c0 = AdvSimd.FusedMultiplyAdd(b, c0, a); c1 = AdvSimd.FusedMultiplyAdd(b, c1, a); c2 = AdvSimd.FusedMultiplyAdd(b, c2, a); c3 = AdvSimd.FusedMultiplyAdd(b, c3, a);
                c4 = AdvSimd.FusedMultiplyAdd(b, c4, a); c5 = AdvSimd.FusedMultiplyAdd(b, c5, a); c6 = AdvSimd.FusedMultiplyAdd(b, c6, a); c7 = AdvSimd.FusedMultiplyAdd(b, c7, a);
                c8 = AdvSimd.FusedMultiplyAdd(b, c8, a); c9 = AdvSimd.FusedMultiplyAdd(b, c9, a); c10 = AdvSimd.FusedMultiplyAdd(b, c10, a); c11 = AdvSimd.FusedMultiplyAdd(b, c11, a);
            }

            return Vector128.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
        }

        lanes = 1;
        float s0 = 0.1f, s1 = 0.1f, s2 = 0.1f, s3 = 0.1f;
        for (long k = 0; k < iterations * 3; k++)
        {
            s0 = (s0 * 0.999999f) + 1e-7f; s1 = (s1 * 0.999999f) + 1e-7f; s2 = (s2 * 0.999999f) + 1e-7f; s3 = (s3 * 0.999999f) + 1e-7f;
        }

        return s0 + s1 + s2 + s3;
    }
}
