using Bptt.Fast.Internals;

namespace Bptt.Fast.Kernels;

/// <summary>
/// The public kernels in front of a given <see cref="KernelSet"/>: the argument rule of <see cref="KernelArguments"/>
/// (lengths and products in 64 bits, then the aliasing rule; the same code checks <c>ReferenceKernels</c>), then the
/// kernel. <see cref="FastKernels"/> calls these with the process's set; the tests call them with every ISA's set.
/// </summary>
internal static class CheckedKernels
{
    public static void Gemv(KernelSet k, ReadOnlySpan<float> a, int m, int n, ReadOnlySpan<float> x, Span<float> y)
    {
        KernelArguments.Gemv<float>(a, m, n, x, y);
        k.Gemv(a, m, n, x, y);
    }

    public static void GemvTransposed(KernelSet k, ReadOnlySpan<float> a, int m, int n, ReadOnlySpan<float> x, Span<float> y)
    {
        KernelArguments.GemvTransposed<float>(a, m, n, x, y);
        k.GemvTransposed(a, m, n, x, y);
    }

    public static void RnnStep(KernelSet k, ReadOnlySpan<float> whhTransposed, ReadOnlySpan<float> hPrevious, ReadOnlySpan<float> u, Span<float> h)
    {
        KernelArguments.RnnStep<float>(whhTransposed, hPrevious, u, h);
        k.RnnStep(whhTransposed, hPrevious, u, h);
    }

    public static void RnnStepBackward(KernelSet k, ReadOnlySpan<float> whh, ReadOnlySpan<float> deltaNext, ReadOnlySpan<float> g, ReadOnlySpan<float> h, Span<float> delta)
    {
        KernelArguments.RnnStepBackward<float>(whh, deltaNext, g, h, delta);
        k.RnnStepBackward(whh, deltaNext, g, h, delta);
    }

    public static void Axpy(KernelSet k, float alpha, ReadOnlySpan<float> x, Span<float> y)
    {
        KernelArguments.Axpy<float>(x, y);
        k.Axpy(alpha, x, y);
    }

    public static void Ger(KernelSet k, float alpha, ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> a)
    {
        KernelArguments.Ger<float>(x, y, a);
        int n = y.Length;
        for (int i = 0; i < x.Length; i++)
        {
            k.Axpy(alpha * x[i], y, a.Slice(i * n, n));
        }
    }

    public static void ColumnSums(KernelSet k, ReadOnlySpan<float> a, int rows, int cols, Span<float> y, bool accumulate)
    {
        KernelArguments.ColumnSums<float>(a, rows, cols, y);
        k.ColumnSums(a, rows, cols, y, accumulate);
    }

    public static void Gemm(KernelSet k, bool transposeA, bool transposeB, int m, int n, int kDepth, ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        KernelArguments.Gemm<float>(transposeA, transposeB, m, n, kDepth, a, lda, b, ldb, beta, c, ldc);
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
        KernelArguments.Activate<float>(u, h);
        k.Activate(u, h);
    }

    public static void ActivationBackward(KernelSet k, ReadOnlySpan<float> g, ReadOnlySpan<float> h, Span<float> delta)
    {
        KernelArguments.ActivationBackward<float>(g, h, delta);
        k.ActivationBackward(g, h, delta);
    }

    public static float SoftmaxCrossEntropy(KernelSet k, ReadOnlySpan<float> logits, int target, Span<float> error)
    {
        KernelArguments.SoftmaxCrossEntropy<float>(logits, target, error);
        return k.SoftmaxCrossEntropy(logits, target, error, writeError: true);
    }

    public static void Softmax(KernelSet k, ReadOnlySpan<float> logits, Span<float> probabilities)
    {
        KernelArguments.Softmax<float>(logits, probabilities);
        k.Softmax(logits, probabilities);
    }
}
