using System.Runtime.CompilerServices;
using Bptt.Fast.Internals;
using Bptt.Fast.Kernels;
using Bptt.Fast.Kernels.Bodies;

namespace Bptt.Fast.Engine;

/// <summary>
/// The fast BPTT (docs/design.md, section 4). Only W_hh hₜ₋₁ (forward) and W_hhᵀ δₜ₊₁ (backward) are sequential;
/// everything else is one GEMM over all T·B rows: the hoisted input projection, the output layer, G = E W_hy and the
/// weight gradients. Batch 1–3 steps use the fused matrix-vector kernels; larger batches use the GEMM with W_hh packed
/// once per call. The kernels are one <see cref="KernelSet"/>, resolved when the engine is built. All memory is
/// allocated in the constructor. Callers validate; the phases below run on validated arguments only.
/// </summary>
internal sealed class FastBptt : IBpttCore
{
    /// <summary>From this batch size on, a recurrent step is a GEMM with pre-packed W_hh instead of B fused matrix-vector steps.</summary>
    public const int BatchedRecurrenceMinBatch = 4;

    private readonly KernelSet _k;
    private readonly float[] _hs;       // [T+1, B, H]: rows 0..B-1 hold h₀, row (t+1)·B + b holds hₜ of sequence b
    private readonly float[] _e;        // [T, B, O]: vₜ, then eₜ
    private readonly float[] _delta;    // [T, B, H]: Gₜ = W_hyᵀ eₜ, then δₜ
    private readonly float[] _stepForward;  // W_hhᵀ packed in column blocks: the fused forward step (1)–(2), batch 1–3
    private readonly float[] _stepBackward; // W_hh packed in column blocks: the fused backward step (12), batch 1–3
    private readonly float[] _wxhT;     // W_xhᵀ [I, H], for the token gather
    private readonly float[] _dWxhT;    // ∂L/∂W_xhᵀ [I, H], for the token scatter-add
    private readonly float[] _xMasked;  // [T, B, I], dense input with the steps after each length zeroed (ragged batches)
    private readonly AlignedBuffer _packA;
    private readonly AlignedBuffer _packB;
    private readonly AlignedBuffer _packedWhh;  // op(B) = W_hh, batched backward steps
    private readonly AlignedBuffer _packedWhhT; // op(B) = W_hhᵀ, batched forward steps

    public FastBptt(RnnShape shape, int maxSteps, int maxBatch, KernelSet kernels)
    {
        Shape = shape;
        MaxSteps = maxSteps;
        MaxBatch = maxBatch;
        _k = kernels;
        WorkspacePlan plan = Plan(shape, maxSteps, maxBatch, kernels);
        _hs = new float[plan.States];
        _e = new float[plan.Errors];
        _delta = new float[plan.Deltas];
        _stepForward = new float[plan.SquareH];
        _stepBackward = new float[plan.SquareH];
        _wxhT = new float[plan.InputByHidden];
        _dWxhT = new float[plan.InputByHidden];
        _xMasked = new float[plan.MaskedInputs];
        _packA = new AlignedBuffer(GemmBlocking.PackALength);
        _packB = new AlignedBuffer(plan.PackB);
        _packedWhh = new AlignedBuffer(plan.PackedWhh);
        _packedWhhT = new AlignedBuffer(plan.PackedWhh);
    }

    public RnnShape Shape { get; }

    public int MaxSteps { get; }

    public int MaxBatch { get; }

    public Activation Activation => _k.Activation;

    public KernelIsa Isa => _k.Isa;

    /// <summary>The floats of every buffer of an engine, each computed in 64 bits and proven to fit one array.</summary>
    internal readonly record struct WorkspacePlan(int States, int Errors, int Deltas, int SquareH, int InputByHidden, int MaskedInputs, int PackB, int PackedWhh)
    {
        /// <summary>The whole workspace in bytes.</summary>
        public long Bytes => 4L * (States + (long)Errors + Deltas + (2L * SquareH) + (2L * InputByHidden) + MaskedInputs + GemmBlocking.PackALength + PackB + (2L * PackedWhh));
    }

    /// <summary>
    /// Sizes the workspace for (maxSteps, maxBatch) with every product in 64 bits. Throws <see cref="ArgumentOutOfRangeException"/>
    /// (naming maxSteps) when a buffer would not fit one array. The caller compares <see cref="WorkspacePlan.Bytes"/> with its limit.
    /// </summary>
    internal static WorkspacePlan Plan(RnnShape shape, int maxSteps, int maxBatch, KernelSet kernels)
    {
        int i = shape.InputSize, h = shape.HiddenSize, o = shape.OutputSize;
        long rows = Sizes.Product(maxSteps, maxBatch);
        const string P = "maxSteps";
        bool batched = maxBatch >= BatchedRecurrenceMinBatch;
        return new WorkspacePlan(
            States: Sizes.ArrayLength(Sizes.Product(Sizes.Sum(rows, maxBatch), h), P, "state buffer [(T+1)·B, H]"),
            Errors: Sizes.ArrayLength(Sizes.Product(rows, o), P, "output buffer [T·B, O]"),
            Deltas: Sizes.ArrayLength(Sizes.Product(rows, h), P, "δ buffer [T·B, H]"),
            SquareH: Sizes.ArrayLength(Sizes.Product(h, h), P, "W_hh copy [H, H]"),
            InputByHidden: Sizes.ArrayLength(Sizes.Product(i, h), P, "W_xhᵀ copy [I, H]"),
            MaskedInputs: Sizes.ArrayLength(Sizes.Product(rows, i), P, "masked input buffer [T·B, I]"),
            PackB: Sizes.ArrayLength(kernels.PackBBlockLength(Math.Max(Math.Max(h, o), i)), P, "B packing block"),
            PackedWhh: Sizes.ArrayLength(batched ? kernels.PackedBLength(h, h) : 0, P, "packed W_hh"));
    }

    public float Evaluate(ReadOnlySpan<float> theta, in SequenceBatch<float> batch) => Forward(theta, in batch, writeErrors: false);

    public void TouchWorkspace()
    {
        foreach (float[] buffer in new[] { _hs, _e, _delta, _stepForward, _stepBackward, _wxhT, _dWxhT, _xMasked })
        {
            Array.Clear(buffer);
        }

        _packA.Span.Clear();
        _packB.Span.Clear();
        _packedWhh.Span.Clear();
        _packedWhhT.Span.Clear();
    }

    public float ComputeGradients(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, Span<float> gradients, bool accumulate)
    {
        float loss = Forward(theta, in batch, writeErrors: true);
        Backward(theta, in batch, gradients, accumulate);
        return loss;
    }

    private float Forward(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, bool writeErrors)
    {
        InputProjection(theta, in batch);
        Recurrence(theta, in batch);
        float loss = OutputLayer(theta, in batch, writeErrors);
        WriteStates(in batch);
        return loss;
    }

    private void Backward(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, Span<float> grad, bool accumulate)
    {
        OutputGradients(in batch, grad, accumulate);
        DeltaRecursion(theta, in batch);
        RecurrentGradients(theta, in batch, grad, accumulate);
        InputGradients(theta, in batch, grad, accumulate);
    }

    /// <summary>h₀ into the state buffer, then (1) hoisted over all T·B rows: U = X W_xhᵀ + b_h (tokens: b_h + column `token` of W_xh).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void InputProjection(ReadOnlySpan<float> theta, in SequenceBatch<float> batch)
    {
        RnnShape s = Shape;
        int inputs = s.InputSize, hidden = s.HiddenSize, size = batch.BatchSize, rows = batch.Steps * size;
        ReadOnlySpan<float> wxh = theta.Slice(s.WxhOffset, hidden * inputs);
        ReadOnlySpan<float> bh = theta.Slice(s.BhOffset, hidden);
        Span<float> h0 = _hs.AsSpan(0, size * hidden);
        Span<float> hAll = _hs.AsSpan(size * hidden, rows * hidden);
        if (batch.InitialState.IsEmpty)
        {
            h0.Clear();
        }
        else
        {
            batch.InitialState.CopyTo(h0);
        }

        for (int r = 0; r < rows; r++)
        {
            bh.CopyTo(hAll.Slice(r * hidden, hidden));
        }

        if (batch.IsTokenInput && rows < inputs)
        {
            // Fewer rows than tokens (short chunks, large vocabularies): gather the columns of W_xh where they are.
            for (int r = 0; r < rows; r++)
            {
                if (IsValid(in batch, r))
                {
                    Layout.AddColumn(wxh, hidden, inputs, batch.Tokens[r], hAll.Slice(r * hidden, hidden));
                }
            }
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

    /// <summary>(1)–(2), sequential: hₜ = f(Uₜ + W_hh hₜ₋₁), written in place over Uₜ; zeros after each sequence's length.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Recurrence(ReadOnlySpan<float> theta, in SequenceBatch<float> batch)
    {
        int hidden = Shape.HiddenSize, size = batch.BatchSize, steps = batch.Steps;
        ReadOnlySpan<float> whh = theta.Slice(Shape.WhhOffset, hidden * hidden);
        if (size < BatchedRecurrenceMinBatch)
        {
            _k.PackTransposedColumnBlocks(whh, hidden, hidden, _stepForward);
            for (int t = 0; t < steps; t++)
            {
                for (int b = 0; b < size; b++)
                {
                    Span<float> h = _hs.AsSpan((((t + 1) * size) + b) * hidden, hidden);
                    if (t < batch.LengthOf(b))
                    {
                        _k.StepForward(_stepForward, hidden, _hs.AsSpan(((t * size) + b) * hidden, hidden), h);
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
            Span<float> hBlock = _hs.AsSpan((t + 1) * size * hidden, size * hidden);
            _k.Multiply(false, size, hidden, hidden, _hs.AsSpan(t * size * hidden, size * hidden), hidden, _packedWhhT.Span, 1f, hBlock, hidden, _packA.Span);
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

    /// <summary>(3) over all rows, V = H W_hyᵀ + b_y; then (4), (6), (7) fused per row and (5) L = Σ Lₜ in double.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private float OutputLayer(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, bool writeErrors)
    {
        RnnShape s = Shape;
        int hidden = s.HiddenSize, outputs = s.OutputSize, size = batch.BatchSize, rows = batch.Steps * size;
        ReadOnlySpan<float> why = theta.Slice(s.WhyOffset, outputs * hidden);
        ReadOnlySpan<float> by = theta.Slice(s.ByOffset, outputs);
        Span<float> e = _e.AsSpan(0, rows * outputs);
        for (int r = 0; r < rows; r++)
        {
            by.CopyTo(e.Slice(r * outputs, outputs));
        }

        _k.Gemm(false, true, rows, outputs, hidden, _hs.AsSpan(size * hidden, rows * hidden), hidden, why, hidden, 1f, e, outputs, _packA.Span, _packB.Span);
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

    /// <summary>The batch's optional outputs of the forward pass: every hₜ, and the final state h at step T_b.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void WriteStates(in SequenceBatch<float> batch)
    {
        int hidden = Shape.HiddenSize, size = batch.BatchSize, rows = batch.Steps * size;
        if (!batch.HiddenStates.IsEmpty)
        {
            _hs.AsSpan(size * hidden, rows * hidden).CopyTo(batch.HiddenStates);
        }

        if (!batch.FinalState.IsEmpty)
        {
            for (int b = 0; b < size; b++)
            {
                _hs.AsSpan(((batch.LengthOf(b) * size) + b) * hidden, hidden).CopyTo(batch.FinalState.Slice(b * hidden, hidden));
            }
        }
    }

    /// <summary>(8) ∂L/∂b_y = Σ eₜ; (9) ∂L/∂W_hy = Eᵀ H.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void OutputGradients(in SequenceBatch<float> batch, Span<float> grad, bool accumulate)
    {
        RnnShape s = Shape;
        int hidden = s.HiddenSize, outputs = s.OutputSize, size = batch.BatchSize, rows = batch.Steps * size;
        ReadOnlySpan<float> e = _e.AsSpan(0, rows * outputs);
        _k.ColumnSums(e, rows, outputs, grad.Slice(s.ByOffset, outputs), accumulate);
        _k.Gemm(true, false, outputs, hidden, rows, e, outputs, _hs.AsSpan(size * hidden, rows * hidden), hidden, accumulate ? 1f : 0f,
            grad.Slice(s.WhyOffset, outputs * hidden), hidden, _packA.Span, _packB.Span);
    }

    /// <summary>
    /// (10)–(12): δₜ = ∂L/∂uₜ. The output part of every δ at once, G = E W_hy; then (11) δ_T = G_T ⊙ f′(u_T) and
    /// (12) δₜ = (Gₜ + W_hhᵀ δₜ₊₁) ⊙ f′(uₜ) backwards in time, in place over Gₜ.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void DeltaRecursion(ReadOnlySpan<float> theta, in SequenceBatch<float> batch)
    {
        RnnShape s = Shape;
        int hidden = s.HiddenSize, outputs = s.OutputSize, size = batch.BatchSize, steps = batch.Steps, rows = steps * size, block = size * hidden;
        ReadOnlySpan<float> whh = theta.Slice(s.WhhOffset, hidden * hidden);
        ReadOnlySpan<float> hAll = _hs.AsSpan(block, rows * hidden);
        Span<float> delta = _delta.AsSpan(0, rows * hidden);
        _k.Gemm(false, false, rows, hidden, outputs, _e.AsSpan(0, rows * outputs), outputs, theta.Slice(s.WhyOffset, outputs * hidden), hidden, 0f, delta, hidden, _packA.Span, _packB.Span);
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

        _k.PackColumnBlocks(whh, hidden, hidden, _stepBackward);
        for (int t = steps - 2; t >= 0; t--)
        {
            for (int b = 0; b < size; b++)
            {
                Span<float> d = delta.Slice(((t * size) + b) * hidden, hidden);
                if (t < batch.LengthOf(b))
                {
                    _k.StepBackward(_stepBackward, hidden, delta.Slice((((t + 1) * size) + b) * hidden, hidden), hAll.Slice(((t * size) + b) * hidden, hidden), d);
                }
                else
                {
                    d.Clear();
                }
            }
        }
    }

    /// <summary>(16) ∂L/∂h₀ = W_hhᵀ δ₁; (13) ∂L/∂W_hh = Δᵀ H₋₁; (15) ∂L/∂b_h = Σ δₜ.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void RecurrentGradients(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, Span<float> grad, bool accumulate)
    {
        RnnShape s = Shape;
        int hidden = s.HiddenSize, size = batch.BatchSize, rows = batch.Steps * size;
        ReadOnlySpan<float> whh = theta.Slice(s.WhhOffset, hidden * hidden);
        ReadOnlySpan<float> delta = _delta.AsSpan(0, rows * hidden);
        if (!batch.InitialStateGradient.IsEmpty)
        {
            for (int b = 0; b < size; b++)
            {
                _k.GemvTransposed(whh, hidden, hidden, delta.Slice(b * hidden, hidden), batch.InitialStateGradient.Slice(b * hidden, hidden));
            }
        }

        _k.Gemm(true, false, hidden, hidden, rows, delta, hidden, _hs.AsSpan(0, rows * hidden), hidden, accumulate ? 1f : 0f,
            grad.Slice(s.WhhOffset, hidden * hidden), hidden, _packA.Span, _packB.Span);
        _k.ColumnSums(delta, rows, hidden, grad.Slice(s.BhOffset, hidden), accumulate);
    }

    /// <summary>(14) ∂L/∂W_xh = Δᵀ X (tokens: a scatter-add of δₜ into row `token` of ∂L/∂W_xhᵀ); (16) ∂L/∂X = Δ W_xh.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void InputGradients(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, Span<float> grad, bool accumulate)
    {
        RnnShape s = Shape;
        int inputs = s.InputSize, hidden = s.HiddenSize, rows = batch.Steps * batch.BatchSize;
        ReadOnlySpan<float> delta = _delta.AsSpan(0, rows * hidden);
        Span<float> dWxh = grad.Slice(s.WxhOffset, hidden * inputs);
        if (batch.IsTokenInput && rows < inputs)
        {
            // Fewer rows than tokens: scatter each δₜ straight into its column of ∂L/∂W_xh.
            if (!accumulate)
            {
                dWxh.Clear();
            }

            for (int r = 0; r < rows; r++)
            {
                if (IsValid(in batch, r))
                {
                    Layout.AddToColumn(dWxh, hidden, inputs, batch.Tokens[r], delta.Slice(r * hidden, hidden));
                }
            }

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
        if (!batch.InputGradient.IsEmpty)
        {
            _k.Gemm(false, false, rows, inputs, hidden, delta, hidden, theta.Slice(s.WxhOffset, hidden * inputs), inputs, 0f, batch.InputGradient, inputs, _packA.Span, _packB.Span);
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

    /// <summary>Whether row r = t·B + b is a step within its sequence's length.</summary>
    private static bool IsValid(in SequenceBatch<float> batch, int r) => batch.Lengths.IsEmpty || (r / batch.BatchSize) < batch.Lengths[r % batch.BatchSize];
}
