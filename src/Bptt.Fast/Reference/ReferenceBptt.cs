using System.Numerics;
using Bptt.Fast.Internals;
using Bptt.Fast.Model;

namespace Bptt.Fast.Reference;

/// <summary>
/// The scalar reference BPTT: equations (1)–(16) of docs/design.md as plain loops, one sequence at a time, generic over
/// float and double. It is the oracle every fast path is tested against, so it is written to be read against the
/// equations and never optimised. Buffers are sized once from (maxSteps, maxBatch); a call allocates nothing.
/// After each call the forward and backward quantities stay readable (<see cref="HiddenStates"/>, <see cref="Deltas"/>,
/// <see cref="Errors"/>, <see cref="StepLosses"/>) for tests and diagnostics.
/// </summary>
/// <typeparam name="T">float or double.</typeparam>
public sealed class ReferenceBptt<T>
    where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly T[] _h;       // hₜ            [T, B, H]
    private readonly T[] _y;       // yₜ, then eₜ   [T, B, O]
    private readonly T[] _delta;   // δₜ            [T, B, H]
    private readonly T[] _loss;    // Lₜ            [T, B]
    private readonly T[] _scratch; // one vector of H
    private readonly T[] _zeros;   // h₀ when the caller gives none
    private int _steps, _batch;

    /// <summary>Creates a reference engine with buffers for up to <paramref name="maxSteps"/> × <paramref name="maxBatch"/>.</summary>
    /// <param name="shape">The network sizes.</param>
    /// <param name="maxSteps">The largest T a call may use.</param>
    /// <param name="maxBatch">The largest B a call may use.</param>
    /// <param name="activation">The recurrent non-linearity f.</param>
    public ReferenceBptt(RnnShape shape, int maxSteps, int maxBatch, Activation activation)
    {
        EngineLimits.Check(shape, maxSteps, maxBatch, activation, long.MaxValue);
        long rows = (long)maxSteps * maxBatch;
        Sizes.ArrayLength(Sizes.Product(rows, Math.Max(shape.HiddenSize, shape.OutputSize)), nameof(maxSteps), "reference state or output buffer");
        Shape = shape;
        MaxSteps = maxSteps;
        MaxBatch = maxBatch;
        Activation = activation;
        _h = new T[rows * shape.HiddenSize];
        _y = new T[rows * shape.OutputSize];
        _delta = new T[rows * shape.HiddenSize];
        _loss = new T[rows];
        _scratch = new T[shape.HiddenSize];
        _zeros = new T[shape.HiddenSize];
    }

    /// <summary>The bytes of the buffers an engine for (maxSteps, maxBatch) allocates, in 64 bits.</summary>
    /// <param name="shape">The network sizes.</param>
    /// <param name="maxSteps">The largest T.</param>
    /// <param name="maxBatch">The largest B.</param>
    /// <returns>The workspace size in bytes (saturating at <see cref="long.MaxValue"/>).</returns>
    public static long WorkspaceBytes(RnnShape shape, int maxSteps, int maxBatch)
    {
        long rows = Sizes.Product(maxSteps, maxBatch);
        long elements = Sizes.Sum(Sizes.Product(rows, Sizes.Sum((2L * shape.HiddenSize) + 1, shape.OutputSize)), 2L * shape.HiddenSize);
        return Sizes.Product(elements, System.Runtime.CompilerServices.Unsafe.SizeOf<T>());
    }

    /// <summary>The network sizes.</summary>
    public RnnShape Shape { get; }

    /// <summary>The largest T a call may use.</summary>
    public int MaxSteps { get; }

    /// <summary>The largest B a call may use.</summary>
    public int MaxBatch { get; }

    /// <summary>The recurrent non-linearity f.</summary>
    public Activation Activation { get; }

    /// <summary>hₜ of the last call, <c>[T, B, H]</c>; zero after a sequence's length.</summary>
    public ReadOnlySpan<T> HiddenStates => _h.AsSpan(0, _steps * _batch * Shape.HiddenSize);

    /// <summary>eₜ = yₜ − ŷₜ of the last call, <c>[T, B, O]</c>; zero after a sequence's length. Evaluate leaves yₜ here.</summary>
    public ReadOnlySpan<T> Errors => _y.AsSpan(0, _steps * _batch * Shape.OutputSize);

    /// <summary>δₜ = ∂L/∂uₜ of the last ComputeGradients call, <c>[T, B, H]</c>; zero after a sequence's length.</summary>
    public ReadOnlySpan<T> Deltas => _delta.AsSpan(0, _steps * _batch * Shape.HiddenSize);

    /// <summary>Lₜ of the last call, <c>[T, B]</c>; zero after a sequence's length.</summary>
    public ReadOnlySpan<T> StepLosses => _loss.AsSpan(0, _steps * _batch);

    /// <summary>Runs the forward pass only and returns L (equation 5). Writes <see cref="SequenceBatch{T}.FinalState"/> when given.</summary>
    /// <param name="parameters">θ in the block layout of <see cref="RnnShape"/>.</param>
    /// <param name="batch">The sequences.</param>
    /// <returns>L, summed over time and batch.</returns>
    public T Evaluate(ReadOnlySpan<T> parameters, in SequenceBatch<T> batch)
    {
        BatchValidation.ValidateCall<T>(Shape, MaxSteps, MaxBatch, parameters, in batch, default);
        return Forward(parameters, in batch, computeErrors: false);
    }

    /// <summary>
    /// Runs the forward and backward pass, writes ∂L/∂θ into <paramref name="gradients"/> (overwriting it, or adding
    /// to it when <paramref name="accumulate"/> is true) and returns L. Also writes the batch's optional outputs.
    /// </summary>
    /// <param name="parameters">θ in the block layout of <see cref="RnnShape"/>.</param>
    /// <param name="batch">The sequences.</param>
    /// <param name="gradients">∂L/∂θ, same layout as θ.</param>
    /// <param name="accumulate">Add to <paramref name="gradients"/> instead of overwriting it.</param>
    /// <returns>L, summed over time and batch.</returns>
    public T ComputeGradients(ReadOnlySpan<T> parameters, in SequenceBatch<T> batch, Span<T> gradients, bool accumulate = false)
    {
        Guard.Length(Shape.ParameterCount, gradients.Length, nameof(gradients), $"parameter count of {Shape}");
        BatchValidation.ValidateCall<T>(Shape, MaxSteps, MaxBatch, parameters, in batch, gradients);

        T loss = Forward(parameters, in batch, computeErrors: true);
        if (!accumulate)
        {
            gradients.Clear();
        }

        Backward(parameters, in batch, gradients);
        return loss;
    }

    private T Forward(ReadOnlySpan<T> theta, in SequenceBatch<T> batch, bool computeErrors)
    {
        int inputs = Shape.InputSize, hidden = Shape.HiddenSize, outputs = Shape.OutputSize;
        int steps = batch.Steps, size = batch.BatchSize;
        ReadOnlySpan<T> wxh = theta.Slice(Shape.WxhOffset, hidden * inputs);
        ReadOnlySpan<T> whh = theta.Slice(Shape.WhhOffset, hidden * hidden);
        ReadOnlySpan<T> bh = theta.Slice(Shape.BhOffset, hidden);
        ReadOnlySpan<T> why = theta.Slice(Shape.WhyOffset, outputs * hidden);
        ReadOnlySpan<T> by = theta.Slice(Shape.ByOffset, outputs);
        _steps = steps;
        _batch = size;
        HiddenStatesMutable.Clear();
        ErrorsMutable.Clear();
        _loss.AsSpan(0, steps * size).Clear();

        T total = T.Zero;
        for (int b = 0; b < size; b++)
        {
            int length = batch.LengthOf(b);
            for (int t = 0; t < length; t++)
            {
                int row = (t * size) + b;
                Span<T> h = _h.AsSpan(row * hidden, hidden);
                ReadOnlySpan<T> hPrev = PreviousState(in batch, t, b);

                // (1) uₜ = W_xh xₜ + W_hh hₜ₋₁ + b_h, and (2) hₜ = f(uₜ).
                for (int i = 0; i < hidden; i++)
                {
                    T u = bh[i];
                    if (batch.IsTokenInput)
                    {
                        u += wxh[(i * inputs) + batch.Tokens[row]];
                    }
                    else
                    {
                        for (int j = 0; j < inputs; j++)
                        {
                            u += wxh[(i * inputs) + j] * batch.Inputs[(row * inputs) + j];
                        }
                    }

                    for (int j = 0; j < hidden; j++)
                    {
                        u += whh[(i * hidden) + j] * hPrev[j];
                    }

                    h[i] = F(u);
                }

                // (3) vₜ = W_hy hₜ + b_y.
                Span<T> y = _y.AsSpan(row * outputs, outputs);
                for (int k = 0; k < outputs; k++)
                {
                    T v = by[k];
                    for (int j = 0; j < hidden; j++)
                    {
                        v += why[(k * hidden) + j] * h[j];
                    }

                    y[k] = v;
                }

                // (4) yₜ = softmax(vₜ), with the maximum subtracted; (6) Lₜ = −ln yₜ,target = ln Σ e^(v−m) − (v_target − m).
                T max = y[0];
                for (int k = 1; k < outputs; k++)
                {
                    max = T.Max(max, y[k]);
                }

                T sum = T.Zero;
                for (int k = 0; k < outputs; k++)
                {
                    sum += T.Exp(y[k] - max);
                }

                int target = batch.Targets[row];
                T lt = target < 0 ? T.Zero : T.Log(sum) - (y[target] - max);
                _loss[row] = lt;
                total += lt; // (5) L = Σₜ Lₜ, also over the batch.
                for (int k = 0; k < outputs; k++)
                {
                    y[k] = T.Exp(y[k] - max) / sum;
                }

                // (7) eₜ = yₜ − ŷₜ; a step whose target is ignored has no loss, so eₜ = 0.
                if (computeErrors && target < 0)
                {
                    y.Clear();
                }
                else if (computeErrors)
                {
                    y[target] -= T.One;
                }
            }

            if (!batch.FinalState.IsEmpty)
            {
                _h.AsSpan(((length - 1) * size * hidden) + (b * hidden), hidden).CopyTo(batch.FinalState.Slice(b * hidden, hidden));
            }
        }

        if (!batch.HiddenStates.IsEmpty)
        {
            HiddenStatesMutable.CopyTo(batch.HiddenStates);
        }

        return total;
    }

    private void Backward(ReadOnlySpan<T> theta, in SequenceBatch<T> batch, Span<T> grad)
    {
        int inputs = Shape.InputSize, hidden = Shape.HiddenSize, outputs = Shape.OutputSize;
        int size = batch.BatchSize;
        ReadOnlySpan<T> wxh = theta.Slice(Shape.WxhOffset, hidden * inputs);
        ReadOnlySpan<T> whh = theta.Slice(Shape.WhhOffset, hidden * hidden);
        ReadOnlySpan<T> why = theta.Slice(Shape.WhyOffset, outputs * hidden);
        Span<T> dWxh = grad.Slice(Shape.WxhOffset, hidden * inputs);
        Span<T> dWhh = grad.Slice(Shape.WhhOffset, hidden * hidden);
        Span<T> dBh = grad.Slice(Shape.BhOffset, hidden);
        Span<T> dWhy = grad.Slice(Shape.WhyOffset, outputs * hidden);
        Span<T> dBy = grad.Slice(Shape.ByOffset, outputs);
        Span<T> g = _scratch.AsSpan(0, hidden);
        _delta.AsSpan(0, batch.Steps * size * hidden).Clear();
        batch.InputGradient.Clear();

        for (int b = 0; b < size; b++)
        {
            int length = batch.LengthOf(b);
            for (int t = length - 1; t >= 0; t--)
            {
                int row = (t * size) + b;
                ReadOnlySpan<T> e = _y.AsSpan(row * outputs, outputs);
                ReadOnlySpan<T> h = _h.AsSpan(row * hidden, hidden);
                ReadOnlySpan<T> hPrev = PreviousState(in batch, t, b);
                Span<T> delta = _delta.AsSpan(row * hidden, hidden);

                // (8) ∂L/∂b_y += eₜ and (9) ∂L/∂W_hy += eₜ hₜᵀ.
                for (int k = 0; k < outputs; k++)
                {
                    dBy[k] += e[k];
                    for (int j = 0; j < hidden; j++)
                    {
                        dWhy[(k * hidden) + j] += e[k] * h[j];
                    }
                }

                // (11) δ_T = (W_hyᵀ e_T) ⊙ f′(u_T);  (12) δₜ = (W_hyᵀ eₜ + W_hhᵀ δₜ₊₁) ⊙ f′(uₜ).
                for (int j = 0; j < hidden; j++)
                {
                    T sum = T.Zero;
                    for (int k = 0; k < outputs; k++)
                    {
                        sum += why[(k * hidden) + j] * e[k];
                    }

                    if (t + 1 < length)
                    {
                        ReadOnlySpan<T> deltaNext = _delta.AsSpan(((t + 1) * size * hidden) + (b * hidden), hidden);
                        for (int i = 0; i < hidden; i++)
                        {
                            sum += whh[(i * hidden) + j] * deltaNext[i];
                        }
                    }

                    g[j] = sum;
                }

                for (int j = 0; j < hidden; j++)
                {
                    delta[j] = g[j] * FPrime(h[j]);
                }

                // (13) ∂L/∂W_hh += δₜ hₜ₋₁ᵀ, (14) ∂L/∂W_xh += δₜ xₜᵀ, (15) ∂L/∂b_h += δₜ.
                for (int i = 0; i < hidden; i++)
                {
                    dBh[i] += delta[i];
                    for (int j = 0; j < hidden; j++)
                    {
                        dWhh[(i * hidden) + j] += delta[i] * hPrev[j];
                    }

                    if (batch.IsTokenInput)
                    {
                        dWxh[(i * inputs) + batch.Tokens[row]] += delta[i];
                    }
                    else
                    {
                        for (int j = 0; j < inputs; j++)
                        {
                            dWxh[(i * inputs) + j] += delta[i] * batch.Inputs[(row * inputs) + j];
                        }
                    }
                }

                // (16) ∂L/∂xₜ = W_xhᵀ δₜ.
                if (!batch.InputGradient.IsEmpty)
                {
                    Span<T> dx = batch.InputGradient.Slice(row * inputs, inputs);
                    for (int j = 0; j < inputs; j++)
                    {
                        T sum = T.Zero;
                        for (int i = 0; i < hidden; i++)
                        {
                            sum += wxh[(i * inputs) + j] * delta[i];
                        }

                        dx[j] = sum;
                    }
                }
            }

            // (16) ∂L/∂h₀ = W_hhᵀ δ₁.
            if (!batch.InitialStateGradient.IsEmpty)
            {
                ReadOnlySpan<T> delta1 = _delta.AsSpan(b * hidden, hidden);
                Span<T> dh0 = batch.InitialStateGradient.Slice(b * hidden, hidden);
                for (int j = 0; j < hidden; j++)
                {
                    T sum = T.Zero;
                    for (int i = 0; i < hidden; i++)
                    {
                        sum += whh[(i * hidden) + j] * delta1[i];
                    }

                    dh0[j] = sum;
                }
            }
        }
    }

    private Span<T> HiddenStatesMutable => _h.AsSpan(0, _steps * _batch * Shape.HiddenSize);

    private Span<T> ErrorsMutable => _y.AsSpan(0, _steps * _batch * Shape.OutputSize);

    /// <summary>hₜ₋₁ of sequence b: h₀ (the caller's, or zeros) at t = 0.</summary>
    private ReadOnlySpan<T> PreviousState(in SequenceBatch<T> batch, int t, int b)
    {
        int hidden = Shape.HiddenSize;
        if (t > 0)
        {
            return _h.AsSpan((((t - 1) * batch.BatchSize) + b) * hidden, hidden);
        }

        return batch.InitialState.IsEmpty ? _zeros : batch.InitialState.Slice(b * hidden, hidden);
    }

    /// <summary>(2) f(u).</summary>
    private T F(T u) => ReferenceKernels.F(Activation, u);

    /// <summary>f′(uₜ) written through hₜ = f(uₜ).</summary>
    private T FPrime(T h) => ReferenceKernels.FPrime(Activation, h);
}
