using System.Runtime.CompilerServices;
using Bptt.Fast.Internals;

namespace Bptt.Fast.Kernels.Bodies;

/// <summary>
/// The one definition of the GEMM's blocking (BLIS structure), from which every buffer size derives. MR×NR is the
/// register tile (NR = two vectors of the ISA); KC×NR of B and MR×KC of A sit in L1; MC×KC of A sits in L2; KC×NC of B
/// is one packed block of <see cref="GemmCore{TOps, TVec}"/>'s driver. KC and MC come from the machine's cache sizes
/// (<see cref="CpuInfo"/>), with the values tuned on Zen 3 (KC = 256, MC = 144) as the fallback.
/// </summary>
internal static class GemmBlocking
{
    /// <summary>MR, rows of the register tile: 6 rows × 2 vectors = 12 accumulators, which fits 16 registers (AVX2,
    /// Vector&lt;T&gt;) and leaves AVX-512's 32 registers room to spare.</summary>
    public const int MR = 6;

    /// <summary>Rows of C up to which the GEMM reads op(B) = B as stored instead of packing it: four full row panels,
    /// so each panel of B is read at most four times (a pack would read and write all of B once).</summary>
    public const int UnpackedBMaxRows = 4 * MR;

    /// <summary>
    /// Rows of C up to which the micro-kernels read op(A) as stored instead of packed, for registers of
    /// <paramref name="lanes"/> floats. Four panels (24 rows: a batched serving step, a short chunk) stay in L1 across all
    /// column panels, so packing them would only add a pass. On 256-bit registers the same holds to 64 rows (a 64-step
    /// sequence: 64×64×128 in 10.0–11.3 µs instead of 12.7–14.1). On 512-bit registers every product reads A as stored,
    /// which also lets whole panels of eight rows run the 16-accumulator tile; measured A/B in the same minutes on Zen 5
    /// (GFLOP/s, B as stored): 64×64×128 119 → 189, 128³ 167 → 206, 512×128×512 177 → 211, 512³ 194 → 204, a
    /// 2048-row Aᵀ 167 → 184 (the 1024×256×128 Aᵀ case moved within its noise, 159–190 → 164–183).
    /// </summary>
    public static int UnpackedMaxRows(int lanes) => lanes >= 16 ? int.MaxValue : lanes >= 8 ? 64 : 4 * MR;

    /// <summary>NC, columns of op(B) packed per block (a multiple of every NR).</summary>
    public const int NC = 4096;

    /// <summary>The widest NR of any ISA: two 512-bit vectors.</summary>
    public const int MaxNR = 32;

    /// <summary>Floats of the temporary tile through which the macro-kernel stores edge tiles.</summary>
    public const int EdgeTileLength = MR * MaxNR;

    static GemmBlocking()
    {
        long l1 = CpuInfo.L1Data, l2 = CpuInfo.L2;

        // (MR + NR)·KC floats of A and B panels must stay in L1 beside C's tile: 256 from 32 KiB on, 128 below.
        KC = l1 is > 0 and < 32 * 1024 ? 128 : 256;

        // An MC×KC panel of A takes about a quarter of L2, leaving room for B's streamed panels and C.
        MC = l2 > 0 ? (int)Math.Clamp(l2 / 4 / (KC * sizeof(float)) / MR * MR, 8 * MR, 84 * MR) : 144;
    }

    /// <summary>KC, depth of one packed block.</summary>
    public static int KC { [MethodImpl(MethodImplOptions.AggressiveInlining)] get; }

    /// <summary>MC, rows of op(A) packed per block (a multiple of MR).</summary>
    public static int MC { [MethodImpl(MethodImplOptions.AggressiveInlining)] get; }

    /// <summary>Floats of the A packing buffer: the MC×KC panel block and the edge tile after it.</summary>
    public static int PackALength
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => (MC * KC) + EdgeTileLength;
    }
}
