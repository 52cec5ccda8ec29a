using System.Runtime.CompilerServices;
using Bptt.Fast.Kernels.Isa;

namespace Bptt.Fast.Kernels.Functions;

/// <summary>
/// Vectorised exp, tanh and sigmoid, written once over <see cref="ISimd{TVec}"/>. The scalar tails of every kernel use
/// the same formulas through <see cref="ScalarSimd"/>, so a value does not depend on where it sits in a span.
/// </summary>
/// <remarks>
/// exp: Cody–Waite range reduction x = n·ln2 + r with |r| ≤ ln2/2, n = round(x·log₂e) taken with the shifter trick
/// (<see cref="Shifter"/>, which also gives 2ⁿ: <see cref="ISimd{TVec}.Pow2FromShifted"/>), then the degree-6 minimax
/// polynomial of Cephes <c>expf</c> (S. L. Moshier, Cephes Math Library, 1984–2000), scaled by 2ⁿ. Inputs are clamped to
/// [−87, 88], so the result never overflows: exp(88) ≈ 1.65e38, exp(−87) ≈ 1.6e−38.
/// tanh: tanh|x| = −y / (2 + y) with y = expm1(−2t), t = min(|x|, 9) (from about 9.02 on, tanh rounds to 1 in float), and
/// the sign of x. expm1 takes the same reduction: y = 2ⁿ·expm1(r) + (2ⁿ − 1), with expm1(r) = r + r²·q(r) from its
/// Taylor series to r⁷ (truncation below 1.6e−8 relative for |r| ≤ ln2/2) and 2ⁿ − 1 exact for n in [−24, 0] (n = −25
/// and −26, |x| above about 8.49, round it to −1, so tanh returns 1 where 0.99999994 is nearest: one ulp). For
/// small |x| (n = 0) y is expm1(r) itself, so tanh keeps its relative precision near 0 without a second polynomial; one
/// path serves every x, with one division and no selects.
/// sigmoid: 1/(1 + e^{−x}). NaN in gives NaN out for all three: exp selects it back; tanh takes min(9, |x|) with |x|
/// second, which <see cref="ISimd{TVec}.Min"/> returns when either is NaN, and NaN then flows through every operation.
/// Measured over a dense sweep (ExtremesTests.ApproximationsMeetTheirStatedErrorOverADenseSweep): exp has relative error below 3e−7 on [−87, 88];
/// tanh and sigmoid have absolute error below 3e−7 everywhere, and tanh relative error below 5e−7 (every float in
/// [2⁻³⁰, 9.5]: 1.5e−7 absolute, 1.8e−7 relative with FMA).
/// </remarks>
internal static class SimdMath<TOps, TVec>
    where TOps : struct, ISimd<TVec>
    where TVec : struct
{
    /// <summary>1.5·2²³ + 127: z + <see cref="Shifter"/> rounds z (|z| &lt; 2²²) to the integer n in its low bits, biased by
    /// 127 so that <see cref="ISimd{TVec}.Pow2FromShifted"/> reads 2ⁿ off them.</summary>
    public const float Shifter = 12583039f;

    /// <summary>e^x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Exp(TVec x)
    {
        TVec xc = TOps.Min(TOps.Max(x, TOps.Broadcast(-87f)), TOps.Broadcast(88f));
        TVec j = TOps.MultiplyAdd(xc, TOps.Broadcast(1.44269504088896341f), TOps.Broadcast(Shifter));
        TVec n = TOps.Subtract(j, TOps.Broadcast(Shifter));
        TVec r = TOps.MultiplyAdd(n, TOps.Broadcast(-0.693359375f), xc);
        r = TOps.MultiplyAdd(n, TOps.Broadcast(2.12194440e-4f), r);
        TVec p = TOps.Broadcast(1.9875691500E-4f);
        p = TOps.MultiplyAdd(p, r, TOps.Broadcast(1.3981999507E-3f));
        p = TOps.MultiplyAdd(p, r, TOps.Broadcast(8.3334519073E-3f));
        p = TOps.MultiplyAdd(p, r, TOps.Broadcast(4.1665795894E-2f));
        p = TOps.MultiplyAdd(p, r, TOps.Broadcast(1.6666665459E-1f));
        p = TOps.MultiplyAdd(p, r, TOps.Broadcast(5.0000001201E-1f));
        p = TOps.MultiplyAdd(p, TOps.Multiply(r, r), TOps.Add(r, TOps.Broadcast(1f)));
        return TOps.Select(TOps.IsNaN(x), x, TOps.Multiply(p, TOps.Pow2FromShifted(j)));
    }

    /// <summary>tanh(x), the activation of equation (2).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Tanh(TVec x)
    {
        TVec t = TOps.Min(TOps.Broadcast(9f), TOps.Abs(x)); // NaN stays NaN: Min returns its second operand or NaN when one is NaN
        TVec z = TOps.Multiply(t, TOps.Broadcast(-2f));     // exact
        TVec j = TOps.MultiplyAdd(z, TOps.Broadcast(1.44269504088896341f), TOps.Broadcast(Shifter));
        TVec n = TOps.Subtract(j, TOps.Broadcast(Shifter)); // round(z·log₂e), in [−26, 0]
        TVec r = TOps.MultiplyAdd(n, TOps.Broadcast(-0.693359375f), z);
        r = TOps.MultiplyAdd(n, TOps.Broadcast(2.12194440e-4f), r); // z − n·ln2, |r| ≤ ln2/2
        TVec q = TOps.Broadcast(1f / 5040f);
        q = TOps.MultiplyAdd(q, r, TOps.Broadcast(1f / 720f));
        q = TOps.MultiplyAdd(q, r, TOps.Broadcast(1f / 120f));
        q = TOps.MultiplyAdd(q, r, TOps.Broadcast(1f / 24f));
        q = TOps.MultiplyAdd(q, r, TOps.Broadcast(1f / 6f));
        q = TOps.MultiplyAdd(q, r, TOps.Broadcast(0.5f));
        TVec em1 = TOps.MultiplyAdd(q, TOps.Multiply(r, r), r);                     // expm1(r)
        TVec s = TOps.Pow2FromShifted(j);                                           // 2ⁿ
        TVec y = TOps.MultiplyAdd(s, em1, TOps.Subtract(s, TOps.Broadcast(1f)));   // expm1(z) in (−1, 0]
        TVec magnitude = TOps.Divide(y, TOps.Subtract(TOps.Broadcast(-2f), y));    // −y / (2 + y) ≥ 0
        return TOps.CopySign(magnitude, x);
    }

    /// <summary>σ(x) = 1 / (1 + e^{−x}).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Sigmoid(TVec x) =>
        TOps.Divide(TOps.Broadcast(1f), TOps.Add(TOps.Broadcast(1f), Exp(TOps.Subtract(TOps.Zero, x))));

    /// <summary>max(x, 0), NaN preserved.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Relu(TVec x) => TOps.Select(TOps.LessThan(x, TOps.Zero), TOps.Zero, x);

    /// <summary>f(u) for the activation <typeparamref name="TAct"/>, equation (2).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Apply<TAct>(TVec u)
        where TAct : struct, IActivationKind =>
        TAct.Kind switch
        {
            Activation.Tanh => Tanh(u),
            Activation.Relu => Relu(u),
            _ => Sigmoid(u),
        };

    /// <summary>f′(u) written through h = f(u): 1 − h², [h &gt; 0] or h(1 − h).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Derivative<TAct>(TVec h)
        where TAct : struct, IActivationKind =>
        TAct.Kind switch
        {
            Activation.Tanh => TOps.Subtract(TOps.Broadcast(1f), TOps.Multiply(h, h)),
            Activation.Relu => TOps.Select(TOps.GreaterThan(h, TOps.Zero), TOps.Broadcast(1f), TOps.Zero),
            _ => TOps.Multiply(h, TOps.Subtract(TOps.Broadcast(1f), h)),
        };
}

/// <summary>An activation as a type, so that the JIT compiles one specialised loop per activation.</summary>
internal interface IActivationKind
{
    /// <summary>The activation this type stands for.</summary>
    static abstract Activation Kind { get; }
}

/// <summary>tanh as a type.</summary>
internal readonly struct TanhKind : IActivationKind
{
    public static Activation Kind => Activation.Tanh;
}

/// <summary>relu as a type.</summary>
internal readonly struct ReluKind : IActivationKind
{
    public static Activation Kind => Activation.Relu;
}

/// <summary>sigmoid as a type.</summary>
internal readonly struct SigmoidKind : IActivationKind
{
    public static Activation Kind => Activation.Sigmoid;
}
