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

    /// <summary>Updates one register of θ and of the state from one register of g.</summary>
    void Apply<TOps, TVec>(ref TVec theta, TVec g, ref TVec s0, ref TVec s1)
        where TOps : struct, ISimd<TVec>
        where TVec : struct;
}

/// <summary>Gradient descent with coupled decay: θ ← θ(1 − ηλ) − ηg.</summary>
internal readonly struct GradientDescentRule(float eta, float lambda, float scale) : IUpdateRule
{
    public static int StateBlocks => 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Apply<TOps, TVec>(ref TVec theta, TVec g, ref TVec s0, ref TVec s1)
        where TOps : struct, ISimd<TVec>
        where TVec : struct =>
        theta = TOps.Subtract(TOps.Multiply(TOps.Broadcast(1f - (eta * lambda)), theta), TOps.Multiply(TOps.Broadcast(eta), TOps.Multiply(g, TOps.Broadcast(scale))));
}

/// <summary>Momentum: g′ = g + λθ; v ← μv + g′; θ ← θ − η(g′ + μv) (Nesterov) or θ ← θ − ηv (classical).</summary>
internal readonly struct MomentumRule(float eta, float mu, float lambda, bool nesterov, float scale) : IUpdateRule
{
    public static int StateBlocks => 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Apply<TOps, TVec>(ref TVec theta, TVec g, ref TVec s0, ref TVec s1)
        where TOps : struct, ISimd<TVec>
        where TVec : struct
    {
        TVec gi = TOps.Add(TOps.Multiply(g, TOps.Broadcast(scale)), TOps.Multiply(TOps.Broadcast(lambda), theta));
        TVec v = TOps.Add(TOps.Multiply(TOps.Broadcast(mu), s0), gi);
        TVec step = nesterov ? TOps.Add(gi, TOps.Multiply(TOps.Broadcast(mu), v)) : v;
        s0 = v;
        theta = TOps.Subtract(theta, TOps.Multiply(TOps.Broadcast(eta), step));
    }
}

/// <summary>Adagrad: g′ = g + λθ; G ← G + g′²; θ ← θ − η g′ / (√G + ε).</summary>
internal readonly struct AdagradRule(float eta, float epsilon, float lambda, float scale) : IUpdateRule
{
    public static int StateBlocks => 1;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Apply<TOps, TVec>(ref TVec theta, TVec g, ref TVec s0, ref TVec s1)
        where TOps : struct, ISimd<TVec>
        where TVec : struct
    {
        TVec gi = TOps.Add(TOps.Multiply(g, TOps.Broadcast(scale)), TOps.Multiply(TOps.Broadcast(lambda), theta));
        TVec sum = TOps.Add(s0, TOps.Multiply(gi, gi));
        s0 = sum;
        theta = TOps.Subtract(theta, TOps.Divide(TOps.Multiply(TOps.Broadcast(eta), gi), TOps.Add(TOps.Sqrt(sum), TOps.Broadcast(epsilon))));
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

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Apply<TOps, TVec>(ref TVec theta, TVec g, ref TVec s0, ref TVec s1)
        where TOps : struct, ISimd<TVec>
        where TVec : struct
    {
        float coupled = decoupled ? 0f : lambda, shrink = decoupled ? 1f - (alpha * lambda) : 1f;
        TVec gi = TOps.Add(TOps.Multiply(g, TOps.Broadcast(scale)), TOps.Multiply(TOps.Broadcast(coupled), theta));
        TVec m = TOps.Add(TOps.Multiply(TOps.Broadcast(beta1), s0), TOps.Multiply(TOps.Broadcast(1f - beta1), gi));
        TVec v = TOps.Add(TOps.Multiply(TOps.Broadcast(beta2), s1), TOps.Multiply(TOps.Multiply(TOps.Broadcast(1f - beta2), gi), gi));
        s0 = m;
        s1 = v;
        TVec update = TOps.Divide(TOps.Multiply(TOps.Broadcast(alpha), TOps.Multiply(m, TOps.Broadcast(_c1))),
            TOps.Add(TOps.Sqrt(TOps.Multiply(v, TOps.Broadcast(_c2))), TOps.Broadcast(epsilon)));
        theta = TOps.Subtract(TOps.Multiply(TOps.Broadcast(shrink), theta), update);
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
            float bad = 0f;
            for (int k = 0; k < n; k++)
            {
                bad += One<TRule, ScalarSimd, float>(rule, ref t, ref g, ref a, ref b, k, commit);
            }

            return bad == 0f;
        }

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

        rule.Apply<TOps, TVec>(ref lastTheta, TOps.Load(ref Unsafe.Add(ref g, n - w)), ref lastS0, ref lastS1);
        if (commit)
        {
            CommitLoop(rule, ref t, ref g, ref a, ref b, n - w);
            Store(ref t, ref a, ref b, n - w, lastTheta, lastS0, lastS1, TRule.StateBlocks);
            return true;
        }

        badVector = TOps.Add(ProbeLoop(rule, ref t, ref g, ref a, ref b, n - w), Poison(lastTheta, lastS0, lastS1));
        return !TOps.AnyNonFinite(badVector);
    }

    /// <summary>The full registers below <paramref name="end"/>, written. A loop of its own, so that the rule's body (and its
    /// broadcast constants) is inlined and hoisted here whatever the caller's inlining budget.</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static void CommitLoop<TRule>(TRule rule, ref float t, ref float g, ref float a, ref float b, int end)
        where TRule : struct, IUpdateRule
    {
        for (int k = 0; k < end; k += TOps.Count)
        {
            One<TRule, TOps, TVec>(rule, ref t, ref g, ref a, ref b, k, commit: true);
        }
    }

    /// <summary>The full registers below <paramref name="end"/>, probed: the sum of their poison (0 when every new value is finite).</summary>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    private static TVec ProbeLoop<TRule>(TRule rule, ref float t, ref float g, ref float a, ref float b, int end)
        where TRule : struct, IUpdateRule
    {
        TVec bad = TOps.Zero;
        for (int k = 0; k < end; k += TOps.Count)
        {
            bad = TOps.Add(bad, One<TRule, TOps, TVec>(rule, ref t, ref g, ref a, ref b, k, commit: false));
        }

        return bad;
    }

    /// <summary>Applies the rule at element k (one register wide), storing or returning its poison (0 when all finite, else NaN).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static TV One<TRule, TO, TV>(TRule rule, ref float t, ref float g, ref float a, ref float b, int k, bool commit)
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

        rule.Apply<TO, TV>(ref theta, TO.Load(ref Unsafe.Add(ref g, k)), ref s0, ref s1);
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
