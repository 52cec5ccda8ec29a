using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace Bptt.Fast.Internals;

/// <summary>
/// The bounds layer of the unchecked kernels. Every kernel entry that goes on to read or write through
/// <see cref="Unsafe"/> references states its length preconditions with <see cref="Require"/>, computed in 64 bits.
/// The public entry points have already proven them from validated arguments, so a failure here is a bug in the library,
/// never bad user input: it throws <see cref="InvalidOperationException"/> before any memory outside the spans is
/// touched, in every build (the checks are O(1) per kernel call). The tests call the internal kernels with short
/// buffers to show that an overrun like the one that once wrote past a packing buffer is now caught here.
/// </summary>
internal static class Bounds
{
    /// <summary>Throws unless <paramref name="condition"/> holds.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Require([DoesNotReturnIf(false)] bool condition, [CallerArgumentExpression(nameof(condition))] string expression = "")
    {
        if (!condition)
        {
            Fail(expression);
        }
    }

    /// <summary>A span of <paramref name="length"/> elements holds a matrix of rows×cols with row stride ld (64-bit arithmetic).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Holds(int length, int rows, int cols, int ld) =>
        rows >= 0 && cols >= 0 && ld >= cols && (rows == 0 || cols == 0 || length >= (((long)rows - 1) * ld) + cols);

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Fail(string expression) =>
        throw new InvalidOperationException($"Bptt.Fast kernel precondition violated: {expression}. This is a bug in the library; nothing was written out of bounds.");
}
