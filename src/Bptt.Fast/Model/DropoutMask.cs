using System.Runtime.CompilerServices;

namespace Bptt.Fast.Model;

/// <summary>
/// The inverted-dropout mask between stacked layers: element (step t, sequence b, unit j) of the input of layer l + 1 that
/// comes from direction d of layer l is kept with probability 1 − p and then scaled by 1 / (1 − p), or dropped (zero).
/// The decision is a pure function of (seed, l, d, t, b, j): the SplitMix64 finaliser of a counter, so the reference and
/// the fast engines draw the same mask, in any order and on any thread, and a call repeats exactly with the same seed.
/// </summary>
internal static class DropoutMask
{
    /// <summary>The checks every engine constructor makes on a dropout rate: finite, in [0, 1).</summary>
    public static void CheckRate(float rate, string paramName)
    {
        if (!(rate >= 0f && rate < 1f))
        {
            throw new ArgumentOutOfRangeException(paramName, rate, $"Expected a dropout probability in [0, 1), actual {rate}.");
        }
    }

    /// <summary>The key of one row (l, d, t, b); <see cref="Keep"/> draws the units of the row from it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong RowKey(ulong seed, int layer, int direction, int step, int sequence)
    {
        ulong key = Mix(seed ^ 0x6A09E667F3BCC909UL);
        key = Mix(key ^ (((ulong)(uint)layer << 1) | (uint)direction));
        key = Mix(key ^ (uint)step);
        return Mix(key ^ (uint)sequence);
    }

    /// <summary>Whether unit <paramref name="unit"/> of the row is kept: a 24-bit uniform draw u ≥ p.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Keep(ulong rowKey, int unit, float rate) =>
        (Mix(rowKey + (((ulong)(uint)unit + 1) * 0x9E3779B97F4A7C15UL)) >> 40) * (1f / (1 << 24)) >= rate;

    /// <summary>Writes the mask of one row, 0 or 1 / (1 − p) per unit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void FillRow(ulong rowKey, float rate, Span<float> mask)
    {
        float scale = 1f / (1f - rate);
        for (int j = 0; j < mask.Length; j++)
        {
            mask[j] = Keep(rowKey, j, rate) ? scale : 0f;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
