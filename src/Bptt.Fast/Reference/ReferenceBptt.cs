using System.Numerics;
using Bptt.Fast.Internals;
using Bptt.Fast.Model;

namespace Bptt.Fast.Reference;

/// <summary>
/// The scalar reference BPTT: equations (1)–(16) of docs/design.md as plain loops, one sequence at a time, generic over
/// float and double, for L stacked layers and one or two directions (docs/design.md, section 1.1). It is the oracle every
/// fast path is tested against, so it is written to be read against the equations and never optimised. Buffers are sized
/// once from (maxSteps, maxBatch); a call allocates nothing. After each call the forward and backward quantities stay
/// readable (<see cref="HiddenStates"/>, <see cref="Deltas"/>, <see cref="Errors"/>, <see cref="StepLosses"/>) for tests
/// and diagnostics.
/// </summary>
/// <typeparam name="T">float or double.</typeparam>
public sealed class ReferenceBptt<T>
    where T : unmanaged, IFloatingPointIeee754<T>
{
    private readonly T[] _h;       // hₜ⁽ˡ'ᵈ⁾          [L·D, T, B, H]
    private readonly T[] _u;       // uₜ⁽ˡ'ᵈ⁾          [L·D, T, B, H]: kept for diagnostics (relu's kink)
    private readonly T[] _x;       // xₜ⁽ˡ⁺¹⁾, masked   [L−1, T, B, D·H]: the input of every layer above the first
    private readonly T[] _mask;    // the dropout mask  [L−1, T, B, D·H]: 0 or 1/(1−p), or 1 without dropout
    private readonly T[] _out;     // the top layer's [h→ ; h←]  [T, B, D·H]: what the head reads
    private readonly T[] _y;       // yₜ, then eₜ       [T, B, O]
    private readonly T[] _g;       // ∂L/∂(a layer's output), the G of (12)  [T, B, D·H]
    private readonly T[] _delta;   // δₜ⁽ˡ'ᵈ⁾          [L·D, T, B, H]
    private readonly T[] _loss;    // Lₜ               [T, B]
    private readonly T[] _zeros;   // h₀ when the caller gives none
    private int _steps, _batch;

    /// <summary>Creates a reference engine with buffers for up to <paramref name="maxSteps"/> × <paramref name="maxBatch"/>.</summary>
    /// <param name="shape">The network sizes, layers and directions.</param>
    /// <param name="maxSteps">The largest T a call may use.</param>
    /// <param name="maxBatch">The largest B a call may use.</param>
    /// <param name="activation">The recurrent non-linearity f.</param>
    /// <param name="dropout">The inverted-dropout probability p between layers in <see cref="ComputeGradients"/>, in [0, 1) (default 0).</param>
    public ReferenceBptt(RnnShape shape, int maxSteps, int maxBatch, Activation activation, float dropout = 0f)
    {
        EngineLimits.Check(shape, maxSteps, maxBatch, activation, long.MaxValue);
        DropoutMask.CheckRate(dropout, nameof(dropout));
        long rows = (long)maxSteps * maxBatch;
        int width = shape.LayerOutputSize;
        Sizes.ArrayLength(Sizes.Product(Sizes.Product(rows, shape.BlockCount), shape.HiddenSize), nameof(maxSteps), "reference state buffer [L·D, T, B, H]");
        Sizes.ArrayLength(Sizes.Product(Sizes.Product(rows, Math.Max(shape.Layers - 1, 1)), width), nameof(maxSteps), "reference layer input buffer [L−1, T, B, D·H]");
        Sizes.ArrayLength(Sizes.Product(rows, shape.OutputSize), nameof(maxSteps), "reference output buffer [T, B, O]");
        Shape = shape;
        MaxSteps = maxSteps;
        MaxBatch = maxBatch;
        Activation = activation;
        Dropout = dropout;
        int blocks = shape.BlockCount, hidden = shape.HiddenSize;
        _h = new T[rows * blocks * hidden];
        _u = new T[rows * blocks * hidden];
        _x = new T[rows * (shape.Layers - 1) * width];
        _mask = new T[rows * (shape.Layers - 1) * width];
        _out = new T[rows * width];
        _y = new T[rows * shape.OutputSize];
        _g = new T[rows * width];
        _delta = new T[rows * blocks * hidden];
        _loss = new T[rows];
        _zeros = new T[hidden];
    }

    /// <summary>The bytes of the buffers an engine for (maxSteps, maxBatch) allocates, in 64 bits.</summary>
    /// <param name="shape">The network sizes.</param>
    /// <param name="maxSteps">The largest T.</param>
    /// <param name="maxBatch">The largest B.</param>
    /// <returns>The workspace size in bytes (saturating at <see cref="long.MaxValue"/>).</returns>
    public static long WorkspaceBytes(RnnShape shape, int maxSteps, int maxBatch)
    {
        long rows = Sizes.Product(maxSteps, maxBatch);
        long width = shape.LayerOutputSize;
        long perRow = Sizes.Sum(Sizes.Sum(Sizes.Product(3L * shape.BlockCount, shape.HiddenSize), Sizes.Product(2L * shape.Layers, width)), shape.OutputSize + 1L);
        long elements = Sizes.Sum(Sizes.Product(rows, perRow), shape.HiddenSize);
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

    /// <summary>The dropout probability p between layers of a training pass (0: none).</summary>
    public float Dropout { get; }

    /// <summary>hₜ of the top layer in the last call, <c>[T, B, D·H]</c> (both directions concatenated); zero after a sequence's length.</summary>
    public ReadOnlySpan<T> HiddenStates => _out.AsSpan(0, _steps * _batch * Shape.LayerOutputSize);

    /// <summary>eₜ = yₜ − ŷₜ of the last call, <c>[T, B, O]</c>; zero after a sequence's length. Evaluate leaves yₜ here.</summary>
    public ReadOnlySpan<T> Errors => _y.AsSpan(0, _steps * _batch * Shape.OutputSize);

    /// <summary>δₜ = ∂L/∂uₜ of the last ComputeGradients call, <c>[L·D, T, B, H]</c> (<c>[T, B, H]</c> for one layer and
    /// direction); zero after a sequence's length.</summary>
    public ReadOnlySpan<T> Deltas => _delta.AsSpan(0, Shape.BlockCount * _steps * _batch * Shape.HiddenSize);

    /// <summary>Lₜ of the last call, <c>[T, B]</c>; zero after a sequence's length.</summary>
    public ReadOnlySpan<T> StepLosses => _loss.AsSpan(0, _steps * _batch);

    /// <summary>hₜ⁽ˡ'ᵈ⁾ of one layer and direction in the last call, <c>[T, B, H]</c>; zero after a sequence's length.</summary>
    /// <param name="layer">The layer, in [0, L).</param>
    /// <param name="direction">0 forward, 1 reverse.</param>
    /// <returns>A view of the engine's buffer.</returns>
    public ReadOnlySpan<T> LayerStates(int layer, int direction) => State(Shape.Block(layer, direction), layer, direction);

    /// <summary>uₜ⁽ˡ'ᵈ⁾ (equation 1) of one layer and direction in the last call, <c>[T, B, H]</c>; zero after a sequence's length.</summary>
    /// <param name="layer">The layer, in [0, L).</param>
    /// <param name="direction">0 forward, 1 reverse.</param>
    /// <returns>A view of the engine's buffer.</returns>
    public ReadOnlySpan<T> LayerPreActivations(int layer, int direction)
    {
        Shape.Block(layer, direction);
        return _u.AsSpan(((layer * Shape.Directions) + direction) * Rows * Shape.HiddenSize, Rows * Shape.HiddenSize);
    }

    /// <summary>Runs the forward pass only (no dropout) and returns L (equation 5). Writes the batch's final and hidden states when given.</summary>
    /// <param name="parameters">θ in the block layout of <see cref="RnnShape"/>.</param>
    /// <param name="batch">The sequences.</param>
    /// <returns>L, summed over time and batch.</returns>
    public T Evaluate(ReadOnlySpan<T> parameters, in SequenceBatch<T> batch)
    {
        BatchValidation.ValidateCall<T>(Shape, MaxSteps, MaxBatch, parameters, in batch, default);
        return Forward(parameters, in batch, training: false);
    }

    /// <summary>
    /// Runs the forward pass (with dropout between layers when <see cref="Dropout"/> &gt; 0, drawn from the batch's
    /// <see cref="SequenceBatch{T}.DropoutSeed"/>) and the backward pass, writes ∂L/∂θ into <paramref name="gradients"/>
    /// (overwriting it, or adding to it when <paramref name="accumulate"/> is true) and returns L. Also writes the batch's optional outputs.
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

        T loss = Forward(parameters, in batch, training: true);
        if (!accumulate)
        {
            gradients.Clear();
        }

        Backward(parameters, in batch, gradients);
        return loss;
    }

    private T Forward(ReadOnlySpan<T> theta, in SequenceBatch<T> batch, bool training)
    {
        int hidden = Shape.HiddenSize, outputs = Shape.OutputSize, width = Shape.LayerOutputSize;
        int steps = batch.Steps, size = batch.BatchSize;
        _steps = steps;
        _batch = size;
        _h.AsSpan(0, Shape.BlockCount * steps * size * hidden).Clear();
        _u.AsSpan(0, Shape.BlockCount * steps * size * hidden).Clear();
        _out.AsSpan(0, steps * size * width).Clear();
        _y.AsSpan(0, steps * size * outputs).Clear();
        _loss.AsSpan(0, steps * size).Clear();

        for (int l = 0; l < Shape.Layers; l++)
        {
            for (int d = 0; d < Shape.Directions; d++)
            {
                LayerForward(theta, in batch, l, d);
            }

            if (l + 1 < Shape.Layers)
            {
                BuildLayerInput(in batch, l, training);
            }
        }

        // The head reads the top layer's [hₜ→ ; hₜ←].
        for (int d = 0; d < Shape.Directions; d++)
        {
            ReadOnlySpan<T> top = LayerStates(Shape.Layers - 1, d);
            for (int row = 0; row < steps * size; row++)
            {
                top.Slice(row * hidden, hidden).CopyTo(_out.AsSpan((row * width) + (d * hidden), hidden));
            }
        }

        ReadOnlySpan<T> why = theta.Slice(Shape.WhyOffset, outputs * width);
        ReadOnlySpan<T> by = theta.Slice(Shape.ByOffset, outputs);
        T total = T.Zero;
        for (int b = 0; b < size; b++)
        {
            int length = batch.LengthOf(b);
            for (int t = 0; t < length; t++)
            {
                int row = (t * size) + b;
                ReadOnlySpan<T> h = _out.AsSpan(row * width, width);

                // (3) vₜ = W_hy hₜ + b_y.
                Span<T> y = _y.AsSpan(row * outputs, outputs);
                for (int k = 0; k < outputs; k++)
                {
                    T v = by[k];
                    for (int j = 0; j < width; j++)
                    {
                        v += why[(k * width) + j] * h[j];
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
                if (training && target < 0)
                {
                    y.Clear();
                }
                else if (training)
                {
                    y[target] -= T.One;
                }
            }
        }

        WriteStates(in batch);
        return total;
    }

    /// <summary>
    /// (1)–(2) for layer l, direction d: uₜ = W_xh xₜ + W_hh hₜ∓₁ + b_h and hₜ = f(uₜ). The forward direction runs
    /// t = 1..T_b from h₀; the reverse direction runs t = T_b..1 from its own h₀, each sequence from its own length.
    /// </summary>
    private void LayerForward(ReadOnlySpan<T> theta, in SequenceBatch<T> batch, int l, int d)
    {
        RnnLayerBlock block = Shape.Block(l, d);
        int inputs = block.InputSize, hidden = block.HiddenSize, size = batch.BatchSize;
        ReadOnlySpan<T> wxh = theta.Slice(block.WxhOffset, hidden * inputs);
        ReadOnlySpan<T> whh = theta.Slice(block.WhhOffset, hidden * hidden);
        ReadOnlySpan<T> bh = theta.Slice(block.BhOffset, hidden);
        Span<T> states = State(block, l, d);
        Span<T> pre = _u.AsSpan(((l * Shape.Directions) + d) * Rows * hidden, Rows * hidden);
        for (int b = 0; b < size; b++)
        {
            int length = batch.LengthOf(b);
            for (int n = 0; n < length; n++)
            {
                int t = d == 0 ? n : length - 1 - n;
                int row = (t * size) + b;
                ReadOnlySpan<T> hPrev = n == 0 ? InitialState(in batch, l, d, b) : states.Slice((((d == 0 ? t - 1 : t + 1) * size) + b) * hidden, hidden);
                ReadOnlySpan<T> x = l == 0 ? (batch.IsTokenInput ? default : batch.Inputs.Slice(row * inputs, inputs)) : LayerInput(l, row);
                Span<T> h = states.Slice(row * hidden, hidden);
                for (int i = 0; i < hidden; i++)
                {
                    T u = bh[i];
                    if (l == 0 && batch.IsTokenInput)
                    {
                        u += wxh[(i * inputs) + batch.Tokens[row]];
                    }
                    else
                    {
                        for (int j = 0; j < inputs; j++)
                        {
                            u += wxh[(i * inputs) + j] * x[j];
                        }
                    }

                    for (int j = 0; j < hidden; j++)
                    {
                        u += whh[(i * hidden) + j] * hPrev[j];
                    }

                    pre[(row * hidden) + i] = u;
                    h[i] = F(u);
                }
            }
        }
    }

    /// <summary>xₜ⁽ˡ⁺²⁾ (0-based l + 1) = m ⊙ [hₜ⁽ˡ'→⁾ ; hₜ⁽ˡ'←⁾]: inverted dropout on a training pass, the plain concatenation otherwise.</summary>
    private void BuildLayerInput(in SequenceBatch<T> batch, int l, bool training)
    {
        int hidden = Shape.HiddenSize, width = Shape.LayerOutputSize, size = batch.BatchSize, rows = batch.Steps * size;
        bool drop = training && Dropout > 0f;
        T scale = T.CreateChecked(1f / (1f - Dropout));
        Span<T> x = _x.AsSpan(l * Rows * width, rows * width);
        Span<T> mask = _mask.AsSpan(l * Rows * width, rows * width);
        for (int d = 0; d < Shape.Directions; d++)
        {
            ReadOnlySpan<T> h = LayerStates(l, d);
            for (int row = 0; row < rows; row++)
            {
                ulong key = DropoutMask.RowKey(batch.DropoutSeed, l, d, row / size, row % size);
                for (int j = 0; j < hidden; j++)
                {
                    T m = !drop ? T.One : DropoutMask.Keep(key, j, Dropout) ? scale : T.Zero;
                    mask[(row * width) + (d * hidden) + j] = m;
                    x[(row * width) + (d * hidden) + j] = m * h[(row * hidden) + j];
                }
            }
        }
    }

    private void Backward(ReadOnlySpan<T> theta, in SequenceBatch<T> batch, Span<T> grad)
    {
        int outputs = Shape.OutputSize, width = Shape.LayerOutputSize, size = batch.BatchSize, rows = batch.Steps * size;
        ReadOnlySpan<T> why = theta.Slice(Shape.WhyOffset, outputs * width);
        Span<T> dWhy = grad.Slice(Shape.WhyOffset, outputs * width);
        Span<T> dBy = grad.Slice(Shape.ByOffset, outputs);
        Span<T> g = _g.AsSpan(0, rows * width);
        _delta.AsSpan(0, Shape.BlockCount * rows * Shape.HiddenSize).Clear();
        batch.InputGradient.Clear();

        // (8) ∂L/∂b_y += eₜ, (9) ∂L/∂W_hy += eₜ hₜᵀ, and the head's part of every δ: G = W_hyᵀ eₜ.
        for (int row = 0; row < rows; row++)
        {
            ReadOnlySpan<T> e = _y.AsSpan(row * outputs, outputs);
            ReadOnlySpan<T> h = _out.AsSpan(row * width, width);
            for (int k = 0; k < outputs; k++)
            {
                dBy[k] += e[k];
                for (int j = 0; j < width; j++)
                {
                    dWhy[(k * width) + j] += e[k] * h[j];
                }
            }

            for (int j = 0; j < width; j++)
            {
                T sum = T.Zero;
                for (int k = 0; k < outputs; k++)
                {
                    sum += why[(k * width) + j] * e[k];
                }

                g[(row * width) + j] = sum;
            }
        }

        for (int l = Shape.Layers - 1; l >= 0; l--)
        {
            for (int d = 0; d < Shape.Directions; d++)
            {
                LayerBackward(theta, in batch, grad, l, d);
            }

            // The gradient into layer l − 1's outputs, G⁽ˡ⁻¹⁾ = m ⊙ Σ_d W_xh⁽ˡ'ᵈ⁾ᵀ δ⁽ˡ'ᵈ⁾, or (16) ∂L/∂xₜ = Σ_d W_xh⁽¹'ᵈ⁾ᵀ δₜ⁽¹'ᵈ⁾.
            if (l > 0)
            {
                InputGradient(theta, in batch, l, g, _mask.AsSpan((l - 1) * Rows * width, rows * width));
            }
            else if (!batch.InputGradient.IsEmpty)
            {
                InputGradient(theta, in batch, 0, batch.InputGradient, default);
            }
        }
    }

    /// <summary>
    /// (11)–(15) for layer l, direction d, backwards through the direction's own time: (11)–(12) δₜ = (Gₜ + W_hhᵀ δ_next) ⊙ f′(uₜ),
    /// where δ_next is the δ of the step that read hₜ; (13) ∂L/∂W_hh += δₜ hₜ∓₁ᵀ, (14) ∂L/∂W_xh += δₜ xₜᵀ, (15) ∂L/∂b_h += δₜ,
    /// and (16) ∂L/∂h₀ = W_hhᵀ δ of the direction's first step.
    /// </summary>
    private void LayerBackward(ReadOnlySpan<T> theta, in SequenceBatch<T> batch, Span<T> grad, int l, int d)
    {
        RnnLayerBlock block = Shape.Block(l, d);
        int inputs = block.InputSize, hidden = block.HiddenSize, width = Shape.LayerOutputSize, size = batch.BatchSize;
        ReadOnlySpan<T> whh = theta.Slice(block.WhhOffset, hidden * hidden);
        Span<T> dWxh = grad.Slice(block.WxhOffset, hidden * inputs);
        Span<T> dWhh = grad.Slice(block.WhhOffset, hidden * hidden);
        Span<T> dBh = grad.Slice(block.BhOffset, hidden);
        ReadOnlySpan<T> states = State(block, l, d);
        Span<T> deltas = Delta(l, d, batch.Steps * size);
        for (int b = 0; b < size; b++)
        {
            int length = batch.LengthOf(b);
            for (int n = length - 1; n >= 0; n--)
            {
                int t = d == 0 ? n : length - 1 - n;
                int row = (t * size) + b;
                ReadOnlySpan<T> h = states.Slice(row * hidden, hidden);
                ReadOnlySpan<T> hPrev = n == 0 ? InitialState(in batch, l, d, b) : states.Slice((((d == 0 ? t - 1 : t + 1) * size) + b) * hidden, hidden);
                Span<T> delta = deltas.Slice(row * hidden, hidden);
                ReadOnlySpan<T> g = _g.AsSpan((row * width) + (d * hidden), hidden);
                ReadOnlySpan<T> deltaNext = n + 1 < length ? deltas.Slice((((d == 0 ? t + 1 : t - 1) * size) + b) * hidden, hidden) : default;
                for (int j = 0; j < hidden; j++)
                {
                    T sum = g[j];
                    for (int i = 0; i < deltaNext.Length; i++)
                    {
                        sum += whh[(i * hidden) + j] * deltaNext[i];
                    }

                    delta[j] = sum * FPrime(h[j]);
                }

                bool tokens = l == 0 && batch.IsTokenInput;
                ReadOnlySpan<T> x = l == 0 ? (tokens ? default : batch.Inputs.Slice(row * inputs, inputs)) : LayerInput(l, row);
                for (int i = 0; i < hidden; i++)
                {
                    T di = delta[i];
                    dBh[i] += di;
                    Span<T> whhRow = dWhh.Slice(i * hidden, hidden);
                    for (int j = 0; j < hidden; j++)
                    {
                        whhRow[j] += di * hPrev[j];
                    }

                    if (tokens)
                    {
                        dWxh[(i * inputs) + batch.Tokens[row]] += di;
                    }
                    else
                    {
                        Span<T> wxhRow = dWxh.Slice(i * inputs, inputs);
                        for (int j = 0; j < inputs; j++)
                        {
                            wxhRow[j] += di * x[j];
                        }
                    }
                }
            }

            // (16) ∂L/∂h₀ = W_hhᵀ δ of the direction's first step (t = 1 forward, t = T_b reverse).
            if (!batch.InitialStateGradient.IsEmpty)
            {
                int first = d == 0 ? 0 : length - 1;
                ReadOnlySpan<T> delta1 = deltas.Slice(((first * size) + b) * hidden, hidden);
                Span<T> dh0 = batch.InitialStateGradient.Slice(((((l * Shape.Directions) + d) * size) + b) * hidden, hidden);
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

    /// <summary>Σ_d W_xh⁽ˡ'ᵈ⁾ᵀ δₜ⁽ˡ'ᵈ⁾ for every valid row, times the dropout mask when given; zero after each length.</summary>
    private void InputGradient(ReadOnlySpan<T> theta, in SequenceBatch<T> batch, int l, Span<T> destination, ReadOnlySpan<T> mask)
    {
        int inputs = Shape.LayerInputSize(l), hidden = Shape.HiddenSize, size = batch.BatchSize, rows = batch.Steps * size;
        destination.Slice(0, rows * inputs).Clear();
        for (int d = 0; d < Shape.Directions; d++)
        {
            RnnLayerBlock block = Shape.Block(l, d);
            ReadOnlySpan<T> wxh = theta.Slice(block.WxhOffset, hidden * inputs);
            ReadOnlySpan<T> deltas = Delta(l, d, rows);
            for (int row = 0; row < rows; row++)
            {
                if ((row / size) >= batch.LengthOf(row % size))
                {
                    continue;
                }

                ReadOnlySpan<T> delta = deltas.Slice(row * hidden, hidden);
                Span<T> dx = destination.Slice(row * inputs, inputs);
                for (int j = 0; j < inputs; j++)
                {
                    T sum = T.Zero;
                    for (int i = 0; i < hidden; i++)
                    {
                        sum += wxh[(i * inputs) + j] * delta[i];
                    }

                    dx[j] += mask.IsEmpty ? sum : sum * mask[(row * inputs) + j];
                }
            }
        }
    }

    /// <summary>The batch's optional forward outputs: the top layer's states, and every block's final state.</summary>
    private void WriteStates(in SequenceBatch<T> batch)
    {
        int hidden = Shape.HiddenSize, size = batch.BatchSize;
        if (!batch.HiddenStates.IsEmpty)
        {
            HiddenStates.CopyTo(batch.HiddenStates);
        }

        if (batch.FinalState.IsEmpty)
        {
            return;
        }

        for (int l = 0; l < Shape.Layers; l++)
        {
            for (int d = 0; d < Shape.Directions; d++)
            {
                ReadOnlySpan<T> states = LayerStates(l, d);
                for (int b = 0; b < size; b++)
                {
                    int last = d == 0 ? batch.LengthOf(b) - 1 : 0;
                    states.Slice(((last * size) + b) * hidden, hidden).CopyTo(batch.FinalState.Slice(((((l * Shape.Directions) + d) * size) + b) * hidden, hidden));
                }
            }
        }
    }

    /// <summary>T·B of the current call: every per-block buffer holds its blocks at this stride.</summary>
    private int Rows => _steps * _batch;

    private Span<T> State(RnnLayerBlock block, int l, int d) =>
        _h.AsSpan(((l * Shape.Directions) + d) * Rows * block.HiddenSize, _steps * _batch * block.HiddenSize);

    private Span<T> Delta(int l, int d, int rows) =>
        _delta.AsSpan(((l * Shape.Directions) + d) * Rows * Shape.HiddenSize, rows * Shape.HiddenSize);

    private ReadOnlySpan<T> LayerInput(int l, int row) =>
        _x.AsSpan(((l - 1) * Rows * Shape.LayerOutputSize) + (row * Shape.LayerOutputSize), Shape.LayerOutputSize);

    /// <summary>h₀ of layer l, direction d, sequence b: the caller's, or zeros.</summary>
    private ReadOnlySpan<T> InitialState(in SequenceBatch<T> batch, int l, int d, int b)
    {
        int hidden = Shape.HiddenSize;
        return batch.InitialState.IsEmpty ? _zeros : batch.InitialState.Slice(((((l * Shape.Directions) + d) * batch.BatchSize) + b) * hidden, hidden);
    }

    /// <summary>(2) f(u).</summary>
    private T F(T u) => ReferenceKernels.F(Activation, u);

    /// <summary>f′(uₜ) written through hₜ = f(uₜ).</summary>
    private T FPrime(T h) => ReferenceKernels.FPrime(Activation, h);
}
