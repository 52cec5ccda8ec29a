using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Bptt.Fast.Internals;
using Bptt.Fast.Kernels.Isa;

namespace Bptt.Fast.Kernels.Bodies;

/// <summary>
/// An optimizer's element-wise rule: new θ and up to two state values from θ, g and the state, the same formula for
/// every width (the ISA struct is a type argument of Apply; ScalarSimd gives the one-element form). Every rule reads the
/// gradient as g·scale, so that clipping by global norm needs no pass of its own (scale = 1 leaves g exact).
/// </summary>
internal interface IUpdateRule
{
    /// <summary>How many state blocks the rule reads and writes: 0, 1 or 2.</summary>
    static abstract int StateBlocks { get; }

    /// <summary>The rule's scalar constants, each broadcast into a register once per pass (see <see cref="RuleConstants{TVec}"/>).</summary>
    RuleConstants<TVec> Broadcast<TOps, TVec>()
        where TOps : struct, ISimd<TVec>
        where TVec : struct;

    /// <summary>Updates one register of θ and of the state from one register of g, with the constants of <see cref="Broadcast"/>.</summary>
    void Apply<TOps, TVec>(in RuleConstants<TVec> k, ref TVec theta, TVec g, ref TVec s0, ref TVec s1)
        where TOps : struct, ISimd<TVec>
        where TVec : struct;

    /// <summary>
    /// Whether inputs inside <paramref name="extent"/> provably give finite new values: every intermediate of the rule,
    /// bounded in double from the largest magnitudes, stays below <see cref="UpdateExtent.Limit"/>. True lets the
    /// optimizer skip its exact probe; false only means the probe decides.
    /// </summary>
    bool Admits(in UpdateExtent extent);
}

/// <summary>
/// An update rule's scalar constants broadcast into registers once per pass. The JIT does not hoist a broadcast out of a
/// loop, and Adam's loop body is short enough that its eleven broadcasts per register cost about a third of the pass. The
/// fields are the rule's own, in the order its summary lists them.
/// </summary>
internal struct RuleConstants<TVec>
    where TVec : struct
{
    public TVec K0, K1, K2, K3, K4, K5, K6, K7, K8, K9, K10;
}

/// <summary>
/// What one pass over an update's inputs learns (<see cref="Updates{TOps, TVec}.Screen"/>): whether every element is
/// finite, the largest magnitude of θ, g and each state block (0 when not finite), whether the last state block (Adagrad's
/// G, Adam's v) holds no value with its sign bit set (−0 included), and Σg² for the clipping norm.
/// </summary>
internal readonly record struct UpdateExtent(bool Finite, float Theta, float Gradient, float State0, float State1, bool LastStateNonNegative, double SumOfSquares)
{
    /// <summary>
    /// The bound every intermediate of an admitted update stays under: float's largest value over 16. A rule evaluates
    /// at most a dozen float operations per element, each within a relative 2⁻²⁴ of its exact value, so a value bounded
    /// by this in exact arithmetic is finite in float.
    /// </summary>
    public const double Limit = float.MaxValue / 16.0;

    /// <summary>Whether every bound is at most <see cref="Limit"/> (false for NaN).</summary>
    public static bool Below(double a, double b = 0, double c = 0, double d = 0, double e = 0, double f = 0) =>
        a <= Limit && b <= Limit && c <= Limit && d <= Limit && e <= Limit && f <= Limit;
}

/// <summary>Gradient descent with coupled decay: θ ← θ(1 − ηλ) − ηg.</summary>
internal readonly struct GradientDescentRule(float eta, float lambda, float scale) : IUpdateRule
{
    public static int StateBlocks => 0;

    /// <summary>K0 = 1 − ηλ, K1 = η, K2 = the gradient's scale.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public RuleConstants<TVec> Broadcast<TOps, TVec>()
        where TOps : struct, ISimd<TVec>
        where TVec : struct =>
        new() { K0 = TOps.Broadcast(1f - (eta * lambda)), K1 = TOps.Broadcast(eta), K2 = TOps.Broadcast(scale) };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Apply<TOps, TVec>(in RuleConstants<TVec> k, ref TVec theta, TVec g, ref TVec s0, ref TVec s1)
        where TOps : struct, ISimd<TVec>
        where TVec : struct =>
        theta = TOps.Subtract(TOps.Multiply(k.K0, theta), TOps.Multiply(k.K1, TOps.Multiply(g, k.K2)));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Admits(in UpdateExtent extent)
    {
        double gs = (double)extent.Gradient * scale, kept = Math.Abs(1.0 - ((double)eta * lambda)) * extent.Theta;
        return UpdateExtent.Below(gs, eta * gs, kept, kept + (eta * gs));
    }
}

/// <summary>Momentum: g′ = g + λθ; v ← μv + g′; θ ← θ − η(g′ + μv) (Nesterov) or θ ← θ − ηv (classical).</summary>
internal readonly struct MomentumRule(float eta, float mu, float lambda, bool nesterov, float scale) : IUpdateRule
{
    public static int StateBlocks => 1;

    /// <summary>K0 = the gradient's scale, K1 = λ, K2 = μ, K3 = η.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public RuleConstants<TVec> Broadcast<TOps, TVec>()
        where TOps : struct, ISimd<TVec>
        where TVec : struct =>
        new() { K0 = TOps.Broadcast(scale), K1 = TOps.Broadcast(lambda), K2 = TOps.Broadcast(mu), K3 = TOps.Broadcast(eta) };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Apply<TOps, TVec>(in RuleConstants<TVec> k, ref TVec theta, TVec g, ref TVec s0, ref TVec s1)
        where TOps : struct, ISimd<TVec>
        where TVec : struct
    {
        TVec gi = TOps.Add(TOps.Multiply(g, k.K0), TOps.Multiply(k.K1, theta));
        TVec v = TOps.Add(TOps.Multiply(k.K2, s0), gi);
        TVec step = nesterov ? TOps.Add(gi, TOps.Multiply(k.K2, v)) : v;
        s0 = v;
        theta = TOps.Subtract(theta, TOps.Multiply(k.K3, step));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Admits(in UpdateExtent extent)
    {
        double gi = ((double)extent.Gradient * scale) + ((double)lambda * extent.Theta);
        double v = (Math.Abs((double)mu) * extent.State0) + gi, step = nesterov ? gi + (Math.Abs((double)mu) * v) : v;
        return UpdateExtent.Below(gi, v, step, eta * step, extent.Theta + (eta * step));
    }
}

/// <summary>Adagrad: g′ = g + λθ; G ← G + g′²; θ ← θ − η g′ / (√G + ε).</summary>
internal readonly struct AdagradRule(float eta, float epsilon, float lambda, float scale) : IUpdateRule
{
    public static int StateBlocks => 1;

    /// <summary>K0 = the gradient's scale, K1 = λ, K2 = η, K3 = ε.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public RuleConstants<TVec> Broadcast<TOps, TVec>()
        where TOps : struct, ISimd<TVec>
        where TVec : struct =>
        new() { K0 = TOps.Broadcast(scale), K1 = TOps.Broadcast(lambda), K2 = TOps.Broadcast(eta), K3 = TOps.Broadcast(epsilon) };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Apply<TOps, TVec>(in RuleConstants<TVec> k, ref TVec theta, TVec g, ref TVec s0, ref TVec s1)
        where TOps : struct, ISimd<TVec>
        where TVec : struct
    {
        TVec gi = TOps.Add(TOps.Multiply(g, k.K0), TOps.Multiply(k.K1, theta));
        TVec sum = TOps.Add(s0, TOps.Multiply(gi, gi));
        s0 = sum;
        theta = TOps.Subtract(theta, TOps.Divide(TOps.Multiply(k.K2, gi), TOps.Add(TOps.Sqrt(sum), k.K3)));
    }

    // √(G + g′²) + ε ≥ ε when G ≥ 0, so the step is at most η|g′|/ε.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Admits(in UpdateExtent extent)
    {
        double gi = ((double)extent.Gradient * scale) + ((double)lambda * extent.Theta), step = eta * gi / epsilon;
        return extent.LastStateNonNegative && UpdateExtent.Below(gi, gi * gi, extent.State0 + (gi * gi), eta * gi, step, extent.Theta + step);
    }
}

/// <summary>
/// Adam (Kingma &amp; Ba 2015, Algorithm 1) at step t: g′ = g + λθ (coupled decay); m ← β₁m + (1 − β₁)g′;
/// v ← β₂v + (1 − β₂)g′²; θ ← θ − α m̂/(√v̂ + ε) with m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ). AdamW (Loshchilov &amp; Hutter
/// 2019) instead shrinks θ ← θ − αλθ before the step and leaves g alone.
/// </summary>
internal readonly struct AdamRule(float alpha, float beta1, float beta2, float epsilon, float lambda, bool decoupled, long step, float scale) : IUpdateRule
{
    private readonly float _c1 = 1f / (1f - MathF.Pow(beta1, step));
    private readonly float _c2 = 1f / (1f - MathF.Pow(beta2, step));

    public static int StateBlocks => 2;

    /// <summary>K0 = the gradient's scale, K1 = the coupled λ (0 for AdamW), K2 = β₁, K3 = 1 − β₁, K4 = β₂, K5 = 1 − β₂,
    /// K6 = α, K7 = c₁ = 1/(1 − β₁ᵗ), K8 = c₂ = 1/(1 − β₂ᵗ), K9 = ε, K10 = AdamW's shrink 1 − αλ (1 for Adam).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public RuleConstants<TVec> Broadcast<TOps, TVec>()
        where TOps : struct, ISimd<TVec>
        where TVec : struct =>
        new()
        {
            K0 = TOps.Broadcast(scale), K1 = TOps.Broadcast(decoupled ? 0f : lambda), K2 = TOps.Broadcast(beta1), K3 = TOps.Broadcast(1f - beta1),
            K4 = TOps.Broadcast(beta2), K5 = TOps.Broadcast(1f - beta2), K6 = TOps.Broadcast(alpha), K7 = TOps.Broadcast(_c1),
            K8 = TOps.Broadcast(_c2), K9 = TOps.Broadcast(epsilon), K10 = TOps.Broadcast(decoupled ? 1f - (alpha * lambda) : 1f),
        };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Apply<TOps, TVec>(in RuleConstants<TVec> k, ref TVec theta, TVec g, ref TVec s0, ref TVec s1)
        where TOps : struct, ISimd<TVec>
        where TVec : struct
    {
        TVec gi = TOps.Add(TOps.Multiply(g, k.K0), TOps.Multiply(k.K1, theta));
        TVec m = TOps.Add(TOps.Multiply(k.K2, s0), TOps.Multiply(k.K3, gi));
        TVec v = TOps.Add(TOps.Multiply(k.K4, s1), TOps.Multiply(TOps.Multiply(k.K5, gi), gi));
        s0 = m;
        s1 = v;
        TVec update = TOps.Divide(TOps.Multiply(k.K6, TOps.Multiply(m, k.K7)), TOps.Add(TOps.Sqrt(TOps.Multiply(v, k.K8)), k.K9));
        theta = TOps.Subtract(TOps.Multiply(k.K10, theta), update);
    }

    // c₁, c₂ ≥ 1 bound m by m̂ and v by v̂; v ≥ 0 when the stored v is (β₂ ∈ [0, 1)), so √v̂ + ε ≥ ε and the step is
    // at most α|m̂|/ε.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Admits(in UpdateExtent extent)
    {
        double coupled = decoupled ? 0 : lambda, shrink = Math.Abs(decoupled ? 1.0 - ((double)alpha * lambda) : 1.0);
        double gi = ((double)extent.Gradient * scale) + (coupled * extent.Theta);
        double m = ((double)beta1 * extent.State0) + ((1.0 - beta1) * gi), v = ((double)beta2 * extent.State1) + ((1.0 - beta2) * gi * gi);
        double mHat = m * _c1, step = alpha * mHat / epsilon;
        return extent.LastStateNonNegative && UpdateExtent.Below(gi * gi, mHat, v * _c2, alpha * mHat, step, (shrink * extent.Theta) + step);
    }
}

/// <summary>
/// The driver of the update rules, in two modes with the same arithmetic: <c>commit: false</c> computes every new value of
/// θ and of the state without writing and returns whether all are finite (a probe); <c>commit: true</c> writes them.
/// Full registers, then one overlapping last register computed from the inputs before anything is stored.
/// </summary>
internal static class Updates<TOps, TVec>
    where TOps : struct, ISimd<TVec>
    where TVec : struct
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static bool Run<TRule>(TRule rule, Span<float> theta, ReadOnlySpan<float> gradient, Span<float> state0, Span<float> state1, bool commit)
        where TRule : struct, IUpdateRule
    {
        int n = theta.Length, w = TOps.Count;
        Bounds.Require(gradient.Length == n && (TRule.StateBlocks < 1 || state0.Length == n) && (TRule.StateBlocks < 2 || state1.Length == n));
        ref float t = ref MemoryMarshal.GetReference(theta);
        ref float g = ref MemoryMarshal.GetReference(gradient);
        ref float a = ref MemoryMarshal.GetReference(state0);
        ref float b = ref MemoryMarshal.GetReference(state1);
        if (n < w)
        {
            RuleConstants<float> scalar = rule.Broadcast<ScalarSimd, float>();
            float bad = 0f;
            for (int k = 0; k < n; k++)
            {
                bad += One<TRule, ScalarSimd, float>(rule, in scalar, ref t, ref g, ref a, ref b, k, commit);
            }

            return bad == 0f;
        }

        RuleConstants<TVec> constants = rule.Broadcast<TOps, TVec>();
        TVec badVector = TOps.Zero;
        TVec lastTheta = TOps.Load(ref Unsafe.Add(ref t, n - w)), lastS0 = TOps.Zero, lastS1 = TOps.Zero;
        if (TRule.StateBlocks >= 1)
        {
            lastS0 = TOps.Load(ref Unsafe.Add(ref a, n - w));
        }

        if (TRule.StateBlocks >= 2)
        {
            lastS1 = TOps.Load(ref Unsafe.Add(ref b, n - w));
        }

        rule.Apply<TOps, TVec>(in constants, ref lastTheta, TOps.Load(ref Unsafe.Add(ref g, n - w)), ref lastS0, ref lastS1);
        if (commit)
        {
            CommitLoop(rule, in constants, ref t, ref g, ref a, ref b, n - w);
            Store(ref t, ref a, ref b, n - w, lastTheta, lastS0, lastS1, TRule.StateBlocks);
            return true;
        }

        badVector = TOps.Add(ProbeLoop(rule, in constants, ref t, ref g, ref a, ref b, n - w), Poison(lastTheta, lastS0, lastS1));
        return !TOps.AnyNonFinite(badVector);
    }

    /// <summary>
    /// One read of θ, g and the state blocks (each <c>theta.Length</c> long; empty when the rule has fewer): the
    /// <see cref="UpdateExtent"/> a rule's <see cref="IUpdateRule.Admits"/> needs, and Σg² chunked and rounded exactly as
    /// <see cref="ElementWise{TOps, TVec}.SumOfSquares"/> sums it, so that the clipping norm costs no pass of its own.
    /// Magnitudes are maxima of |x|'s bit patterns (NaN above +∞ above every finite value), so the same maximum says
    /// whether every element is finite.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static UpdateExtent Screen(ReadOnlySpan<float> theta, ReadOnlySpan<float> gradient, ReadOnlySpan<float> state0, ReadOnlySpan<float> state1, int stateBlocks)
    {
        int n = theta.Length, w = TOps.Count;
        // n below int.MaxValue − one chunk, so that the chunk start below never wraps (θ holds at most 2³⁰ floats).
        Bounds.Require(gradient.Length == n && (stateBlocks < 1 || state0.Length == n) && (stateBlocks < 2 || state1.Length == n)
            && n <= int.MaxValue - ElementWise<TOps, TVec>.SquaresChunk);
        ref float t = ref MemoryMarshal.GetReference(theta);
        ref float g = ref MemoryMarshal.GetReference(gradient);
        ref float a = ref MemoryMarshal.GetReference(state0);
        ref float b = ref MemoryMarshal.GetReference(state1);
        ref float last = ref stateBlocks >= 2 ? ref b : ref a; // the block whose sign the rules need (G, v)
        TVec maxT = TOps.Zero, maxG = TOps.Zero, max0 = TOps.Zero, max1 = TOps.Zero, sign = TOps.Zero;
        int sMaxT = 0, sMaxG = 0, sMax0 = 0, sMax1 = 0, sSign = 0;
        double total = 0;
        for (int start = 0; start < n; start += ElementWise<TOps, TVec>.SquaresChunk)
        {
            int end = start + Math.Min(ElementWise<TOps, TVec>.SquaresChunk, n - start), k = start;
            TVec squares0 = TOps.Zero, squares1 = TOps.Zero;
            for (; k <= end - (2 * w); k += 2 * w)
            {
                TVec g0 = TOps.Load(ref Unsafe.Add(ref g, k)), g1 = TOps.Load(ref Unsafe.Add(ref g, k + w));
                squares0 = TOps.MultiplyAdd(g0, g0, squares0);
                squares1 = TOps.MultiplyAdd(g1, g1, squares1);
                maxG = TOps.MaxBits(maxG, TOps.MaxBits(TOps.Abs(g0), TOps.Abs(g1)));
                maxT = TOps.MaxBits(maxT, TOps.MaxBits(TOps.Abs(TOps.Load(ref Unsafe.Add(ref t, k))), TOps.Abs(TOps.Load(ref Unsafe.Add(ref t, k + w)))));
                if (stateBlocks >= 1)
                {
                    TVec a0 = TOps.Load(ref Unsafe.Add(ref a, k)), a1 = TOps.Load(ref Unsafe.Add(ref a, k + w));
                    max0 = TOps.MaxBits(max0, TOps.MaxBits(TOps.Abs(a0), TOps.Abs(a1)));
                    if (stateBlocks == 1)
                    {
                        sign = TOps.MinBits(sign, TOps.MinBits(a0, a1));
                    }
                }

                if (stateBlocks >= 2)
                {
                    TVec b0 = TOps.Load(ref Unsafe.Add(ref b, k)), b1 = TOps.Load(ref Unsafe.Add(ref b, k + w));
                    max1 = TOps.MaxBits(max1, TOps.MaxBits(TOps.Abs(b0), TOps.Abs(b1)));
                    sign = TOps.MinBits(sign, TOps.MinBits(b0, b1));
                }
            }

            if (k <= end - w)
            {
                TVec g0 = TOps.Load(ref Unsafe.Add(ref g, k));
                squares0 = TOps.MultiplyAdd(g0, g0, squares0);
                maxG = TOps.MaxBits(maxG, TOps.Abs(g0));
                maxT = TOps.MaxBits(maxT, TOps.Abs(TOps.Load(ref Unsafe.Add(ref t, k))));
                if (stateBlocks >= 1)
                {
                    max0 = TOps.MaxBits(max0, TOps.Abs(TOps.Load(ref Unsafe.Add(ref a, k))));
                }

                if (stateBlocks >= 2)
                {
                    max1 = TOps.MaxBits(max1, TOps.Abs(TOps.Load(ref Unsafe.Add(ref b, k))));
                }

                if (stateBlocks >= 1)
                {
                    sign = TOps.MinBits(sign, TOps.Load(ref Unsafe.Add(ref last, k)));
                }

                k += w;
            }

            double sum = TOps.Sum(TOps.Add(squares0, squares1));
            for (; k < end; k++)
            {
                float gv = Unsafe.Add(ref g, k);
                sum += gv * (double)gv;
                sMaxG = Math.Max(sMaxG, MagnitudeBits(gv));
                sMaxT = Math.Max(sMaxT, MagnitudeBits(Unsafe.Add(ref t, k)));
                sMax0 = stateBlocks >= 1 ? Math.Max(sMax0, MagnitudeBits(Unsafe.Add(ref a, k))) : 0;
                sMax1 = stateBlocks >= 2 ? Math.Max(sMax1, MagnitudeBits(Unsafe.Add(ref b, k))) : 0;
                sSign = stateBlocks >= 1 ? Math.Min(sSign, BitConverter.SingleToInt32Bits(Unsafe.Add(ref last, k))) : 0;
            }

            if (double.IsInfinity(sum))
            {
                sum = 0;
                for (int j = start; j < end; j++)
                {
                    float v = Unsafe.Add(ref g, j);
                    sum += v * (double)v;
                }
            }

            total += sum;
        }

        // Every lane of the maxima is a magnitude (or NaN): finite lanes compare as floats.
        TVec all = TOps.MaxBits(TOps.MaxBits(maxT, maxG), TOps.MaxBits(max0, max1));
        int scalarAll = Math.Max(Math.Max(sMaxT, sMaxG), Math.Max(sMax0, sMax1));
        if (TOps.AnyNonFinite(all) || scalarAll >= PositiveInfinityBits)
        {
            return new UpdateExtent(false, 0f, 0f, 0f, 0f, false, total);
        }

        // sign's lanes are the smallest bit patterns read as integers: negative exactly when some element has its sign
        // bit set (−0 included, which only costs the exact probe). CopySign(1, lane) turns each lane into ±1 by that bit.
        bool nonNegative = TOps.MaxAcross(TOps.Subtract(TOps.Zero, TOps.CopySign(TOps.Broadcast(1f), sign))) < 0f && sSign >= 0;
        return new UpdateExtent(
            true,
            MathF.Max(TOps.MaxAcross(maxT), BitConverter.Int32BitsToSingle(sMaxT)),
            MathF.Max(TOps.MaxAcross(maxG), BitConverter.Int32BitsToSingle(sMaxG)),
            MathF.Max(TOps.MaxAcross(max0), BitConverter.Int32BitsToSingle(sMax0)),
            MathF.Max(TOps.MaxAcross(max1), BitConverter.Int32BitsToSingle(sMax1)),
            nonNegative,
            total);
    }

    private const int PositiveInfinityBits = 0x7F800000;

    private static int MagnitudeBits(float x) => BitConverter.SingleToInt32Bits(x) & int.MaxValue;

    /// <summary>The full registers below <paramref name="end"/>, written. A loop of its own, so that the rule's body (and its
    /// broadcast constants) is inlined and hoisted here whatever the caller's inlining budget.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void CommitLoop<TRule>(TRule rule, in RuleConstants<TVec> constants, ref float t, ref float g, ref float a, ref float b, int end)
        where TRule : struct, IUpdateRule
    {
        RuleConstants<TVec> local = constants; // a copy the loop owns, so that its fields may live in registers
        for (int k = 0; k < end; k += TOps.Count)
        {
            One<TRule, TOps, TVec>(rule, in local, ref t, ref g, ref a, ref b, k, commit: true);
        }
    }

    /// <summary>The full registers below <paramref name="end"/>, probed: the sum of their poison (0 when every new value is finite).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static TVec ProbeLoop<TRule>(TRule rule, in RuleConstants<TVec> constants, ref float t, ref float g, ref float a, ref float b, int end)
        where TRule : struct, IUpdateRule
    {
        RuleConstants<TVec> local = constants;
        TVec bad = TOps.Zero;
        for (int k = 0; k < end; k += TOps.Count)
        {
            bad = TOps.Add(bad, One<TRule, TOps, TVec>(rule, in local, ref t, ref g, ref a, ref b, k, commit: false));
        }

        return bad;
    }

    /// <summary>Applies the rule at element k (one register wide), storing or returning its poison (0 when all finite, else NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TV One<TRule, TO, TV>(TRule rule, in RuleConstants<TV> constants, ref float t, ref float g, ref float a, ref float b, int k, bool commit)
        where TRule : struct, IUpdateRule
        where TO : struct, ISimd<TV>
        where TV : struct
    {
        TV theta = TO.Load(ref Unsafe.Add(ref t, k)), s0 = TO.Zero, s1 = TO.Zero;
        if (TRule.StateBlocks >= 1)
        {
            s0 = TO.Load(ref Unsafe.Add(ref a, k));
        }

        if (TRule.StateBlocks >= 2)
        {
            s1 = TO.Load(ref Unsafe.Add(ref b, k));
        }

        rule.Apply<TO, TV>(in constants, ref theta, TO.Load(ref Unsafe.Add(ref g, k)), ref s0, ref s1);
        if (commit)
        {
            TO.Store(theta, ref Unsafe.Add(ref t, k));
            if (TRule.StateBlocks >= 1)
            {
                TO.Store(s0, ref Unsafe.Add(ref a, k));
            }

            if (TRule.StateBlocks >= 2)
            {
                TO.Store(s1, ref Unsafe.Add(ref b, k));
            }

            return TO.Zero;
        }

        // x·0 is 0 for a finite x and NaN for NaN or ±∞.
        return TO.Add(TO.Multiply(theta, TO.Zero), TO.Add(TO.Multiply(s0, TO.Zero), TO.Multiply(s1, TO.Zero)));
    }

    private static void Store(ref float t, ref float a, ref float b, int k, TVec theta, TVec s0, TVec s1, int blocks)
    {
        TOps.Store(theta, ref Unsafe.Add(ref t, k));
        if (blocks >= 1)
        {
            TOps.Store(s0, ref Unsafe.Add(ref a, k));
        }

        if (blocks >= 2)
        {
            TOps.Store(s1, ref Unsafe.Add(ref b, k));
        }
    }

    private static TVec Poison(TVec theta, TVec s0, TVec s1) =>
        TOps.Add(TOps.Multiply(theta, TOps.Zero), TOps.Add(TOps.Multiply(s0, TOps.Zero), TOps.Multiply(s1, TOps.Zero)));
}
