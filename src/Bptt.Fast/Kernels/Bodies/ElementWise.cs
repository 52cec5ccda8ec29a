using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Bptt.Fast.Internals;
using Bptt.Fast.Kernels.Isa;

namespace Bptt.Fast.Kernels.Bodies;

/// <summary>An element-wise operation d = op(x, y), written once for vectors and applied lane by lane.</summary>
internal interface IZipOp<TVec>
    where TVec : struct
{
    /// <summary>The result for one register of x and y.</summary>
    TVec Invoke(TVec x, TVec y);

    /// <summary>The result for one element (spans shorter than one register).</summary>
    float InvokeScalar(float x, float y);
}

/// <summary>
/// The element-wise driver (after TensorPrimitives' one-driver-per-arity design): every full register of the spans goes
/// through <see cref="IZipOp{TVec}.Invoke"/>, and the tail is one more full register that overlaps the last
/// one, computed from the inputs before anything is stored, so an in-place call is safe and every element's value comes
/// from the same vector arithmetic wherever it sits. Only spans shorter than one register use the scalar form.
/// </summary>
internal static class ElementWise<TOps, TVec>
    where TOps : struct, ISimd<TVec>
    where TVec : struct
{
    private static int W => TOps.Count;

    /// <summary>d[i] = op(x[i], y[i]); d may be exactly x or y (in place). Callers have checked the lengths.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Zip<TOp>(TOp op, ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> d)
        where TOp : struct, IZipOp<TVec>
    {
        Bounds.Require(y.Length >= x.Length && d.Length >= x.Length);
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float yr = ref MemoryMarshal.GetReference(y);
        ref float dr = ref MemoryMarshal.GetReference(d);
        int n = x.Length;
        if (n < W)
        {
            for (int k = 0; k < n; k++)
            {
                Unsafe.Add(ref dr, k) = op.InvokeScalar(Unsafe.Add(ref xr, k), Unsafe.Add(ref yr, k));
            }

            return;
        }

        TVec last = op.Invoke(TOps.Load(ref Unsafe.Add(ref xr, n - W)), TOps.Load(ref Unsafe.Add(ref yr, n - W)));
        for (int k = 0; k < n - W; k += W)
        {
            TOps.Store(op.Invoke(TOps.Load(ref Unsafe.Add(ref xr, k)), TOps.Load(ref Unsafe.Add(ref yr, k))), ref Unsafe.Add(ref dr, k));
        }

        TOps.Store(last, ref Unsafe.Add(ref dr, n - W));
    }

    /// <summary>y = y + αx.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Axpy(float alpha, ReadOnlySpan<float> x, Span<float> y) => Zip(new AxpyOp(alpha), x, y, y);

    /// <summary>v = αv.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Scale(float alpha, Span<float> v) => Zip(new ScaleOp(alpha), v, v, v);

    /// <summary>d = x + y: the token case of (1), u = b_h + column `token` of W_xh, in one pass.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Add(ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> d) => Zip(default(AddOp), x, y, d);

    /// <summary>y = epilogue(x, aux): the activation (2) or the ⊙ f′ of (12) on their own.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Map<TEpi>(ReadOnlySpan<float> x, ReadOnlySpan<float> aux, Span<float> y)
        where TEpi : struct, Functions.IEpilogue =>
        Zip(default(EpilogueOp<TEpi>), x, TEpi.UsesAux ? aux : x, y);

    /// <summary>
    /// Σ xᵢ² in double: float registers over chunks of 1024, summed in double across chunks; a chunk whose float sum
    /// overflows (elements beyond about 1.8e19) is summed again in double. NaN or ∞ only when an element is.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static double SumOfSquares(ReadOnlySpan<float> x)
    {
        double total = 0;
        for (int start = 0; start < x.Length; start += SquaresChunk)
        {
            ReadOnlySpan<float> part = x.Slice(start, Math.Min(SquaresChunk, x.Length - start));
            ref float pr = ref MemoryMarshal.GetReference(part);
            TVec acc0 = TOps.Zero, acc1 = TOps.Zero;
            int k = 0;
            for (; k <= part.Length - (2 * W); k += 2 * W)
            {
                TVec v0 = TOps.Load(ref Unsafe.Add(ref pr, k)), v1 = TOps.Load(ref Unsafe.Add(ref pr, k + W));
                acc0 = TOps.MultiplyAdd(v0, v0, acc0);
                acc1 = TOps.MultiplyAdd(v1, v1, acc1);
            }

            if (k <= part.Length - W)
            {
                TVec v = TOps.Load(ref Unsafe.Add(ref pr, k));
                acc0 = TOps.MultiplyAdd(v, v, acc0);
                k += W;
            }

            double sum = TOps.Sum(TOps.Add(acc0, acc1));
            for (; k < part.Length; k++)
            {
                sum += part[k] * (double)part[k];
            }

            if (double.IsInfinity(sum))
            {
                sum = 0;
                foreach (float v in part)
                {
                    sum += v * (double)v;
                }
            }

            total += sum;
        }

        return total;
    }

    /// <summary>The elements summed in float registers before the partial sum moves to double (<see cref="SumOfSquares"/>;
    /// the optimizer's screen sums g the same way).</summary>
    public const int SquaresChunk = 1024;

    /// <summary>The index of the first NaN or ±∞, or −1: full registers, then the overlapping last one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int FirstNonFinite(ReadOnlySpan<float> x)
    {
        ref float xr = ref MemoryMarshal.GetReference(x);
        int n = x.Length, k = 0;
        if (n >= W)
        {
            for (; k < n - W; k += W)
            {
                if (TOps.AnyNonFinite(TOps.Load(ref Unsafe.Add(ref xr, k))))
                {
                    break;
                }
            }

            if (k >= n - W)
            {
                if (!TOps.AnyNonFinite(TOps.Load(ref Unsafe.Add(ref xr, n - W))))
                {
                    return -1;
                }

                k = n - W;
            }
        }

        for (; k < n; k++)
        {
            if (!float.IsFinite(Unsafe.Add(ref xr, k)))
            {
                return k;
            }
        }

        return -1;
    }

    private readonly struct AxpyOp(float alpha) : IZipOp<TVec>
    {
        private readonly TVec _alpha = TOps.Broadcast(alpha);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public TVec Invoke(TVec x, TVec y) => TOps.MultiplyAdd(_alpha, x, y);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public float InvokeScalar(float x, float y) => MathF.FusedMultiplyAdd(alpha, x, y);
    }

    private readonly struct AddOp : IZipOp<TVec>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public TVec Invoke(TVec x, TVec y) => TOps.Add(x, y);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public float InvokeScalar(float x, float y) => x + y;
    }

    private readonly struct ScaleOp(float alpha) : IZipOp<TVec>
    {
        private readonly TVec _alpha = TOps.Broadcast(alpha);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public TVec Invoke(TVec x, TVec y) => TOps.Multiply(_alpha, x);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public float InvokeScalar(float x, float y) => alpha * x;
    }

    private readonly struct EpilogueOp<TEpi> : IZipOp<TVec>
        where TEpi : struct, Functions.IEpilogue
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public TVec Invoke(TVec x, TVec aux) => TEpi.Apply<TOps, TVec>(x, aux);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public float InvokeScalar(float x, float aux) => TEpi.Apply<ScalarSimd, float>(x, aux);
    }
}
