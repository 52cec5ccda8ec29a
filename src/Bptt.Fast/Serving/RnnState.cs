namespace Bptt.Fast.Serving;

/// <summary>
/// The state of one stream: hₜ (readable and writable, e.g. to restore a session) and a little scratch space. One state
/// serves one thread at a time; stepping it from two threads at once throws <see cref="InvalidOperationException"/>.
/// </summary>
public sealed class RnnState
{
    private readonly float[] _hidden, _scratch;
    private Internals.SingleCaller _gate;

    internal RnnState(RnnShape shape)
    {
        Shape = shape;
        _hidden = new float[shape.HiddenSize];
        _scratch = new float[shape.HiddenSize];
    }

    /// <summary>The network sizes.</summary>
    public RnnShape Shape { get; }

    /// <summary>hₜ, H floats.</summary>
    public Span<float> Hidden => _hidden;

    internal Span<float> Scratch => _scratch;

    /// <summary>Detects two threads stepping this state at once.</summary>
    internal ref Internals.SingleCaller Gate => ref _gate;

    /// <summary>h = 0.</summary>
    public void Reset() => Array.Clear(_hidden);
}

/// <summary>The states of B streams stepped together by <see cref="RnnModel.StepBatch"/>: row b of <see cref="Hidden"/> is stream b.</summary>
public sealed class RnnStateBatch
{
    private readonly float[] _hidden, _scratch;
    private readonly Internals.AlignedBuffer _packA;
    private Internals.SingleCaller _gate;

    internal RnnStateBatch(RnnShape shape, int count)
    {
        Internals.Guard.InRange(count, 1, 1 << 16, nameof(count));
        Shape = shape;
        Count = count;
        int length = Internals.Sizes.ArrayLength(Internals.Sizes.Product(count, shape.HiddenSize), nameof(count), "state block [B, H]");
        _hidden = new float[length];
        _scratch = new float[length];
        _packA = new Internals.AlignedBuffer(Kernels.Bodies.GemmBlocking.PackALength);
    }

    /// <summary>The network sizes.</summary>
    public RnnShape Shape { get; }

    /// <summary>B, the number of streams.</summary>
    public int Count { get; }

    /// <summary>The states, <c>[B, H]</c>.</summary>
    public Span<float> Hidden => _hidden;

    internal Span<float> Scratch => _scratch;

    internal Span<float> PackA => _packA.Span;

    /// <summary>Detects two threads stepping this block at once.</summary>
    internal ref Internals.SingleCaller Gate => ref _gate;

    /// <summary>Every h = 0.</summary>
    public void Reset() => Array.Clear(_hidden);

    /// <summary>Stream <paramref name="b"/>'s h = 0 (e.g. when a new request takes over the slot).</summary>
    /// <param name="b">The stream.</param>
    public void Reset(int b)
    {
        Internals.Guard.InRange(b, 0, Count - 1, nameof(b));
        _hidden.AsSpan(b * Shape.HiddenSize, Shape.HiddenSize).Clear();
    }
}
