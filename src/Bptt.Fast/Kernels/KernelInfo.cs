using System.Numerics;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Bptt.Fast;

/// <summary>The instruction sets the fast kernels are written for, from the most portable to the fastest.</summary>
public enum KernelIsa
{
    /// <summary>Plain scalar loops.</summary>
    Scalar,

    /// <summary>Portable <see cref="Vector{T}"/> (any width the runtime picks).</summary>
    Vector,

    /// <summary>arm64 AdvSimd: <see cref="Vector128{T}"/> with fused multiply-add.</summary>
    AdvSimd,

    /// <summary>x64 AVX2 with FMA3: <see cref="Vector256{T}"/>.</summary>
    Avx2,

    /// <summary>x64 AVX-512F: <see cref="Vector512{T}"/>, 32 registers.</summary>
    Avx512,
}

/// <summary>
/// Which kernels the fast path runs. The choice is made once, at start-up: the best instruction set the hardware and
/// runtime support, unless the environment variable <c>BPTT_FAST_ISA</c> (<c>avx512</c>, <c>avx2</c>, <c>advsimd</c>,
/// <c>vector</c> or <c>scalar</c>) names a supported lower one. Runtime knobs such as <c>DOTNET_EnableAVX512=0</c>,
/// <c>DOTNET_EnableAVX2=0</c> or <c>DOTNET_EnableHWIntrinsic=0</c> lower what is supported, and so land on a working path
/// too. <see cref="UnusedHardware"/> says when the CPU has more than this process can use (e.g. a NativeAOT binary
/// compiled for the x64 baseline).
/// </summary>
public static class KernelInfo
{
    /// <summary>The environment variable that forces a lower path.</summary>
    public const string EnvironmentVariable = "BPTT_FAST_ISA";

    static KernelInfo()
    {
        BestSupported = IsSupported(KernelIsa.Avx512) ? KernelIsa.Avx512
            : IsSupported(KernelIsa.Avx2) ? KernelIsa.Avx2
            : IsSupported(KernelIsa.AdvSimd) ? KernelIsa.AdvSimd
            : IsSupported(KernelIsa.Vector) ? KernelIsa.Vector
            : KernelIsa.Scalar;
        string? requested = Environment.GetEnvironmentVariable(EnvironmentVariable);
        Isa = Choose(requested, BestSupported, out bool forced, out string? problem);
        IsForced = forced;
        RequestedIsaProblem = problem;
        RequestedIsa = requested;
        UnusedHardware = DetectUnusedHardware();
        KernelNames =
        [
            $"Gemm.{Isa} (packed panels, {Kernels.Bodies.GemmBlocking.MR}x{2 * WidthOf(Isa)} micro-kernel, MC={Kernels.Bodies.GemmBlocking.MC} KC={Kernels.Bodies.GemmBlocking.KC} NC={Kernels.Bodies.GemmBlocking.NC})",
            $"Gemv.{Isa} (4 rows in flight)",
            $"GemvTransposed.{Isa} (axpy form)",
            $"RnnStep.{Isa} (fused bias + activation, eq. (1), (2))",
            $"RnnStepBackward.{Isa} (fused eq. (12))",
            $"SoftmaxCrossEntropy.{Isa} (fused eq. (4), (6), (7))",
        ];
    }

    /// <summary>The CPU model name, e.g. "AMD EPYC 9B45".</summary>
    public static string CpuModel => Internals.CpuInfo.Model;

    /// <summary>The per-core data cache sizes the GEMM blocking was derived from, e.g. "L1d 48 KiB, L2 1024 KiB, L3 …".</summary>
    public static string CacheSizes => Internals.CpuInfo.CacheSummary;

    /// <summary>
    /// A one-line note when the CPU reports a faster instruction set than this process can run (for example a NativeAOT
    /// binary published without <c>IlcInstructionSet</c>, or a DOTNET_Enable… knob), else null.
    /// </summary>
    public static string? UnusedHardware { get; }

    /// <summary>The instruction set the fast kernels use in this process.</summary>
    public static KernelIsa Isa { get; }

    /// <summary>The best instruction set this hardware and runtime support.</summary>
    public static KernelIsa BestSupported { get; }

    /// <summary>True when <see cref="EnvironmentVariable"/> selected <see cref="Isa"/>.</summary>
    public static bool IsForced { get; }

    /// <summary>The raw value of <see cref="EnvironmentVariable"/>, or null.</summary>
    public static string? RequestedIsa { get; }

    /// <summary>
    /// Why <see cref="EnvironmentVariable"/> was not applied, as one line of text (control characters escaped), e.g. a
    /// mistyped name or an instruction set this process cannot run; <see cref="Isa"/> is then <see cref="BestSupported"/>.
    /// Null when the variable is absent, blank, or names a supported instruction set. Only the names <c>avx512</c>, <c>avx2</c>,
    /// <c>advsimd</c>, <c>vector</c> and <c>scalar</c> are accepted (any case, surrounding blanks ignored).
    /// </summary>
    public static string? RequestedIsaProblem { get; }

    /// <summary>The number of floats in one vector register of the selected path (1 for scalar).</summary>
    public static int VectorWidth => WidthOf(Isa);

    /// <summary>The names of the kernels the selected path runs, one per operation family.</summary>
    public static IReadOnlyList<string> KernelNames { get; }

    /// <summary>A one-line summary, e.g. "Avx2 (8 floats per vector)".</summary>
    public static string Description =>
        $"{Isa} ({VectorWidth} float{(VectorWidth == 1 ? "" : "s")} per vector){(IsForced ? $", forced by {EnvironmentVariable}={RequestedIsa?.Trim()}" : "")}";

    /// <summary>
    /// The path for a requested value of <see cref="EnvironmentVariable"/>: the named instruction set when this process
    /// supports it, otherwise <paramref name="best"/> with a one-line <paramref name="problem"/>. Never throws.
    /// </summary>
    /// <param name="requested">The raw value, or null.</param>
    /// <param name="best">The best supported instruction set, the fallback.</param>
    /// <param name="forced">True when <paramref name="requested"/> selected the result.</param>
    /// <param name="problem">Why <paramref name="requested"/> was not applied, or null.</param>
    /// <returns>The instruction set to use.</returns>
    internal static KernelIsa Choose(string? requested, KernelIsa best, out bool forced, out string? problem)
    {
        forced = false;
        problem = null;
        if (string.IsNullOrWhiteSpace(requested))
        {
            return best;
        }

        string name = requested.Trim();
        foreach (KernelIsa isa in Enum.GetValues<KernelIsa>())
        {
            if (string.Equals(name, isa.ToString(), StringComparison.OrdinalIgnoreCase))
            {
                if (IsSupported(isa) && isa <= best)
                {
                    forced = true;
                    return isa;
                }

                problem = $"{EnvironmentVariable}={Shown(name)} is not supported by this machine and runtime; using {best}";
                return best;
            }
        }

        problem = $"{EnvironmentVariable}={Shown(name)} is not one of avx512, avx2, advsimd, vector, scalar; using {best}";
        return best;
    }

    /// <summary>Whether this process can run the kernels of <paramref name="isa"/>.</summary>
    /// <param name="isa">The instruction set.</param>
    public static bool IsSupported(KernelIsa isa) => isa switch
    {
        KernelIsa.Avx512 => Avx512F.IsSupported && Vector512.IsHardwareAccelerated,
        KernelIsa.Avx2 => Avx2.IsSupported && Fma.IsSupported,
        KernelIsa.AdvSimd => AdvSimd.Arm64.IsSupported,
        KernelIsa.Vector => Vector.IsHardwareAccelerated,
        KernelIsa.Scalar => true,
        _ => false,
    };

    /// <summary>The floats per vector of <paramref name="isa"/>.</summary>
    /// <param name="isa">The instruction set.</param>
    public static int WidthOf(KernelIsa isa) => isa switch
    {
        KernelIsa.Avx512 => Vector512<float>.Count,
        KernelIsa.Avx2 => Vector256<float>.Count,
        KernelIsa.AdvSimd => Vector128<float>.Count,
        KernelIsa.Vector => Vector<float>.Count,
        _ => 1,
    };

    /// <summary>What the CPU reports through CPUID (leaf 7: AVX2 = EBX bit 5, AVX-512F = EBX bit 16; leaf 1: FMA = ECX bit 12).</summary>
    private static string? DetectUnusedHardware()
    {
        if (!X86Base.IsSupported)
        {
            return null;
        }

        (int maxLeaf, _, _, _) = X86Base.CpuId(0, 0);
        if (maxLeaf < 7)
        {
            return null;
        }

        (_, _, int ecx1, _) = X86Base.CpuId(1, 0);
        (_, int ebx7, _, _) = X86Base.CpuId(7, 0);
        bool cpuAvx2 = (ebx7 & (1 << 5)) != 0 && (ecx1 & (1 << 12)) != 0, cpuAvx512 = (ebx7 & (1 << 16)) != 0;
        KernelIsa cpuBest = cpuAvx512 ? KernelIsa.Avx512 : cpuAvx2 ? KernelIsa.Avx2 : KernelIsa.Vector;
        return cpuBest > BestSupported
            ? $"the CPU reports {cpuBest} but this process can run at most {BestSupported} (a NativeAOT build without IlcInstructionSet, or a DOTNET_Enable* setting)"
            : null;
    }

    /// <summary>A value for a one-line message: quoted, control characters escaped, at most 40 characters shown.</summary>
    private static string Shown(string value)
    {
        var text = new System.Text.StringBuilder("'");
        foreach (char c in value.Length > 40 ? value[..40] : value)
        {
            text.Append(char.IsControl(c) ? $"\\u{(int)c:X4}" : c.ToString());
        }

        return text.Append(value.Length > 40 ? "...'" : "'").ToString();
    }
}
