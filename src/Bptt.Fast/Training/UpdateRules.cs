using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Bptt.Fast.Internals;

namespace Bptt.Fast.Training;

/// <summary>
/// The element-wise update rules of the optimizers, vectorised with <see cref="Vector{T}"/> (memory-bound loops, so the
/// portable vector width is enough), each with the same formula for the scalar tail. Every rule runs in two modes with the
/// same arithmetic: <c>commit: false</c> computes the new θ and state without writing anything and returns whether every
/// one of them is finite; <c>commit: true</c> writes them. An optimizer probes first and commits only a finite result, so
/// an update that would overflow (a huge learning rate, g² beyond float's range) is refused with θ and the state untouched.
/// </summary>
internal static class UpdateRules
{
    /// <summary>Gradient descent with coupled decay: θ ← θ(1 − ηλ) − ηg.</summary>
    public static bool GradientDescent(Span<float> theta, ReadOnlySpan<float> grad, float eta, float lambda, bool commit)
    {
        Bounds.Require(grad.Length == theta.Length);
        float shrink = 1f - (eta * lambda);
        ref float t = ref MemoryMarshal.GetReference(theta);
        ref float g = ref MemoryMarshal.GetReference(grad);
        int n = theta.Length, w = Vector<float>.Count, i = 0;
        Vector<float> bad = Vector<float>.Zero;
        for (; i <= n - w; i += w)
        {
            Vector<float> ti = (shrink * Vector.LoadUnsafe(ref t, (nuint)i)) - (eta * Vector.LoadUnsafe(ref g, (nuint)i));
            if (commit)
            {
                ti.StoreUnsafe(ref t, (nuint)i);
            }
            else
            {
                bad += ti * 0f;
            }
        }

        float badScalar = 0f;
        for (; i < n; i++)
        {
            float ti = (shrink * Unsafe.Add(ref t, i)) - (eta * Unsafe.Add(ref g, i));
            if (commit)
            {
                Unsafe.Add(ref t, i) = ti;
            }
            else
            {
                badScalar += ti * 0f;
            }
        }

        return AllFinite(bad, badScalar);
    }

    /// <summary>Momentum: g′ = g + λθ; v ← μv + g′; θ ← θ − η(g′ + μv) (Nesterov) or θ ← θ − ηv (classical).</summary>
    public static bool Momentum(Span<float> theta, ReadOnlySpan<float> grad, Span<float> velocity, float eta, float mu, float lambda, bool nesterov, bool commit)
    {
        Bounds.Require(grad.Length == theta.Length && velocity.Length == theta.Length);
        ref float t = ref MemoryMarshal.GetReference(theta);
        ref float g = ref MemoryMarshal.GetReference(grad);
        ref float v = ref MemoryMarshal.GetReference(velocity);
        int n = theta.Length, w = Vector<float>.Count, i = 0;
        Vector<float> bad = Vector<float>.Zero;
        for (; i <= n - w; i += w)
        {
            Vector<float> ti = Vector.LoadUnsafe(ref t, (nuint)i);
            Vector<float> gi = Vector.LoadUnsafe(ref g, (nuint)i) + (lambda * ti);
            Vector<float> vi = (mu * Vector.LoadUnsafe(ref v, (nuint)i)) + gi;
            Vector<float> tn = ti - (eta * (nesterov ? gi + (mu * vi) : vi));
            if (commit)
            {
                vi.StoreUnsafe(ref v, (nuint)i);
                tn.StoreUnsafe(ref t, (nuint)i);
            }
            else
            {
                bad += (vi * 0f) + (tn * 0f);
            }
        }

        float badScalar = 0f;
        for (; i < n; i++)
        {
            float ti = Unsafe.Add(ref t, i);
            float gi = Unsafe.Add(ref g, i) + (lambda * ti);
            float vi = (mu * Unsafe.Add(ref v, i)) + gi;
            float tn = ti - (eta * (nesterov ? gi + (mu * vi) : vi));
            if (commit)
            {
                Unsafe.Add(ref v, i) = vi;
                Unsafe.Add(ref t, i) = tn;
            }
            else
            {
                badScalar += (vi * 0f) + (tn * 0f);
            }
        }

        return AllFinite(bad, badScalar);
    }

    /// <summary>Adagrad: g′ = g + λθ; G ← G + g′²; θ ← θ − η g′ / (√G + ε).</summary>
    public static bool Adagrad(Span<float> theta, ReadOnlySpan<float> grad, Span<float> sumSquares, float eta, float epsilon, float lambda, bool commit)
    {
        Bounds.Require(grad.Length == theta.Length && sumSquares.Length == theta.Length);
        ref float t = ref MemoryMarshal.GetReference(theta);
        ref float g = ref MemoryMarshal.GetReference(grad);
        ref float s = ref MemoryMarshal.GetReference(sumSquares);
        int n = theta.Length, w = Vector<float>.Count, i = 0;
        Vector<float> bad = Vector<float>.Zero;
        for (; i <= n - w; i += w)
        {
            Vector<float> ti = Vector.LoadUnsafe(ref t, (nuint)i);
            Vector<float> gi = Vector.LoadUnsafe(ref g, (nuint)i) + (lambda * ti);
            Vector<float> si = Vector.LoadUnsafe(ref s, (nuint)i) + (gi * gi);
            Vector<float> tn = ti - (eta * gi / (Vector.SquareRoot(si) + new Vector<float>(epsilon)));
            if (commit)
            {
                si.StoreUnsafe(ref s, (nuint)i);
                tn.StoreUnsafe(ref t, (nuint)i);
            }
            else
            {
                bad += (si * 0f) + (tn * 0f);
            }
        }

        float badScalar = 0f;
        for (; i < n; i++)
        {
            float ti = Unsafe.Add(ref t, i);
            float gi = Unsafe.Add(ref g, i) + (lambda * ti);
            float si = Unsafe.Add(ref s, i) + (gi * gi);
            float tn = ti - (eta * gi / (MathF.Sqrt(si) + epsilon));
            if (commit)
            {
                Unsafe.Add(ref s, i) = si;
                Unsafe.Add(ref t, i) = tn;
            }
            else
            {
                badScalar += (si * 0f) + (tn * 0f);
            }
        }

        return AllFinite(bad, badScalar);
    }

    /// <summary>
    /// Adam (Kingma &amp; Ba 2015, Algorithm 1) with step t: g′ = g + λθ (coupled decay) ; m ← β₁m + (1 − β₁)g′;
    /// v ← β₂v + (1 − β₂)g′²; θ ← θ − α m̂/(√v̂ + ε) with m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ); AdamW (Loshchilov &amp; Hutter
    /// 2019) instead shrinks θ ← θ − αλθ before the step and leaves g alone.
    /// </summary>
    public static bool Adam(Span<float> theta, ReadOnlySpan<float> grad, Span<float> m1, Span<float> m2, float alpha, float beta1, float beta2, float epsilon, float lambda, bool decoupled, long step, bool commit)
    {
        Bounds.Require(grad.Length == theta.Length && m1.Length == theta.Length && m2.Length == theta.Length);
        float c1 = 1f / (1f - MathF.Pow(beta1, step));
        float c2 = 1f / (1f - MathF.Pow(beta2, step));
        float coupled = decoupled ? 0f : lambda, shrink = decoupled ? 1f - (alpha * lambda) : 1f;
        ref float t = ref MemoryMarshal.GetReference(theta);
        ref float g = ref MemoryMarshal.GetReference(grad);
        ref float m = ref MemoryMarshal.GetReference(m1);
        ref float v = ref MemoryMarshal.GetReference(m2);
        int n = theta.Length, w = Vector<float>.Count, i = 0;
        Vector<float> bad = Vector<float>.Zero;
        for (; i <= n - w; i += w)
        {
            Vector<float> ti = Vector.LoadUnsafe(ref t, (nuint)i);
            Vector<float> gi = Vector.LoadUnsafe(ref g, (nuint)i) + (coupled * ti);
            Vector<float> mi = (beta1 * Vector.LoadUnsafe(ref m, (nuint)i)) + ((1f - beta1) * gi);
            Vector<float> vi = (beta2 * Vector.LoadUnsafe(ref v, (nuint)i)) + ((1f - beta2) * gi * gi);
            Vector<float> tn = (shrink * ti) - (alpha * (mi * c1) / (Vector.SquareRoot(vi * c2) + new Vector<float>(epsilon)));
            if (commit)
            {
                mi.StoreUnsafe(ref m, (nuint)i);
                vi.StoreUnsafe(ref v, (nuint)i);
                tn.StoreUnsafe(ref t, (nuint)i);
            }
            else
            {
                bad += (mi * 0f) + (vi * 0f) + (tn * 0f);
            }
        }

        float badScalar = 0f;
        for (; i < n; i++)
        {
            float ti = Unsafe.Add(ref t, i);
            float gi = Unsafe.Add(ref g, i) + (coupled * ti);
            float mi = (beta1 * Unsafe.Add(ref m, i)) + ((1f - beta1) * gi);
            float vi = (beta2 * Unsafe.Add(ref v, i)) + ((1f - beta2) * gi * gi);
            float tn = (shrink * ti) - (alpha * (mi * c1) / (MathF.Sqrt(vi * c2) + epsilon));
            if (commit)
            {
                Unsafe.Add(ref m, i) = mi;
                Unsafe.Add(ref v, i) = vi;
                Unsafe.Add(ref t, i) = tn;
            }
            else
            {
                badScalar += (mi * 0f) + (vi * 0f) + (tn * 0f);
            }
        }

        return AllFinite(bad, badScalar);
    }

    /// <summary>x ← αx.</summary>
    public static void Scale(Span<float> x, float alpha)
    {
        ref float xr = ref MemoryMarshal.GetReference(x);
        int n = x.Length, w = Vector<float>.Count, i = 0;
        for (; i <= n - w; i += w)
        {
            (Vector.LoadUnsafe(ref xr, (nuint)i) * alpha).StoreUnsafe(ref xr, (nuint)i);
        }

        for (; i < n; i++)
        {
            Unsafe.Add(ref xr, i) *= alpha;
        }
    }

    /// <summary>x·0 is 0 for a finite x and NaN for NaN or ±∞, so the accumulated "bad" sums are 0 exactly when every value was finite.</summary>
    private static bool AllFinite(Vector<float> bad, float badScalar) => Vector.EqualsAll(bad, Vector<float>.Zero) && badScalar == 0f;
}
