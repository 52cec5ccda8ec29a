using System.Runtime.CompilerServices;

namespace Bptt.Fast.Internals;

/// <summary>
/// Detects concurrent use of an object that owns mutable buffers (an engine, a stream state): <see cref="Enter"/> takes the
/// gate with one interlocked exchange and throws <see cref="InvalidOperationException"/> when another call holds it.
/// Cheap enough for every call (a few nanoseconds); it detects misuse, it does not serialise callers.
/// </summary>
internal struct SingleCaller
{
    private int _busy;

    /// <summary>Takes the gate, or throws when another thread is inside a call of <paramref name="owner"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Enter(object owner)
    {
        if (Interlocked.Exchange(ref _busy, 1) != 0)
        {
            throw new InvalidOperationException(
                $"This {owner.GetType().Name} is already in use by another call; one instance serves one thread at a time (expected no concurrent call, actual two).");
        }
    }

    /// <summary>Releases the gate.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Exit() => Volatile.Write(ref _busy, 0);
}
