using System.Runtime.CompilerServices;
using Bptt.Fast.Kernels.Isa;

namespace Bptt.Fast.Kernels.Functions;

/// <summary>
/// Vectorised exp, tanh and sigmoid, written once over <see cref="ISimd{TVec}"/>. The scalar tails of every kernel use
/// the same formulas through <see cref="ScalarSimd"/>, so a value does not depend on where it sits in a span.
/// </summary>
/// <remarks>
/// exp: Cody–Waite range reduction x = n·ln2 + r with |r| ≤ ln2/2, then the degree-6 minimax polynomial of Cephes
/// <c>expf</c> (S. L. Moshier, Cephes Math Library, 1984–2000), scaled by 2ⁿ built in the exponent bits. Inputs are
/// clamped to [−87, 88], so the result never overflows: exp(88) ≈ 1.65e38, exp(−87) ≈ 1.6e−38.
/// tanh: for |x| &lt; 0.625 the odd polynomial x + x³P(x²) of Cephes <c>tanhf</c>; otherwise 1 − 2/(e^{2|x|} + 1) with
/// the sign of x, and |x| clamped to 10 (from about 9.02 on, tanh rounds to 1 in float), so tanh(±1e4) = ±1.
/// sigmoid: 1/(1 + e^{−x}). NaN in gives NaN out for all three.
/// Measured over a dense sweep (ExtremesTests.ApproximationsMeetTheirStatedErrorOverADenseSweep): exp has relative error below 3e−7 on [−87, 88];
/// tanh and sigmoid have absolute error below 3e−7 everywhere, and tanh relative error below 5e−7.
/// </remarks>
internal static class SimdMath<TOps, TVec>
    where TOps : struct, ISimd<TVec>
    where TVec : struct
{
    /// <summary>e^x.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Exp(TVec x)
    {
        TVec xc = TOps.Min(TOps.Max(x, TOps.Broadcast(-87f)), TOps.Broadcast(88f));
        return TOps.Select(TOps.IsNaN(x), x, ExpInRange(xc));
    }

    /// <summary>
    /// e^x for x already in [−87, 88], with no clamp and no NaN handling: the body of <see cref="Exp"/>, for a caller whose
    /// argument is bounded by construction (tanh's 2·min(|x|, 10)), which then skips four operations per register and
    /// gets the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TVec ExpInRange(TVec xc)
    {
        TVec n = TOps.Round(TOps.Multiply(xc, TOps.Broadcast(1.44269504088896341f)));
        TVec r = TOps.MultiplyAdd(n, TOps.Broadcast(-0.693359375f), xc);
        r = TOps.MultiplyAdd(n, TOps.Broadcast(2.12194440e-4f), r);
        TVec p = TOps.Broadcast(1.9875691500E-4f);
        p = TOps.MultiplyAdd(p, r, TOps.Broadcast(1.3981999507E-3f));
        p = TOps.MultiplyAdd(p, r, TOps.Broadcast(8.3334519073E-3f));
        p = TOps.MultiplyAdd(p, r, TOps.Broadcast(4.1665795894E-2f));
        p = TOps.MultiplyAdd(p, r, TOps.Broadcast(1.6666665459E-1f));
        p = TOps.MultiplyAdd(p, r, TOps.Broadcast(5.0000001201E-1f));
        p = TOps.MultiplyAdd(p, TOps.Multiply(r, r), TOps.Add(r, TOps.Broadcast(1f)));
        return TOps.Multiply(p, TOps.Pow2(n));
    }

    /// <summary>tanh(x).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TVec Tanh(TVec x)
    {
        TVec ax = TOps.Abs(x);
        TVec z = TOps.Multiply(x, x);
        TVec p = TOps.Broadcast(-5.70498872745E-3f);
        p = TOps.MultiplyAdd(p, z, TOps.Broadcast(2.06390887954E-2f));
        p = TOps.MultiplyAdd(p, z, TOps.Broadcast(-5.37397155531E-2f));
        p = TOps.MultiplyAdd(p, z, TOps.Broadcast(1.33314422036E-1f));
        p = TOps.MultiplyAdd(p, z, TOps.Broadcast(-3.33332819422E-1f));
        TVec small = TOps.MultiplyAdd(TOps.Multiply(p, z), x, x);
        TVec e = ExpInRange(TOps.Multiply(TOps.Min(ax, TOps.Broadcast(10f)), TOps.Broadcast(2f))); // in [0, 20]; NaN is handled below
        TVec large = TOps.Subtract(TOps.Broadcast(1f), TOps.Divide(TOps.Broadcast(2f), TOps.Add(e, TOps.Broadcast(1f))));
        large = TOps.CopySign(large, x);
        TVec result = TOps.Select(TOps.LessThan(ax, TOps.Broadcast(0.625f)), small, large);
        return TOps.Select(TOps.IsNaN(x), x, result);
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
