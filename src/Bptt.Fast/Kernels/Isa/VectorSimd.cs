using System.Numerics;
using System.Runtime.CompilerServices;
using Vec = System.Numerics.Vector<float>;
using VecOps = System.Numerics.Vector;

namespace Bptt.Fast.Kernels.Isa;

/// <summary>Portable <see cref="Vector{T}"/>: whatever width the runtime gives (4 with SSE, 8 with AVX); multiply and add are separate.</summary>
internal readonly struct VectorSimd : ISimd<Vec>
{
    public static int Count => Vec.Count;

    public static Vec Zero => Vec.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Broadcast(float value) => new(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Load(ref float source) => VecOps.LoadUnsafe(ref source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vec value, ref float destination) => value.StoreUnsafe(ref destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec MultiplyAdd(Vec a, Vec b, Vec c) => (a * b) + c;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Add(Vec a, Vec b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Subtract(Vec a, Vec b) => a - b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Multiply(Vec a, Vec b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Divide(Vec a, Vec b) => a / b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Sqrt(Vec a) => VecOps.SquareRoot(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Min(Vec a, Vec b) => VecOps.MinNative(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Max(Vec a, Vec b) => VecOps.MaxNative(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec MaxBits(Vec a, Vec b) => VecOps.AsVectorSingle(VecOps.Max(VecOps.AsVectorInt32(a), VecOps.AsVectorInt32(b)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec MinBits(Vec a, Vec b) => VecOps.AsVectorSingle(VecOps.Min(VecOps.AsVectorInt32(a), VecOps.AsVectorInt32(b)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Abs(Vec a) => VecOps.Abs(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec CopySign(Vec magnitude, Vec sign) => VecOps.CopySign(magnitude, sign);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec LessThan(Vec a, Vec b) => VecOps.AsVectorSingle(VecOps.LessThan(a, b));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec GreaterThan(Vec a, Vec b) => VecOps.AsVectorSingle(VecOps.GreaterThan(a, b));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec IsNaN(Vec a) => ~VecOps.AsVectorSingle(VecOps.Equals(a, a));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Select(Vec mask, Vec a, Vec b) => VecOps.ConditionalSelect(mask, a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Pow2FromShifted(Vec j) => VecOps.AsVectorSingle(VecOps.ShiftLeft(VecOps.AsVectorInt32(j), 23));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AnyNonFinite(Vec a) => !VecOps.LessThanAll(VecOps.Abs(a), new Vec(float.PositiveInfinity));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vec a) => VecOps.Sum(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vec a)
    {
        float max = a[0];
        for (int k = 1; k < Vec.Count; k++)
        {
            max = MathF.Max(max, a[k]);
        }

        return max;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Transpose8x8(ref float source, nint sourceStride, ref float destination, nint destinationStride) =>
        Transposes.Scalar8x8(ref source, sourceStride, ref destination, destinationStride);
}
