using Bptt.Fast.Internals;

namespace Bptt.Fast.Model;

/// <summary>The constructor limits every engine shares (the reference, fast and data-parallel ones): shape, capacity,
/// activation and the workspace budget. It sits in the model layer so that the reference path, below the engines, uses it too.</summary>
internal static class EngineLimits
{
    /// <summary>The largest maxSteps an engine accepts.</summary>
    public const int MaxSteps = 1 << 20;

    /// <summary>The largest maxBatch an engine accepts.</summary>
    public const int MaxBatch = 1 << 16;

    /// <summary>Checks the arguments every engine constructor takes, before anything is allocated.</summary>
    public static void Check(RnnShape shape, int maxSteps, int maxBatch, Activation activation, long maxWorkspaceBytes)
    {
        shape.Validate(nameof(shape));
        Guard.InRange(maxSteps, 1, MaxSteps, nameof(maxSteps));
        Guard.InRange(maxBatch, 1, MaxBatch, nameof(maxBatch));
        ActivationRule.Check(activation, nameof(activation));

        if (maxWorkspaceBytes < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(maxWorkspaceBytes), maxWorkspaceBytes, $"Expected a workspace limit of at least 1 byte, actual {maxWorkspaceBytes}.");
        }
    }

    /// <summary>Throws when a planned workspace exceeds the caller's budget, before it is allocated.</summary>
    public static void CheckWorkspace(long bytes, long maxWorkspaceBytes, int maxSteps, int maxBatch)
    {
        if (bytes > maxWorkspaceBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(maxSteps), maxSteps,
                $"The workspace for maxSteps = {maxSteps} and maxBatch = {maxBatch} needs {bytes} bytes; the limit is {maxWorkspaceBytes} bytes (maxWorkspaceBytes). Lower maxSteps or maxBatch, or raise the limit.");
        }
    }
}
