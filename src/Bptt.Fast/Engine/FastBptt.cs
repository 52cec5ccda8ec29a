using Bptt.Fast.Internals;
using Bptt.Fast.Kernels;
using Bptt.Fast.Kernels.Isa;

namespace Bptt.Fast;

/// <summary>
/// The fast BPTT of DESIGN.md section 4. Only W_hh hₜ₋₁ (forward) and W_hhᵀ δₜ₊₁ (backward) are sequential; everything
/// else is one GEMM over all T·B rows: the hoisted input projection, the output layer, G = E W_hy and the weight
/// gradients. Batch 1–3 steps use the fused matrix-vector kernels; larger batches use the GEMM with W_hh packed once per call.
/// All memory is allocated in the constructor.
/// </summary>
internal sealed class FastBptt
{
    /// <summary>From this batch size on, a recurrent step is a GEMM with pre-packed W_hh instead of B fused matrix-vector steps.</summary>
    public const int BatchedRecurrenceMinBatch = 4;

    private readonly KernelIsa _isa;
    private readonly float[] _hs;       // [T+1, B, H]: rows 0..B-1 hold h₀, row (t+1)·B + b holds hₜ of sequence b
    private readonly float[] _e;        // [T, B, O]: vₜ, then eₜ
    private readonly float[] _delta;    // [T, B, H]: Gₜ = W_hyᵀ eₜ, then δₜ
    private readonly float[] _whhT;     // W_hhᵀ, transposed once per call
    private readonly float[] _stepForward;  // W_hhᵀ packed in column blocks: the fused forward step (1)–(2), batch 1–3
    private readonly float[] _stepBackward; // W_hh packed in column blocks: the fused backward step (12), batch 1–3
    private readonly float[] _wxhT;     // W_xhᵀ [I, H], for the token gather
    private readonly float[] _dWxhT;    // ∂L/∂W_xhᵀ [I, H], for the token scatter-add
    private readonly float[] _xMasked;  // [T, B, I], dense input with the steps after each length zeroed (ragged batches)
    private readonly AlignedBuffer _packA;
    private readonly AlignedBuffer _packB;
    private readonly AlignedBuffer _packedWhh;  // op(B) = W_hh, batched backward steps
    private readonly AlignedBuffer _packedWhhT; // op(B) = W_hhᵀ, batched forward steps

    public FastBptt(RnnShape shape, int maxSteps, int maxBatch, Activation activation, KernelIsa isa)
    {
        Shape = shape;
        MaxSteps = maxSteps;
        MaxBatch = maxBatch;
        Activation = activation;
        _isa = isa;
        WorkspacePlan plan = Plan(shape, maxSteps, maxBatch, isa);
        _hs = new float[plan.States];
        _e = new float[plan.Errors];
        _delta = new float[plan.Deltas];
        _whhT = new float[plan.SquareH];
        _stepForward = new float[plan.SquareH];
        _stepBackward = new float[plan.SquareH];
        _wxhT = new float[plan.InputByHidden];
        _dWxhT = new float[plan.InputByHidden];
        _xMasked = new float[plan.MaskedInputs];
        _packA = new AlignedBuffer(Gemm.PackALength);
        _packB = new AlignedBuffer(plan.PackB);
        _packedWhh = new AlignedBuffer(plan.PackedWhh);
        _packedWhhT = new AlignedBuffer(plan.PackedWhh);
    }

    /// <summary>The floats of every buffer of an engine, each computed in 64 bits and proven to fit one array.</summary>
    internal readonly record struct WorkspacePlan(int States, int Errors, int Deltas, int SquareH, int InputByHidden, int MaskedInputs, int PackB, int PackedWhh)
    {
        /// <summary>The whole workspace in bytes.</summary>
        public long Bytes => 4L * (States + (long)Errors + Deltas + (3L * SquareH) + (2L * InputByHidden) + MaskedInputs + Gemm.PackALength + PackB + (2L * PackedWhh));
    }

    /// <summary>
    /// Sizes the workspace for (maxSteps, maxBatch) with every product in 64 bits. Throws <see cref="ArgumentOutOfRangeException"/>
    /// (naming maxSteps) when a buffer would not fit one array. The caller compares <see cref="WorkspacePlan.Bytes"/> with its limit.
    /// </summary>
    internal static WorkspacePlan Plan(RnnShape shape, int maxSteps, int maxBatch, KernelIsa isa)
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
            PackB: Sizes.ArrayLength(Gemm.PackBBlockLength(isa, Math.Max(Math.Max(h, o), i)), P, "B packing block"),
            PackedWhh: Sizes.ArrayLength(batched ? Gemm.PackedBLength(isa, h, h) : 0, P, "packed W_hh"));
    }

    public RnnShape Shape { get; }

    public int MaxSteps { get; }

    public int MaxBatch { get; }

    public Activation Activation { get; }

    public float Evaluate(ReadOnlySpan<float> theta, in SequenceBatch<float> batch)
    {
        BatchValidation.ValidateParameters(theta, "parameters", Shape);
        BatchValidation.Validate(in batch, Shape, MaxSteps, MaxBatch);
        BatchValidation.CheckAliasing(in batch, theta, default);
        return Forward(theta, in batch, writeErrors: false);
    }

    public float ComputeGradients(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, Span<float> gradients, bool accumulate)
    {
        BatchValidation.ValidateParameters(theta, "parameters", Shape);
        BatchValidation.Validate(in batch, Shape, MaxSteps, MaxBatch);
        BatchValidation.CheckAliasing(in batch, theta, gradients);
        return ComputeGradientsValidated(theta, in batch, gradients, accumulate);
    }

    /// <summary>The same, for a caller that has already validated every argument (the data-parallel engine's workers).</summary>
    internal float ComputeGradientsValidated(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, Span<float> gradients, bool accumulate)
    {
        float loss = Forward(theta, in batch, writeErrors: true);
        Backward(theta, in batch, gradients, accumulate);
        return loss;
    }

    private float Forward(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, bool writeErrors)
    {
        RnnShape s = Shape;
        int inputs = s.InputSize, hidden = s.HiddenSize, outputs = s.OutputSize;
        int size = batch.BatchSize, steps = batch.Steps, rows = steps * size;
        ReadOnlySpan<float> wxh = theta.Slice(s.WxhOffset, hidden * inputs);
        ReadOnlySpan<float> whh = theta.Slice(s.WhhOffset, hidden * hidden);
        ReadOnlySpan<float> bh = theta.Slice(s.BhOffset, hidden);
        ReadOnlySpan<float> why = theta.Slice(s.WhyOffset, outputs * hidden);
        ReadOnlySpan<float> by = theta.Slice(s.ByOffset, outputs);
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

        // (1), hoisted over all T·B rows: U = X W_xhᵀ + b_h (token input: U row = b_h + column `token` of W_xh).
        for (int r = 0; r < rows; r++)
        {
            bh.CopyTo(hAll.Slice(r * hidden, hidden));
        }

        if (batch.IsTokenInput)
        {
            FastKernels.Transpose(wxh, hidden, inputs, _wxhT);
            for (int r = 0; r < rows; r++)
            {
                if (IsValid(in batch, r))
                {
                    FastKernels.AxpyUnchecked(_isa, 1f, _wxhT.AsSpan(batch.Tokens[r] * hidden, hidden), hAll.Slice(r * hidden, hidden));
                }
            }
        }
        else
        {
            ReadOnlySpan<float> x = DenseInputs(in batch);
            Gemm.Run(_isa, false, true, rows, hidden, inputs, x, inputs, wxh, inputs, 1f, hAll, hidden, _packA.Span, _packB.Span);
        }

        // (1)–(2), sequential: hₜ = f(Uₜ + W_hh hₜ₋₁), written in place over Uₜ.
        if (size < BatchedRecurrenceMinBatch)
        {
            FastKernels.Transpose(whh, hidden, hidden, _whhT);
            FastKernels.PackColumnBlocks(_isa, _whhT, hidden, hidden, _stepForward);
            for (int t = 0; t < steps; t++)
            {
                for (int b = 0; b < size; b++)
                {
                    Span<float> h = _hs.AsSpan((((t + 1) * size) + b) * hidden, hidden);
                    if (t < batch.LengthOf(b))
                    {
                        Step(_hs.AsSpan(((t * size) + b) * hidden, hidden), h);
                    }
                    else
                    {
                        h.Clear();
                    }
                }
            }
        }
        else
        {
            Gemm.PackB(_isa, true, hidden, hidden, whh, hidden, _packedWhhT.Span);
            for (int t = 0; t < steps; t++)
            {
                Span<float> hBlock = _hs.AsSpan((t + 1) * size * hidden, size * hidden);
                Gemm.Multiply(_isa, false, size, hidden, hidden, _hs.AsSpan(t * size * hidden, size * hidden), hidden, _packedWhhT.Span, 1f, hBlock, hidden, _packA.Span);
                FastKernels.Activate(_isa, Activation, hBlock, hBlock);
                for (int b = 0; b < size; b++)
                {
                    if (t >= batch.LengthOf(b))
                    {
                        hBlock.Slice(b * hidden, hidden).Clear();
                    }
                }
            }
        }

        // (3), over all rows: V = H W_hyᵀ + b_y.
        Span<float> e = _e.AsSpan(0, rows * outputs);
        for (int r = 0; r < rows; r++)
        {
            by.CopyTo(e.Slice(r * outputs, outputs));
        }

        Gemm.Run(_isa, false, true, rows, outputs, hidden, hAll, hidden, why, hidden, 1f, e, outputs, _packA.Span, _packB.Span);

        // (4), (6), (7) fused per row; (5) L = Σ Lₜ, accumulated in double.
        double loss = 0;
        for (int r = 0; r < rows; r++)
        {
            Span<float> row = e.Slice(r * outputs, outputs);
            if (IsValid(in batch, r) && batch.Targets[r] >= 0)
            {
                loss += FastKernels.SoftmaxCrossEntropyUnchecked(_isa, row, batch.Targets[r], row, writeErrors);
            }
            else
            {
                row.Clear();
            }
        }

        if (!batch.HiddenStates.IsEmpty)
        {
            hAll.CopyTo(batch.HiddenStates);
        }

        if (!batch.FinalState.IsEmpty)
        {
            for (int b = 0; b < size; b++)
            {
                _hs.AsSpan(((batch.LengthOf(b) * size) + b) * hidden, hidden).CopyTo(batch.FinalState.Slice(b * hidden, hidden));
            }
        }

        return (float)loss;
    }

    private void Backward(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, Span<float> grad, bool accumulate)
    {
        RnnShape s = Shape;
        int inputs = s.InputSize, hidden = s.HiddenSize, outputs = s.OutputSize;
        int size = batch.BatchSize, steps = batch.Steps, rows = steps * size, block = size * hidden;
        ReadOnlySpan<float> wxh = theta.Slice(s.WxhOffset, hidden * inputs);
        ReadOnlySpan<float> whh = theta.Slice(s.WhhOffset, hidden * hidden);
        ReadOnlySpan<float> why = theta.Slice(s.WhyOffset, outputs * hidden);
        Span<float> dWxh = grad.Slice(s.WxhOffset, hidden * inputs);
        Span<float> dWhh = grad.Slice(s.WhhOffset, hidden * hidden);
        Span<float> dBh = grad.Slice(s.BhOffset, hidden);
        Span<float> dWhy = grad.Slice(s.WhyOffset, outputs * hidden);
        Span<float> dBy = grad.Slice(s.ByOffset, outputs);
        ReadOnlySpan<float> hPrev = _hs.AsSpan(0, rows * hidden);
        ReadOnlySpan<float> hAll = _hs.AsSpan(block, rows * hidden);
        ReadOnlySpan<float> e = _e.AsSpan(0, rows * outputs);
        Span<float> delta = _delta.AsSpan(0, rows * hidden);
        float beta = accumulate ? 1f : 0f;

        // (8) ∂L/∂b_y = Σ eₜ;  (9) ∂L/∂W_hy = Eᵀ H.
        FastKernels.ColumnSums(_isa, e, rows, outputs, dBy, accumulate);
        Gemm.Run(_isa, true, false, outputs, hidden, rows, e, outputs, hAll, hidden, beta, dWhy, hidden, _packA.Span, _packB.Span);

        // The output part of every δ at once: G = E W_hy.
        Gemm.Run(_isa, false, false, rows, hidden, outputs, e, outputs, why, hidden, 0f, delta, hidden, _packA.Span, _packB.Span);

        // (11) δ_T = G_T ⊙ f′(u_T);  (12) δₜ = (Gₜ + W_hhᵀ δₜ₊₁) ⊙ f′(uₜ), in place over Gₜ.
        Span<float> last = delta.Slice((steps - 1) * block, block);
        FastKernels.ActivationBackward(_isa, Activation, last, hAll.Slice((steps - 1) * block, block), last);
        bool batched = size >= BatchedRecurrenceMinBatch;
        if (batched)
        {
            Gemm.PackB(_isa, false, hidden, hidden, whh, hidden, _packedWhh.Span);
        }
        else
        {
            FastKernels.PackColumnBlocks(_isa, whh, hidden, hidden, _stepBackward);
        }

        for (int t = steps - 2; t >= 0; t--)
        {
            if (batched)
            {
                Span<float> dBlock = delta.Slice(t * block, block);
                Gemm.Multiply(_isa, false, size, hidden, hidden, delta.Slice((t + 1) * block, block), hidden, _packedWhh.Span, 1f, dBlock, hidden, _packA.Span);
                FastKernels.ActivationBackward(_isa, Activation, dBlock, hAll.Slice(t * block, block), dBlock);
                continue;
            }

            for (int b = 0; b < size; b++)
            {
                Span<float> d = delta.Slice(((t * size) + b) * hidden, hidden);
                if (t < batch.LengthOf(b))
                {
                    StepBackward(delta.Slice((((t + 1) * size) + b) * hidden, hidden), hAll.Slice(((t * size) + b) * hidden, hidden), d);
                }
                else
                {
                    d.Clear();
                }
            }
        }

        // (16) ∂L/∂h₀ = W_hhᵀ δ₁.
        if (!batch.InitialStateGradient.IsEmpty)
        {
            for (int b = 0; b < size; b++)
            {
                FastKernels.TransposedProduct<IdentityEpilogue>(_isa, whh, hidden, hidden, delta.Slice(b * hidden, hidden), default, default, batch.InitialStateGradient.Slice(b * hidden, hidden));
            }
        }

        // (13) ∂L/∂W_hh = Δᵀ H₋₁;  (15) ∂L/∂b_h = Σ δₜ.
        Gemm.Run(_isa, true, false, hidden, hidden, rows, delta, hidden, hPrev, hidden, beta, dWhh, hidden, _packA.Span, _packB.Span);
        FastKernels.ColumnSums(_isa, delta, rows, hidden, dBh, accumulate);

        // (14) ∂L/∂W_xh = Δᵀ X (token input: scatter-add of δₜ into row `token` of ∂L/∂W_xhᵀ).
        if (batch.IsTokenInput)
        {
            Span<float> dT = _dWxhT.AsSpan(0, inputs * hidden);
            dT.Clear();
            for (int r = 0; r < rows; r++)
            {
                if (IsValid(in batch, r))
                {
                    FastKernels.AxpyUnchecked(_isa, 1f, delta.Slice(r * hidden, hidden), dT.Slice(batch.Tokens[r] * hidden, hidden));
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
        }
        else
        {
            ReadOnlySpan<float> x = DenseInputs(in batch);
            Gemm.Run(_isa, true, false, hidden, inputs, rows, delta, hidden, x, inputs, beta, dWxh, inputs, _packA.Span, _packB.Span);

            // (16) ∂L/∂xₜ = W_xhᵀ δₜ, for all rows at once: ∂L/∂X = Δ W_xh.
            if (!batch.InputGradient.IsEmpty)
            {
                Gemm.Run(_isa, false, false, rows, inputs, hidden, delta, hidden, wxh, inputs, 0f, batch.InputGradient, inputs, _packA.Span, _packB.Span);
            }
        }
    }

    /// <summary>(1)–(2) fused for one sequence: h = f(h + W_hh hPrevious), h holding W_xh xₜ + b_h on entry.</summary>
    private void Step(ReadOnlySpan<float> hPrevious, Span<float> h)
    {
        int n = Shape.HiddenSize;
        switch (Activation)
        {
            case Activation.Tanh: FastKernels.PackedTransposedProduct<ActivationEpilogue<TanhKind>>(_isa, _stepForward, n, n, hPrevious, h, default, h); break;
            case Activation.Relu: FastKernels.PackedTransposedProduct<ActivationEpilogue<ReluKind>>(_isa, _stepForward, n, n, hPrevious, h, default, h); break;
            default: FastKernels.PackedTransposedProduct<ActivationEpilogue<SigmoidKind>>(_isa, _stepForward, n, n, hPrevious, h, default, h); break;
        }
    }

    /// <summary>(12) fused for one sequence: δ = (δ + W_hhᵀ δNext) ⊙ f′(h), δ holding Gₜ = W_hyᵀ eₜ on entry.</summary>
    private void StepBackward(ReadOnlySpan<float> deltaNext, ReadOnlySpan<float> h, Span<float> delta)
    {
        int n = Shape.HiddenSize;
        switch (Activation)
        {
            case Activation.Tanh: FastKernels.PackedTransposedProduct<DerivativeEpilogue<TanhKind>>(_isa, _stepBackward, n, n, deltaNext, delta, h, delta); break;
            case Activation.Relu: FastKernels.PackedTransposedProduct<DerivativeEpilogue<ReluKind>>(_isa, _stepBackward, n, n, deltaNext, delta, h, delta); break;
            default: FastKernels.PackedTransposedProduct<DerivativeEpilogue<SigmoidKind>>(_isa, _stepBackward, n, n, deltaNext, delta, h, delta); break;
        }
    }

    /// <summary>The dense inputs, or (ragged batch) a copy with every step after a sequence's length zeroed, so padding never reaches a product.</summary>
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
