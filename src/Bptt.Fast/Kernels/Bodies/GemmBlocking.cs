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

    /// <summary>Rows of C up to which the micro-kernels read op(A) as stored instead of packed: the few rows of a batched
    /// serving step or a short chunk, whose A panels (at most four) stay in L1 across all column panels, so that packing
    /// them would only add a pass.</summary>
    public const int UnpackedMaxRows = 4 * MR;

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
    public static int KC { get; }

    /// <summary>MC, rows of op(A) packed per block (a multiple of MR).</summary>
    public static int MC { get; }

    /// <summary>Floats of the A packing buffer: the MC×KC panel block and the edge tile after it.</summary>
    public static int PackALength => (MC * KC) + EdgeTileLength;
}
