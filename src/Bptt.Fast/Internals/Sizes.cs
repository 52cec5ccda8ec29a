using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace Bptt.Fast.Internals;

/// <summary>
/// Size arithmetic in 64 bits, checked: every buffer length, offset and product of dimensions is computed here before any
/// buffer is allocated or any unchecked kernel runs, so that a product that would wrap in <c>int</c> is refused instead of
/// turning into a short buffer and an out-of-bounds write.
/// </summary>
internal static class Sizes
{
    /// <summary>a·b for non-negative a and b, or <see cref="long.MaxValue"/> when the product does not fit (saturating).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long Product(long a, long b)
    {
        if (a < 0 || b < 0)
        {
            Negative(a, b);
        }

        return a != 0 && b > long.MaxValue / a ? long.MaxValue : a * b;
    }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Negative(long a, long b) =>
        throw new ArgumentOutOfRangeException(a < 0 ? nameof(a) : nameof(b), $"Expected sizes >= 0, actual {a} and {b}.");

    /// <summary>a·b·c for non-negative sizes, saturating at <see cref="long.MaxValue"/>.</summary>
    public static long Product(long a, long b, long c) => Product(Product(a, b), c);

    /// <summary>a + b for non-negative sizes, saturating at <see cref="long.MaxValue"/>.</summary>
    public static long Sum(long a, long b) => a > long.MaxValue - b ? long.MaxValue : a + b;

    /// <summary>The smallest multiple of <paramref name="multiple"/> that is ≥ <paramref name="value"/>, in 64 bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long RoundUp(long value, long multiple) => (value + multiple - 1) / multiple * multiple;

    /// <summary>
    /// <paramref name="length"/> as an <c>int</c> array length, or an <see cref="ArgumentOutOfRangeException"/> naming
    /// <paramref name="paramName"/> and what the buffer is when it exceeds <see cref="Array.MaxLength"/>.
    /// </summary>
    public static int ArrayLength(long length, string paramName, string what)
    {
        if (length < 0 || length > Array.MaxLength)
        {
            throw new ArgumentOutOfRangeException(paramName, length, $"The {what} would need {length} elements; at most {Array.MaxLength} fit one array.");
        }

        return (int)length;
    }
}
