using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using BenchmarkDotNet.Attributes;
using Bptt.Fast.Kernels.Isa;

namespace Bptt.Fast.Bench;

/// <summary>
/// The read rates that bound the serving rows, in the order those rows read their weights: one thread sums cache-line
/// aligned buffers with the widest vectors it has (through the library's ISA structs), 16 KiB at a time, each call reading every buffer once. "a+b" reads a
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
    private static float Sum(nint start, long chunks, bool reverse) =>
        Vector512.IsHardwareAccelerated ? Sum<Simd512, Vector512<float>>(start, chunks, reverse)
        : Vector256.IsHardwareAccelerated ? Sum<Simd256, Vector256<float>>(start, chunks, reverse)
        : Sum<Simd128, Vector128<float>>(start, chunks, reverse);

    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static unsafe float Sum<TOps, TVec>(nint start, long chunks, bool reverse)
        where TOps : struct, ISimd<TVec>
        where TVec : struct
    {
        ref float a = ref Unsafe.AsRef<float>((void*)start);
        int w = TOps.Count;
        TVec s0 = TOps.Zero, s1 = TOps.Zero, s2 = TOps.Zero, s3 = TOps.Zero;
        for (long c = 0; c < chunks; c++)
        {
            ref float p = ref Unsafe.Add(ref a, (nint)((reverse ? chunks - 1 - c : c) * ChunkFloats));
            for (int i = 0; i < ChunkFloats; i += 4 * w)
            {
                s0 = TOps.Add(s0, TOps.Load(ref Unsafe.Add(ref p, i)));
                s1 = TOps.Add(s1, TOps.Load(ref Unsafe.Add(ref p, i + w)));
                s2 = TOps.Add(s2, TOps.Load(ref Unsafe.Add(ref p, i + (2 * w))));
                s3 = TOps.Add(s3, TOps.Load(ref Unsafe.Add(ref p, i + (3 * w))));
            }
        }

        return TOps.Sum(TOps.Add(TOps.Add(s0, s1), TOps.Add(s2, s3)));
    }
}
