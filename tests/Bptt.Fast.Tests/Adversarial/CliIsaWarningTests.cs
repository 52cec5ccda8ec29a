using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>A mistyped or unsupported BPTT_FAST_ISA is reported (one warning line on every command, and in info), never ignored.</summary>
public sealed class CliIsaWarningTests : CliHarness
{
    [Theory]
    [InlineData("avx3", "not one of")]
    [InlineData("1", "not one of")]
    [InlineData("scalar,vector", "not one of")]
    [InlineData("sca lar", "not one of")]
    [InlineData("scalar\nvector", "not one of")]
    public void AMistypedValueFallsBackToTheBestPathWithAProblem(string value, string expected)
    {
        KernelIsa isa = KernelInfo.Choose(value, KernelInfo.BestSupported, out bool forced, out string? problem);
        Assert.Equal(KernelInfo.BestSupported, isa);
        Assert.False(forced);
        Assert.NotNull(problem);
        Assert.Contains(expected, problem, StringComparison.Ordinal);
        Assert.Contains(KernelInfo.EnvironmentVariable, problem, StringComparison.Ordinal);
        Assert.Contains(KernelInfo.BestSupported.ToString(), problem, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', problem);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("   ")]
    public void AnAbsentValueIsNoProblem(string? value)
    {
        Assert.Equal(KernelInfo.BestSupported, KernelInfo.Choose(value, KernelInfo.BestSupported, out bool forced, out string? problem));
        Assert.False(forced);
        Assert.Null(problem);
    }

    [Fact]
    public void EverySupportedNameIsAcceptedInAnyCaseAndEveryOtherIsAProblem()
    {
        foreach (KernelIsa isa in Enum.GetValues<KernelIsa>())
        {
            foreach (string value in new[] { isa.ToString(), $" {isa.ToString().ToUpperInvariant()} " })
            {
                KernelIsa chosen = KernelInfo.Choose(value, KernelInfo.BestSupported, out bool forced, out string? problem);
                if (KernelInfo.IsSupported(isa))
                {
                    Assert.Equal((isa, true, (string?)null), (chosen, forced, problem));
                }
                else
                {
                    Assert.Equal((KernelInfo.BestSupported, false), (chosen, forced));
                    Assert.Contains("not supported", problem, StringComparison.Ordinal);
                }
            }
        }

        Assert.Equal(KernelIsa.Scalar, KernelInfo.Choose("scalar", KernelIsa.Scalar, out _, out string? none));
        Assert.Null(none);
    }

    [Fact]
    public void TheCommandsPrintTheWarningAsOneLineFirst()
    {
        const string Problem = "BPTT_FAST_ISA='avx3' is not one of avx2, advsimd, vector, scalar; using Avx2";
        foreach (string[] args in new[] { new[] { "--help" }, ["fly"], ["sample", "--checkpoint", P("none.ckpt")] })
        {
            (_, _, string error) = RunWith(Problem, args);
            string[] lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal($"bptt: warning: {Problem}", lines[0]);
            Assert.Equal(args[0] == "--help" ? 1 : 2, lines.Length);
        }

        (int code, string output, string err) = RunWith(Problem, "info");
        Assert.Equal(0, code);
        Assert.Equal($"bptt: warning: {Problem}\n", err.ReplaceLineEndings("\n"));
        Assert.Contains($"warning: {Problem}", output, StringComparison.Ordinal);
    }

    [Fact]
    public void TheProcessWideProblemMatchesTheEnvironment()
    {
        string? value = Environment.GetEnvironmentVariable(KernelInfo.EnvironmentVariable);
        KernelInfo.Choose(value, KernelInfo.BestSupported, out _, out string? expected);
        Assert.Equal(expected, KernelInfo.RequestedIsaProblem);
    }
}
