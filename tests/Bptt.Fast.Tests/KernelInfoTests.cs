using System.Runtime.Intrinsics.X86;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>
/// The path chosen at start-up follows the hardware and the knobs. CI runs the whole suite again under
/// DOTNET_EnableAVX2=0 and DOTNET_EnableHWIntrinsic=0 (and BPTT_FAST_ISA); these tests assert that each took effect.
/// </summary>
public sealed class KernelInfoTests
{
    [Fact]
    public void TheSelectedPathMatchesTheEnvironment()
    {
        string? avx2 = Environment.GetEnvironmentVariable("DOTNET_EnableAVX2");
        string? hw = Environment.GetEnvironmentVariable("DOTNET_EnableHWIntrinsic");
        string? forced = Environment.GetEnvironmentVariable(KernelInfo.EnvironmentVariable);
        if (hw == "0")
        {
            Assert.False(Avx2.IsSupported);
            Assert.Equal(KernelIsa.Scalar, KernelInfo.Isa);
            Assert.Equal(1, KernelInfo.VectorWidth);
        }
        else if (avx2 == "0")
        {
            Assert.False(Avx2.IsSupported);
            Assert.NotEqual(KernelIsa.Avx2, KernelInfo.Isa);
            Assert.NotEqual(KernelIsa.Avx512, KernelInfo.Isa);
        }
        else if (Environment.GetEnvironmentVariable("DOTNET_EnableAVX512") == "0")
        {
            Assert.False(Avx512F.IsSupported);
            Assert.NotEqual(KernelIsa.Avx512, KernelInfo.Isa);
        }

        if (!string.IsNullOrEmpty(forced) && Enum.TryParse(forced, true, out KernelIsa want) && KernelInfo.IsSupported(want))
        {
            Assert.Equal(want, KernelInfo.Isa);
            Assert.True(KernelInfo.IsForced);
        }
        else if (string.IsNullOrEmpty(forced))
        {
            Assert.Equal(KernelInfo.BestSupported, KernelInfo.Isa);
        }

        Assert.True(KernelInfo.IsSupported(KernelInfo.Isa));
        Assert.Contains(KernelInfo.Isa.ToString(), KernelInfo.Description, StringComparison.Ordinal);
        Assert.All(KernelInfo.KernelNames, n => Assert.Contains(KernelInfo.Isa.ToString(), n, StringComparison.Ordinal));
        Console.WriteLine($"KernelInfo: {KernelInfo.Description}");
    }

    [Fact]
    public void OnX64TheDefaultIsTheWidestVectorIsaTheRuntimeExposes()
    {
        bool knobs = Environment.GetEnvironmentVariable("DOTNET_EnableAVX2") == "0"
            || Environment.GetEnvironmentVariable("DOTNET_EnableAVX512") == "0"
            || Environment.GetEnvironmentVariable("DOTNET_EnableHWIntrinsic") == "0"
            || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable(KernelInfo.EnvironmentVariable));
        Assert.SkipWhen(knobs || !(Avx2.IsSupported && Fma.IsSupported), "a knob lowers the path, or the CPU lacks AVX2+FMA");
        KernelIsa expected = Avx512F.IsSupported && System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? KernelIsa.Avx512 : KernelIsa.Avx2;
        Assert.Equal(expected, KernelInfo.Isa);
        Assert.Equal(expected == KernelIsa.Avx512 ? 16 : 8, KernelInfo.VectorWidth);
        Assert.Equal(expected, new BpttEngine(new RnnShape(1, 1, 1), 1).Isa);
        Assert.Null(KernelInfo.UnusedHardware);
    }

    public static TheoryData<string, string> ForcedPaths() => new()
    {
        { "scalar", "Scalar (1 float per vector), forced by BPTT_FAST_ISA=scalar" },
        { "Vector", "forced by BPTT_FAST_ISA=Vector" },
        { "avx2", "Avx2 (8 floats per vector), forced by BPTT_FAST_ISA=avx2" },
        { "bogus", "bptt: warning: BPTT_FAST_ISA='bogus' is not one of avx512, avx2, advsimd, vector, scalar" },
    };

    /// <summary>BPTT_FAST_ISA takes effect at start-up, so it is tested in a child process: the CLI's info command.</summary>
    [Theory]
    [MemberData(nameof(ForcedPaths))]
    public void TheEnvironmentVariableForcesALowerPathInAChildProcess(string value, string expected)
    {
        // The dotnet host: the one the SDK names, else the one three folders above the shared runtime in use.
        string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH")
            ?? Path.GetFullPath(Path.Combine(System.Runtime.InteropServices.RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", "..", OperatingSystem.IsWindows() ? "dotnet.exe" : "dotnet"));
        string cli = Path.Combine(AppContext.BaseDirectory, "bptt.dll");
        Assert.SkipWhen(host is null || !File.Exists(host) || !File.Exists(cli), "no dotnet host to start a child process with (e.g. the self-contained arm64 run)");
        Assert.SkipWhen(Enum.TryParse(value, ignoreCase: true, out KernelIsa wanted) && !KernelInfo.IsSupported(wanted), $"{value} is not supported in this process (a knob or the CPU)");
        var start = new System.Diagnostics.ProcessStartInfo(host!, [cli, "info"]) { RedirectStandardOutput = true, RedirectStandardError = true };
        start.Environment[KernelInfo.EnvironmentVariable] = value;
        using var process = System.Diagnostics.Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        Assert.True(process.WaitForExit(60_000), "the child process did not finish");
        Assert.Equal(0, process.ExitCode);
        Assert.Contains(expected, output, StringComparison.Ordinal);
    }
}
