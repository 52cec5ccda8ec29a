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
    public void OnX64WithAvx2AndFmaTheDefaultIsAvx2()
    {
        bool knobs = Environment.GetEnvironmentVariable("DOTNET_EnableAVX2") == "0"
            || Environment.GetEnvironmentVariable("DOTNET_EnableHWIntrinsic") == "0"
            || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable(KernelInfo.EnvironmentVariable));
        Assert.SkipWhen(knobs || !(Avx2.IsSupported && Fma.IsSupported), "a knob lowers the path, or the CPU lacks AVX2+FMA");
        Assert.Equal(KernelIsa.Avx2, KernelInfo.Isa);
        Assert.Equal(8, KernelInfo.VectorWidth);
        Assert.Equal(KernelIsa.Avx2, new BpttEngine(new RnnShape(1, 1, 1), 1).Isa);
    }
}
