using System.Runtime.CompilerServices;
using Bptt.Fast.Internals;
using Bptt.Fast.Kernels;
using Bptt.Fast.Kernels.Bodies;
using Bptt.Fast.Model;

namespace Bptt.Fast.Engine;

/// <summary>
/// The fast BPTT (docs/design.md, section 4) for L stacked layers and one or two directions. Per layer and direction
/// only W_hh hₜ∓₁ (forward) and W_hhᵀ δ (backward) are sequential; everything else is one GEMM over all T·B rows: each
/// layer's input projection over the layer below (oneDNN's merged-layer GEMM), the output layer, G = E W_hy, the gradient
/// that flows down, G⁽ˡ⁾ = Δ⁽ˡ⁺¹⁾ W_xh⁽ˡ⁺¹⁾, and the weight gradients. Batch 1–3 steps use the fused matrix-vector kernels;
/// larger batches use the GEMM with W_hh packed once per call and layer. The kernels are one <see cref="KernelSet"/>,
/// resolved when the engine is built. All memory is allocated in the constructor. Callers validate; the phases below run on
/// validated arguments only.
/// </summary>
/// <remarks>
/// Each (layer, direction) block keeps its states in slots 0..T+1 of <c>[(T+2)·B, H]</c>: slot t + 1 holds hₜ (0-based t).
/// The forward direction reads hₜ₋₁ from slot t and starts from h₀ in slot 0. The reverse direction reads hₜ₊₁ from slot
/// t + 2 and starts from its h₀, which sits in slot T_b + 1 of each sequence (slot T + 1 for a full-length one); every other
/// slot after a sequence's length is zero. So a whole batch steps as one GEMM whatever its lengths, and ∂L/∂W_hh is one GEMM
/// over slots 0..T−1 (forward) or 2..T+1 (reverse).
/// </remarks>
internal sealed class FastBptt : IBpttCore
{
    /// <summary>From this batch size on, a recurrent step is a GEMM with pre-packed W_hh instead of B fused matrix-vector steps.</summary>
    public const int BatchedRecurrenceMinBatch = 4;

    private readonly KernelSet _k;
    private readonly float[][] _hs;     // per block [(T+2)·B, H]: the slots above
    private readonly float[][] _delta;  // per block [T·B, H]: Gₜ, then δₜ
    private readonly float[][] _dropX;  // per block above the first layer's (dropout only) [T·B, H]: m ⊙ hₜ of the block below
    private readonly float[][] _dropM;  // per block above the first layer's (dropout only) [T·B, H]: the mask m
    private readonly float[] _e;        // [T, B, O]: vₜ, then eₜ
    private readonly AlignedBuffer _stepForward;  // W_hhᵀ packed in column blocks: the fused forward step (1)–(2), batch 1–3
    private readonly AlignedBuffer _stepBackward; // W_hh packed in column blocks: the fused backward step (12), batch 1–3
    private readonly float[] _wxhT;     // W_xhᵀ [I, H], for the token gather
    private readonly float[] _dWxhT;    // ∂L/∂W_xhᵀ [I, H], for the token scatter-add
    private readonly float[] _xMasked;  // [T, B, I], dense input with the steps after each length zeroed (ragged batches)
    private readonly int[] _gatherColumns; // the short-call token gather and scatter of (1) and (14): each valid row's token
    private readonly int[] _gatherOffsets; // and the offset r·H of its row
    private readonly AlignedBuffer _packA;
    private readonly AlignedBuffer _packB;
    private readonly AlignedBuffer _packedWhh;  // op(B) = W_hh, batched backward steps
    private readonly AlignedBuffer _packedWhhT; // op(B) = W_hhᵀ, batched forward steps
    private bool _dropping;             // this call's forward pass is a training pass with dropout between layers

    public FastBptt(RnnShape shape, int maxSteps, int maxBatch, KernelSet kernels, float dropout = 0f)
    {
        Shape = shape;
        MaxSteps = maxSteps;
        MaxBatch = maxBatch;
        Dropout = dropout;
        _k = kernels;
        WorkspacePlan plan = Plan(shape, maxSteps, maxBatch, kernels, dropout);
        int blocks = shape.BlockCount, dropBlocks = dropout > 0f ? blocks - shape.Directions : 0;
        _hs = new float[blocks][];
        _delta = new float[blocks][];
        _dropX = new float[blocks][];
        _dropM = new float[blocks][];
        for (int b = 0; b < blocks; b++)
        {
            _hs[b] = new float[plan.States];
            _delta[b] = new float[plan.Deltas];
            _dropX[b] = b >= shape.Directions && dropBlocks > 0 ? new float[plan.Deltas] : [];
            _dropM[b] = b >= shape.Directions && dropBlocks > 0 ? new float[plan.Deltas] : [];
        }

        _e = new float[plan.Errors];
        _stepForward = new AlignedBuffer(plan.SquareH);
        _stepBackward = new AlignedBuffer(plan.SquareH);
        _wxhT = new float[plan.InputByHidden];
        _dWxhT = new float[plan.InputByHidden];
        _xMasked = new float[plan.MaskedInputs];
        _gatherColumns = new int[plan.GatherList];
        _gatherOffsets = new int[plan.GatherList];
        _packA = new AlignedBuffer(GemmBlocking.PackALength);
        _packB = new AlignedBuffer(plan.PackB);
        _packedWhh = new AlignedBuffer(plan.PackedWhh);
        _packedWhhT = new AlignedBuffer(plan.PackedWhh);
    }

    public RnnShape Shape { get; }

    public int MaxSteps { get; }

    public int MaxBatch { get; }

    /// <summary>The inverted-dropout probability between layers of a training pass.</summary>
    public float Dropout { get; }

    /// <summary>The index in the caller's whole batch of this call's sequence 0, so that a data-parallel worker draws the
    /// dropout mask of the sequences it holds, not of its local indices.</summary>
    public int DropoutSequenceOffset { get; set; }

    public Activation Activation => _k.Activation;

    public KernelIsa Isa => _k.Isa;

    /// <summary>The floats of every buffer of an engine, each computed in 64 bits and proven to fit one array; States,
    /// Deltas and DropoutBuffers count per block.</summary>
    internal readonly record struct WorkspacePlan(int Blocks, int States, int Deltas, int DropoutBuffers, int Errors, int SquareH, int InputByHidden, int MaskedInputs, int GatherList, int PackB, int PackedWhh)
    {
        /// <summary>The whole workspace in bytes.</summary>
        public long Bytes => 4L * ((Blocks * ((long)States + Deltas)) + (2L * DropoutBuffers * Deltas) + Errors + (2L * SquareH) + (2L * InputByHidden)
            + MaskedInputs + (2L * GatherList) + GemmBlocking.PackALength + PackB + (2L * PackedWhh));
    }

    /// <summary>
    /// Sizes the workspace for (maxSteps, maxBatch) with every product in 64 bits. Throws <see cref="ArgumentOutOfRangeException"/>
    /// (naming maxSteps) when a buffer would not fit one array. The caller compares <see cref="WorkspacePlan.Bytes"/> with its limit.
    /// </summary>
    internal static WorkspacePlan Plan(RnnShape shape, int maxSteps, int maxBatch, KernelSet kernels, float dropout = 0f)
    {
        int i = shape.InputSize, h = shape.HiddenSize, o = shape.OutputSize;
        long rows = Sizes.Product(maxSteps, maxBatch);
        const string P = "maxSteps";
        bool batched = maxBatch >= BatchedRecurrenceMinBatch;
        int blocks = shape.BlockCount;
        return new WorkspacePlan(
            Blocks: blocks,
            States: Sizes.ArrayLength(Sizes.Product(Sizes.Sum(rows, 2L * maxBatch), h), P, "state buffer [(T+2)·B, H]"),
            Deltas: Sizes.ArrayLength(Sizes.Product(rows, h), P, "δ buffer [T·B, H]"),
            DropoutBuffers: dropout > 0f ? blocks - shape.Directions : 0,
            Errors: Sizes.ArrayLength(Sizes.Product(rows, o), P, "output buffer [T·B, O]"),
            SquareH: Sizes.ArrayLength(Sizes.Product(h, h), P, "W_hh copy [H, H]"),
            InputByHidden: Sizes.ArrayLength(Sizes.Product(i, h), P, "W_xhᵀ copy [I, H]"),
            MaskedInputs: Sizes.ArrayLength(Sizes.Product(rows, i), P, "masked input buffer [T·B, I]"),
            GatherList: (int)Math.Min(rows, i), // used only while T·B < I
            PackB: Sizes.ArrayLength(kernels.PackBBlockLength(Math.Max(Math.Max(h, o), i)), P, "B packing block"),
            PackedWhh: Sizes.ArrayLength(batched ? kernels.PackedBLength(h, h) : 0, P, "packed W_hh"));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public float Evaluate(ReadOnlySpan<float> theta, in SequenceBatch<float> batch) => Forward(theta, in batch, training: false);

    public void TouchWorkspace()
    {
        foreach (float[][] perBlock in new[] { _hs, _delta, _dropX, _dropM })
        {
            foreach (float[] buffer in perBlock)
            {
                Array.Clear(buffer);
            }
        }

        foreach (float[] buffer in new[] { _e, _wxhT, _dWxhT, _xMasked })
        {
            Array.Clear(buffer);
        }

        _stepForward.Span.Clear();
        _stepBackward.Span.Clear();
        _packA.Span.Clear();
        _packB.Span.Clear();
        _packedWhh.Span.Clear();
        _packedWhhT.Span.Clear();
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public float ComputeGradients(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, Span<float> gradients, bool accumulate)
    {
        float loss = Forward(theta, in batch, training: true);
        Backward(theta, in batch, gradients, accumulate);
        return loss;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private float Forward(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, bool training)
    {
        _dropping = training && Dropout > 0f && Shape.Layers > 1;
        for (int l = 0; l < Shape.Layers; l++)
        {
            for (int d = 0; d < Shape.Directions; d++)
            {
                InputProjection(theta, in batch, l, d);
                InitialStates(in batch, l, d);
                if (d == 0)
                {
                    Recurrence(theta, in batch, l);
                }
                else
                {
                    ReverseRecurrence(theta, in batch, l);
                }
            }

            if (_dropping && l + 1 < Shape.Layers)
            {
                DropoutForward(in batch, l);
            }
        }

        float loss = OutputLayer(theta, in batch, writeErrors: training);
        WriteStates(in batch);
        return loss;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Backward(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, Span<float> grad, bool accumulate)
    {
        OutputGradients(in batch, grad, accumulate);
        for (int l = Shape.Layers - 1; l >= 0; l--)
        {
            for (int d = 0; d < Shape.Directions; d++)
            {
                if (l == Shape.Layers - 1)
                {
                    HeadGradient(theta, in batch, d);
                }
                else
                {
                    LayerAboveGradient(theta, in batch, l, d);
                }

                if (d == 0)
                {
                    DeltaRecursion(theta, in batch, l);
                }
                else
                {
                    ReverseDeltaRecursion(theta, in batch, l);
                }

                RecurrentGradients(theta, in batch, grad, accumulate, l, d);
                InputWeightGradients(in batch, grad, accumulate, l, d);
            }
        }

        InputGradient(theta, in batch);
    }

    /// <summary>
    /// (1) hoisted over all T·B rows into slots 1..T: U = X W_xhᵀ + b_h. The first layer reads the batch (tokens: b_h + column
    /// `token` of W_xh); a layer above reads [h→ ; h←] of the layer below, one GEMM per direction below (W_xh's column halves).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void InputProjection(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, int l, int d)
    {
        RnnLayerBlock block = Shape.Block(l, d);
        int inputs = block.InputSize, hidden = Shape.HiddenSize, size = batch.BatchSize, rows = batch.Steps * size;
        ReadOnlySpan<float> wxh = theta.Slice(block.WxhOffset, hidden * inputs);
        ReadOnlySpan<float> bh = theta.Slice(block.BhOffset, hidden);
        Span<float> hAll = States(l, d).Slice(size * hidden, rows * hidden);
        for (int r = 0; r < rows; r++)
        {
            bh.CopyTo(hAll.Slice(r * hidden, hidden));
        }

        if (l > 0)
        {
            for (int below = 0; below < Shape.Directions; below++)
            {
                _k.Gemm(false, true, rows, hidden, hidden, LayerInput(in batch, l, below), hidden, wxh.Slice(below * hidden), inputs, 1f, hAll, hidden, _packA.Span, _packB.Span);
            }
        }
        else if (batch.IsTokenInput && rows < inputs)
        {
            // Fewer rows than tokens (short chunks, large vocabularies): gather the columns of W_xh where they are.
            int count = GatherList(in batch, rows, hidden);
            Layout.AddColumns(wxh, hidden, inputs, _gatherColumns.AsSpan(0, count), _gatherOffsets.AsSpan(0, count), hAll);
        }
        else if (batch.IsTokenInput)
        {
            // Many rows: transpose W_xh once so that each gather reads one contiguous row.
            Layout.Transpose(wxh, hidden, inputs, _wxhT);
            for (int r = 0; r < rows; r++)
            {
                if (IsValid(in batch, r))
                {
                    _k.Axpy(1f, _wxhT.AsSpan(batch.Tokens[r] * hidden, hidden), hAll.Slice(r * hidden, hidden));
                }
            }
        }
        else
        {
            _k.Gemm(false, true, rows, hidden, inputs, DenseInputs(in batch), inputs, wxh, inputs, 1f, hAll, hidden, _packA.Span, _packB.Span);
        }
    }

    /// <summary>h₀ of the block into its slot: slot 0 (forward); slot T_b + 1 of each sequence (reverse), the slot T + 1 zeroed first.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void InitialStates(in SequenceBatch<float> batch, int l, int d)
    {
        int hidden = Shape.HiddenSize, size = batch.BatchSize, steps = batch.Steps;
        Span<float> hs = States(l, d);
        Span<float> start = hs.Slice((d == 0 ? 0 : (steps + 1) * size) * hidden, size * hidden);
        if (d == 0 && !batch.InitialState.IsEmpty)
        {
            InitialState(in batch, l, d).CopyTo(start);
            return;
        }

        start.Clear();
        if (d == 1 && !batch.InitialState.IsEmpty)
        {
            for (int b = 0; b < size; b++)
            {
                if (batch.LengthOf(b) == steps)
                {
                    InitialState(in batch, l, d).Slice(b * hidden, hidden).CopyTo(start.Slice(b * hidden, hidden));
                }
            }
        }
    }

    /// <summary>(1)–(2), sequential, forward in time: hₜ = f(Uₜ + W_hh hₜ₋₁), written in place over Uₜ; zeros after each sequence's length.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Recurrence(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, int l)
    {
        int hidden = Shape.HiddenSize, size = batch.BatchSize, steps = batch.Steps;
        ReadOnlySpan<float> whh = theta.Slice(Shape.Block(l, 0).WhhOffset, hidden * hidden);
        Span<float> hs = States(l, 0);
        if (size < BatchedRecurrenceMinBatch)
        {
            _k.PackTransposedColumnBlocks(whh, hidden, hidden, _stepForward.Span);
            for (int t = 0; t < steps; t++)
            {
                for (int b = 0; b < size; b++)
                {
                    Span<float> h = hs.Slice((((t + 1) * size) + b) * hidden, hidden);
                    if (t < batch.LengthOf(b))
                    {
                        _k.StepForward(_stepForward.Span, hidden, hs.Slice(((t * size) + b) * hidden, hidden), h, ReadOrders.Alternating((t * size) + b)); // alternate: start on the panels still in cache
                    }
                    else
                    {
                        h.Clear();
                    }
                }
            }

            return;
        }

        _k.PackB(true, hidden, hidden, whh, hidden, _packedWhhT.Span);
        for (int t = 0; t < steps; t++)
        {
            Span<float> hBlock = hs.Slice((t + 1) * size * hidden, size * hidden);
            _k.Multiply(false, size, hidden, hidden, hs.Slice(t * size * hidden, size * hidden), hidden, _packedWhhT.Span, 1f, hBlock, hidden, _packA.Span);
            _k.Activate(hBlock, hBlock);
            for (int b = 0; b < size; b++)
            {
                if (t >= batch.LengthOf(b))
                {
                    hBlock.Slice(b * hidden, hidden).Clear();
                }
            }
        }
    }

    /// <summary>
    /// (1)–(2), sequential, reverse in time: hₜ = f(Uₜ + W_hh hₜ₊₁) for t = T..1, each sequence from its own length: after
    /// its step t (past its length) a sequence's slot holds its h₀ when t = T_b + 1, zeros otherwise.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ReverseRecurrence(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, int l)
    {
        int hidden = Shape.HiddenSize, size = batch.BatchSize, steps = batch.Steps;
        ReadOnlySpan<float> whh = theta.Slice(Shape.Block(l, 1).WhhOffset, hidden * hidden);
        Span<float> hs = States(l, 1);
        ReadOnlySpan<float> h0 = InitialState(in batch, l, 1);
        bool batched = size >= BatchedRecurrenceMinBatch;
        if (batched)
        {
            _k.PackB(true, hidden, hidden, whh, hidden, _packedWhhT.Span);
        }
        else
        {
            _k.PackTransposedColumnBlocks(whh, hidden, hidden, _stepForward.Span);
        }

        for (int t = steps - 1; t >= 0; t--)
        {
            Span<float> hBlock = hs.Slice((t + 1) * size * hidden, size * hidden);
            if (batched)
            {
                _k.Multiply(false, size, hidden, hidden, hs.Slice((t + 2) * size * hidden, size * hidden), hidden, _packedWhhT.Span, 1f, hBlock, hidden, _packA.Span);
                _k.Activate(hBlock, hBlock);
            }

            for (int b = 0; b < size; b++)
            {
                int length = batch.LengthOf(b);
                Span<float> h = hBlock.Slice(b * hidden, hidden);
                if (t < length)
                {
                    if (!batched)
                    {
                        _k.StepForward(_stepForward.Span, hidden, hs.Slice((((t + 2) * size) + b) * hidden, hidden), h, ReadOrders.Alternating((t * size) + b));
                    }
                }
                else if (t == length && !h0.IsEmpty)
                {
                    h0.Slice(b * hidden, hidden).CopyTo(h);
                }
                else
                {
                    h.Clear();
                }
            }
        }
    }

    /// <summary>Inverted dropout between layer l and l + 1 on a training pass: X⁽ˡ⁺¹'ᵈ⁾ = m ⊙ H⁽ˡ'ᵈ⁾, the mask drawn from the batch's seed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void DropoutForward(in SequenceBatch<float> batch, int l)
    {
        int hidden = Shape.HiddenSize, size = batch.BatchSize, rows = batch.Steps * size;
        for (int d = 0; d < Shape.Directions; d++)
        {
            int above = ((l + 1) * Shape.Directions) + d;
            ReadOnlySpan<float> h = States(l, d).Slice(size * hidden, rows * hidden);
            Span<float> mask = _dropM[above].AsSpan(0, rows * hidden);
            Span<float> x = _dropX[above].AsSpan(0, rows * hidden);
            for (int r = 0; r < rows; r++)
            {
                DropoutMask.FillRow(DropoutMask.RowKey(batch.DropoutSeed, l, d, r / size, DropoutSequenceOffset + (r % size)), Dropout, mask.Slice(r * hidden, hidden));
            }

            for (int j = 0; j < x.Length; j++)
            {
                x[j] = mask[j] * h[j];
            }
        }
    }

    /// <summary>(3) over all rows, V = Σ_d H⁽ᴸ'ᵈ⁾ W_hy⁽ᵈ⁾ᵀ + b_y (W_hy's column halves); then (4), (6), (7) fused per row and (5) L = Σ Lₜ in double.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private float OutputLayer(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, bool writeErrors)
    {
        RnnShape s = Shape;
        int hidden = s.HiddenSize, width = s.LayerOutputSize, outputs = s.OutputSize, size = batch.BatchSize, rows = batch.Steps * size;
        ReadOnlySpan<float> why = theta.Slice(s.WhyOffset, outputs * width);
        ReadOnlySpan<float> by = theta.Slice(s.ByOffset, outputs);
        Span<float> e = _e.AsSpan(0, rows * outputs);
        for (int r = 0; r < rows; r++)
        {
            by.CopyTo(e.Slice(r * outputs, outputs));
        }

        for (int d = 0; d < s.Directions; d++)
        {
            _k.Gemm(false, true, rows, outputs, hidden, TopStates(in batch, d), hidden, why.Slice(d * hidden), width, 1f, e, outputs, _packA.Span, _packB.Span);
        }

        double loss = 0;
        for (int r = 0; r < rows; r++)
        {
            Span<float> row = e.Slice(r * outputs, outputs);
            if (IsValid(in batch, r) && batch.Targets[r] >= 0)
            {
                loss += _k.SoftmaxCrossEntropy(row, batch.Targets[r], row, writeErrors);
            }
            else
            {
                row.Clear();
            }
        }

        return (float)loss;
    }

    /// <summary>The batch's optional outputs of the forward pass: the top layer's hₜ (both directions), and every block's final state.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void WriteStates(in SequenceBatch<float> batch)
    {
        int hidden = Shape.HiddenSize, width = Shape.LayerOutputSize, size = batch.BatchSize, rows = batch.Steps * size;
        if (!batch.HiddenStates.IsEmpty && Shape.Directions == 1)
        {
            TopStates(in batch, 0).CopyTo(batch.HiddenStates);
        }
        else if (!batch.HiddenStates.IsEmpty)
        {
            for (int d = 0; d < Shape.Directions; d++)
            {
                ReadOnlySpan<float> top = TopStates(in batch, d);
                for (int r = 0; r < rows; r++)
                {
                    Span<float> destination = batch.HiddenStates.Slice((r * width) + (d * hidden), hidden);
                    if (IsValid(in batch, r))
                    {
                        top.Slice(r * hidden, hidden).CopyTo(destination);
                    }
                    else
                    {
                        destination.Clear();
                    }
                }
            }
        }

        if (batch.FinalState.IsEmpty)
        {
            return;
        }

        for (int l = 0; l < Shape.Layers; l++)
        {
            for (int d = 0; d < Shape.Directions; d++)
            {
                ReadOnlySpan<float> hs = States(l, d);
                Span<float> final = batch.FinalState.Slice(((l * Shape.Directions) + d) * size * hidden, size * hidden);
                for (int b = 0; b < size; b++)
                {
                    int slot = d == 0 ? batch.LengthOf(b) : 1;
                    hs.Slice(((slot * size) + b) * hidden, hidden).CopyTo(final.Slice(b * hidden, hidden));
                }
            }
        }
    }

    /// <summary>(8) ∂L/∂b_y = Σ eₜ; (9) ∂L/∂W_hy = Eᵀ H, one GEMM per direction of the top layer into W_hy's column halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void OutputGradients(in SequenceBatch<float> batch, Span<float> grad, bool accumulate)
    {
        RnnShape s = Shape;
        int hidden = s.HiddenSize, width = s.LayerOutputSize, outputs = s.OutputSize, rows = batch.Steps * batch.BatchSize;
        ReadOnlySpan<float> e = _e.AsSpan(0, rows * outputs);
        _k.ColumnSums(e, rows, outputs, grad.Slice(s.ByOffset, outputs), accumulate);
        Span<float> dWhy = grad.Slice(s.WhyOffset, outputs * width);
        for (int d = 0; d < s.Directions; d++)
        {
            _k.Gemm(true, false, outputs, hidden, rows, e, outputs, TopStates(in batch, d), hidden, accumulate ? 1f : 0f, dWhy.Slice(d * hidden), width, _packA.Span, _packB.Span);
        }
    }

    /// <summary>The head's part of the top layer's δ, before the recursion: G = E W_hy (the direction's column half), into the δ buffer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void HeadGradient(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, int d)
    {
        RnnShape s = Shape;
        int hidden = s.HiddenSize, width = s.LayerOutputSize, outputs = s.OutputSize, rows = batch.Steps * batch.BatchSize;
        _k.Gemm(false, false, rows, hidden, outputs, _e.AsSpan(0, rows * outputs), outputs, theta.Slice(s.WhyOffset + (d * hidden), (outputs * width) - (d * hidden)), width,
            0f, Delta(s.Layers - 1, d, rows), hidden, _packA.Span, _packB.Span);
    }

    /// <summary>
    /// The gradient that flows into layer l's states from layer l + 1, the G of (12) for a layer below the top:
    /// G⁽ˡ'ᵈ⁾ = m ⊙ Σ_d' Δ⁽ˡ⁺¹'ᵈ'⁾ W_xh⁽ˡ⁺¹'ᵈ'⁾[:, d·H..], one GEMM per direction above, into the δ buffer.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void LayerAboveGradient(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, int l, int d)
    {
        int hidden = Shape.HiddenSize, width = Shape.LayerOutputSize, rows = batch.Steps * batch.BatchSize;
        Span<float> g = Delta(l, d, rows);
        for (int above = 0; above < Shape.Directions; above++)
        {
            RnnLayerBlock block = Shape.Block(l + 1, above);
            _k.Gemm(false, false, rows, hidden, hidden, Delta(l + 1, above, rows), hidden, theta.Slice(block.WxhOffset + (d * hidden), block.WxhLength - (d * hidden)), width,
                above == 0 ? 0f : 1f, g, hidden, _packA.Span, _packB.Span);
        }

        if (_dropping)
        {
            ReadOnlySpan<float> mask = _dropM[((l + 1) * Shape.Directions) + d].AsSpan(0, rows * hidden);
            for (int j = 0; j < g.Length; j++)
            {
                g[j] *= mask[j];
            }
        }
    }

    /// <summary>
    /// (10)–(12), forward direction: δₜ = ∂L/∂uₜ, in place over Gₜ: (11) δ_T = G_T ⊙ f′(u_T) and
    /// (12) δₜ = (Gₜ + W_hhᵀ δₜ₊₁) ⊙ f′(uₜ) backwards in time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void DeltaRecursion(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, int l)
    {
        int hidden = Shape.HiddenSize, size = batch.BatchSize, steps = batch.Steps, rows = steps * size, block = size * hidden;
        ReadOnlySpan<float> whh = theta.Slice(Shape.Block(l, 0).WhhOffset, hidden * hidden);
        ReadOnlySpan<float> hAll = States(l, 0).Slice(block, rows * hidden);
        Span<float> delta = Delta(l, 0, rows);
        Span<float> last = delta.Slice((steps - 1) * block, block);
        _k.ActivationBackward(last, hAll.Slice((steps - 1) * block, block), last);
        if (size >= BatchedRecurrenceMinBatch)
        {
            _k.PackB(false, hidden, hidden, whh, hidden, _packedWhh.Span);
            for (int t = steps - 2; t >= 0; t--)
            {
                Span<float> dBlock = delta.Slice(t * block, block);
                _k.Multiply(false, size, hidden, hidden, delta.Slice((t + 1) * block, block), hidden, _packedWhh.Span, 1f, dBlock, hidden, _packA.Span);
                _k.ActivationBackward(dBlock, hAll.Slice(t * block, block), dBlock);
            }

            return;
        }

        ReadOnlySpan<float> panels = StepBackwardPanels(whh, hidden);
        for (int t = steps - 2; t >= 0; t--)
        {
            for (int b = 0; b < size; b++)
            {
                Span<float> d = delta.Slice(((t * size) + b) * hidden, hidden);
                if (t < batch.LengthOf(b))
                {
                    _k.StepBackward(panels, hidden, delta.Slice((((t + 1) * size) + b) * hidden, hidden), hAll.Slice(((t * size) + b) * hidden, hidden), d, ReadOrders.Alternating((t * size) + b));
                }
                else
                {
                    d.Clear();
                }
            }
        }
    }

    /// <summary>W_hh in the column-block panels of the fused backward step: W_hh itself when it is a single panel (H at most
    /// the block width, the layout the pack would copy unchanged), otherwise packed into <see cref="_stepBackward"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ReadOnlySpan<float> StepBackwardPanels(ReadOnlySpan<float> whh, int hidden)
    {
        if (hidden <= _k.ColumnBlockWidth)
        {
            return whh;
        }

        _k.PackColumnBlocks(whh, hidden, hidden, _stepBackward.Span);
        return _stepBackward.Span;
    }

    /// <summary>
    /// (11)–(12), reverse direction, in place over Gₜ: the step that read hₜ is t − 1, so δ₁ = G₁ ⊙ f′(u₁) and
    /// δₜ = (Gₜ + W_hhᵀ δₜ₋₁) ⊙ f′(uₜ) for t = 2..T; rows past a sequence's length are zeroed after each step.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ReverseDeltaRecursion(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, int l)
    {
        int hidden = Shape.HiddenSize, size = batch.BatchSize, steps = batch.Steps, rows = steps * size, block = size * hidden;
        ReadOnlySpan<float> whh = theta.Slice(Shape.Block(l, 1).WhhOffset, hidden * hidden);
        ReadOnlySpan<float> hAll = States(l, 1).Slice(block, rows * hidden);
        Span<float> delta = Delta(l, 1, rows);
        bool batched = size >= BatchedRecurrenceMinBatch;
        ReadOnlySpan<float> panels = default;
        if (batched)
        {
            _k.PackB(false, hidden, hidden, whh, hidden, _packedWhh.Span);
        }
        else
        {
            panels = StepBackwardPanels(whh, hidden);
        }

        for (int t = 0; t < steps; t++)
        {
            Span<float> dBlock = delta.Slice(t * block, block);
            ReadOnlySpan<float> hBlock = hAll.Slice(t * block, block);
            if (t == 0)
            {
                _k.ActivationBackward(dBlock, hBlock, dBlock);
            }
            else if (batched)
            {
                _k.Multiply(false, size, hidden, hidden, delta.Slice((t - 1) * block, block), hidden, _packedWhh.Span, 1f, dBlock, hidden, _packA.Span);
                _k.ActivationBackward(dBlock, hBlock, dBlock);
            }

            for (int b = 0; b < size; b++)
            {
                Span<float> d = dBlock.Slice(b * hidden, hidden);
                if (t >= batch.LengthOf(b))
                {
                    d.Clear();
                }
                else if (t > 0 && !batched)
                {
                    _k.StepBackward(panels, hidden, delta.Slice((((t - 1) * size) + b) * hidden, hidden), hBlock.Slice(b * hidden, hidden), d, ReadOrders.Alternating((t * size) + b));
                }
            }
        }
    }

    /// <summary>(16) ∂L/∂h₀ = W_hhᵀ δ of the direction's first step; (13) ∂L/∂W_hh = Δᵀ H₋₁ (forward) or Δᵀ H₊₁ (reverse); (15) ∂L/∂b_h = Σ δₜ.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void RecurrentGradients(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, Span<float> grad, bool accumulate, int l, int d)
    {
        RnnLayerBlock blockOffsets = Shape.Block(l, d);
        int hidden = Shape.HiddenSize, size = batch.BatchSize, rows = batch.Steps * size;
        ReadOnlySpan<float> whh = theta.Slice(blockOffsets.WhhOffset, hidden * hidden);
        ReadOnlySpan<float> delta = Delta(l, d, rows);
        if (!batch.InitialStateGradient.IsEmpty)
        {
            Span<float> dh0 = batch.InitialStateGradient.Slice(((l * Shape.Directions) + d) * size * hidden, size * hidden);
            for (int b = 0; b < size; b++)
            {
                int first = d == 0 ? 0 : batch.LengthOf(b) - 1;
                _k.GemvTransposed(whh, hidden, hidden, delta.Slice(((first * size) + b) * hidden, hidden), dh0.Slice(b * hidden, hidden));
            }
        }

        ReadOnlySpan<float> previous = States(l, d).Slice((d == 0 ? 0 : 2 * size) * hidden, rows * hidden);
        _k.Gemm(true, false, hidden, hidden, rows, delta, hidden, previous, hidden, accumulate ? 1f : 0f,
            grad.Slice(blockOffsets.WhhOffset, hidden * hidden), hidden, _packA.Span, _packB.Span);
        _k.ColumnSums(delta, rows, hidden, grad.Slice(blockOffsets.BhOffset, hidden), accumulate);
    }

    /// <summary>
    /// (14) ∂L/∂W_xh = Δᵀ X: the batch's input for the first layer (tokens: a scatter-add of δₜ into row `token` of
    /// ∂L/∂W_xhᵀ), the layer below's masked states above it (one GEMM per direction below, into W_xh's column halves).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void InputWeightGradients(in SequenceBatch<float> batch, Span<float> grad, bool accumulate, int l, int d)
    {
        RnnLayerBlock block = Shape.Block(l, d);
        int inputs = block.InputSize, hidden = Shape.HiddenSize, rows = batch.Steps * batch.BatchSize;
        ReadOnlySpan<float> delta = Delta(l, d, rows);
        Span<float> dWxh = grad.Slice(block.WxhOffset, hidden * inputs);
        if (l > 0)
        {
            for (int below = 0; below < Shape.Directions; below++)
            {
                _k.Gemm(true, false, hidden, hidden, rows, delta, hidden, LayerInput(in batch, l, below), hidden, accumulate ? 1f : 0f,
                    dWxh.Slice(below * hidden), inputs, _packA.Span, _packB.Span);
            }

            return;
        }

        if (batch.IsTokenInput && rows < inputs)
        {
            // Fewer rows than tokens: scatter each δₜ straight into its column of ∂L/∂W_xh.
            if (!accumulate)
            {
                dWxh.Clear();
            }

            int count = GatherList(in batch, rows, hidden);
            Layout.AddToColumns(dWxh, hidden, inputs, _gatherColumns.AsSpan(0, count), _gatherOffsets.AsSpan(0, count), delta);

            return;
        }

        if (batch.IsTokenInput)
        {
            Span<float> dT = _dWxhT.AsSpan(0, inputs * hidden);
            dT.Clear();
            for (int r = 0; r < rows; r++)
            {
                if (IsValid(in batch, r))
                {
                    _k.Axpy(1f, delta.Slice(r * hidden, hidden), dT.Slice(batch.Tokens[r] * hidden, hidden));
                }
            }

            for (int i = 0; i < hidden; i++)
            {
                for (int j = 0; j < inputs; j++)
                {
                    float v = dT[(j * hidden) + i];
                    dWxh[(i * inputs) + j] = accumulate ? dWxh[(i * inputs) + j] + v : v;
                }
            }

            return;
        }

        _k.Gemm(true, false, hidden, inputs, rows, delta, hidden, DenseInputs(in batch), inputs, accumulate ? 1f : 0f, dWxh, inputs, _packA.Span, _packB.Span);
    }

    /// <summary>(16) ∂L/∂X = Σ_d Δ⁽¹'ᵈ⁾ W_xh⁽¹'ᵈ⁾, dense input only, when the batch asks for it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void InputGradient(ReadOnlySpan<float> theta, in SequenceBatch<float> batch)
    {
        if (batch.InputGradient.IsEmpty)
        {
            return;
        }

        int inputs = Shape.InputSize, hidden = Shape.HiddenSize, rows = batch.Steps * batch.BatchSize;
        for (int d = 0; d < Shape.Directions; d++)
        {
            _k.Gemm(false, false, rows, inputs, hidden, Delta(0, d, rows), hidden, theta.Slice(Shape.Block(0, d).WxhOffset, hidden * inputs), inputs, d == 0 ? 0f : 1f,
                batch.InputGradient, inputs, _packA.Span, _packB.Span);
        }
    }

    /// <summary>The dense inputs, or (ragged batch) a copy with every step after a sequence's length zeroed, so padding never reaches a product.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private ReadOnlySpan<float> DenseInputs(in SequenceBatch<float> batch)
    {
        if (batch.Lengths.IsEmpty)
        {
            return batch.Inputs;
        }

        int inputs = Shape.InputSize, rows = batch.Steps * batch.BatchSize;
        Span<float> x = _xMasked.AsSpan(0, rows * inputs);
        for (int r = 0; r < rows; r++)
        {
            Span<float> row = x.Slice(r * inputs, inputs);
            if (IsValid(in batch, r))
            {
                batch.Inputs.Slice(r * inputs, inputs).CopyTo(row);
            }
            else
            {
                row.Clear();
            }
        }

        return x;
    }

    /// <summary>The slots 0..T+1 of block (l, d).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Span<float> States(int l, int d) => _hs[(l * Shape.Directions) + d];

    /// <summary>Gₜ, then δₜ, of block (l, d): <c>[T·B, H]</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Span<float> Delta(int l, int d, int rows) => _delta[(l * Shape.Directions) + d].AsSpan(0, rows * Shape.HiddenSize);

    /// <summary>hₜ of the top layer's direction d, slots 1..T: <c>[T·B, H]</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ReadOnlySpan<float> TopStates(in SequenceBatch<float> batch, int d)
    {
        int hidden = Shape.HiddenSize, size = batch.BatchSize;
        return States(Shape.Layers - 1, d).Slice(size * hidden, batch.Steps * size * hidden);
    }

    /// <summary>The part of layer l's input (l ≥ 1) that comes from direction <paramref name="below"/> of layer l − 1: its masked copy
    /// (dropout) or its states, <c>[T·B, H]</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ReadOnlySpan<float> LayerInput(in SequenceBatch<float> batch, int l, int below)
    {
        int hidden = Shape.HiddenSize, size = batch.BatchSize, rows = batch.Steps * size;
        return _dropping
            ? _dropX[(l * Shape.Directions) + below].AsSpan(0, rows * hidden)
            : States(l - 1, below).Slice(size * hidden, rows * hidden);
    }

    /// <summary>h₀ of block (l, d), <c>[B, H]</c>, or empty (zeros).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ReadOnlySpan<float> InitialState(in SequenceBatch<float> batch, int l, int d)
    {
        int block = batch.BatchSize * Shape.HiddenSize;
        return batch.InitialState.IsEmpty ? default : batch.InitialState.Slice(((l * Shape.Directions) + d) * block, block);
    }

    /// <summary>Whether row r = t·B + b is a step within its sequence's length.</summary>
    /// <summary>The valid rows of a token batch with fewer rows than tokens (rows &lt; I, so at most I of them): each one's token and
    /// its offset r·H, in ascending r, for <see cref="Layout.AddColumns"/> and <see cref="Layout.AddToColumns"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int GatherList(in SequenceBatch<float> batch, int rows, int hidden)
    {
        int count = 0;
        for (int r = 0; r < rows; r++)
        {
            if (IsValid(in batch, r))
            {
                _gatherColumns[count] = batch.Tokens[r];
                _gatherOffsets[count] = r * hidden;
                count++;
            }
        }

        return count;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsValid(in SequenceBatch<float> batch, int r) => batch.Lengths.IsEmpty || (r / batch.BatchSize) < batch.Lengths[r % batch.BatchSize];
}
