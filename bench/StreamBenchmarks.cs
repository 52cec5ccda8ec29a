using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using BenchmarkDotNet.Attributes;

namespace Bptt.Fast.Bench;

/// <summary>
/// The read rates that bound the serving rows, in the order those rows read their weights: one thread sums cache-line
/// aligned buffers with the widest vectors it has, 16 KiB at a time, each call reading every buffer once. "a+b" reads a
/// KiB, then b KiB, as a single step at H = 512 reads W_hhᵀ (1024 KiB) and then W_hyᵀ (256 KiB): the head needs hₜ, so it
/// cannot come first. <see cref="Alternating"/> reads every buffer last to first on every other call, as the recurrence
/// reads W_hh. GB/s = bytes / Mean. Not in the default run: <c>--filter '*StreamRead*'</c>.
/// </summary>
public class StreamRead : IDisposable
{
    private const int ChunkFloats = 4096; // 16 KiB: every size below is a whole number of chunks
    private nint[] _buffers = [];
    private long[] _chunks = [];
    private bool _reverse;

    [Params("96", "320", "768", "1024", "1280", "1024+256", "4608", "65536")]
    public string KiB { get; set; } = "1024";

    [Params(false, true)]
    public bool Alternating { get; set; }

    [GlobalSetup]
    public unsafe void Setup()
    {
        long[] kib = KiB.Split('+').Select(long.Parse).ToArray();
        _buffers = new nint[kib.Length];
        _chunks = new long[kib.Length];
        for (int b = 0; b < kib.Length; b++)
        {
            long bytes = checked(kib[b] * 1024);
            if (bytes <= 0 || bytes % (ChunkFloats * sizeof(float)) != 0)
            {
                throw new ArgumentOutOfRangeException(nameof(KiB), KiB, $"Expected sizes that are positive multiples of 16 KiB; actual {kib[b]} KiB.");
            }

            _chunks[b] = bytes / (ChunkFloats * sizeof(float));
            float* p = (float*)NativeMemory.AlignedAlloc((nuint)bytes, 4096);
            new Span<float>(p, checked((int)(bytes / sizeof(float)))).Fill(1f);
            _buffers[b] = (nint)p;
        }
    }

    [Benchmark]
    public float Read()
    {
        float sum = 0;
        for (int b = 0; b < _buffers.Length; b++)
        {
            sum += Sum(_buffers[b], _chunks[b], _reverse);
        }

        _reverse = Alternating && !_reverse;
        return sum;
    }

    [GlobalCleanup]
    public void Dispose()
    {
        foreach (nint p in _buffers)
        {
            unsafe
            {
                NativeMemory.AlignedFree((void*)p);
            }
        }

        _buffers = [];
        GC.SuppressFinalize(this);
    }

    /// <summary>Σ of <paramref name="chunks"/> × 16 KiB of floats at <paramref name="start"/> (Setup allocated exactly that many, 4 KiB aligned).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static unsafe float Sum(nint start, long chunks, bool reverse)
    {
        float* a = (float*)start;
        if (Vector512.IsHardwareAccelerated)
        {
            Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default;
            for (long c = 0; c < chunks; c++)
            {
                float* p = a + ((reverse ? chunks - 1 - c : c) * ChunkFloats);
                for (int i = 0; i < ChunkFloats; i += 64)
                {
                    s0 += Vector512.Load(p + i);
                    s1 += Vector512.Load(p + i + 16);
                    s2 += Vector512.Load(p + i + 32);
                    s3 += Vector512.Load(p + i + 48);
                }
            }

            return Vector512.Sum((s0 + s1) + (s2 + s3));
        }

        Vector256<float> t0 = default, t1 = default, t2 = default, t3 = default;
        for (long c = 0; c < chunks; c++)
        {
            float* p = a + ((reverse ? chunks - 1 - c : c) * ChunkFloats);
            for (int i = 0; i < ChunkFloats; i += 32)
            {
                t0 += Vector256.Load(p + i);
                t1 += Vector256.Load(p + i + 8);
                t2 += Vector256.Load(p + i + 16);
                t3 += Vector256.Load(p + i + 24);
            }
        }

        return Vector256.Sum((t0 + t1) + (t2 + t3));
    }
}
