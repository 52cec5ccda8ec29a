using System.Runtime.CompilerServices;
using Bptt.Fast.Internals;
using Bptt.Fast.Model;

namespace Bptt.Fast;

/// <summary>
/// The parameter block θ of an Elman network, one contiguous float array laid out as
/// W_xh (H×I), W_hh (H×H), b_h (H), W_hy (O×H), b_y (O), every matrix row-major; a stacked or bidirectional network has
/// one W_xh, W_hh, b_h block per layer and direction before the head (<see cref="RnnShape"/>, <see cref="Block"/>).
/// Gradients ∂L/∂θ and optimizer state use the same class and layout, so an optimizer,
/// a clipping norm or a checkpoint works on one span (<see cref="Values"/>).
/// </summary>
public sealed class RnnParameters
{
    private readonly float[] _values;

    /// <summary>Creates a zero-filled block for <paramref name="shape"/>, its memory touched (committed) here.</summary>
    /// <param name="shape">The network sizes; each must be at least 1.</param>
    public RnnParameters(RnnShape shape)
    {
        shape.Validate(nameof(shape));
        Shape = shape;
        _values = new float[shape.ParameterCount];

        // A large array comes from fresh pages that the OS maps on first write; writing the zeros here moves those faults
        // into construction, so the first training step that writes a gradient block does not pay them.
        _values.AsSpan().Clear();
    }

    /// <summary>The network sizes this block was made for.</summary>
    public RnnShape Shape { get; }

    /// <summary>The whole block θ, <see cref="RnnShape.ParameterCount"/> floats.</summary>
    public Span<float> Values => _values;

    /// <summary>W_xh of the first layer's forward direction, H×I row-major: element (i, j) is at <c>i*I + j</c>.</summary>
    public Span<float> Wxh
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _values.AsSpan(Shape.WxhOffset, Shape.HiddenSize * Shape.InputSize);
    }

    /// <summary>W_hh of the first layer's forward direction, H×H row-major.</summary>
    public Span<float> Whh
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _values.AsSpan(Shape.WhhOffset, Shape.HiddenSize * Shape.HiddenSize);
    }

    /// <summary>b_h of the first layer's forward direction, length H.</summary>
    public Span<float> Bh
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _values.AsSpan(Shape.BhOffset, Shape.HiddenSize);
    }

    /// <summary>W_hy, O×D·H row-major (O×H for one direction).</summary>
    public Span<float> Why
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _values.AsSpan(Shape.WhyOffset, Shape.OutputSize * Shape.LayerOutputSize);
    }

    /// <summary>b_y, length O.</summary>
    public Span<float> By
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _values.AsSpan(Shape.ByOffset, Shape.OutputSize);
    }

    /// <summary>W_xh⁽ˡ'ᵈ⁾ of one layer and direction, H×Iₗ row-major.</summary>
    /// <param name="layer">The layer, in [0, L).</param>
    /// <param name="direction">0 forward, 1 reverse.</param>
    /// <returns>A view of θ.</returns>
    public Span<float> LayerWxh(int layer, int direction)
    {
        RnnLayerBlock block = Shape.Block(layer, direction);
        return _values.AsSpan(block.WxhOffset, block.WxhLength);
    }

    /// <summary>W_hh⁽ˡ'ᵈ⁾ of one layer and direction, H×H row-major.</summary>
    /// <param name="layer">The layer, in [0, L).</param>
    /// <param name="direction">0 forward, 1 reverse.</param>
    /// <returns>A view of θ.</returns>
    public Span<float> LayerWhh(int layer, int direction)
    {
        RnnLayerBlock block = Shape.Block(layer, direction);
        return _values.AsSpan(block.WhhOffset, block.HiddenSize * block.HiddenSize);
    }

    /// <summary>b_h⁽ˡ'ᵈ⁾ of one layer and direction, length H.</summary>
    /// <param name="layer">The layer, in [0, L).</param>
    /// <param name="direction">0 forward, 1 reverse.</param>
    /// <returns>A view of θ.</returns>
    public Span<float> LayerBh(int layer, int direction)
    {
        RnnLayerBlock block = Shape.Block(layer, direction);
        return _values.AsSpan(block.BhOffset, block.HiddenSize);
    }

    /// <summary>Where one layer and direction lies in θ (<see cref="RnnShape.Block"/>).</summary>
    /// <param name="layer">The layer, in [0, L).</param>
    /// <param name="direction">0 forward, 1 reverse.</param>
    /// <returns>The block's offsets.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public RnnLayerBlock Block(int layer, int direction) => Shape.Block(layer, direction);

    /// <summary>Sets every element to zero.</summary>
    public void Clear() => Array.Clear(_values);

    /// <summary>Copies every value of <paramref name="source"/>, which must have the same shape.</summary>
    /// <param name="source">The block to copy from.</param>
    public void CopyFrom(RnnParameters source)
    {
        ArgumentNullException.ThrowIfNull(source);
        ModelGuard.SameShape(Shape, source.Shape, nameof(source));
        source._values.AsSpan().CopyTo(_values);
    }

    /// <summary>Returns a new block with the same shape and values.</summary>
    public RnnParameters Clone()
    {
        var copy = new RnnParameters(Shape);
        copy.CopyFrom(this);
        return copy;
    }

    /// <summary>
    /// Seeded Glorot (Xavier) uniform initialisation, the same on every machine for the same seed:
    /// each matrix W with fan-in n and fan-out m is drawn from U(−a, a), a = √(6 / (n + m)),
    /// so W_xh uses a = √(6/(Iₗ+H)), W_hh a = √(6/(2H)) and W_hy a = √(6/(D·H+O)); every bias is zero.
    /// The draws come from SplitMix64 seeded with <paramref name="seed"/>, in θ order (layer by layer, forward before
    /// reverse, then the head), so a one-layer network draws exactly what it always did.
    /// </summary>
    /// <param name="seed">Any value; equal seeds give bit-identical parameters.</param>
    public void InitializeGlorot(ulong seed)
    {
        var random = new SplitMix64(seed);
        int h = Shape.HiddenSize, o = Shape.OutputSize;
        for (int l = 0; l < Shape.Layers; l++)
        {
            for (int d = 0; d < Shape.Directions; d++)
            {
                Fill(LayerWxh(l, d), MathF.Sqrt(6f / ((float)Shape.LayerInputSize(l) + h)), ref random);
                Fill(LayerWhh(l, d), MathF.Sqrt(6f / (h + h)), ref random);
                LayerBh(l, d).Clear();
            }
        }

        Fill(Why, MathF.Sqrt(6f / ((float)Shape.LayerOutputSize + o)), ref random);
        By.Clear();
    }

    private static void Fill(Span<float> destination, float bound, ref SplitMix64 random)
    {
        for (int k = 0; k < destination.Length; k++)
        {
            destination[k] = ((2f * random.NextSingle()) - 1f) * bound;
        }
    }
}
