using System.Numerics;

namespace Bptt.Fast.Internals;

/// <summary>
/// The argument rules of the public kernels, written once and generic over the element type, so that
/// <c>FastKernels</c> (through <c>CheckedKernels</c>) and <c>ReferenceKernels</c> refuse exactly the same calls: sizes
/// and products in 64 bits, every length, then the aliasing rule (<see cref="Aliasing"/>). Each method checks the
/// kernel of the same name; a call that passes may run, a call that fails has changed nothing.
/// </summary>
internal static class KernelArguments
{
    /// <summary>y = A x: A is m×n, x n, y m; y shares memory with neither.</summary>
    public static void Gemv<T>(ReadOnlySpan<T> a, int m, int n, ReadOnlySpan<T> x, ReadOnlySpan<T> y)
        where T : unmanaged
    {
        Matrix(a, m, n, nameof(a));
        Guard.Length(n, x.Length, nameof(x), "n");
        Guard.Length(m, y.Length, nameof(y), "m");
        Aliasing.Disjoint<T, T>(y, nameof(y), a, nameof(a));
        Aliasing.Disjoint<T, T>(y, nameof(y), x, nameof(x));
    }

    /// <summary>y = Aᵀ x: A is m×n, x m, y n; y shares memory with neither.</summary>
    public static void GemvTransposed<T>(ReadOnlySpan<T> a, int m, int n, ReadOnlySpan<T> x, ReadOnlySpan<T> y)
        where T : unmanaged
    {
        Matrix(a, m, n, nameof(a));
        Guard.Length(m, x.Length, nameof(x), "m");
        Guard.Length(n, y.Length, nameof(y), "n");
        Aliasing.Disjoint<T, T>(y, nameof(y), a, nameof(a));
        Aliasing.Disjoint<T, T>(y, nameof(y), x, nameof(x));
    }

    /// <summary>Equations (1)–(2): H = h.Length, W_hhᵀ H×H, hPrevious and u H; h may be u, nothing else.</summary>
    public static void RnnStep<T>(ReadOnlySpan<T> whhTransposed, ReadOnlySpan<T> hPrevious, ReadOnlySpan<T> u, ReadOnlySpan<T> h)
        where T : unmanaged
    {
        int hidden = h.Length;
        Matrix(whhTransposed, hidden, hidden, nameof(whhTransposed));
        Guard.Length(hidden, hPrevious.Length, nameof(hPrevious), "H = h.Length");
        Guard.Length(hidden, u.Length, nameof(u), "H = h.Length");
        Aliasing.Disjoint<T, T>(h, nameof(h), whhTransposed, nameof(whhTransposed));
        Aliasing.Disjoint<T, T>(h, nameof(h), hPrevious, nameof(hPrevious));
        Aliasing.DisjointOrSame<T, T>(h, nameof(h), u, nameof(u));
    }

    /// <summary>Equation (12): H = delta.Length, W_hh H×H, δNext, g and h H; δ may be g, nothing else.</summary>
    public static void RnnStepBackward<T>(ReadOnlySpan<T> whh, ReadOnlySpan<T> deltaNext, ReadOnlySpan<T> g, ReadOnlySpan<T> h, ReadOnlySpan<T> delta)
        where T : unmanaged
    {
        int hidden = delta.Length;
        Matrix(whh, hidden, hidden, nameof(whh));
        Guard.Length(hidden, deltaNext.Length, nameof(deltaNext), "H = delta.Length");
        Guard.Length(hidden, g.Length, nameof(g), "H = delta.Length");
        Guard.Length(hidden, h.Length, nameof(h), "H = delta.Length");
        Aliasing.Disjoint<T, T>(delta, nameof(delta), whh, nameof(whh));
        Aliasing.Disjoint<T, T>(delta, nameof(delta), deltaNext, nameof(deltaNext));
        Aliasing.Disjoint<T, T>(delta, nameof(delta), h, nameof(h));
        Aliasing.DisjointOrSame<T, T>(delta, nameof(delta), g, nameof(g));
    }

    /// <summary>y = y + αx: equal lengths, y apart from x.</summary>
    public static void Axpy<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> y)
        where T : unmanaged
    {
        Guard.Length(x.Length, y.Length, nameof(y), "x.Length");
        Aliasing.Disjoint<T, T>(y, nameof(y), x, nameof(x));
    }

    /// <summary>A = A + α x yᵀ: A holds x.Length·y.Length (in 64 bits) and shares memory with neither vector.</summary>
    public static void Ger<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> y, ReadOnlySpan<T> a)
        where T : unmanaged
    {
        Guard.Length((long)x.Length * y.Length, a.Length, nameof(a), $"x.Length × y.Length = {x.Length}×{y.Length}");
        Aliasing.Disjoint<T, T>(a, nameof(a), x, nameof(x));
        Aliasing.Disjoint<T, T>(a, nameof(a), y, nameof(y));
    }

    /// <summary>Column sums: A is rows×cols, y cols and apart from A.</summary>
    public static void ColumnSums<T>(ReadOnlySpan<T> a, int rows, int cols, ReadOnlySpan<T> y)
        where T : unmanaged
    {
        Matrix(a, rows, cols, nameof(a), nameof(rows), nameof(cols));
        Guard.Length(cols, y.Length, nameof(y), "cols");
        Aliasing.Disjoint<T, T>(y, nameof(y), a, nameof(a));
    }

    /// <summary>C = op(A)·op(B) + βC: m, n, k ≥ 0, β finite, each operand stored with a row stride at least its row length
    /// and long enough for it (in 64 bits), C apart from A and B.</summary>
    public static void Gemm<T>(bool transposeA, bool transposeB, int m, int n, int k, ReadOnlySpan<T> a, int lda, ReadOnlySpan<T> b, int ldb, T beta, ReadOnlySpan<T> c, int ldc)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (m < 0 || n < 0 || k < 0)
        {
            throw new ArgumentOutOfRangeException(m < 0 ? nameof(m) : n < 0 ? nameof(n) : nameof(k), $"Expected m, n, k >= 0, actual {m}, {n}, {k}.");
        }

        if (!T.IsFinite(beta))
        {
            throw new ArgumentOutOfRangeException(nameof(beta), beta, "Expected a finite β.");
        }

        Operand(transposeA ? k : m, transposeA ? m : k, a, lda, nameof(a), nameof(lda));
        Operand(transposeB ? n : k, transposeB ? k : n, b, ldb, nameof(b), nameof(ldb));
        Operand(m, n, c, ldc, nameof(c), nameof(ldc));
        Aliasing.Disjoint<T, T>(c, nameof(c), a, nameof(a));
        Aliasing.Disjoint<T, T>(c, nameof(c), b, nameof(b));
    }

    /// <summary>Equation (2) element-wise: equal lengths; h is u or apart from it.</summary>
    public static void Activate<T>(ReadOnlySpan<T> u, ReadOnlySpan<T> h)
        where T : unmanaged
    {
        Guard.Length(u.Length, h.Length, nameof(h), "u.Length");
        Aliasing.DisjointOrSame<T, T>(h, nameof(h), u, nameof(u));
    }

    /// <summary>δ = g ⊙ f′: equal lengths; δ is g or apart from it, and apart from h.</summary>
    public static void ActivationBackward<T>(ReadOnlySpan<T> g, ReadOnlySpan<T> h, ReadOnlySpan<T> delta)
        where T : unmanaged
    {
        Guard.Length(g.Length, h.Length, nameof(h), "g.Length");
        Guard.Length(g.Length, delta.Length, nameof(delta), "g.Length");
        Aliasing.DisjointOrSame<T, T>(delta, nameof(delta), g, nameof(g));
        Aliasing.Disjoint<T, T>(delta, nameof(delta), h, nameof(h));
    }

    /// <summary>Equations (4), (6), (7): at least one logit, the target among them, the error as long and the logits or apart from them.</summary>
    public static void SoftmaxCrossEntropy<T>(ReadOnlySpan<T> logits, int target, ReadOnlySpan<T> error)
        where T : unmanaged
    {
        Logits(logits);
        Guard.InRange(target, 0, logits.Length - 1, nameof(target));
        Guard.Length(logits.Length, error.Length, nameof(error), "logits.Length");
        Aliasing.DisjointOrSame<T, T>(error, nameof(error), logits, nameof(logits));
    }

    /// <summary>Equation (4): at least one logit, the probabilities as long and the logits or apart from them.</summary>
    public static void Softmax<T>(ReadOnlySpan<T> logits, ReadOnlySpan<T> probabilities)
        where T : unmanaged
    {
        Logits(logits);
        Guard.Length(logits.Length, probabilities.Length, nameof(probabilities), "logits.Length");
        Aliasing.DisjointOrSame<T, T>(probabilities, nameof(probabilities), logits, nameof(logits));
    }

    private static void Logits<T>(ReadOnlySpan<T> logits)
        where T : unmanaged
    {
        if (logits.IsEmpty)
        {
            throw new ArgumentException("Expected at least one logit, actual 0.", nameof(logits));
        }
    }

    /// <summary>A stored rows×cols with row stride ld needs ld ≥ cols and (rows − 1)·ld + cols elements, in 64 bits.</summary>
    private static void Operand<T>(int rows, int cols, ReadOnlySpan<T> x, int ld, string name, string ldName)
        where T : unmanaged
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

    /// <summary>A dense m×n matrix: m, n ≥ 0 and exactly m·n elements, the product in 64 bits.</summary>
    private static void Matrix<T>(ReadOnlySpan<T> a, int m, int n, string name, string mName = "m", string nName = "n")
        where T : unmanaged
    {
        if (m < 0 || n < 0)
        {
            throw new ArgumentOutOfRangeException(m < 0 ? mName : nName, m < 0 ? m : n, $"Expected dimensions >= 0, actual {m}×{n}.");
        }

        Guard.Length((long)m * n, a.Length, name, $"{m}×{n}");
    }
}
