using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;

namespace Bptt.Fast.Kernels.Isa;

/// <summary>Horizontal maxima, the one operation with an ISA-specific override (arm64's <c>fmaxv</c>).</summary>
internal static class Lanes
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector512<float> a) => MaxAcross(Vector256.MaxNative(a.GetLower(), a.GetUpper()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector256<float> a) => MaxAcross(Vector128.MaxNative(a.GetLower(), a.GetUpper()));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float MaxAcross(Vector128<float> a)
    {
        if (AdvSimd.Arm64.IsSupported)
        {
            return AdvSimd.Arm64.MaxAcross(a).ToScalar();
        }

        Vector128<float> m = Vector128.MaxNative(a, Vector128.Shuffle(a, Vector128.Create(2, 3, 0, 1)));
        m = Vector128.MaxNative(m, Vector128.Shuffle(m, Vector128.Create(1, 0, 3, 2)));
        return m.ToScalar();
    }
}
