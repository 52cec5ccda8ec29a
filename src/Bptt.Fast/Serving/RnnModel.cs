using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using Bptt.Fast.Internals;
using Bptt.Fast.Kernels;
using Bptt.Fast.Kernels.Bodies;
using Bptt.Fast.Model;

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
/// A stacked network (L layers) steps layer by layer, each layer's xₜ being the new state of the layer below, and its
/// state holds every layer's h. A bidirectional network runs whole sequences only (<see cref="RunSequence(ReadOnlySpan{int}, RnnState, RnnSequenceWorkspace, Span{float}, StepOutput, SequenceOutput)"/>
/// and <see cref="RunSequenceBatch(ReadOnlySpan{int}, RnnStateBatch, RnnSequenceWorkspace, Span{float}, StepOutput, SequenceOutput)"/>):
/// its reverse direction starts from the end of the sequence, so <see cref="Step(int, RnnState, Span{float}, StepOutput)"/>
/// and <see cref="StepBatch"/> refuse it.
/// </summary>
public sealed class RnnModel
{
    /// <summary>From this many streams on, a recurrent step of a sequence call is one GEMM over the streams, as in training.</summary>
    private const int BatchedRecurrenceMinBatch = 4;

    private readonly RnnParameters _theta; // a private copy: W_xh, b_h, W_hy and b_y are read from it, and exporters read θ
    private readonly float[] _tokenRows; // [I, H]: row `token` is b_h + column `token` of W_xh, uₜ of (1) before W_hh hₜ₋₁
    private readonly int _bhOffset, _byOffset; // where b_h (first block) and b_y lie in θ, computed once: a step slices θ directly
    private readonly AlignedBuffer _stepPacked; // W_hhᵀ in column-block panels (single stream), cache-line aligned: a step streams it whole
    private readonly AlignedBuffer _headPacked; // W_hyᵀ in column-block panels (one output row), cache-line aligned
    private readonly AlignedBuffer _wxhTPackedGemm; // op(B) = W_xhᵀ for dense input over many rows
    private readonly AlignedBuffer _whhTPackedGemm; // op(B) = W_hhᵀ for the batched step
    private readonly AlignedBuffer _whyTPackedGemm; // op(B) = W_hyᵀ for the batched output layer (one direction)
    private readonly KernelSet _k;
    private readonly bool _singleLayer;           // the seed's network: the one-layer paths run, _blocks and _whyHalvesGemm are empty
    private readonly bool _bidirectional;         // steps are refused
    private readonly bool _stepAlternates;        // Step alternates its read order per thread (weights near or beyond the L2)
    private readonly LayerWeights[] _blocks;      // stacked or bidirectional: every block (l, d) at l·D + d; block (0, 0) shares the arrays above
    private readonly AlignedBuffer[] _whyHalvesGemm; // bidirectional: op(B) = W_hy[:, d·H .. (d+1)·H]ᵀ for direction d

    /// <summary>
    /// Copies θ into a read-only model. The activation is required: a network runs only with the f it was trained with.
    /// To serve a checkpoint, <see cref="Load(string)"/> reads both θ and f from the file.
    /// </summary>
    /// <param name="parameters">θ; must be finite.</param>
    /// <param name="activation">f of equation (2), as trained.</param>
    /// <exception cref="ArgumentNullException"><paramref name="parameters"/> is null.</exception>
    /// <exception cref="ArgumentException">θ holds NaN or ±∞.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="activation"/> is not a defined value.</exception>
    public RnnModel(RnnParameters parameters, Activation activation)
        : this(parameters, activation, KernelInfo.Isa)
    {
    }

    internal RnnModel(RnnParameters parameters, Activation activation, KernelIsa isa)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ActivationRule.Check(activation, nameof(activation));

        BatchValidation.ValidateParameters<float>(parameters.Values, nameof(parameters), parameters.Shape);
        RnnShape s = parameters.Shape;
        int i = s.InputSize, h = s.HiddenSize, o = s.OutputSize;
        Shape = s;
        Activation = activation;
        _k = KernelSets.For(isa, activation);
        _theta = parameters.Clone();
        _bhOffset = s.BhOffset;
        _tokenRows = BuildTokenRows(_k, _theta.Wxh, Bh, h, i);
        _byOffset = s.ByOffset;
        _stepPacked = new AlignedBuffer((long)h * h);
        _k.PackTransposedColumnBlocks(_theta.Whh, h, h, _stepPacked.Span);
        _wxhTPackedGemm = new AlignedBuffer(_k.PackedBLength(i, h));
        _k.PackB(true, i, h, _theta.Wxh, i, _wxhTPackedGemm.Span);
        _whhTPackedGemm = new AlignedBuffer(_k.PackedBLength(h, h));
        _k.PackB(true, h, h, _theta.Whh, h, _whhTPackedGemm.Span);
        if (s.IsBidirectional)
        {
            // The head reads [h→ ; h←]: one packed op(B) per column half of W_hy (O×2H).
            _headPacked = new AlignedBuffer(0);
            _whyTPackedGemm = new AlignedBuffer(0);
            _whyHalvesGemm = new AlignedBuffer[2];
            for (int d = 0; d < 2; d++)
            {
                _whyHalvesGemm[d] = new AlignedBuffer(_k.PackedBLength(h, o));
                _k.PackB(true, h, o, _theta.Why[(d * h)..], 2 * h, _whyHalvesGemm[d].Span);
            }
        }
        else
        {
            _headPacked = new AlignedBuffer((long)h * o);
            _k.PackTransposedColumnBlocks(_theta.Why, o, h, _headPacked.Span);
            _whyTPackedGemm = new AlignedBuffer(_k.PackedBLength(h, o));
            _k.PackB(true, h, o, _theta.Why, h, _whyTPackedGemm.Span);
            _whyHalvesGemm = [];
        }

        _singleLayer = s.IsSingleLayer;
        _bidirectional = s.IsBidirectional;
        // A step of one stream streams W_hhᵀ and W_hyᵀ. Beyond about three quarters of the L2, read in one order they evict
        // each other on every step; alternating the order per thread starts each step on what the previous one left in L2
        // (H = 512 on a 1 MiB L2: 13.3 → 12.2 µs, A/B in one process). Below that the quarters' extra pass costs more than
        // the reuse gives (H = 128, 256: within 1–2%), so a single step reads its panels once, first to last.
        _stepAlternates = CpuInfo.L2 > 0 && ((long)h * (h + o) * sizeof(float)) > CpuInfo.L2 / 4 * 3;
        _blocks = _singleLayer ? [] : new LayerWeights[s.BlockCount];
        for (int l = 0; l < s.Layers && !_singleLayer; l++)
        {
            for (int d = 0; d < s.Directions; d++)
            {
                _blocks[(l * s.Directions) + d] = l == 0 && d == 0
                    ? new LayerWeights(s.BhOffset, _tokenRows, [], _stepPacked, [_wxhTPackedGemm], _whhTPackedGemm)
                    : LayerWeights.Pack(_k, _theta, l, d);
            }
        }
    }

    /// <summary>
    /// The token table of equation (1): row t is b_h + W_xh[:, t], the pre-activation a token contributes before
    /// W_hh hₜ₋₁, added once here with the same kernel a step would use (so every path sees the bits it would have
    /// computed per call), and gathered by row. <paramref name="wxh"/> is H×I, <paramref name="bh"/> H floats.
    /// </summary>
    private static float[] BuildTokenRows(KernelSet k, ReadOnlySpan<float> wxh, ReadOnlySpan<float> bh, int h, int i)
    {
        var rows = new float[Sizes.ArrayLength(Sizes.Product(i, h), nameof(h), "token table")];
        Layout.Transpose(wxh, h, i, rows);
        for (int t = 0; t < i; t++)
        {
            Span<float> row = rows.AsSpan(t * h, h);
            k.Add(bh, row, row);
        }

        return rows;
    }

    /// <summary>
    /// The packed weights of one recurrent block (layer l, direction d) of a stacked or bidirectional model: W_xh⁽ˡ'ᵈ⁾ for
    /// equation (1) in the forms its inputs need, W_hh⁽ˡ'ᵈ⁾ for (1)–(2), and where b_h⁽ˡ'ᵈ⁾ lies in θ.
    /// </summary>
    /// <param name="BhOffset">Offset of b_h⁽ˡ'ᵈ⁾ in θ.</param>
    /// <param name="TokenRows">First layer: <c>[I, H]</c>, row t = b_h⁽⁰'ᵈ⁾ + W_xh⁽⁰'ᵈ⁾[:, t] (the gather of (1), see <see cref="BuildTokenRows"/>); empty above.</param>
    /// <param name="InputPacked">Layers above the first of a one-direction model: W_xhᵀ in column-block panels, (1) for one row; else empty.</param>
    /// <param name="StepPacked">W_hhᵀ in column-block panels: (1)–(2) fused for one row.</param>
    /// <param name="InputGemm">op(B) of (1) over many rows: W_xhᵀ (first layer), or per direction d′ below, W_xh[:, d′·H .. (d′+1)·H]ᵀ.</param>
    /// <param name="WhhGemm">op(B) = W_hhᵀ: (1)–(2) over many rows.</param>
    private sealed record LayerWeights(int BhOffset, float[] TokenRows, float[] InputPacked, AlignedBuffer StepPacked, AlignedBuffer[] InputGemm, AlignedBuffer WhhGemm)
    {
        /// <summary>Packs block (l, d) of θ.</summary>
        public static LayerWeights Pack(KernelSet k, RnnParameters theta, int layer, int direction)
        {
            RnnShape s = theta.Shape;
            int h = s.HiddenSize, inputs = s.LayerInputSize(layer), below = layer == 0 ? 1 : s.Directions;
            ReadOnlySpan<float> wxh = theta.LayerWxh(layer, direction), whh = theta.LayerWhh(layer, direction);
            int bhOffset = theta.Block(layer, direction).BhOffset;
            float[] tokenRows = [], inputPacked = [];
            if (layer == 0)
            {
                tokenRows = BuildTokenRows(k, wxh, theta.Values.Slice(bhOffset, h), h, inputs);
            }
            else if (s.Directions == 1)
            {
                inputPacked = new float[inputs * h];
                k.PackTransposedColumnBlocks(wxh, h, inputs, inputPacked);
            }

            var stepPacked = new AlignedBuffer((long)h * h);
            k.PackTransposedColumnBlocks(whh, h, h, stepPacked.Span);
            var inputGemm = new AlignedBuffer[below];
            for (int d = 0; d < below; d++)
            {
                int columns = layer == 0 ? inputs : h;
                inputGemm[d] = new AlignedBuffer(k.PackedBLength(columns, h));
                k.PackB(true, columns, h, wxh[(d * h)..], inputs, inputGemm[d].Span);
            }

            var whhGemm = new AlignedBuffer(k.PackedBLength(h, h));
            k.PackB(true, h, h, whh, h, whhGemm.Span);
            return new LayerWeights(bhOffset, tokenRows, inputPacked, stepPacked, inputGemm, whhGemm);
        }
    }

    /// <summary>The network sizes.</summary>
    public RnnShape Shape { get; }

    /// <summary>b_h of the first layer's forward direction, a view of θ.</summary>
    private ReadOnlySpan<float> Bh
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _theta.Values.Slice(_bhOffset, Shape.HiddenSize);
    }

    /// <summary>b_y, a view of θ.</summary>
    private ReadOnlySpan<float> By
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _theta.Values.Slice(_byOffset, Shape.OutputSize);
    }

    /// <summary>f.</summary>
    public Activation Activation { get; }

    /// <summary>θ as given at construction (read-only by contract: the exporters read it, nothing writes it).</summary>
    internal RnnParameters Parameters => _theta;

    /// <summary>
    /// Loads a checkpoint written by <see cref="Checkpoint.Save(string, RnnParameters, Activation, Training.Optimizer?, ulong, ReadOnlySpan{float})"/>:
    /// θ, the shape and the activation all come from the file (optimizer state and carried state are checked, not kept),
    /// so a model always runs with the f it was trained with.
    /// </summary>
    /// <param name="path">The checkpoint file.</param>
    /// <returns>The model.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="path"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="path"/> is empty.</exception>
    /// <exception cref="InvalidDataException">The file is not a valid checkpoint (as <see cref="Checkpoint.Load(string, RnnParameters, Training.Optimizer?, Span{float})"/>).</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    /// <exception cref="UnauthorizedAccessException">The file cannot be opened for reading.</exception>
    public static RnnModel Load(string path)
    {
        (RnnParameters theta, CheckpointInfo info) = Checkpoint.LoadParameters(path);
        return new RnnModel(theta, info.Activation);
    }

    /// <summary>Loads a checkpoint from the rest of <paramref name="stream"/>, like <see cref="Load(string)"/>; a stream of unknown length is read as it arrives (memory grows with the bytes actually read).</summary>
    /// <param name="stream">A readable stream positioned at the checkpoint; the checkpoint must be the rest of the stream.</param>
    /// <returns>The model.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="stream"/> is null.</exception>
    /// <exception cref="ArgumentException">The stream cannot read.</exception>
    /// <exception cref="InvalidDataException">The data is not a valid checkpoint.</exception>
    /// <exception cref="IOException">The stream failed while reading.</exception>
    public static RnnModel Load(Stream stream)
    {
        (RnnParameters theta, CheckpointInfo info) = Checkpoint.LoadParameters(stream);
        return new RnnModel(theta, info.Activation);
    }

    /// <summary>A new state for one stream, h = 0 (every layer and direction, <c>[L·D, H]</c>).</summary>
    /// <returns>The state.</returns>
    public RnnState CreateState() => new(Shape);

    /// <summary>A new state block for <paramref name="count"/> streams stepped together, <c>[L·D, B, H]</c>.</summary>
    /// <param name="count">Streams, at least 1.</param>
    /// <returns>The states.</returns>
    public RnnStateBatch CreateStateBatch(int count) => new(Shape, count);

    /// <summary>
    /// A workspace for sequence calls of up to <paramref name="maxSteps"/> steps of up to <paramref name="maxBatch"/>
    /// streams: 4·T·B·H bytes (times D for a bidirectional model, and times 2 for a stacked one, which keeps the layer below
    /// while it computes the next) plus a 144 KiB packing buffer, allocated here once.
    /// </summary>
    /// <param name="maxSteps">The most steps per call, at least 1.</param>
    /// <param name="maxBatch">The most streams per call, in [1, <see cref="RnnSequenceWorkspace.MaxBatchLimit"/>].</param>
    /// <returns>The workspace.</returns>
    /// <exception cref="ArgumentOutOfRangeException">A size out of range, or T·B·H floats would not fit one array.</exception>
    public RnnSequenceWorkspace CreateSequenceWorkspace(int maxSteps, int maxBatch = 1) => new(Shape, maxSteps, maxBatch);

    /// <summary>One step of one stream with token input: advances <paramref name="state"/> and writes yₜ or vₜ.</summary>
    /// <param name="token">xₜ as a token id in [0, I).</param>
    /// <param name="state">The caller's state (not shared between threads).</param>
    /// <param name="output">O floats: probabilities or logits.</param>
    /// <param name="kind">What to write.</param>
    /// <exception cref="ArgumentNullException"><paramref name="state"/> is null.</exception>
    /// <exception cref="ArgumentException">A state of another shape, an output of the wrong length, or an output that overlaps the state.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token outside [0, I) or an undefined <paramref name="kind"/>.</exception>
    /// <exception cref="InvalidOperationException">Another thread is stepping the same state, or the model is bidirectional
    /// (its reverse direction needs the whole sequence: use <see cref="RunSequence(ReadOnlySpan{int}, RnnState, RnnSequenceWorkspace, Span{float}, StepOutput, SequenceOutput)"/>).</exception>
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
            if (!_singleLayer)
            {
                StackedStep(token, default, state.Hidden, state.Scratch, output, kind);
                return;
            }

            int h = Shape.HiddenSize;
            Span<float> u = state.Scratch;
            ReadOrder order = StepOrder();
            _k.StepForwardFrom(_stepPacked.Span, h, state.Hidden, _tokenRows.AsSpan(token * h, h), u, order); // (1)–(2): f(b_h + W_xh[:, token] + W_hh hₜ₋₁)
            u.CopyTo(state.Hidden);
            Head(state.Hidden, 1, output, kind, default, order);
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
    /// <exception cref="InvalidOperationException">Another thread is stepping the same state, or the model is bidirectional
    /// (use <see cref="RunSequence(ReadOnlySpan{float}, RnnState, RnnSequenceWorkspace, Span{float}, StepOutput, SequenceOutput)"/>).</exception>
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
            if (!_singleLayer)
            {
                StackedStep(0, input, state.Hidden, state.Scratch, output, kind);
                return;
            }

            Span<float> u = state.Scratch;
            _k.Gemv(_theta.Wxh, Shape.HiddenSize, Shape.InputSize, input, u);
            _k.Axpy(1f, Bh, u);
            ReadOrder order = StepOrder();
            FusedStep(state.Hidden, u, order);
            u.CopyTo(state.Hidden);
            Head(state.Hidden, 1, output, kind, default, order);
        }
        finally
        {
            state.Gate.Exit();
        }
    }

    /// <summary>
    /// One step of many independent streams at once (servers that group requests): row b of <paramref name="states"/>
    /// (row b of every layer's block for a stacked model) advances with <c>tokens[b]</c>, and row b of
    /// <paramref name="outputs"/> (<c>[B, O]</c>) receives its yₜ or vₜ. The recurrent, inter-layer and output products
    /// run as GEMMs over all B rows.
    /// </summary>
    /// <param name="tokens">B token ids.</param>
    /// <param name="states">B states.</param>
    /// <param name="outputs">B·O floats.</param>
    /// <param name="kind">What to write.</param>
    /// <exception cref="ArgumentNullException"><paramref name="states"/> is null.</exception>
    /// <exception cref="ArgumentException">States of another shape, a length mismatch, or outputs that overlap the states or tokens.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token outside [0, I) or an undefined <paramref name="kind"/>.</exception>
    /// <exception cref="InvalidOperationException">Another thread is stepping the same state block, or the model is bidirectional
    /// (use <see cref="RunSequenceBatch(ReadOnlySpan{int}, RnnStateBatch, RnnSequenceWorkspace, Span{float}, StepOutput, SequenceOutput)"/>).</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void StepBatch(ReadOnlySpan<int> tokens, RnnStateBatch states, Span<float> outputs, StepOutput kind = StepOutput.Probabilities)
    {
        RefuseBidirectional();
        ArgumentNullException.ThrowIfNull(states);
        ModelGuard.SameShape(Shape, states.Shape, nameof(states));
        int b = states.Count, h = Shape.HiddenSize, o = Shape.OutputSize;
        Guard.Length(b, tokens.Length, nameof(tokens), "states.Count");
        Guard.Length((long)b * o, outputs.Length, nameof(outputs), "states.Count × outputSize");
        CheckKind(kind);
        CheckTokens(tokens, nameof(tokens));
        var set = default(AliasSet);
        set.Read(tokens, nameof(tokens));
        set.Write<float>(states.Hidden, "states.Hidden");
        set.Write<float>(outputs, nameof(outputs));
        set.Check();
        states.Gate.Enter(states);
        try
        {
            if (!_singleLayer)
            {
                StackedStepBatch(tokens, states, outputs, kind);
                return;
            }

            Span<float> u = states.Scratch;
            TokenStep(_tokenRows, tokens, states.Hidden, u, states.Hidden, _whhTPackedGemm.Span, states.PackA);
            Head(states.Hidden, b, outputs, kind, states.PackA, ReadOrder.Once);
        }
        finally
        {
            states.Gate.Exit();
        }
    }

    /// <summary>
    /// Runs T steps of one stream with token input in one call, from <paramref name="state"/>, which then holds h_T: the
    /// same results as T calls of <see cref="Step(int, RnnState, Span{float}, StepOutput)"/> (within float rounding), so a
    /// stream may be fed in pieces of any length. Each step reads its token's row of the model's table (b_h + W_xh[:, xₜ])
    /// in place, only W_hh hₜ₋₁ runs step by step, and the output layer is one GEMM over the T rows (or runs for the last
    /// row only). Allocates nothing. A stacked model runs layer by layer: the first layer's input projection is a gather
    /// of those rows for all T steps, each layer above it one GEMM over the T states of the layer below. The tokens are
    /// checked before the first step and read during the steps, so they must not change while the call runs. A bidirectional model runs its reverse direction
    /// from step T down to step 1, so its call is one whole sequence, not a piece of a stream (reset or set the state
    /// between sequences).
    /// </summary>
    /// <param name="tokens">x₁ … x_T as token ids in [0, I); T = tokens.Length, in [1, <see cref="RnnSequenceWorkspace.MaxSteps"/>].</param>
    /// <param name="state">The caller's state: h₀ on entry, h_T on return (every layer; for a bidirectional model the reverse
    /// direction's h₀ is where it starts, at step T, and it returns h at step 1, as in <see cref="SequenceBatch{T}.FinalState"/>).</param>
    /// <param name="workspace">Scratch memory from <see cref="CreateSequenceWorkspace"/> (this shape).</param>
    /// <param name="outputs"><c>[T, O]</c> floats for <see cref="SequenceOutput.EveryStep"/>, O for <see cref="SequenceOutput.LastStep"/>.</param>
    /// <param name="kind">Probabilities or logits.</param>
    /// <param name="steps">Every step's output, or the last step's only.</param>
    /// <exception cref="ArgumentNullException"><paramref name="state"/> or <paramref name="workspace"/> is null.</exception>
    /// <exception cref="ArgumentException">No tokens; a state or workspace of another shape; more steps than the workspace
    /// holds (<c>workspace</c>); an output of the wrong length; outputs that overlap the state or the tokens.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token outside [0, I), or an undefined <paramref name="kind"/> or <paramref name="steps"/>.</exception>
    /// <exception cref="InvalidOperationException">Another thread is using the same state or workspace.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void RunSequence(ReadOnlySpan<int> tokens, RnnState state, RnnSequenceWorkspace workspace, Span<float> outputs, StepOutput kind = StepOutput.Probabilities, SequenceOutput steps = SequenceOutput.EveryStep)
    {
        ArgumentNullException.ThrowIfNull(state);
        ModelGuard.SameShape(Shape, state.Shape, nameof(state));
        CheckTokens(tokens, nameof(tokens));
        RunChecked(tokens, default, tokens.Length, 1, state.Hidden, "state.Hidden", ref state.Gate, state, workspace, outputs, kind, steps);
    }

    /// <summary>Runs T steps of one stream with dense input; otherwise as <see cref="RunSequence(ReadOnlySpan{int}, RnnState, RnnSequenceWorkspace, Span{float}, StepOutput, SequenceOutput)"/>. The input projection is one GEMM over the T rows.</summary>
    /// <param name="inputs">x₁ … x_T, <c>[T, I]</c> finite floats, T ≥ 1.</param>
    /// <param name="state">The caller's state: h₀ on entry, h_T on return.</param>
    /// <param name="workspace">Scratch memory from <see cref="CreateSequenceWorkspace"/>.</param>
    /// <param name="outputs"><c>[T, O]</c> or O floats.</param>
    /// <param name="kind">Probabilities or logits.</param>
    /// <param name="steps">Every step's output, or the last step's only.</param>
    /// <exception cref="ArgumentNullException"><paramref name="state"/> or <paramref name="workspace"/> is null.</exception>
    /// <exception cref="ArgumentException">No inputs, a length that is not a whole number of steps, or a non-finite input;
    /// otherwise as for token input.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An undefined <paramref name="kind"/> or <paramref name="steps"/>.</exception>
    /// <exception cref="InvalidOperationException">Another thread is using the same state or workspace.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void RunSequence(ReadOnlySpan<float> inputs, RnnState state, RnnSequenceWorkspace workspace, Span<float> outputs, StepOutput kind = StepOutput.Probabilities, SequenceOutput steps = SequenceOutput.EveryStep)
    {
        ArgumentNullException.ThrowIfNull(state);
        ModelGuard.SameShape(Shape, state.Shape, nameof(state));
        int t = DenseSteps(inputs, 1);
        RunChecked(default, inputs, t, 1, state.Hidden, "state.Hidden", ref state.Gate, state, workspace, outputs, kind, steps);
    }

    /// <summary>
    /// Runs T steps of B streams at once, time-major: <c>tokens[t·B + b]</c> is step t of stream b, row b of
    /// <paramref name="states"/> holds stream b's state (h₀ on entry, h_T on return; <c>[L·D, B, H]</c>, in the layout and
    /// with the reverse-direction convention of <see cref="SequenceBatch{T}.InitialState"/> and
    /// <see cref="SequenceBatch{T}.FinalState"/>; every stream has T steps) and <paramref name="outputs"/> is
    /// <c>[T, B, O]</c> (or <c>[B, O]</c> for the last step). From 4 streams on each recurrent step is one GEMM over the
    /// B rows. Equal to T calls of <see cref="StepBatch"/> within float rounding. As in
    /// <see cref="RunSequence(ReadOnlySpan{int}, RnnState, RnnSequenceWorkspace, Span{float}, StepOutput, SequenceOutput)"/>,
    /// the tokens are checked first and read during the steps, so they must not change while the call runs.
    /// </summary>
    /// <param name="tokens">T·B token ids, time-major; T ≥ 1.</param>
    /// <param name="states">B states.</param>
    /// <param name="workspace">Scratch memory for at least T steps of B streams.</param>
    /// <param name="outputs"><c>[T, B, O]</c> or <c>[B, O]</c> floats.</param>
    /// <param name="kind">Probabilities or logits.</param>
    /// <param name="steps">Every step's output, or the last step's only.</param>
    /// <exception cref="ArgumentNullException"><paramref name="states"/> or <paramref name="workspace"/> is null.</exception>
    /// <exception cref="ArgumentException">A token count that is not a positive multiple of B; states or a workspace of
    /// another shape; more steps or streams than the workspace holds (<c>workspace</c>); an output of the wrong length;
    /// outputs that overlap the states or the tokens.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A token outside [0, I), or an undefined <paramref name="kind"/> or <paramref name="steps"/>.</exception>
    /// <exception cref="InvalidOperationException">Another thread is using the same states or workspace.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void RunSequenceBatch(ReadOnlySpan<int> tokens, RnnStateBatch states, RnnSequenceWorkspace workspace, Span<float> outputs, StepOutput kind = StepOutput.Probabilities, SequenceOutput steps = SequenceOutput.EveryStep)
    {
        ArgumentNullException.ThrowIfNull(states);
        ModelGuard.SameShape(Shape, states.Shape, nameof(states));
        int b = states.Count;
        if (tokens.Length == 0 || tokens.Length % b != 0)
        {
            throw new ArgumentException($"Expected T·B token ids with T ≥ 1 and B = {b} (states.Count), actual {tokens.Length}.", nameof(tokens));
        }

        CheckTokens(tokens, nameof(tokens));
        RunChecked(tokens, default, tokens.Length / b, b, states.Hidden, "states.Hidden", ref states.Gate, states, workspace, outputs, kind, steps);
    }

    /// <summary>Runs T steps of B streams with dense input, <c>[T, B, I]</c> time-major; otherwise as <see cref="RunSequenceBatch(ReadOnlySpan{int}, RnnStateBatch, RnnSequenceWorkspace, Span{float}, StepOutput, SequenceOutput)"/>.</summary>
    /// <param name="inputs">T·B·I finite floats, time-major; T ≥ 1.</param>
    /// <param name="states">B states.</param>
    /// <param name="workspace">Scratch memory for at least T steps of B streams.</param>
    /// <param name="outputs"><c>[T, B, O]</c> or <c>[B, O]</c> floats.</param>
    /// <param name="kind">Probabilities or logits.</param>
    /// <param name="steps">Every step's output, or the last step's only.</param>
    /// <exception cref="ArgumentNullException"><paramref name="states"/> or <paramref name="workspace"/> is null.</exception>
    /// <exception cref="ArgumentException">A length that is not a positive multiple of B·I, or a non-finite input; otherwise as for token input.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An undefined <paramref name="kind"/> or <paramref name="steps"/>.</exception>
    /// <exception cref="InvalidOperationException">Another thread is using the same states or workspace.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void RunSequenceBatch(ReadOnlySpan<float> inputs, RnnStateBatch states, RnnSequenceWorkspace workspace, Span<float> outputs, StepOutput kind = StepOutput.Probabilities, SequenceOutput steps = SequenceOutput.EveryStep)
    {
        ArgumentNullException.ThrowIfNull(states);
        ModelGuard.SameShape(Shape, states.Shape, nameof(states));
        int t = DenseSteps(inputs, states.Count);
        RunChecked(default, inputs, t, states.Count, states.Hidden, "states.Hidden", ref states.Gate, states, workspace, outputs, kind, steps);
    }

    /// <summary>
    /// Runs every serving code path once on scratch states (token and dense steps, a batched step, and sequences, with both
    /// outputs; the layer-by-layer paths of a stacked or bidirectional model, whose steps are skipped when it is
    /// bidirectional), so that the JIT has compiled them before the first request; the kernels are compiled fully
    /// optimised on first use, so the first real call then runs at steady-state speed. It allocates its scratch states;
    /// call it once.
    /// </summary>
    public void WarmUp()
    {
        RnnState state = CreateState();
        RnnStateBatch states = CreateStateBatch(4);
        RnnSequenceWorkspace workspace = CreateSequenceWorkspace(2, 4);
        int o = Shape.OutputSize;
        float[] output = new float[o], outputs = new float[8 * o], input = new float[Shape.InputSize], inputs = new float[8 * Shape.InputSize];
        foreach (StepOutput kind in new[] { StepOutput.Probabilities, StepOutput.Logits })
        {
            if (!Shape.IsBidirectional)
            {
                Step(0, state, output, kind);
                Step(input, state, output, kind);
                StepBatch([0, 0, 0, 0], states, outputs.AsSpan(0, 4 * o), kind);
            }

            RunSequence([0, 0], state, workspace, outputs.AsSpan(0, 2 * o), kind);
            RunSequence(inputs.AsSpan(0, 2 * Shape.InputSize), state, workspace, outputs.AsSpan(0, o), kind, SequenceOutput.LastStep);
            RunSequenceBatch(new int[8], states, workspace, outputs, kind);
            RunSequenceBatch(inputs, states, workspace, outputs.AsSpan(0, 4 * o), kind, SequenceOutput.LastStep);
        }

        // End on the single-stream step, so that its weights are the ones left in the caches for the first real call.
        for (int k = 0; k < 4 && !Shape.IsBidirectional; k++)
        {
            Step(0, state, output, StepOutput.Probabilities);
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

    /// <summary>The remaining checks of every sequence call (the state's shape and the inputs are checked by the caller), then the run.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void RunChecked(ReadOnlySpan<int> tokens, ReadOnlySpan<float> inputs, int t, int b, Span<float> hidden, string hiddenName, ref SingleCaller stateGate, object owner, RnnSequenceWorkspace workspace, Span<float> outputs, StepOutput kind, SequenceOutput steps)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        ModelGuard.SameShape(Shape, workspace.Shape, nameof(workspace));
        if (t > workspace.MaxSteps || b > workspace.MaxBatch)
        {
            throw new ArgumentException($"The workspace holds at most {workspace.MaxSteps} steps of {workspace.MaxBatch} streams; this call runs {t} steps of {b}.", nameof(workspace));
        }

        CheckKind(kind);
        if (!Enum.IsDefined(steps))
        {
            throw new ArgumentOutOfRangeException(nameof(steps), steps, "Expected EveryStep or LastStep.");
        }

        int o = Shape.OutputSize, rows = steps == SequenceOutput.EveryStep ? t * b : b;
        Guard.Length((long)rows * o, outputs.Length, nameof(outputs), $"{(steps == SequenceOutput.EveryStep ? "steps × " : "")}streams × outputSize = {rows}×{o}");
        var set = default(AliasSet);
        set.Read(tokens, nameof(tokens));
        set.Read(inputs, nameof(inputs));
        set.Write<float>(hidden, hiddenName);
        set.Write<float>(outputs, nameof(outputs));
        set.Check();
        stateGate.Enter(owner);
        try
        {
            workspace.Gate.Enter(workspace);
            try
            {
                RunValidated(tokens, inputs, t, b, hidden, workspace, outputs, kind, steps);
            }
            finally
            {
                workspace.Gate.Exit();
            }
        }
        finally
        {
            stateGate.Exit();
        }
    }

    /// <summary>
    /// The sequence forward pass over validated arguments, in the training engine's structure. Dense input: U = X W_xhᵀ + b_h
    /// for all T·B rows at once, then hₜ = f(Uₜ + W_hh hₜ₋₁) step by step in place over Uₜ. Token input (one layer, one
    /// direction): hₜ = f(b_h + W_xh[:, xₜ] + W_hh hₜ₋₁) step by step, each token's row read in place. Then the output layer.
    /// Stacked and bidirectional models go layer by layer (<see cref="RunLayers"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void RunValidated(ReadOnlySpan<int> tokens, ReadOnlySpan<float> inputs, int t, int b, Span<float> hidden, RnnSequenceWorkspace workspace, Span<float> outputs, StepOutput kind, SequenceOutput steps)
    {
        if (!_singleLayer)
        {
            RunLayers(tokens, inputs, t, b, hidden, workspace, outputs, kind, steps);
            return;
        }

        int h = Shape.HiddenSize, block = b * h, rows = t * b;
        Span<float> hs = workspace.States[..(rows * h)];
        Span<float> packA = workspace.PackA;
        bool singleRows = b < BatchedRecurrenceMinBatch;
        if (!inputs.IsEmpty)
        {
            for (int r = 0; r < rows; r++)
            {
                Bh.CopyTo(hs.Slice(r * h, h));
            }

            _k.Multiply(false, rows, h, Shape.InputSize, inputs, Shape.InputSize, _wxhTPackedGemm.Span, 1f, hs, h, packA);
        }

        for (int s = 0; s < t; s++)
        {
            ReadOnlySpan<float> previous = s == 0 ? hidden : hs.Slice((s - 1) * block, block);
            Span<float> current = hs.Slice(s * block, block);
            if (singleRows)
            {
                for (int r = 0; r < b; r++)
                {
                    ReadOrder order = ReadOrders.Alternating((s * b) + r); // alternate: start on the panels still in cache
                    if (inputs.IsEmpty)
                    {
                        // (1)–(2): f(b_h + W_xh[:, token] + W_hh hₜ₋₁), the token's row read in place instead of copied first
                        _k.StepForwardFrom(_stepPacked.Span, h, previous.Slice(r * h, h), _tokenRows.AsSpan(tokens[(s * b) + r] * h, h), current.Slice(r * h, h), order);
                    }
                    else
                    {
                        FusedStep(previous.Slice(r * h, h), current.Slice(r * h, h), order);
                    }
                }
            }
            else if (inputs.IsEmpty)
            {
                TokenStep(_tokenRows, tokens.Slice(s * b, b), previous, current, current, _whhTPackedGemm.Span, packA); // as StepBatch
            }
            else
            {
                _k.Multiply(false, b, h, h, previous, h, _whhTPackedGemm.Span, 1f, current, h, packA);
                _k.Activate(current, current);
            }
        }

        Span<float> last = hs.Slice((t - 1) * block, block);
        last.CopyTo(hidden);
        if (steps == SequenceOutput.EveryStep)
        {
            Head(hs, rows, outputs, kind, packA, ReadOrder.Once);
        }
        else
        {
            Head(hidden, b, outputs, kind, packA, ReadOrder.Once);
        }
    }

    /// <summary>
    /// The read order of a single step (<see cref="Step(int, RnnState, Span{float}, StepOutput)"/>): <see cref="ReadOrder.Once"/>,
    /// or where the weights fill the L2, this thread's next order of <see cref="ReadOrder.Forward"/> and
    /// <see cref="ReadOrder.Backward"/>, alternating from one step to the next whichever model or stream it serves. The two
    /// give the same bits, so any interleaving of threads, models and streams is correct.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ReadOrder StepOrder()
    {
        if (!_stepAlternates)
        {
            return ReadOrder.Once;
        }

        t_stepIndex++;
        return ReadOrders.Alternating(t_stepIndex);
    }

    [ThreadStatic]
    private static int t_stepIndex;

    /// <summary>(1)–(2) fused for one row, in place: u ← f(u + W_hh hₜ₋₁), W_hhᵀ read in <paramref name="order"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void FusedStep(ReadOnlySpan<float> previous, Span<float> u, ReadOrder order)
    {
        int h = Shape.HiddenSize;
        _k.StepForward(_stepPacked.Span, h, previous, u, order); // (1)–(2) fused, in place over u
    }

    /// <summary>
    /// (1)–(2) for B token streams of one block: U = H₋₁ W_hhᵀ (one GEMM over the rows of <paramref name="previous"/>,
    /// β = 0), then each row h = f(U + b_h + W_xh[:, token]) from the block's token table into <paramref name="next"/>,
    /// which may be <paramref name="previous"/> (the product has read it all) or <paramref name="u"/> (row by row in
    /// place). The same sums, in the same order, as a product over rows prefilled with the token rows when H ≤ KC.
    /// <paramref name="u"/> must not overlap <paramref name="previous"/>: the product writes U while it still reads H₋₁.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void TokenStep(float[] tokenRows, ReadOnlySpan<int> tokens, ReadOnlySpan<float> previous, Span<float> u, Span<float> next, ReadOnlySpan<float> whhGemm, Span<float> packA)
    {
        int b = tokens.Length, h = Shape.HiddenSize;
        _k.Multiply(false, b, h, h, previous, h, whhGemm, 0f, u, h, packA);
        for (int r = 0; r < b; r++)
        {
            _k.ActivateSum(u.Slice(r * h, h), tokenRows.AsSpan(tokens[r] * h, h), next.Slice(r * h, h));
        }
    }

    /// <summary>(3)–(4) for <paramref name="rows"/> rows of H: V = H W_hyᵀ + b_y (the packed axpy-form product for one row, a GEMM for more), then softmax per row if asked.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Head(ReadOnlySpan<float> hidden, int rows, Span<float> outputs, StepOutput kind, Span<float> packA, ReadOrder order)
    {
        int h = Shape.HiddenSize, o = Shape.OutputSize;
        if (rows == 1)
        {
            // v = b_y + W_hy h in one pass, W_hyᵀ streamed in axpy form like the recurrent step.
            _k.PackedProduct(_headPacked.Span, h, o, hidden[..h], By, outputs[..o], order);
        }
        else
        {
            for (int r = 0; r < rows; r++)
            {
                By.CopyTo(outputs.Slice(r * o, o));
            }

            _k.Multiply(false, rows, o, h, hidden, h, _whyTPackedGemm.Span, 1f, outputs, o, packA);
        }

        if (kind == StepOutput.Probabilities)
        {
            for (int r = 0; r < rows; r++)
            {
                Span<float> row = outputs.Slice(r * o, o);
                _k.Softmax(row, row); // (4) in place, each yₖ computed directly
            }
        }
    }

    /// <summary>
    /// One step of a stacked one-direction model over its <c>[L, H]</c> state, layer by layer: (1)–(2) for the first layer
    /// from xₜ, then for each layer above from the new state of the layer below, then (3)–(4) on the top layer's state.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void StackedStep(int token, ReadOnlySpan<float> input, Span<float> hidden, Span<float> u, Span<float> output, StepOutput kind)
    {
        int h = Shape.HiddenSize;
        Span<float> first = hidden[..h];
        if (input.IsEmpty)
        {
            _k.StepForwardFrom(_stepPacked.Span, h, first, _tokenRows.AsSpan(token * h, h), u, ReadOrder.Once); // (1)–(2): f(b_h + W_xh[:, token] + W_hh hₜ₋₁)
        }
        else
        {
            _k.Gemv(_theta.Wxh, h, Shape.InputSize, input, u); // (1): u = W_xh xₜ + b_h
            _k.Axpy(1f, Bh, u);
            FusedStep(first, u, ReadOrder.Once); // (1)–(2) fused, in place over u
        }

        u.CopyTo(first);
        for (int l = 1; l < Shape.Layers; l++)
        {
            LayerWeights w = _blocks[l];
            Span<float> own = hidden.Slice(l * h, h);
            // (1) for layer l, one packed pass: u = b_h⁽ˡ⁾ + W_xh⁽ˡ⁾ hₜ⁽ˡ⁻¹⁾, the layer below's new state as its input.
            _k.PackedProduct(w.InputPacked, h, h, hidden.Slice((l - 1) * h, h), _theta.Values.Slice(w.BhOffset, h), u, ReadOrder.Once);
            _k.StepForward(w.StepPacked.Span, h, own, u, ReadOrder.Once); // (1)–(2) fused, in place over u
            u.CopyTo(own);
        }

        Head(hidden.Slice((Shape.Layers - 1) * h, h), 1, output, kind, default, ReadOrder.Once);
    }

    /// <summary>
    /// One step of B streams of a stacked one-direction model over <c>[L, B, H]</c>, equations (1)–(2) per layer: for the
    /// first, U = H₋₁ W_hhᵀ and H = f(U + b_h + W_xh[:, token]) from the token table (<see cref="TokenStep"/>); above it,
    /// U = b_h + X W_xhᵀ (a GEMM over the B new states of the layer below), U += H₋₁ W_hhᵀ and H = f(U); then (3)–(4) on
    /// the top layer's B rows.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void StackedStepBatch(ReadOnlySpan<int> tokens, RnnStateBatch states, Span<float> outputs, StepOutput kind)
    {
        int b = states.Count, h = Shape.HiddenSize, block = b * h;
        Span<float> u = states.Scratch;
        Span<float> hidden = states.Hidden;
        Span<float> packA = states.PackA;
        for (int l = 0; l < Shape.Layers; l++)
        {
            LayerWeights w = _blocks[l];
            ReadOnlySpan<float> bh = _theta.Values.Slice(w.BhOffset, h);
            Span<float> own = hidden.Slice(l * block, block);
            if (l == 0)
            {
                TokenStep(w.TokenRows, tokens, own, u, own, w.WhhGemm.Span, packA);
                continue;
            }

            for (int r = 0; r < b; r++)
            {
                bh.CopyTo(u.Slice(r * h, h));
            }

            // (1): U += H⁽ˡ⁻¹⁾ W_xh⁽ˡ⁾ᵀ over the B new states of the layer below.
            _k.Multiply(false, b, h, h, hidden.Slice((l - 1) * block, block), h, w.InputGemm[0].Span, 1f, u, h, packA);

            // (1)–(2): U += H₋₁ W_hhᵀ, then h = f(U) written over the old states (the product has read them).
            _k.Multiply(false, b, h, h, own, h, w.WhhGemm.Span, 1f, u, h, packA);
            _k.Activate(u, own);
        }

        Head(hidden.Slice((Shape.Layers - 1) * block, block), b, outputs, kind, packA, ReadOrder.Once);
    }

    /// <summary>
    /// The sequence forward pass of a stacked or bidirectional model over validated arguments, in the training engine's
    /// structure, layer by layer: for each direction, U = X W_xhᵀ + b_h over all T·B rows (equation (1) hoisted: a gather
    /// for tokens, a GEMM over the input or over each direction of the layer below), then hₜ = f(Uₜ + W_hh hₜ∓₁) step by
    /// step in place over Uₜ, forward from h₀ or, for the reverse direction, from its h₀ at step T down to step 1
    /// (equations (1)–(2)); each block's final state then replaces its h₀ in <paramref name="hidden"/>; last (3)–(4) on the
    /// top layer. The workspace holds two layers, the one below and the one being computed, alternately.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void RunLayers(ReadOnlySpan<int> tokens, ReadOnlySpan<float> inputs, int t, int b, Span<float> hidden, RnnSequenceWorkspace workspace, Span<float> outputs, StepOutput kind, SequenceOutput steps)
    {
        int h = Shape.HiddenSize, dirs = Shape.Directions, i = Shape.InputSize, block = b * h, rows = t * b, length = rows * h;
        Span<float> packA = workspace.PackA;
        Span<float> below = default;
        for (int l = 0; l < Shape.Layers; l++)
        {
            Span<float> current = workspace.States.Slice((l % 2) * dirs * length, dirs * length);
            for (int d = 0; d < dirs; d++)
            {
                LayerWeights w = _blocks[(l * dirs) + d];
                Span<float> hs = current.Slice(d * length, length);
                ReadOnlySpan<float> bh = _theta.Values.Slice(w.BhOffset, h);
                // (1) hoisted over all T·B rows: U = X W_xhᵀ + b_h (for tokens, the rows of the block's token table).
                if (l == 0 && inputs.IsEmpty)
                {
                    for (int r = 0; r < rows; r++)
                    {
                        w.TokenRows.AsSpan(tokens[r] * h, h).CopyTo(hs.Slice(r * h, h));
                    }
                }
                else
                {
                    for (int r = 0; r < rows; r++)
                    {
                        bh.CopyTo(hs.Slice(r * h, h));
                    }

                    if (l == 0)
                    {
                        _k.Multiply(false, rows, h, i, inputs, i, w.InputGemm[0].Span, 1f, hs, h, packA);
                    }
                    else
                    {
                        for (int from = 0; from < dirs; from++)
                        {
                            _k.Multiply(false, rows, h, h, below.Slice(from * length, length), h, w.InputGemm[from].Span, 1f, hs, h, packA);
                        }
                    }
                }

                // (1)–(2), sequential: forward from h₀ (t = 1..T), reverse from its h₀ at step T (t = T..1).
                ReadOnlySpan<float> start = hidden.Slice(((l * dirs) + d) * block, block);
                for (int k = 0; k < t; k++)
                {
                    int step = d == 0 ? k : t - 1 - k;
                    ReadOnlySpan<float> previous = k == 0 ? start : hs.Slice((d == 0 ? step - 1 : step + 1) * block, block);
                    Recur(w, previous, hs.Slice(step * block, block), b, step, packA);
                }
            }

            // The layer's final states replace its initial states: h at step T (forward), h at step 1 (reverse).
            for (int d = 0; d < dirs; d++)
            {
                current.Slice((d * length) + (d == 0 ? (t - 1) * block : 0), block).CopyTo(hidden.Slice(((l * dirs) + d) * block, block));
            }

            below = current;
        }

        int last = steps == SequenceOutput.EveryStep ? 0 : (t - 1) * block, count = steps == SequenceOutput.EveryStep ? rows : b;
        if (dirs == 1)
        {
            Head(below.Slice(last, count * h), count, outputs, kind, packA, ReadOrder.Once);
        }
        else
        {
            BidirectionalHead(below.Slice(last, count * h), below.Slice(length + last, count * h), count, outputs, kind, packA);
        }
    }

    /// <summary>(1)–(2) for one step of B rows of one block, in place over Uₜ: hₜ = f(Uₜ + W_hh h_prev), the fused step per row below 4 rows, one GEMM over the rows from 4 on.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Recur(LayerWeights w, ReadOnlySpan<float> previous, Span<float> current, int b, int step, Span<float> packA)
    {
        int h = Shape.HiddenSize;
        if (b < BatchedRecurrenceMinBatch)
        {
            for (int r = 0; r < b; r++)
            {
                _k.StepForward(w.StepPacked.Span, h, previous.Slice(r * h, h), current.Slice(r * h, h), ReadOrders.Alternating((step * b) + r)); // (1)–(2) fused, read order alternating
            }
        }
        else
        {
            _k.Multiply(false, b, h, h, previous, h, w.WhhGemm.Span, 1f, current, h, packA);
            _k.Activate(current, current);
        }
    }

    /// <summary>(3)–(4) for <paramref name="rows"/> rows of a bidirectional top layer: V = H→ W_hy[:, :H]ᵀ + H← W_hy[:, H:]ᵀ + b_y (two GEMMs, one per column half of W_hy), then softmax per row if asked.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void BidirectionalHead(ReadOnlySpan<float> forward, ReadOnlySpan<float> reverse, int rows, Span<float> outputs, StepOutput kind, Span<float> packA)
    {
        int h = Shape.HiddenSize, o = Shape.OutputSize;
        for (int r = 0; r < rows; r++)
        {
            By.CopyTo(outputs.Slice(r * o, o));
        }

        _k.Multiply(false, rows, o, h, forward, h, _whyHalvesGemm[0].Span, 1f, outputs, o, packA); // (3), forward half
        _k.Multiply(false, rows, o, h, reverse, h, _whyHalvesGemm[1].Span, 1f, outputs, o, packA); // (3), reverse half
        if (kind == StepOutput.Probabilities)
        {
            for (int r = 0; r < rows; r++)
            {
                Span<float> row = outputs.Slice(r * o, o);
                _k.Softmax(row, row); // (4) in place
            }
        }
    }

    /// <summary>Steps need the state of the previous step only; a reverse direction needs the sequence's end first.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void RefuseBidirectional()
    {
        if (_bidirectional)
        {
            ThrowBidirectional();
        }
    }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowBidirectional() =>
        throw new InvalidOperationException(
            $"This model is bidirectional (Directions = {Shape.Directions}; stepping needs Directions = 1): its reverse direction starts from the last step of a sequence, so it cannot advance one step at a time. Run whole sequences with RunSequence or RunSequenceBatch.");

    /// <summary>T for dense input of B streams: the length must be a positive multiple of B·I, and every value finite.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int DenseSteps(ReadOnlySpan<float> inputs, int b)
    {
        long row = (long)b * Shape.InputSize;
        if (inputs.Length == 0 || inputs.Length % row != 0)
        {
            throw new ArgumentException($"Expected T·B·I floats with T ≥ 1, B = {b} and I = {Shape.InputSize}, actual {inputs.Length}.", nameof(inputs));
        }

        Guard.Finite(inputs, nameof(inputs));
        return (int)(inputs.Length / row);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void CheckTokens(ReadOnlySpan<int> tokens, string paramName)
    {
        if (tokens.IsEmpty)
        {
            throw new ArgumentException("Expected at least one token, actual 0.", paramName);
        }

        for (int r = 0; r < tokens.Length; r++)
        {
            if ((uint)tokens[r] >= (uint)Shape.InputSize)
            {
                throw new ArgumentOutOfRangeException(paramName, tokens[r], $"Expected token ids in [0, {Shape.InputSize}); element {r} holds {tokens[r]}.");
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void CheckState(RnnState state, Span<float> output, StepOutput kind)
    {
        RefuseBidirectional();
        ArgumentNullException.ThrowIfNull(state);
        ModelGuard.SameShape(Shape, state.Shape, nameof(state));
        Guard.Length(Shape.OutputSize, output.Length, nameof(output), "outputSize");
        CheckKind(kind);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void CheckKind(StepOutput kind)
    {
        if (kind is not (StepOutput.Probabilities or StepOutput.Logits)) // two compares, where Enum.IsDefined costs a served step a lookup
        {
            throw new ArgumentOutOfRangeException(nameof(kind), kind, "Expected Probabilities or Logits.");
        }
    }
}
