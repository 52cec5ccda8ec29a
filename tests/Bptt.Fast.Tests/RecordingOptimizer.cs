using Bptt.Fast.Training;

namespace Bptt.Fast.Tests;

/// <summary>An optimizer that applies nothing (θ stays fixed, so every window can be recomputed by a test) and remembers
/// every gradient it was given, one copy per committed step.</summary>
internal sealed class RecordingOptimizer(RnnShape shape) : Optimizer(shape)
{
    public List<float[]> Gradients { get; } = [];

    protected override bool Update(Span<float> parameters, ReadOnlySpan<float> gradients, float gradientScale, bool commit)
    {
        if (commit)
        {
            Gradients.Add(gradients.ToArray());
        }

        return true;
    }
}
