using System.Runtime.CompilerServices;

namespace Bptt.Fast.Kernels.Isa;

/// <summary>One float per "register": the generic kernels compiled as plain scalar loops, for hardware without SIMD.</summary>
internal readonly struct ScalarSimd : ISimd<float>
{
    public static int Count => 1;

    public static float Zero => 0f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Broadcast(float value) => value;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Load(ref float source) => source;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(float value, ref float destination) => destination = value;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MultiplyAdd(float a, float b, float c) => (a * b) + c;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Add(float a, float b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Subtract(float a, float b) => a - b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Multiply(float a, float b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Divide(float a, float b) => a / b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sqrt(float a) => MathF.Sqrt(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Min(float a, float b) => a < b ? a : b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Max(float a, float b) => a > b ? a : b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxBits(float a, float b) => BitConverter.Int32BitsToSingle(Math.Max(BitConverter.SingleToInt32Bits(a), BitConverter.SingleToInt32Bits(b)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MinBits(float a, float b) => BitConverter.Int32BitsToSingle(Math.Min(BitConverter.SingleToInt32Bits(a), BitConverter.SingleToInt32Bits(b)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Abs(float a) => MathF.Abs(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float CopySign(float magnitude, float sign) => MathF.CopySign(magnitude, sign);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float LessThan(float a, float b) => a < b ? AllOnes : 0f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float GreaterThan(float a, float b) => a > b ? AllOnes : 0f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float IsNaN(float a) => float.IsNaN(a) ? AllOnes : 0f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Select(float mask, float a, float b) => BitConverter.SingleToInt32Bits(mask) != 0 ? a : b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Pow2FromShifted(float j) => BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(j) << 23);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AnyNonFinite(float a) => !float.IsFinite(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(float a) => a;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(float a) => a;

    private static float AllOnes => BitConverter.Int32BitsToSingle(-1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Transpose8x8(ref float source, nint sourceStride, ref float destination, nint destinationStride) =>
        Transposes.Scalar8x8(ref source, sourceStride, ref destination, destinationStride);
}
