using Bptt.Fast.Internals;

namespace Bptt.Fast.Serving;

/// <summary>Which steps of a sequence call write an output row.</summary>
public enum SequenceOutput
{
    /// <summary>Every step: <c>[T, B, O]</c>, time-major.</summary>
    EveryStep,

    /// <summary>Only the last step: <c>[B, O]</c>; the output layer runs for those B rows only.</summary>
    LastStep,
}

/// <summary>
/// The scratch memory of <see cref="RnnModel.RunSequence(ReadOnlySpan{int}, RnnState, RnnSequenceWorkspace, Span{float}, StepOutput, SequenceOutput)"/>
/// and <see cref="RnnModel.RunSequenceBatch(ReadOnlySpan{int}, RnnStateBatch, RnnSequenceWorkspace, Span{float}, StepOutput, SequenceOutput)"/>:
/// the hidden states of up to <see cref="MaxSteps"/> × <see cref="MaxBatch"/> rows and a GEMM packing buffer. The caller
/// owns it, so the model stays read-only and shareable; one workspace serves one thread at a time (any number of states,
/// one call after another), and a call that finds it in use on another thread throws <see cref="InvalidOperationException"/>.
/// It holds no stream state between calls: the state lives in <see cref="RnnState"/> or <see cref="RnnStateBatch"/>.
/// </summary>
public sealed class RnnSequenceWorkspace
{
    /// <summary>The most streams one workspace serves at once.</summary>
    public const int MaxBatchLimit = 1 << 16;

    private readonly AlignedBuffer _states; // rows of h are read and written by vectors: cache-line aligned
    private readonly AlignedBuffer _packA;
    private SingleCaller _gate;

    internal RnnSequenceWorkspace(RnnShape shape, int maxSteps, int maxBatch)
    {
        Guard.InRange(maxSteps, 1, int.MaxValue, nameof(maxSteps));
        Guard.InRange(maxBatch, 1, MaxBatchLimit, nameof(maxBatch));
        Shape = shape;
        MaxSteps = maxSteps;
        MaxBatch = maxBatch;
        // One layer's states per direction, [D, T·B, H]; a stacked model keeps two layers (the one below, read by the
        // input projection of the one being computed), so 2·D·T·B·H.
        long layer = Sizes.Product(Sizes.Product(maxSteps, maxBatch, shape.HiddenSize), shape.Directions);
        _states = new AlignedBuffer(Sizes.ArrayLength(Sizes.Product(layer, shape.Layers > 1 ? 2 : 1), nameof(maxSteps), "sequence state buffer [layers kept · D · T·B, H]"));
        _packA = new AlignedBuffer(Kernels.Bodies.GemmBlocking.PackALength);
    }

    /// <summary>The network sizes.</summary>
    public RnnShape Shape { get; }

    /// <summary>The most time steps one call may run.</summary>
    public int MaxSteps { get; }

    /// <summary>The most streams one call may run.</summary>
    public int MaxBatch { get; }

    /// <summary>hₜ of every row, <c>[T, B, H]</c> (with dense input first uₜ, then hₜ in place; with token input hₜ written
    /// directly, each step reading its token rows from the model's table). A stacked or bidirectional model uses it as
    /// one or two layer buffers (the layer below and the layer being computed, alternately), each <c>[D, T, B, H]</c>.</summary>
    internal Span<float> States => _states.Span;

    internal Span<float> PackA => _packA.Span;

    /// <summary>Detects two threads using this workspace at once.</summary>
    internal ref SingleCaller Gate => ref _gate;
}
