using System.Runtime.CompilerServices;
using Bptt.Fast.Internals;
using Bptt.Fast.Model;
using Bptt.Fast.Kernels;
using Bptt.Fast.Kernels.Bodies;

namespace Bptt.Fast.Serving;

/// <summary>What a streaming step writes for the output layer.</summary>
public enum StepOutput
{
    /// <summary>yₜ = softmax(vₜ), equation (4).</summary>
    Probabilities,

    /// <summary>vₜ = W_hy hₜ + b_y, equation (3).</summary>
    Logits,
}

/// <summary>
/// A trained network, read-only, for streaming inference: load it once and share it between any number of threads.
/// Each caller keeps its own small <see cref="RnnState"/> (or an <see cref="RnnStateBatch"/> for many streams at once).
/// A step runs equations (1)–(4) with the fast kernels: hₜ = f(W_xh xₜ + W_hh hₜ₋₁ + b_h), then vₜ = W_hy hₜ + b_y and,
/// if asked, yₜ = softmax(vₜ). The weights are copied and packed at construction; a step allocates nothing.
/// </summary>
public sealed class RnnModel
{
    private readonly float[] _wxhT;     // [I, H]: column `token` of W_xh is row `token` here
    private readonly float[] _wxh;      // [H, I], dense input
    private readonly float[] _stepPacked; // W_hhᵀ in column-block panels (single stream)
    private readonly AlignedBuffer _whhTPackedGemm; // op(B) = W_hhᵀ for the batched step
    private readonly AlignedBuffer _whyTPackedGemm; // op(B) = W_hyᵀ for the batched output layer
    private readonly float[] _bh, _why, _by;
    private readonly KernelSet _k;

    /// <summary>Copies θ into a read-only model.</summary>
    /// <param name="parameters">θ; must be finite.</param>
    /// <param name="activation">f of equation (2), as trained.</param>
    public RnnModel(RnnParameters parameters, Activation activation = Activation.Tanh)
        : this(parameters, activation, KernelInfo.Isa)
    {
    }

    internal RnnModel(RnnParameters parameters, Activation activation, KernelIsa isa)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (!Enum.IsDefined(activation))
        {
            throw new ArgumentOutOfRangeException(nameof(activation), activation, "Expected Tanh, Relu or Sigmoid.");
        }

        BatchValidation.ValidateParameters<float>(parameters.Values, nameof(parameters), parameters.Shape);
        RnnShape s = parameters.Shape;
        int i = s.InputSize, h = s.HiddenSize, o = s.OutputSize;
        Shape = s;
        Activation = activation;
        _k = KernelSets.For(isa, activation);
        _wxh = parameters.Wxh.ToArray();
        _wxhT = new float[i * h];
        Layout.Transpose(_wxh, h, i, _wxhT);

        _stepPacked = new float[h * h];
        _k.PackTransposedColumnBlocks(parameters.Whh, h, h, _stepPacked);
        _whhTPackedGemm = new AlignedBuffer(_k.PackedBLength(h, h));
        _k.PackB(true, h, h, parameters.Whh, h, _whhTPackedGemm.Span);
        _whyTPackedGemm = new AlignedBuffer(_k.PackedBLength(h, o));
        _k.PackB(true, h, o, parameters.Why, h, _whyTPackedGemm.Span);
        _bh = parameters.Bh.ToArray();
        _why = parameters.Why.ToArray();
        _by = parameters.By.ToArray();
    }

    /// <summary>The network sizes.</summary>
    public RnnShape Shape { get; }

    /// <summary>f.</summary>
    public Activation Activation { get; }

    /// <summary>A new state for one stream, h = 0.</summary>
    /// <returns>The state.</returns>
    public RnnState CreateState() => new(Shape);

    /// <summary>A new state block for <paramref name="count"/> streams stepped together.</summary>
    /// <param name="count">Streams, at least 1.</param>
    /// <returns>The states.</returns>
    public RnnStateBatch CreateStateBatch(int count) => new(Shape, count);

    /// <summary>One step of one stream with token input: advances <paramref name="state"/> and writes yₜ or vₜ.</summary>
    /// <param name="token">xₜ as a token id in [0, I).</param>
    /// <param name="state">The caller's state (not shared between threads).</param>
    /// <param name="output">O floats: probabilities or logits.</param>
    /// <param name="kind">What to write.</param>
    /// <exception cref="ArgumentNullException"><paramref name="state"/> is null.</exception>
    /// <exception cref="ArgumentException">A state of another shape, an output of the wrong length, or an output that overlaps the state.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token outside [0, I) or an undefined <paramref name="kind"/>.</exception>
    /// <exception cref="InvalidOperationException">Another thread is stepping the same state.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Step(int token, RnnState state, Span<float> output, StepOutput kind = StepOutput.Probabilities)
    {
        CheckState(state, output, kind);
        Guard.InRange(token, 0, Shape.InputSize - 1, nameof(token));
        var set = default(AliasSet);
        set.Write<float>(state.Hidden, "state.Hidden");
        set.Write<float>(output, nameof(output));
        set.Check();
        state.Gate.Enter(state);
        try
        {
            int h = Shape.HiddenSize;
            Span<float> u = state.Scratch;
            _bh.CopyTo(u);
            _k.Axpy(1f, _wxhT.AsSpan(token * h, h), u);
            Advance(state, output, kind);
        }
        finally
        {
            state.Gate.Exit();
        }
    }

    /// <summary>One step of one stream with a dense input vector.</summary>
    /// <param name="input">xₜ, I finite floats.</param>
    /// <param name="state">The caller's state.</param>
    /// <param name="output">O floats: probabilities or logits.</param>
    /// <param name="kind">What to write.</param>
    /// <exception cref="ArgumentNullException"><paramref name="state"/> is null.</exception>
    /// <exception cref="ArgumentException">A state of another shape, an input or output of the wrong length, a non-finite
    /// input, or an output that overlaps the state or the input.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An undefined <paramref name="kind"/>.</exception>
    /// <exception cref="InvalidOperationException">Another thread is stepping the same state.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Step(ReadOnlySpan<float> input, RnnState state, Span<float> output, StepOutput kind = StepOutput.Probabilities)
    {
        CheckState(state, output, kind);
        Guard.Length(Shape.InputSize, input.Length, nameof(input), "inputSize");
        Guard.Finite(input, nameof(input));
        var set = default(AliasSet);
        set.Read(input, nameof(input));
        set.Write<float>(state.Hidden, "state.Hidden");
        set.Write<float>(output, nameof(output));
        set.Check();
        state.Gate.Enter(state);
        try
        {
            Span<float> u = state.Scratch;
            _k.Gemv(_wxh, Shape.HiddenSize, Shape.InputSize, input, u);
            _k.Axpy(1f, _bh, u);
            Advance(state, output, kind);
        }
        finally
        {
            state.Gate.Exit();
        }
    }

    /// <summary>
    /// One step of many independent streams at once (servers that group requests): row b of <paramref name="states"/>
    /// advances with <c>tokens[b]</c>, and row b of <paramref name="outputs"/> (<c>[B, O]</c>) receives its yₜ or vₜ.
    /// The recurrent and output products run as GEMMs over all B rows.
    /// </summary>
    /// <param name="tokens">B token ids.</param>
    /// <param name="states">B states.</param>
    /// <param name="outputs">B·O floats.</param>
    /// <param name="kind">What to write.</param>
    /// <exception cref="ArgumentNullException"><paramref name="states"/> is null.</exception>
    /// <exception cref="ArgumentException">States of another shape, a length mismatch, or outputs that overlap the states or tokens.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token outside [0, I) or an undefined <paramref name="kind"/>.</exception>
    /// <exception cref="InvalidOperationException">Another thread is stepping the same state block.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void StepBatch(ReadOnlySpan<int> tokens, RnnStateBatch states, Span<float> outputs, StepOutput kind = StepOutput.Probabilities)
    {
        ArgumentNullException.ThrowIfNull(states);
        ModelGuard.SameShape(Shape, states.Shape, nameof(states));
        int b = states.Count, h = Shape.HiddenSize, o = Shape.OutputSize;
        Guard.Length(b, tokens.Length, nameof(tokens), "states.Count");
        Guard.Length(b * o, outputs.Length, nameof(outputs), "states.Count × outputSize");
        CheckKind(kind);
        for (int r = 0; r < b; r++)
        {
            if ((uint)tokens[r] >= (uint)Shape.InputSize)
            {
                throw new ArgumentOutOfRangeException(nameof(tokens), tokens[r], $"Expected token ids in [0, {Shape.InputSize}); stream {r} holds {tokens[r]}.");
            }
        }

        var set = default(AliasSet);
        set.Read(tokens, nameof(tokens));
        set.Write<float>(states.Hidden, "states.Hidden");
        set.Write<float>(outputs, nameof(outputs));
        set.Check();
        states.Gate.Enter(states);
        try
        {
            Span<float> u = states.Scratch;
            for (int r = 0; r < b; r++)
            {
                Span<float> row = u.Slice(r * h, h);
                _bh.CopyTo(row);
                _k.Axpy(1f, _wxhT.AsSpan(tokens[r] * h, h), row);
            }

            // (1)–(2): U += H₋₁ W_hhᵀ, then h = f(U); the new states replace the old.
            _k.Multiply(false, b, h, h, states.Hidden, h, _whhTPackedGemm.Span, 1f, u, h, states.PackA);
            _k.Activate(u, u);
            u.CopyTo(states.Hidden);

            // (3): V = H W_hyᵀ + b_y; (4) per row.
            for (int r = 0; r < b; r++)
            {
                _by.CopyTo(outputs.Slice(r * o, o));
            }

            _k.Multiply(false, b, o, h, states.Hidden, h, _whyTPackedGemm.Span, 1f, outputs, o, states.PackA);
            if (kind == StepOutput.Probabilities)
            {
                for (int r = 0; r < b; r++)
                {
                    Span<float> row = outputs.Slice(r * o, o);
                    _k.Softmax(row, row);
                }
            }
        }
        finally
        {
            states.Gate.Exit();
        }
    }

    /// <summary>
    /// Runs every streaming code path once on scratch states (token and dense steps, both outputs, and a batched step),
    /// so that the JIT has compiled them before the first request; the kernels are compiled fully optimised on first use,
    /// so the first real step then runs at steady-state speed. It allocates its scratch states; call it once.
    /// </summary>
    public void WarmUp()
    {
        RnnState state = CreateState();
        RnnStateBatch states = CreateStateBatch(4);
        float[] output = new float[Shape.OutputSize], outputs = new float[4 * Shape.OutputSize], input = new float[Shape.InputSize];
        foreach (StepOutput kind in new[] { StepOutput.Probabilities, StepOutput.Logits })
        {
            Step(0, state, output, kind);
            Step(input, state, output, kind);
            StepBatch([0, 0, 0, 0], states, outputs, kind);
        }
    }

    /// <summary>The most probable class of <paramref name="output"/> (probabilities or logits; the first on ties).</summary>
    /// <param name="output">O values.</param>
    /// <returns>The index of the largest value.</returns>
    public static int Greedy(ReadOnlySpan<float> output)
    {
        if (output.IsEmpty)
        {
            throw new ArgumentException("Expected at least one value, actual 0.", nameof(output));
        }

        int best = 0;
        for (int k = 1; k < output.Length; k++)
        {
            if (output[k] > output[best])
            {
                best = k;
            }
        }

        return best;
    }

    /// <summary>
    /// Draws a class from softmax(v / τ) given the logits v, with the caller's random source: τ → 0 approaches greedy,
    /// τ = 1 samples the model's distribution, τ &gt; 1 flattens it. Nothing is allocated.
    /// </summary>
    /// <param name="logits">vₜ, O finite values (use <see cref="StepOutput.Logits"/>).</param>
    /// <param name="temperature">τ, finite and &gt; 0.</param>
    /// <param name="random">The caller's random source.</param>
    /// <returns>The sampled class.</returns>
    public static int Sample(ReadOnlySpan<float> logits, float temperature, Random random)
    {
        ArgumentNullException.ThrowIfNull(random);
        Guard.Positive(temperature, nameof(temperature));
        if (logits.IsEmpty)
        {
            throw new ArgumentException("Expected at least one logit, actual 0.", nameof(logits));
        }

        Guard.Finite(logits, nameof(logits));
        float max = logits[0];
        foreach (float v in logits)
        {
            max = MathF.Max(max, v);
        }

        double sum = 0;
        foreach (float v in logits)
        {
            sum += Math.Exp((v - max) / temperature);
        }

        double u = random.NextDouble() * sum;
        for (int k = 0; k < logits.Length; k++)
        {
            u -= Math.Exp((logits[k] - max) / temperature);
            if (u < 0)
            {
                return k;
            }
        }

        return logits.Length - 1;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Advance(RnnState state, Span<float> output, StepOutput kind)
    {
        int h = Shape.HiddenSize, o = Shape.OutputSize;
        Span<float> u = state.Scratch;
        _k.StepForward(_stepPacked, h, state.Hidden, u); // (1)–(2) fused, in place over u

        u.CopyTo(state.Hidden);
        _k.Gemv(_why, o, h, state.Hidden, output);
        _k.Axpy(1f, _by, output);
        if (kind == StepOutput.Probabilities)
        {
            _k.Softmax(output, output); // (4) in place, each yₖ computed directly
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void CheckState(RnnState state, Span<float> output, StepOutput kind)
    {
        ArgumentNullException.ThrowIfNull(state);
        ModelGuard.SameShape(Shape, state.Shape, nameof(state));
        Guard.Length(Shape.OutputSize, output.Length, nameof(output), "outputSize");
        CheckKind(kind);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void CheckKind(StepOutput kind)
    {
        if (!Enum.IsDefined(kind))
        {
            throw new ArgumentOutOfRangeException(nameof(kind), kind, "Expected Probabilities or Logits.");
        }
    }
}
