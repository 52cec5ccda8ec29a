using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Vec = System.Runtime.Intrinsics.Vector128<float>;
using VecOps = System.Runtime.Intrinsics.Vector128;

namespace Bptt.Fast.Kernels.Isa;

/// <summary>
/// 128-bit registers, 4 floats: arm64 AdvSimd (<c>fmla</c>), KernelIsa.AdvSimd.
/// Written with the cross-platform <see cref="VecOps"/> API only, so the 128-bit structs differ in the width alias and
/// their summary (compare them with a diff); <see cref="MultiplyAdd"/> is a fused multiply-add, which every ISA that
/// selects this struct has.
/// </summary>
internal readonly struct Simd128 : ISimd<Vec>
{
    public static int Count => Vec.Count;

    public static Vec Zero => Vec.Zero;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Broadcast(float value) => VecOps.Create(value);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Load(ref float source) => VecOps.LoadUnsafe(ref source);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Store(Vec value, ref float destination) => value.StoreUnsafe(ref destination);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec MultiplyAdd(Vec a, Vec b, Vec c) => VecOps.FusedMultiplyAdd(a, b, c);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Add(Vec a, Vec b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Subtract(Vec a, Vec b) => a - b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Multiply(Vec a, Vec b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Divide(Vec a, Vec b) => a / b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Sqrt(Vec a) => VecOps.Sqrt(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Min(Vec a, Vec b) => VecOps.MinNative(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Max(Vec a, Vec b) => VecOps.MaxNative(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec MaxBits(Vec a, Vec b) => VecOps.Max(a.AsInt32(), b.AsInt32()).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec MinBits(Vec a, Vec b) => VecOps.Min(a.AsInt32(), b.AsInt32()).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Abs(Vec a) => VecOps.Abs(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec CopySign(Vec magnitude, Vec sign) => VecOps.CopySign(magnitude, sign);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec LessThan(Vec a, Vec b) => VecOps.LessThan(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec GreaterThan(Vec a, Vec b) => VecOps.GreaterThan(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec IsNaN(Vec a) => ~VecOps.Equals(a, a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Select(Vec mask, Vec a, Vec b) => VecOps.ConditionalSelect(mask, a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Pow2FromShifted(Vec j) => VecOps.ShiftLeft(j.AsInt32(), 23).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AnyNonFinite(Vec a) => !VecOps.LessThanAll(VecOps.Abs(a), VecOps.Create(float.PositiveInfinity));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vec a) => VecOps.Sum(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vec a) => Lanes.MaxAcross(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Transpose8x8(ref float source, nint sourceStride, ref float destination, nint destinationStride) =>
        Transposes.Transpose8x8(ref source, sourceStride, ref destination, destinationStride);
}
