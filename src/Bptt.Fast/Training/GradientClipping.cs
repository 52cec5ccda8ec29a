using System.Numerics;
using System.Runtime.InteropServices;
using Bptt.Fast.Internals;
using Bptt.Fast.Kernels;

namespace Bptt.Fast.Training;

/// <summary>
/// Gradient clipping over the whole parameter block. Both methods return the global L2 norm ‖∂L/∂θ‖₂ measured before
/// clipping. A gradient holding NaN or ±∞ is left exactly as it is (its norm is returned non-finite), so that the
/// optimizer's non-finite guard still sees it and refuses the step.
/// </summary>
public static class GradientClipping
{
    /// <summary>
    /// ‖x‖₂, summed in float registers over chunks of 1024 and in double across chunks; a chunk whose float sum of
    /// squares overflows (elements beyond about 1.8e19) is summed again in double, so a finite gradient always has a
    /// finite norm internally. The float result saturates to +∞ only when the norm itself exceeds float's range.
    /// </summary>
    /// <param name="values">The values.</param>
    /// <returns>The L2 norm (NaN or ∞ when any element is).</returns>
    public static float GlobalNorm(ReadOnlySpan<float> values) => (float)Norm(values);

    /// <summary>If ‖g‖₂ &gt; <paramref name="maxNorm"/>, scales g by maxNorm/‖g‖₂ so that its norm becomes maxNorm.</summary>
    /// <param name="gradients">∂L/∂θ, scaled in place.</param>
    /// <param name="maxNorm">The largest norm allowed, finite and &gt; 0.</param>
    /// <returns>The norm before clipping (+∞ when it exceeds float's range; the gradient is clipped all the same).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="gradients"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxNorm"/> is not finite and &gt; 0.</exception>
    public static float ClipByGlobalNorm(RnnParameters gradients, float maxNorm)
    {
        ArgumentNullException.ThrowIfNull(gradients);
        Guard.Positive(maxNorm, nameof(maxNorm));
        double norm = Norm(gradients.Values);
        if (double.IsFinite(norm) && norm > maxNorm)
        {
            KernelSets.Current().Scale((float)(maxNorm / norm), gradients.Values);
        }

        return (float)norm;
    }

    /// <summary>‖x‖₂ in double (NaN or ∞ only when an element is), on the process's kernel set.</summary>
    internal static double Norm(ReadOnlySpan<float> values) => Math.Sqrt(KernelSets.Current().SumOfSquares(values));

    /// <summary>Clamps every element of g to [−limit, limit] (NaN stays NaN).</summary>
    /// <param name="gradients">∂L/∂θ, clamped in place.</param>
    /// <param name="limit">The largest magnitude allowed, finite and &gt; 0.</param>
    /// <returns>The norm before clipping.</returns>
    public static float ClipByValue(RnnParameters gradients, float limit)
    {
        ArgumentNullException.ThrowIfNull(gradients);
        Guard.Positive(limit, nameof(limit));
        double norm = Norm(gradients.Values);
        if (!double.IsFinite(norm))
        {
            return (float)norm;
        }

        Span<Vector<float>> vectors = MemoryMarshal.Cast<float, Vector<float>>(gradients.Values);
        var hi = new Vector<float>(limit);
        var lo = new Vector<float>(-limit);
        for (int k = 0; k < vectors.Length; k++)
        {
            vectors[k] = Vector.Min(Vector.Max(vectors[k], lo), hi);
        }

        Span<float> values = gradients.Values;
        for (int k = vectors.Length * Vector<float>.Count; k < values.Length; k++)
        {
            values[k] = Math.Clamp(values[k], -limit, limit);
        }

        return (float)norm;
    }
}
