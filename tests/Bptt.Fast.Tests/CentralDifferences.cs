using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>The finite-difference side of the gradient checks: central differences of L in double, and the tolerance they
/// are held to.</summary>
internal static class CentralDifferences
{
    /// <summary>The step h of (L(v + h) − L(v − h)) / 2h.</summary>
    public const double Step = 1e-5;

    /// <summary>∂L/∂values[k] by central differences; values[k] is restored afterwards.</summary>
    public static double Numeric(double[] values, int k, Func<double> loss)
    {
        double saved = values[k];
        values[k] = saved + Step;
        double plus = loss();
        values[k] = saved - Step;
        double minus = loss();
        values[k] = saved;
        return (plus - minus) / (2 * Step);
    }

    /// <summary>|analytic − numeric| ≤ 1e-6 · max(|analytic|, |numeric|) + 1e-8.</summary>
    public static void AssertClose(double analytic, double numeric, string what, ProblemSpec spec)
    {
        double error = Math.Abs(analytic - numeric);
        double allowed = (1e-6 * Math.Max(Math.Abs(analytic), Math.Abs(numeric))) + 1e-8;
        Assert.True(error <= allowed, $"{what}: analytic {analytic:R}, numeric {numeric:R}, error {error:E2} > {allowed:E2} for {spec}");
    }
}
