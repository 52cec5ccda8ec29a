using Bptt.Fast.Internals;

namespace Bptt.Fast.Kernels;

/// <summary>
/// The argument checks of the public kernels, in front of a given <see cref="KernelSet"/>: lengths and products in 64
/// bits, the aliasing rule (<see cref="Aliasing"/>), then the kernel. <see cref="FastKernels"/> calls these with the
/// process's set; the tests call them with every ISA's set.
/// </summary>
internal static class CheckedKernels
{
    public static void Gemv(KernelSet k, ReadOnlySpan<float> a, int m, int n, ReadOnlySpan<float> x, Span<float> y)
    {
        Matrix(a, m, n, nameof(a));
        Guard.Length(n, x.Length, nameof(x), "n");
        Guard.Length(m, y.Length, nameof(y), "m");
        Aliasing.Disjoint<float, float>(y, nameof(y), a, nameof(a));
        Aliasing.Disjoint<float, float>(y, nameof(y), x, nameof(x));
        k.Gemv(a, m, n, x, y);
    }

    public static void GemvTransposed(KernelSet k, ReadOnlySpan<float> a, int m, int n, ReadOnlySpan<float> x, Span<float> y)
    {
        Matrix(a, m, n, nameof(a));
        Guard.Length(m, x.Length, nameof(x), "m");
        Guard.Length(n, y.Length, nameof(y), "n");
        Aliasing.Disjoint<float, float>(y, nameof(y), a, nameof(a));
        Aliasing.Disjoint<float, float>(y, nameof(y), x, nameof(x));
        k.GemvTransposed(a, m, n, x, y);
    }

    public static void RnnStep(KernelSet k, ReadOnlySpan<float> whhTransposed, ReadOnlySpan<float> hPrevious, ReadOnlySpan<float> u, Span<float> h)
    {
        int hidden = h.Length;
        Matrix(whhTransposed, hidden, hidden, nameof(whhTransposed));
        Guard.Length(hidden, hPrevious.Length, nameof(hPrevious), "H = h.Length");
        Guard.Length(hidden, u.Length, nameof(u), "H = h.Length");
        Aliasing.Disjoint<float, float>(h, nameof(h), whhTransposed, nameof(whhTransposed));
        Aliasing.Disjoint<float, float>(h, nameof(h), hPrevious, nameof(hPrevious));
        Aliasing.DisjointOrSame<float, float>(h, nameof(h), u, nameof(u));
        k.RnnStep(whhTransposed, hPrevious, u, h);
    }

    public static void RnnStepBackward(KernelSet k, ReadOnlySpan<float> whh, ReadOnlySpan<float> deltaNext, ReadOnlySpan<float> g, ReadOnlySpan<float> h, Span<float> delta)
    {
        int hidden = delta.Length;
        Matrix(whh, hidden, hidden, nameof(whh));
        Guard.Length(hidden, deltaNext.Length, nameof(deltaNext), "H = delta.Length");
        Guard.Length(hidden, g.Length, nameof(g), "H = delta.Length");
        Guard.Length(hidden, h.Length, nameof(h), "H = delta.Length");
        Aliasing.Disjoint<float, float>(delta, nameof(delta), whh, nameof(whh));
        Aliasing.Disjoint<float, float>(delta, nameof(delta), deltaNext, nameof(deltaNext));
        Aliasing.Disjoint<float, float>(delta, nameof(delta), h, nameof(h));
        Aliasing.DisjointOrSame<float, float>(delta, nameof(delta), g, nameof(g));
        k.RnnStepBackward(whh, deltaNext, g, h, delta);
    }

    public static void Axpy(KernelSet k, float alpha, ReadOnlySpan<float> x, Span<float> y)
    {
        Guard.Length(x.Length, y.Length, nameof(y), "x.Length");
        Aliasing.Disjoint<float, float>(y, nameof(y), x, nameof(x));
        k.Axpy(alpha, x, y);
    }

    public static void Ger(KernelSet k, float alpha, ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> a)
    {
        int m = x.Length, n = y.Length;
        Guard.Length((long)m * n, a.Length, nameof(a), $"x.Length × y.Length = {m}×{n}");
        Aliasing.Disjoint<float, float>(a, nameof(a), x, nameof(x));
        Aliasing.Disjoint<float, float>(a, nameof(a), y, nameof(y));
        for (int i = 0; i < m; i++)
        {
            k.Axpy(alpha * x[i], y, a.Slice(i * n, n));
        }
    }

    public static void ColumnSums(KernelSet k, ReadOnlySpan<float> a, int rows, int cols, Span<float> y, bool accumulate)
    {
        Matrix(a, rows, cols, nameof(a));
        Guard.Length(cols, y.Length, nameof(y), "cols");
        Aliasing.Disjoint<float, float>(y, nameof(y), a, nameof(a));
        k.ColumnSums(a, rows, cols, y, accumulate);
    }

    public static void Gemm(KernelSet k, bool transposeA, bool transposeB, int m, int n, int kDepth, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        if (m < 0 || n < 0 || kDepth < 0)
        {
            throw new ArgumentOutOfRangeException(m < 0 ? nameof(m) : n < 0 ? nameof(n) : "k", $"Expected m, n, k >= 0, actual {m}, {n}, {kDepth}.");
        }

        if (!float.IsFinite(beta))
        {
            throw new ArgumentOutOfRangeException(nameof(beta), beta, "Expected a finite β.");
        }

        Operand(transposeA ? kDepth : m, transposeA ? m : kDepth, a, lda, nameof(a), nameof(lda));
        Operand(transposeB ? n : kDepth, transposeB ? kDepth : n, b, ldb, nameof(b), nameof(ldb));
        Operand(m, n, c, ldc, nameof(c), nameof(ldc));
        Aliasing.Disjoint<float, float>(c, nameof(c), a, nameof(a));
        Aliasing.Disjoint<float, float>(c, nameof(c), b, nameof(b));
        if (m == 0 || n == 0)
        {
            return;
        }

        // Pooled packing buffers, bounded (MC×KC for A, one KC×NC block for B) and returned after the call.
        float[] packA = System.Buffers.ArrayPool<float>.Shared.Rent(Bodies.GemmBlocking.PackALength);
        float[] packB = System.Buffers.ArrayPool<float>.Shared.Rent((int)k.PackBBlockLength(n));
        try
        {
            k.Gemm(transposeA, transposeB, m, n, kDepth, a, lda, b, ldb, beta, c, ldc, packA, packB);
        }
        finally
        {
            System.Buffers.ArrayPool<float>.Shared.Return(packA);
            System.Buffers.ArrayPool<float>.Shared.Return(packB);
        }
    }

    public static void Activate(KernelSet k, ReadOnlySpan<float> u, Span<float> h)
    {
        Guard.Length(u.Length, h.Length, nameof(h), "u.Length");
        Aliasing.DisjointOrSame<float, float>(h, nameof(h), u, nameof(u));
        k.Activate(u, h);
    }

    public static void ActivationBackward(KernelSet k, ReadOnlySpan<float> g, ReadOnlySpan<float> h, Span<float> delta)
    {
        Guard.Length(g.Length, h.Length, nameof(h), "g.Length");
        Guard.Length(g.Length, delta.Length, nameof(delta), "g.Length");
        Aliasing.DisjointOrSame<float, float>(delta, nameof(delta), g, nameof(g));
        Aliasing.Disjoint<float, float>(delta, nameof(delta), h, nameof(h));
        k.ActivationBackward(g, h, delta);
    }

    public static float SoftmaxCrossEntropy(KernelSet k, ReadOnlySpan<float> logits, int target, Span<float> error)
    {
        if (logits.IsEmpty)
        {
            throw new ArgumentException("Expected at least one logit, actual 0.", nameof(logits));
        }

        Guard.InRange(target, 0, logits.Length - 1, nameof(target));
        Guard.Length(logits.Length, error.Length, nameof(error), "logits.Length");
        Aliasing.DisjointOrSame<float, float>(error, nameof(error), logits, nameof(logits));
        return k.SoftmaxCrossEntropy(logits, target, error, writeError: true);
    }

    public static void Softmax(KernelSet k, ReadOnlySpan<float> logits, Span<float> probabilities)
    {
        if (logits.IsEmpty)
        {
            throw new ArgumentException("Expected at least one logit, actual 0.", nameof(logits));
        }

        Guard.Length(logits.Length, probabilities.Length, nameof(probabilities), "logits.Length");
        Aliasing.DisjointOrSame<float, float>(probabilities, nameof(probabilities), logits, nameof(logits));
        k.Softmax(logits, probabilities);
    }

    /// <summary>A stored rows×cols with row stride ld needs ld ≥ cols and (rows − 1)·ld + cols floats, in 64 bits.</summary>
    private static void Operand(int rows, int cols, ReadOnlySpan<float> x, int ld, string name, string ldName)
    {
        if (ld < Math.Max(cols, 1))
        {
            throw new ArgumentOutOfRangeException(ldName, ld, $"Expected a row stride >= {Math.Max(cols, 1)} (the stored row length), actual {ld}.");
        }

        long needed = rows == 0 || cols == 0 ? 0 : ((long)(rows - 1) * ld) + cols;
        if (x.Length < needed)
        {
            throw new ArgumentException($"Length too small: expected at least {needed} ({rows}×{cols} with row stride {ld}), actual {x.Length}.", name);
        }
    }

    private static void Matrix(ReadOnlySpan<float> a, int m, int n, string name)
    {
        if (m < 0 || n < 0)
        {
            throw new ArgumentOutOfRangeException(m < 0 ? "m" : "n", m < 0 ? m : n, $"Expected dimensions >= 0, actual {m}×{n}.");
        }

        Guard.Length((long)m * n, a.Length, name, $"{m}×{n}");
    }
}
