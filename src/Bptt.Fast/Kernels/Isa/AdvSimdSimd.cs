using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using Vec = System.Runtime.Intrinsics.Vector128<float>;
using VecOps = System.Runtime.Intrinsics.Vector128;

namespace Bptt.Fast.Kernels.Isa;

/// <summary>arm64 AdvSimd (NEON): 4 floats per q register, <c>fmla</c> for <see cref="MultiplyAdd"/>.</summary>
internal readonly struct AdvSimdSimd : ISimd<Vec>
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
    public static Vec MultiplyAdd(Vec a, Vec b, Vec c) => AdvSimd.FusedMultiplyAdd(c, a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Add(Vec a, Vec b) => a + b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Subtract(Vec a, Vec b) => a - b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Multiply(Vec a, Vec b) => a * b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Divide(Vec a, Vec b) => a / b;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Min(Vec a, Vec b) => AdvSimd.Min(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Max(Vec a, Vec b) => AdvSimd.Max(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Abs(Vec a) => AdvSimd.Abs(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec CopySign(Vec magnitude, Vec sign) => VecOps.CopySign(magnitude, sign);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec LessThan(Vec a, Vec b) => AdvSimd.CompareLessThan(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec GreaterThan(Vec a, Vec b) => AdvSimd.CompareGreaterThan(a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec IsNaN(Vec a) => ~AdvSimd.CompareEqual(a, a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Select(Vec mask, Vec a, Vec b) => AdvSimd.BitwiseSelect(mask, a, b);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Round(Vec a) => AdvSimd.RoundToNearest(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vec Pow2(Vec n) => VecOps.ShiftLeft(AdvSimd.ConvertToInt32RoundToZero(n) + VecOps.Create(127), 23).AsSingle();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool AnyNonFinite(Vec a) => !VecOps.LessThanAll(AdvSimd.Abs(a), VecOps.Create(float.PositiveInfinity));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sum(Vec a) => VecOps.Sum(a);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vec a) => AdvSimd.Arm64.MaxAcross(a).ToScalar();
}
