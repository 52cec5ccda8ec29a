using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Bptt.Fast.Internals;

/// <summary>Argument checks shared by every public entry point (docs/design.md, section 6); they know no model type.</summary>
internal static class Guard
{
    /// <summary>Throws unless actual = expected, described by a constant string.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Length(long expected, long actual, string paramName, string what)
    {
        if (expected != actual)
        {
            throw new ArgumentException($"Length mismatch: expected {expected} ({what}), actual {actual}.", paramName);
        }
    }

    /// <summary>Throws unless actual = expected. The description is formatted only on failure, so a passing check allocates nothing.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Length(long expected, long actual, string paramName, [InterpolatedStringHandlerArgument(nameof(expected), nameof(actual))] ref LengthMessage what)
    {
        if (expected != actual)
        {
            throw new ArgumentException($"Length mismatch: expected {expected} ({what.ToStringAndClear()}), actual {actual}.", paramName);
        }
    }

    /// <summary>Throws unless actual is 0 (omitted) or expected.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void OptionalLength(long expected, long actual, string paramName, [InterpolatedStringHandlerArgument(nameof(expected), nameof(actual))] ref OptionalLengthMessage what)
    {
        if (actual != 0 && expected != actual)
        {
            throw new ArgumentException($"Length mismatch: expected 0 (omitted) or {expected} ({what.ToStringAndClear()}), actual {actual}.", paramName);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void InRange(int value, int min, int max, string paramName)
    {
        if (value < min || value > max)
        {
            throw new ArgumentOutOfRangeException(paramName, value, $"Expected a value in [{min}, {max}], actual {value}.");
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Positive(float value, string paramName)
    {
        if (!(value > 0f) || !float.IsFinite(value))
        {
            throw new ArgumentOutOfRangeException(paramName, value, $"Expected a finite value > 0, actual {value}.");
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void NonNegative(float value, string paramName)
    {
        if (!(value >= 0f) || !float.IsFinite(value))
        {
            throw new ArgumentOutOfRangeException(paramName, value, $"Expected a finite value >= 0, actual {value}.");
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void UnitInterval(float value, string paramName)
    {
        if (!(value >= 0f && value < 1f))
        {
            throw new ArgumentOutOfRangeException(paramName, value, $"Expected a value in [0, 1), actual {value}.");
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Finite<T>(ReadOnlySpan<T> values, string paramName)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int index = FirstNonFinite(values);
        if (index >= 0)
        {
            throw new ArgumentException($"Expected finite values only; element {index} is {values[index]}.", paramName);
        }
    }

    /// <summary>
    /// The index of the first NaN or ±∞ element, or −1: x·0 is 0 exactly when x is finite, summed over eight portable
    /// vectors at a time (one branch per 8 vectors; a validation pass, memory-bound, so <see cref="Vector{T}"/> is fast
    /// enough and keeps this layer free of the kernels); a block that is not all finite is searched element by element.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int FirstNonFinite<T>(ReadOnlySpan<T> values)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int k = 0;
        if (Vector.IsHardwareAccelerated)
        {
            ReadOnlySpan<Vector<T>> vectors = MemoryMarshal.Cast<T, Vector<T>>(values);
            int v = 0;
            for (; v <= vectors.Length - 8; v += 8)
            {
                Vector<T> zero = Vector<T>.Zero;
                Vector<T> poison = ((vectors[v] * zero) + (vectors[v + 1] * zero)) + ((vectors[v + 2] * zero) + (vectors[v + 3] * zero))
                    + (((vectors[v + 4] * zero) + (vectors[v + 5] * zero)) + ((vectors[v + 6] * zero) + (vectors[v + 7] * zero)));
                if (!Vector.EqualsAll(poison, zero))
                {
                    break; // the element loop below finds it, from this block on
                }
            }

            k = v * Vector<T>.Count;
        }

        for (; k < values.Length; k++)
        {
            if (!T.IsFinite(values[k]))
            {
                return k;
            }
        }

        return -1;
    }
}

/// <summary>An interpolated description that is formatted only when a length check fails.</summary>
[InterpolatedStringHandler]
internal ref struct LengthMessage
{
    private DefaultInterpolatedStringHandler _inner;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public LengthMessage(int literalLength, int formattedCount, long expected, long actual, out bool shouldAppend)
    {
        shouldAppend = expected != actual;
        _inner = shouldAppend ? new DefaultInterpolatedStringHandler(literalLength, formattedCount) : default;
    }

    public void AppendLiteral(string value) => _inner.AppendLiteral(value);

    public void AppendFormatted<T>(T value) => _inner.AppendFormatted(value);

    public string ToStringAndClear() => _inner.ToStringAndClear();
}

/// <summary>Like <see cref="LengthMessage"/>, for optional spans (0 means omitted).</summary>
[InterpolatedStringHandler]
internal ref struct OptionalLengthMessage
{
    private DefaultInterpolatedStringHandler _inner;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public OptionalLengthMessage(int literalLength, int formattedCount, long expected, long actual, out bool shouldAppend)
    {
        shouldAppend = actual != 0 && expected != actual;
        _inner = shouldAppend ? new DefaultInterpolatedStringHandler(literalLength, formattedCount) : default;
    }

    public void AppendLiteral(string value) => _inner.AppendLiteral(value);

    public void AppendFormatted<T>(T value) => _inner.AppendFormatted(value);

    public string ToStringAndClear() => _inner.ToStringAndClear();
}
