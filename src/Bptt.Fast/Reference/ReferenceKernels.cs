using System.Numerics;
using Bptt.Fast.Internals;
using Bptt.Fast.Model;

namespace Bptt.Fast.Reference;

/// <summary>
/// The scalar twins of <see cref="Kernels.FastKernels"/>: same names, same parameters, plain loops that read like the
/// formulas, generic over float and double. They are the oracle of the kernel tests and are never optimised. They refuse
/// exactly the calls the fast kernels refuse, checked by the same code (sizes and products in 64 bits, every length, the
/// aliasing rule) before anything is written: <see cref="ArgumentException"/> or <see cref="ArgumentOutOfRangeException"/>
/// naming the parameter.
/// Activations use the exact <see cref="IHyperbolicFunctions{TSelf}.Tanh"/> and <see cref="IExponentialFunctions{TSelf}.Exp"/>.
/// </summary>
public static class ReferenceKernels
{
    /// <summary>y = A x, A m×n row-major.</summary>
    /// <typeparam name="T">float or double.</typeparam>
    /// <param name="a">A, m·n.</param>
    /// <param name="m">Rows of A.</param>
    /// <param name="n">Columns of A.</param>
    /// <param name="x">x, n.</param>
    /// <param name="y">y, m.</param>
    public static void Gemv<T>(ReadOnlySpan<T> a, int m, int n, ReadOnlySpan<T> x, Span<T> y)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        KernelArguments.Gemv<T>(a, m, n, x, y);
        for (int i = 0; i < m; i++)
        {
            T sum = T.Zero;
            for (int j = 0; j < n; j++)
            {
                sum += a[(i * n) + j] * x[j];
            }

            y[i] = sum;
        }
    }

    /// <summary>y = Aᵀ x, A m×n row-major.</summary>
    /// <typeparam name="T">float or double.</typeparam>
    /// <param name="a">A, m·n.</param>
    /// <param name="m">Rows of A.</param>
    /// <param name="n">Columns of A.</param>
    /// <param name="x">x, m.</param>
    /// <param name="y">y, n.</param>
    public static void GemvTransposed<T>(ReadOnlySpan<T> a, int m, int n, ReadOnlySpan<T> x, Span<T> y)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        KernelArguments.GemvTransposed<T>(a, m, n, x, y);
        for (int j = 0; j < n; j++)
        {
            T sum = T.Zero;
            for (int i = 0; i < m; i++)
            {
                sum += a[(i * n) + j] * x[i];
            }

            y[j] = sum;
        }
    }

    /// <summary>C = op(A)·op(B) + βC (β = 0 never reads C).</summary>
    /// <typeparam name="T">float or double.</typeparam>
    /// <param name="transposeA">Use Aᵀ (A stored k×m).</param>
    /// <param name="transposeB">Use Bᵀ (B stored n×k).</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">The reduction length.</param>
    /// <param name="a">A.</param>
    /// <param name="lda">Row stride of A.</param>
    /// <param name="b">B.</param>
    /// <param name="ldb">Row stride of B.</param>
    /// <param name="beta">β.</param>
    /// <param name="c">C.</param>
    /// <param name="ldc">Row stride of C.</param>
    public static void Gemm<T>(bool transposeA, bool transposeB, int m, int n, int k, ReadOnlySpan<T> a, int lda, ReadOnlySpan<T> b, int ldb, T beta, Span<T> c, int ldc)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        KernelArguments.Gemm<T>(transposeA, transposeB, m, n, k, a, lda, b, ldb, beta, c, ldc);
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                T sum = T.Zero;
                for (int p = 0; p < k; p++)
                {
                    T aip = transposeA ? a[(p * lda) + i] : a[(i * lda) + p];
                    T bpj = transposeB ? b[(j * ldb) + p] : b[(p * ldb) + j];
                    sum += aip * bpj;
                }

                ref T cij = ref c[(i * ldc) + j];
                cij = beta == T.Zero ? sum : sum + (beta * cij);
            }
        }
    }

    /// <summary>y = y + αx.</summary>
    /// <typeparam name="T">float or double.</typeparam>
    /// <param name="alpha">α.</param>
    /// <param name="x">x.</param>
    /// <param name="y">y.</param>
    public static void Axpy<T>(T alpha, ReadOnlySpan<T> x, Span<T> y)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        KernelArguments.Axpy<T>(x, y);
        for (int k = 0; k < x.Length; k++)
        {
            y[k] += alpha * x[k];
        }
    }

    /// <summary>A = A + α x yᵀ, A m×n row-major.</summary>
    /// <typeparam name="T">float or double.</typeparam>
    /// <param name="alpha">α.</param>
    /// <param name="x">x, m.</param>
    /// <param name="y">y, n.</param>
    /// <param name="a">A, m·n.</param>
    public static void Ger<T>(T alpha, ReadOnlySpan<T> x, ReadOnlySpan<T> y, Span<T> a)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        KernelArguments.Ger<T>(x, y, a);
        for (int i = 0; i < x.Length; i++)
        {
            for (int j = 0; j < y.Length; j++)
            {
                a[(i * y.Length) + j] += alpha * x[i] * y[j];
            }
        }
    }

    /// <summary>y[j] = Σᵣ A[r, j] (+ y[j] when accumulating).</summary>
    /// <typeparam name="T">float or double.</typeparam>
    /// <param name="a">A, rows·cols.</param>
    /// <param name="rows">Rows of A.</param>
    /// <param name="cols">Columns of A.</param>
    /// <param name="y">y, cols.</param>
    /// <param name="accumulate">Add to y.</param>
    public static void ColumnSums<T>(ReadOnlySpan<T> a, int rows, int cols, Span<T> y, bool accumulate)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        KernelArguments.ColumnSums<T>(a, rows, cols, y);
        for (int j = 0; j < cols; j++)
        {
            T sum = accumulate ? y[j] : T.Zero;
            for (int r = 0; r < rows; r++)
            {
                sum += a[(r * cols) + j];
            }

            y[j] = sum;
        }
    }

    /// <summary>Equations (1)–(2): h = f(u + W_hh h₋₁), given W_hhᵀ.</summary>
    /// <typeparam name="T">float or double.</typeparam>
    /// <param name="whhTransposed">W_hhᵀ, H·H.</param>
    /// <param name="hPrevious">hₜ₋₁.</param>
    /// <param name="u">W_xh xₜ + b_h.</param>
    /// <param name="h">hₜ.</param>
    /// <param name="activation">f.</param>
    public static void RnnStep<T>(ReadOnlySpan<T> whhTransposed, ReadOnlySpan<T> hPrevious, ReadOnlySpan<T> u, Span<T> h, Activation activation)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        ActivationRule.Check(activation, nameof(activation)); // first, as the fast kernels resolve theirs first
        KernelArguments.RnnStep<T>(whhTransposed, hPrevious, u, h);
        int hidden = h.Length;
        for (int i = 0; i < hidden; i++)
        {
            T sum = u[i];
            for (int j = 0; j < hidden; j++)
            {
                sum += whhTransposed[(j * hidden) + i] * hPrevious[j];
            }

            h[i] = F(activation, sum);
        }
    }

    /// <summary>Equation (12): δ = (g + W_hhᵀ δₜ₊₁) ⊙ f′(h).</summary>
    /// <typeparam name="T">float or double.</typeparam>
    /// <param name="whh">W_hh, H·H.</param>
    /// <param name="deltaNext">δₜ₊₁.</param>
    /// <param name="g">W_hyᵀ eₜ.</param>
    /// <param name="h">hₜ.</param>
    /// <param name="delta">δₜ.</param>
    /// <param name="activation">f.</param>
    public static void RnnStepBackward<T>(ReadOnlySpan<T> whh, ReadOnlySpan<T> deltaNext, ReadOnlySpan<T> g, ReadOnlySpan<T> h, Span<T> delta, Activation activation)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        ActivationRule.Check(activation, nameof(activation)); // first, as the fast kernels resolve theirs first
        KernelArguments.RnnStepBackward<T>(whh, deltaNext, g, h, delta);
        int hidden = delta.Length;
        for (int j = 0; j < hidden; j++)
        {
            T sum = g[j];
            for (int i = 0; i < hidden; i++)
            {
                sum += whh[(i * hidden) + j] * deltaNext[i];
            }

            delta[j] = sum * FPrime(activation, h[j]);
        }
    }

    /// <summary>Equation (2) element-wise: h = f(u).</summary>
    /// <typeparam name="T">float or double.</typeparam>
    /// <param name="activation">f.</param>
    /// <param name="u">u.</param>
    /// <param name="h">h.</param>
    public static void Activate<T>(Activation activation, ReadOnlySpan<T> u, Span<T> h)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        ActivationRule.Check(activation, nameof(activation)); // first, as the fast kernels resolve theirs first
        KernelArguments.Activate<T>(u, h);
        for (int k = 0; k < u.Length; k++)
        {
            h[k] = F(activation, u[k]);
        }
    }

    /// <summary>δ = g ⊙ f′(u), with f′ from h = f(u).</summary>
    /// <typeparam name="T">float or double.</typeparam>
    /// <param name="activation">f.</param>
    /// <param name="g">∂L/∂h.</param>
    /// <param name="h">h.</param>
    /// <param name="delta">δ.</param>
    public static void ActivationBackward<T>(Activation activation, ReadOnlySpan<T> g, ReadOnlySpan<T> h, Span<T> delta)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        ActivationRule.Check(activation, nameof(activation)); // first, as the fast kernels resolve theirs first
        KernelArguments.ActivationBackward<T>(g, h, delta);
        for (int k = 0; k < g.Length; k++)
        {
            delta[k] = g[k] * FPrime(activation, h[k]);
        }
    }

    /// <summary>Equations (4), (6), (7): returns Lₜ = ln Σ e^(v−m) − (v_target − m), writes eₖ = yₖ − [k = target].</summary>
    /// <typeparam name="T">float or double.</typeparam>
    /// <param name="logits">vₜ.</param>
    /// <param name="target">The target class.</param>
    /// <param name="error">eₜ.</param>
    /// <returns>Lₜ.</returns>
    public static T SoftmaxCrossEntropy<T>(ReadOnlySpan<T> logits, int target, Span<T> error)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        KernelArguments.SoftmaxCrossEntropy<T>(logits, target, error);
        T max = logits[0];
        for (int k = 1; k < logits.Length; k++)
        {
            max = T.Max(max, logits[k]);
        }

        T sum = T.Zero;
        for (int k = 0; k < logits.Length; k++)
        {
            sum += T.Exp(logits[k] - max);
        }

        T loss = T.Log(sum) - (logits[target] - max);
        for (int k = 0; k < logits.Length; k++)
        {
            error[k] = T.Exp(logits[k] - max) / sum;
        }

        error[target] -= T.One;
        return loss;
    }

    /// <summary>Equation (4): yₖ = e^(vₖ − m) / Σ e^(v − m), m = max v.</summary>
    /// <typeparam name="T">float or double.</typeparam>
    /// <param name="logits">vₜ.</param>
    /// <param name="probabilities">yₜ.</param>
    public static void Softmax<T>(ReadOnlySpan<T> logits, Span<T> probabilities)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        KernelArguments.Softmax<T>(logits, probabilities);
        T max = logits[0];
        for (int k = 1; k < logits.Length; k++)
        {
            max = T.Max(max, logits[k]);
        }

        T sum = T.Zero;
        for (int k = 0; k < logits.Length; k++)
        {
            sum += T.Exp(logits[k] - max);
        }

        for (int k = 0; k < logits.Length; k++)
        {
            probabilities[k] = T.Exp(logits[k] - max) / sum;
        }
    }

    /// <summary>The index of the first NaN or ±∞, or −1.</summary>
    /// <typeparam name="T">float or double.</typeparam>
    /// <param name="x">The values.</param>
    /// <returns>An index, or −1.</returns>
    public static int FirstNonFinite<T>(ReadOnlySpan<T> x)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        for (int k = 0; k < x.Length; k++)
        {
            if (!T.IsFinite(x[k]))
            {
                return k;
            }
        }

        return -1;
    }

    /// <summary>(2) f(u).</summary>
    internal static T F<T>(Activation activation, T u)
        where T : unmanaged, IFloatingPointIeee754<T> => activation switch
        {
            Activation.Tanh => T.Tanh(u),
            Activation.Relu => u > T.Zero ? u : T.Zero,
            _ => T.One / (T.One + T.Exp(-u)),
        };

    /// <summary>f′ through h = f(u).</summary>
    internal static T FPrime<T>(Activation activation, T h)
        where T : unmanaged, IFloatingPointIeee754<T> => activation switch
        {
            Activation.Tanh => T.One - (h * h),
            Activation.Relu => h > T.Zero ? T.One : T.Zero,
            _ => h * (T.One - h),
        };
}
