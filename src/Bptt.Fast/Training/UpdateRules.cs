using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Bptt.Fast.Training;

/// <summary>
/// The element-wise update rules of the optimizers, vectorised with <see cref="Vector{T}"/> (memory-bound loops, so the
/// portable vector width is enough), each with the same formula for the scalar tail.
/// </summary>
internal static class UpdateRules
{
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

    /// <summary>Momentum: g′ = g + λθ; v ← μv + g′; θ ← θ − η(g′ + μv) (Nesterov) or θ ← θ − ηv (classical).</summary>
    public static void Momentum(Span<float> theta, ReadOnlySpan<float> grad, Span<float> velocity, float eta, float mu, float lambda, bool nesterov)
    {
        ref float t = ref MemoryMarshal.GetReference(theta);
        ref float g = ref MemoryMarshal.GetReference(grad);
        ref float v = ref MemoryMarshal.GetReference(velocity);
        int n = theta.Length, w = Vector<float>.Count, i = 0;
        for (; i <= n - w; i += w)
        {
            Vector<float> ti = Vector.LoadUnsafe(ref t, (nuint)i);
            Vector<float> gi = Vector.LoadUnsafe(ref g, (nuint)i) + (lambda * ti);
            Vector<float> vi = (mu * Vector.LoadUnsafe(ref v, (nuint)i)) + gi;
            vi.StoreUnsafe(ref v, (nuint)i);
            (ti - (eta * (nesterov ? gi + (mu * vi) : vi))).StoreUnsafe(ref t, (nuint)i);
        }

        for (; i < n; i++)
        {
            float ti = Unsafe.Add(ref t, i);
            float gi = Unsafe.Add(ref g, i) + (lambda * ti);
            float vi = (mu * Unsafe.Add(ref v, i)) + gi;
            Unsafe.Add(ref v, i) = vi;
            Unsafe.Add(ref t, i) = ti - (eta * (nesterov ? gi + (mu * vi) : vi));
        }
    }

    /// <summary>Adagrad: g′ = g + λθ; G ← G + g′²; θ ← θ − η g′ / (√G + ε).</summary>
    public static void Adagrad(Span<float> theta, ReadOnlySpan<float> grad, Span<float> sumSquares, float eta, float epsilon, float lambda)
    {
        ref float t = ref MemoryMarshal.GetReference(theta);
        ref float g = ref MemoryMarshal.GetReference(grad);
        ref float s = ref MemoryMarshal.GetReference(sumSquares);
        int n = theta.Length, w = Vector<float>.Count, i = 0;
        for (; i <= n - w; i += w)
        {
            Vector<float> ti = Vector.LoadUnsafe(ref t, (nuint)i);
            Vector<float> gi = Vector.LoadUnsafe(ref g, (nuint)i) + (lambda * ti);
            Vector<float> si = Vector.LoadUnsafe(ref s, (nuint)i) + (gi * gi);
            si.StoreUnsafe(ref s, (nuint)i);
            (ti - (eta * gi / (Vector.SquareRoot(si) + new Vector<float>(epsilon)))).StoreUnsafe(ref t, (nuint)i);
        }

        for (; i < n; i++)
        {
            float ti = Unsafe.Add(ref t, i);
            float gi = Unsafe.Add(ref g, i) + (lambda * ti);
            float si = Unsafe.Add(ref s, i) + (gi * gi);
            Unsafe.Add(ref s, i) = si;
            Unsafe.Add(ref t, i) = ti - (eta * gi / (MathF.Sqrt(si) + epsilon));
        }
    }

    /// <summary>
    /// Adam (Kingma &amp; Ba 2015, Algorithm 1) with step t: g′ = g + λθ (coupled decay) ; m ← β₁m + (1 − β₁)g′;
    /// v ← β₂v + (1 − β₂)g′²; θ ← θ − α m̂/(√v̂ + ε) with m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ); AdamW (Loshchilov &amp; Hutter
    /// 2019) instead shrinks θ ← θ − αλθ before the step and leaves g alone.
    /// </summary>
    public static void Adam(Span<float> theta, ReadOnlySpan<float> grad, Span<float> m1, Span<float> m2, float alpha, float beta1, float beta2, float epsilon, float lambda, bool decoupled, long step)
    {
        float c1 = 1f / (1f - MathF.Pow(beta1, step));
        float c2 = 1f / (1f - MathF.Pow(beta2, step));
        float coupled = decoupled ? 0f : lambda, shrink = decoupled ? 1f - (alpha * lambda) : 1f;
        ref float t = ref MemoryMarshal.GetReference(theta);
        ref float g = ref MemoryMarshal.GetReference(grad);
        ref float m = ref MemoryMarshal.GetReference(m1);
        ref float v = ref MemoryMarshal.GetReference(m2);
        int n = theta.Length, w = Vector<float>.Count, i = 0;
        for (; i <= n - w; i += w)
        {
            Vector<float> ti = Vector.LoadUnsafe(ref t, (nuint)i);
            Vector<float> gi = Vector.LoadUnsafe(ref g, (nuint)i) + (coupled * ti);
            Vector<float> mi = (beta1 * Vector.LoadUnsafe(ref m, (nuint)i)) + ((1f - beta1) * gi);
            Vector<float> vi = (beta2 * Vector.LoadUnsafe(ref v, (nuint)i)) + ((1f - beta2) * gi * gi);
            mi.StoreUnsafe(ref m, (nuint)i);
            vi.StoreUnsafe(ref v, (nuint)i);
            ((shrink * ti) - (alpha * (mi * c1) / (Vector.SquareRoot(vi * c2) + new Vector<float>(epsilon)))).StoreUnsafe(ref t, (nuint)i);
        }

        for (; i < n; i++)
        {
            float ti = Unsafe.Add(ref t, i);
            float gi = Unsafe.Add(ref g, i) + (coupled * ti);
            float mi = (beta1 * Unsafe.Add(ref m, i)) + ((1f - beta1) * gi);
            float vi = (beta2 * Unsafe.Add(ref v, i)) + ((1f - beta2) * gi * gi);
            Unsafe.Add(ref m, i) = mi;
            Unsafe.Add(ref v, i) = vi;
            Unsafe.Add(ref t, i) = (shrink * ti) - (alpha * (mi * c1) / (MathF.Sqrt(vi * c2) + epsilon));
        }
    }
}
