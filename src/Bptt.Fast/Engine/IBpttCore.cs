using Bptt.Fast.Reference;

namespace Bptt.Fast.Engine;

/// <summary>
/// One implementation of equations (1)–(16) behind <see cref="BpttEngine"/>: the fast path or the reference path. The
/// engine validates every argument once, at its public entry point, and then calls the core.
/// </summary>
internal interface IBpttCore
{
    /// <summary>L of the forward pass; writes the batch's forward outputs.</summary>
    float Evaluate(ReadOnlySpan<float> theta, in SequenceBatch<float> batch);

    /// <summary>L, and ∂L/∂θ into <paramref name="gradients"/> (overwritten or accumulated); writes the batch's outputs.</summary>
    float ComputeGradients(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, Span<float> gradients, bool accumulate);

    /// <summary>Touches every page of the workspace, so that the first real call does not pay the operating system's first-touch faults.</summary>
    void TouchWorkspace();
}

/// <summary>The scalar reference BPTT in float, as an engine core.</summary>
internal sealed class ReferenceCore(RnnShape shape, int maxSteps, int maxBatch, Activation activation, float dropout) : IBpttCore
{
    private readonly ReferenceBptt<float> _reference = new(shape, maxSteps, maxBatch, activation, dropout);

    public float Evaluate(ReadOnlySpan<float> theta, in SequenceBatch<float> batch) => _reference.Evaluate(theta, in batch);

    public float ComputeGradients(ReadOnlySpan<float> theta, in SequenceBatch<float> batch, Span<float> gradients, bool accumulate) =>
        _reference.ComputeGradients(theta, in batch, gradients, accumulate);

    public void TouchWorkspace()
    {
        // The oracle's buffers are touched by its first call; it is not meant for latency-sensitive serving.
    }
}
