using System.Runtime.CompilerServices;
using Bptt.Fast.Kernels.Isa;

namespace Bptt.Fast.Kernels.Functions;

/// <summary>What a matrix-vector kernel does to each accumulated lane before it stores it.</summary>
internal interface IEpilogue
{
    /// <summary>Whether <see cref="Apply{TOps, TVec}"/> reads the auxiliary operand.</summary>
    static abstract bool UsesAux { get; }

    /// <summary>The stored value for accumulator <paramref name="acc"/> and auxiliary lanes <paramref name="aux"/>.</summary>
    static abstract TVec Apply<TOps, TVec>(TVec acc, TVec aux)
        where TOps : struct, ISimd<TVec>
        where TVec : struct;
}

/// <summary>y = acc.</summary>
internal readonly struct IdentityEpilogue : IEpilogue
{
    public static bool UsesAux => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Apply<TOps, TVec>(TVec acc, TVec aux)
        where TOps : struct, ISimd<TVec>
        where TVec : struct => acc;
}

/// <summary>hₜ = f(uₜ), equation (2).</summary>
internal readonly struct ActivationEpilogue<TAct> : IEpilogue
    where TAct : struct, IActivationKind
{
    public static bool UsesAux => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Apply<TOps, TVec>(TVec acc, TVec aux)
        where TOps : struct, ISimd<TVec>
        where TVec : struct => SimdMath<TOps, TVec>.Apply<TAct>(acc);
}

/// <summary>hₜ = f(acc + aux), equations (1)–(2) after a product: acc = W_hh hₜ₋₁ (a GEMM row), aux = b_h + W_xh xₜ (a token's
/// row of the model's table), added in that order, as a product with β = 1 over the prefilled row would add them.</summary>
internal readonly struct BiasedActivationEpilogue<TAct> : IEpilogue
    where TAct : struct, IActivationKind
{
    public static bool UsesAux => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Apply<TOps, TVec>(TVec acc, TVec aux)
        where TOps : struct, ISimd<TVec>
        where TVec : struct => SimdMath<TOps, TVec>.Apply<TAct>(TOps.Add(acc, aux));
}

/// <summary>δₜ = acc ⊙ f′(uₜ), with f′ taken from aux = hₜ, equation (12).</summary>
internal readonly struct DerivativeEpilogue<TAct> : IEpilogue
    where TAct : struct, IActivationKind
{
    public static bool UsesAux => true;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Apply<TOps, TVec>(TVec acc, TVec aux)
        where TOps : struct, ISimd<TVec>
        where TVec : struct => TOps.Multiply(acc, SimdMath<TOps, TVec>.Derivative<TAct>(aux));
}
