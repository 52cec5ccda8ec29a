using Bptt.Fast.Internals;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>A float buffer with a slice at an unaligned offset and guard values on both sides that must never change.</summary>
internal sealed class Guarded
{
    private const float GuardValue = -7777.25f;
    private const int GuardCount = 16;
    private readonly float[] _buffer;

    public Guarded(int length, int offset, ref SplitMix64 random, float scale = 1f)
    {
        Offset = GuardCount + offset;
        Length = length;
        _buffer = new float[length + Offset + GuardCount];
        _buffer.AsSpan().Fill(GuardValue);
        for (int k = 0; k < length; k++)
        {
            _buffer[Offset + k] = ((2 * random.NextSingle()) - 1) * scale;
        }
    }

    public int Offset { get; }

    public int Length { get; }

    public Span<float> Span => _buffer.AsSpan(Offset, Length);

    public double[] ToDouble() => Span.ToArray().Select(v => (double)v).ToArray();

    public void AssertGuardsIntact(string what)
    {
        for (int k = 0; k < Offset; k++)
        {
            Assert.True(_buffer[k] == GuardValue, $"{what}: guard before the slice changed at {k - Offset}");
        }

        for (int k = Offset + Length; k < _buffer.Length; k++)
        {
            Assert.True(_buffer[k] == GuardValue, $"{what}: guard after the slice changed at +{k - Offset - Length}");
        }
    }
}

public static class KernelCases
{
    /// <summary>Every length 0..70, and 127, 128, 129, 255, 256, 257, 1000 (docs/design.md, section 7).</summary>
    public static readonly int[] Lengths = [.. Enumerable.Range(0, 71), 127, 128, 129, 255, 256, 257, 1000];

    public static IEnumerable<KernelIsa> SupportedIsas() => Enum.GetValues<KernelIsa>().Where(KernelInfo.IsSupported);

    /// <summary>Every ISA as a theory row; a row this machine or runtime cannot run is skipped with the reason, never dropped.</summary>
    public static IEnumerable<TheoryDataRow<KernelIsa>> Isas()
    {
        foreach (KernelIsa isa in Enum.GetValues<KernelIsa>())
        {
            yield return KernelInfo.IsSupported(isa)
                ? new TheoryDataRow<KernelIsa>(isa)
                : new TheoryDataRow<KernelIsa>(isa) { Skip = $"{isa} is not supported on this machine and runtime ({System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture}, best: {KernelInfo.BestSupported})" };
        }
    }

    /// <summary>|actual − expected| ≤ (n + 2)·ε_float·magnitude + absolute, element-wise.</summary>
    public static void AssertClose(ReadOnlySpan<float> actual, double[] expected, double[] magnitude, int reductionLength, string what, double absolute = 1e-30)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int k = 0; k < expected.Length; k++)
        {
            double allowed = ((reductionLength + 2) * 1.2e-7 * magnitude[k]) + absolute;
            double error = Math.Abs(actual[k] - expected[k]);
            Assert.True(error <= allowed, $"{what}: element {k} is {actual[k]:R}, expected {expected[k]:R} (error {error:E2} > {allowed:E2})");
        }
    }
}
