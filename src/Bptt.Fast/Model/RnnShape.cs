using System.Runtime.CompilerServices;

namespace Bptt.Fast;

/// <summary>
/// The sizes of an Elman network: <c>I</c> inputs (or vocabulary size for token input), <c>H</c> hidden units per layer
/// and direction, <c>O</c> output classes, <see cref="Layers"/> stacked recurrent layers (L, default 1) and
/// <see cref="Directions"/> (D: 1, or 2 for a bidirectional network). It also fixes the layout of the parameter block θ:
/// for each layer l = 0..L−1 and, within it, each direction d (forward, then reverse) one block
/// W_xh⁽ˡ'ᵈ⁾ (H×Iₗ), W_hh⁽ˡ'ᵈ⁾ (H×H), b_h⁽ˡ'ᵈ⁾ (H), with I₀ = I and Iₗ = D·H above the first layer; then the head
/// W_hy (O×D·H) and b_y (O). Everything is contiguous and in that order, so the one-layer, one-direction network of the
/// seed keeps its layout W_xh, W_hh, b_h, W_hy, b_y exactly.
/// </summary>
/// <param name="InputSize">I, the length of xₜ (or the number of distinct tokens).</param>
/// <param name="HiddenSize">H, the length of hₜ of each layer and direction.</param>
/// <param name="OutputSize">O, the number of classes of the softmax output.</param>
public readonly record struct RnnShape(int InputSize, int HiddenSize, int OutputSize)
{
    /// <summary>The largest number of stacked layers a shape may have.</summary>
    public const int MaxLayers = 64;

    /// <summary>L, the number of stacked recurrent layers (at least 1, default 1).</summary>
    public int Layers { get; init; } = 1;

    /// <summary>D, the number of directions: 1 (forward in time) or 2 (bidirectional: forward and reverse). Default 1.</summary>
    public int Directions { get; init; } = 1;

    /// <summary>Whether the network has a reverse direction (<see cref="Directions"/> = 2).</summary>
    public bool IsBidirectional => Directions == 2;

    /// <summary>Whether this is the seed's network: one layer, one direction.</summary>
    public bool IsSingleLayer => Layers == 1 && Directions == 1;

    /// <summary>D·H: the length of a layer's output [h⁽ˡ'→⁾ ; h⁽ˡ'←⁾], which the next layer and the head read.</summary>
    public int LayerOutputSize => checked(Directions * HiddenSize);

    /// <summary>The number of recurrent blocks (layer, direction): L·D.</summary>
    public int BlockCount => checked(Layers * Directions);

    /// <summary>Iₗ, the input length of layer <paramref name="layer"/>: I for the first layer, D·H above it.</summary>
    /// <param name="layer">The layer, 0-based.</param>
    /// <returns>The number of columns of W_xh⁽ˡ⁾.</returns>
    public int LayerInputSize(int layer) => layer == 0 ? InputSize : LayerOutputSize;

    /// <summary>Offset of W_xh (H×I, row-major) of the first layer's forward direction in θ: always 0.</summary>
    public int WxhOffset => 0;

    /// <summary>Offset of W_hh (H×H, row-major) of the first layer's forward direction in θ.</summary>
    public int WhhOffset => checked(HiddenSize * InputSize);

    /// <summary>Offset of b_h (H) of the first layer's forward direction in θ.</summary>
    public int BhOffset => checked(WhhOffset + (HiddenSize * HiddenSize));

    /// <summary>Offset of the head's W_hy (O×D·H, row-major) in θ.</summary>
    public int WhyOffset => checked(BlockOffset(Layers, 0));

    /// <summary>Offset of b_y (O) in θ.</summary>
    public int ByOffset => checked(WhyOffset + (OutputSize * LayerOutputSize));

    /// <summary>Total number of parameters: the L·D recurrent blocks, then O·D·H + O (offsets and count are computed checked:
    /// a shape that <see cref="Validate"/> refuses may throw <see cref="OverflowException"/> here instead of wrapping).</summary>
    public int ParameterCount => checked(ByOffset + OutputSize);

    /// <summary>Where the recurrent block of layer <paramref name="layer"/> and direction <paramref name="direction"/> lies in θ.</summary>
    /// <param name="layer">The layer, in [0, L).</param>
    /// <param name="direction">0 for forward in time, 1 for the reverse direction (bidirectional shapes only).</param>
    /// <returns>The offsets and sizes of W_xh⁽ˡ'ᵈ⁾, W_hh⁽ˡ'ᵈ⁾ and b_h⁽ˡ'ᵈ⁾.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The layer or the direction is out of range.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public RnnLayerBlock Block(int layer, int direction)
    {
        if ((uint)layer >= (uint)Layers)
        {
            throw new ArgumentOutOfRangeException(nameof(layer), layer, $"Expected a layer in [0, {Layers}), actual {layer}.");
        }

        if ((uint)direction >= (uint)Directions)
        {
            throw new ArgumentOutOfRangeException(nameof(direction), direction, $"Expected a direction in [0, {Directions}), actual {direction}.");
        }

        int inputs = LayerInputSize(layer), offset = BlockOffset(layer, direction);
        return new RnnLayerBlock(inputs, HiddenSize, offset);
    }

    /// <summary>The offset of block (layer, direction); (L, 0) is the end of the recurrent blocks, where the head starts.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int BlockOffset(int layer, int direction)
    {
        long h = HiddenSize;
        long first = (h * InputSize) + (h * h) + h;                // a block of the first layer
        long upper = (h * Directions * h) + (h * h) + h;           // a block above it
        long offset = layer == 0
            ? direction * first
            : (Directions * first) + ((((long)(layer - 1) * Directions) + direction) * upper);
        return checked((int)offset);
    }

    /// <summary>Prints the sizes; the layers and directions only when they are not the seed's 1 and 1. The record's ToString calls it.</summary>
#pragma warning disable IDE0051 // used by the compiler-generated ToString, which the analyzer does not see
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append($"InputSize = {InputSize}, HiddenSize = {HiddenSize}, OutputSize = {OutputSize}");
        if (!IsSingleLayer)
        {
            builder.Append($", Layers = {Layers}, Directions = {Directions}");
        }

        return true;
    }
#pragma warning restore IDE0051

    /// <summary>The largest parameter count a shape may have (the block is one array).</summary>
    public const int MaxParameterCount = 1 << 30;

    /// <summary>Throws when any size is below 1, the layers or directions are out of range, or the parameter block would not fit one array.</summary>
    /// <param name="paramName">The name reported in the exception.</param>
    public void Validate(string paramName)
    {
        if (InputSize < 1 || HiddenSize < 1 || OutputSize < 1)
        {
            throw new ArgumentOutOfRangeException(paramName, this,
                $"Every size of the shape must be at least 1; actual InputSize={InputSize}, HiddenSize={HiddenSize}, OutputSize={OutputSize}.");
        }

        if (Layers < 1 || Layers > MaxLayers)
        {
            throw new ArgumentOutOfRangeException(paramName, this, $"Expected Layers in [1, {MaxLayers}], actual {Layers}.");
        }

        if (Directions is not (1 or 2))
        {
            throw new ArgumentOutOfRangeException(paramName, this, $"Expected Directions 1 (forward) or 2 (bidirectional), actual {Directions}.");
        }

        // Each size is at most 2^30 here, so every product below is at most 2^62 (times L·D ≤ 128, checked) and cannot wrap silently.
        if (InputSize > MaxParameterCount || HiddenSize > MaxParameterCount || OutputSize > MaxParameterCount)
        {
            throw new ArgumentOutOfRangeException(paramName, this,
                $"The shape needs more than {MaxParameterCount} parameters (the largest supported); actual InputSize={InputSize}, HiddenSize={HiddenSize}, OutputSize={OutputSize}.");
        }

        long h = HiddenSize, d = Directions;
        long count;
        try
        {
            long first = checked((h * InputSize) + (h * h) + h);
            long upper = checked((h * d * h) + (h * h) + h);
            count = checked((d * first) + ((Layers - 1) * d * upper) + (OutputSize * d * h) + OutputSize);
        }
        catch (OverflowException)
        {
            count = long.MaxValue;
        }

        if (count > MaxParameterCount)
        {
            throw new ArgumentOutOfRangeException(paramName, this,
                $"The shape needs {count} parameters; at most {MaxParameterCount} are supported.");
        }
    }
}

/// <summary>Where one recurrent block (layer l, direction d) lies in θ: W_xh⁽ˡ'ᵈ⁾ (H×Iₗ), W_hh⁽ˡ'ᵈ⁾ (H×H), b_h⁽ˡ'ᵈ⁾ (H), contiguous.</summary>
/// <param name="InputSize">Iₗ, the columns of W_xh: I for the first layer, D·H above it.</param>
/// <param name="HiddenSize">H.</param>
/// <param name="WxhOffset">Offset of W_xh⁽ˡ'ᵈ⁾ in θ.</param>
public readonly record struct RnnLayerBlock(int InputSize, int HiddenSize, int WxhOffset)
{
    /// <summary>The number of elements of W_xh⁽ˡ'ᵈ⁾: H·Iₗ.</summary>
    public int WxhLength => HiddenSize * InputSize;

    /// <summary>Offset of W_hh⁽ˡ'ᵈ⁾ (H×H, row-major) in θ.</summary>
    public int WhhOffset => WxhOffset + WxhLength;

    /// <summary>Offset of b_h⁽ˡ'ᵈ⁾ (H) in θ.</summary>
    public int BhOffset => WhhOffset + (HiddenSize * HiddenSize);

    /// <summary>The offset just past the block.</summary>
    public int End => BhOffset + HiddenSize;
}
