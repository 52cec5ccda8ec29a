using System.Runtime.CompilerServices;

namespace Bptt.Fast.Kernels.Isa;

/// <summary>
/// The vector operations one instruction set provides, as static members of a struct so that the JIT specialises
/// every generic kernel for each ISA and inlines these calls: <c>VectorKernels&lt;Simd256, Vector256&lt;float&gt;&gt;</c> compiles
/// to straight AVX2/FMA code. This folder holds these structs alone; the kernels are written once, in Kernels/Bodies, and
/// the functions they share (exp, tanh, the epilogues) in Kernels/Functions.
/// </summary>
/// <typeparam name="TVec">The register type: Vector512&lt;float&gt;, Vector256&lt;float&gt;, Vector128&lt;float&gt;, Vector&lt;float&gt; or float.</typeparam>
internal interface ISimd<TVec>
    where TVec : struct
{
    /// <summary>Floats per register.</summary>
    static abstract int Count { get; }

    /// <summary>All lanes zero.</summary>
    static abstract TVec Zero { get; }

    /// <summary>All lanes <paramref name="value"/>.</summary>
    static abstract TVec Broadcast(float value);

    /// <summary>Loads <see cref="Count"/> floats from <paramref name="source"/> (any alignment).</summary>
    static abstract TVec Load(ref float source);

    /// <summary>Stores <see cref="Count"/> floats at <paramref name="destination"/> (any alignment).</summary>
    static abstract void Store(TVec value, ref float destination);

    /// <summary>a·b + c, fused where the ISA has FMA.</summary>
    static abstract TVec MultiplyAdd(TVec a, TVec b, TVec c);

    /// <summary>a + b.</summary>
    static abstract TVec Add(TVec a, TVec b);

    /// <summary>a − b.</summary>
    static abstract TVec Subtract(TVec a, TVec b);

    /// <summary>a · b.</summary>
    static abstract TVec Multiply(TVec a, TVec b);

    /// <summary>a / b.</summary>
    static abstract TVec Divide(TVec a, TVec b);

    /// <summary>√a.</summary>
    static abstract TVec Sqrt(TVec a);

    /// <summary>Lane-wise minimum with the hardware's NaN behaviour: where either lane is NaN the result is
    /// <paramref name="b"/> (x64's <c>minps</c>, the scalar <c>a &lt; b ? a : b</c>) or NaN (arm64's <c>fmin</c>), so a NaN in
    /// <paramref name="b"/> always survives; callers that need more handle NaN themselves.</summary>
    static abstract TVec Min(TVec a, TVec b);

    /// <summary>Lane-wise maximum with the hardware's NaN behaviour, as <see cref="Min"/>: where either lane is NaN the
    /// result is <paramref name="b"/> or NaN.</summary>
    static abstract TVec Max(TVec a, TVec b);

    /// <summary>Lane-wise maximum of the bit patterns read as signed 32-bit integers. Over magnitudes (sign bit clear) this
    /// is the float maximum with NaN above +∞ above every finite value, so NaN and ±∞ need no test of their own.</summary>
    static abstract TVec MaxBits(TVec a, TVec b);

    /// <summary>Lane-wise minimum of the bit patterns read as signed 32-bit integers: negative exactly when some lane
    /// has its sign bit set (−0 included).</summary>
    static abstract TVec MinBits(TVec a, TVec b);

    /// <summary>|a|.</summary>
    static abstract TVec Abs(TVec a);

    /// <summary>The sign bit of <paramref name="sign"/> with the magnitude of <paramref name="magnitude"/>.</summary>
    static abstract TVec CopySign(TVec magnitude, TVec sign);

    /// <summary>Lanes where a &lt; b, as an all-ones mask.</summary>
    static abstract TVec LessThan(TVec a, TVec b);

    /// <summary>Lanes where a &gt; b, as an all-ones mask.</summary>
    static abstract TVec GreaterThan(TVec a, TVec b);

    /// <summary>Lanes that hold NaN, as an all-ones mask.</summary>
    static abstract TVec IsNaN(TVec a);

    /// <summary>Per lane: mask ? a : b.</summary>
    static abstract TVec Select(TVec mask, TVec a, TVec b);

    /// <summary>
    /// 2ⁿ from j = S + n, S = 1.5·2²³ + 127 (<see cref="Functions.SimdMath{TOps, TVec}.Shifter"/>), n an integer in [−126, 127]:
    /// j's bit pattern shifted left by 23, so that its low nine bits, 127 + n, land in the exponent field. Adding S to a
    /// float below 2²² rounds it to an integer in the low bits (the shifter trick), so a caller gets n as j − S and 2ⁿ from
    /// this one shift, with no rounding or conversion instruction.
    /// </summary>
    static abstract TVec Pow2FromShifted(TVec j);

    /// <summary>Whether any lane is NaN or ±∞.</summary>
    static abstract bool AnyNonFinite(TVec a);

    /// <summary>The sum of the lanes.</summary>
    static abstract float Sum(TVec a);

    /// <summary>The largest lane.</summary>
    static abstract float MaxAcross(TVec a);

    /// <summary>Moves an 8×8 block transposed: destination[c·dstStride + r] = source[r·srcStride + c] (packing only; the
    /// caller proves both blocks are inside its buffers).</summary>
    static abstract void Transpose8x8(ref float source, nint sourceStride, ref float destination, nint destinationStride);
}

/// <summary>Helpers shared by the ISA structs.</summary>
internal static class SimdRef
{
    /// <summary>A reference to element <paramref name="index"/> of <paramref name="start"/>, without bounds checks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ref float At(ref float start, nint index) => ref Unsafe.Add(ref start, index);
}
