namespace Bptt.Fast.Serving;

/// <summary>
/// The state of one stream: every layer's hₜ (readable and writable, e.g. to restore a session) and a little scratch
/// space. <see cref="Hidden"/> is <c>[L·D, H]</c>: one row of H floats per recurrent block, layer-major in the engine's
/// block order (row l·D + d for layer l, direction d; the order of <see cref="SequenceBatch{T}.InitialState"/> with B = 1),
/// so the one-layer network's state is its H floats as before. One state serves one thread at a time; stepping it from
/// two threads at once throws <see cref="InvalidOperationException"/>.
/// </summary>
public sealed class RnnState
{
    private readonly float[] _hidden, _scratch;
    private Internals.SingleCaller _gate;

    internal RnnState(RnnShape shape)
    {
        Shape = shape;
        _hidden = new float[Internals.Sizes.ArrayLength(Internals.Sizes.Product(shape.BlockCount, shape.HiddenSize), nameof(shape), "state [L·D, H]")];
        _scratch = new float[shape.HiddenSize];
    }

    /// <summary>The network sizes.</summary>
    public RnnShape Shape { get; }

    /// <summary>hₜ of every layer and direction, <c>[L·D, H]</c> (H floats for the one-layer network): row l·D + d is layer l, direction d.</summary>
    public Span<float> Hidden => _hidden;

    internal Span<float> Scratch => _scratch;

    /// <summary>Detects two threads stepping this state at once.</summary>
    internal ref Internals.SingleCaller Gate => ref _gate;

    /// <summary>The state of one layer and direction: H floats, a view of <see cref="Hidden"/>.</summary>
    /// <param name="layer">The layer, in [0, L).</param>
    /// <param name="direction">0 forward, 1 reverse (bidirectional models only).</param>
    /// <returns>Row l·D + d of <see cref="Hidden"/>.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The layer or the direction is out of range.</exception>
    public Span<float> Layer(int layer, int direction = 0)
    {
        _ = Shape.Block(layer, direction); // validates both
        int h = Shape.HiddenSize;
        return _hidden.AsSpan(((layer * Shape.Directions) + direction) * h, h);
    }

    /// <summary>h = 0 for every layer.</summary>
    /// <exception cref="InvalidOperationException">Another thread is stepping this state.</exception>
    public void Reset()
    {
        _gate.Enter(this);
        Array.Clear(_hidden);
        _gate.Exit();
    }
}

/// <summary>
/// The states of B streams stepped together by <see cref="RnnModel.StepBatch"/>. <see cref="Hidden"/> is
/// <c>[L·D, B, H]</c>, the layout of <see cref="SequenceBatch{T}.InitialState"/>: block l·D + d holds layer l, direction d
/// of every stream, and row b of a block is stream b (for the one-layer network, row b of <c>[B, H]</c> is stream b).
/// </summary>
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
        long block = Internals.Sizes.Product(count, shape.HiddenSize);
        _hidden = new float[Internals.Sizes.ArrayLength(Internals.Sizes.Product(shape.BlockCount, block), nameof(count), "state block [L·D, B, H]")];
        _scratch = new float[Internals.Sizes.ArrayLength(block, nameof(count), "scratch [B, H]")];
        _packA = new Internals.AlignedBuffer(Kernels.Bodies.GemmBlocking.PackALength);
    }

    /// <summary>The network sizes.</summary>
    public RnnShape Shape { get; }

    /// <summary>B, the number of streams.</summary>
    public int Count { get; }

    /// <summary>The states, <c>[L·D, B, H]</c> (<c>[B, H]</c> for the one-layer network).</summary>
    public Span<float> Hidden => _hidden;

    internal Span<float> Scratch => _scratch;

    internal Span<float> PackA => _packA.Span;

    /// <summary>Detects two threads stepping this block at once.</summary>
    internal ref Internals.SingleCaller Gate => ref _gate;

    /// <summary>The states of one layer and direction for every stream: <c>[B, H]</c>, a view of <see cref="Hidden"/>.</summary>
    /// <param name="layer">The layer, in [0, L).</param>
    /// <param name="direction">0 forward, 1 reverse (bidirectional models only).</param>
    /// <returns>Block l·D + d of <see cref="Hidden"/>.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The layer or the direction is out of range.</exception>
    public Span<float> Layer(int layer, int direction = 0)
    {
        _ = Shape.Block(layer, direction); // validates both
        int block = Count * Shape.HiddenSize;
        return _hidden.AsSpan(((layer * Shape.Directions) + direction) * block, block);
    }

    /// <summary>Every h = 0.</summary>
    /// <exception cref="InvalidOperationException">Another thread is stepping these states.</exception>
    public void Reset()
    {
        _gate.Enter(this);
        Array.Clear(_hidden);
        _gate.Exit();
    }

    /// <summary>Stream <paramref name="b"/>'s h = 0 in every layer and direction (e.g. when a new request takes over the slot).</summary>
    /// <param name="b">The stream.</param>
    public void Reset(int b)
    {
        Internals.Guard.InRange(b, 0, Count - 1, nameof(b));
        _gate.Enter(this);
        int h = Shape.HiddenSize, block = Count * h;
        for (int k = 0; k < Shape.BlockCount; k++)
        {
            _hidden.AsSpan((k * block) + (b * h), h).Clear();
        }

        _gate.Exit();
    }
}
