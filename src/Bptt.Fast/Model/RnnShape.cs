namespace Bptt.Fast;

/// <summary>
/// The sizes of an Elman network: <c>I</c> inputs (or vocabulary size for token input), <c>H</c> hidden
/// units and <c>O</c> output classes. It also fixes the layout of the parameter block θ:
/// W_xh (H×I), W_hh (H×H), b_h (H), W_hy (O×H), b_y (O), contiguous and in that order.
/// </summary>
/// <param name="InputSize">I, the length of xₜ (or the number of distinct tokens).</param>
/// <param name="HiddenSize">H, the length of hₜ.</param>
/// <param name="OutputSize">O, the number of classes of the softmax output.</param>
public readonly record struct RnnShape(int InputSize, int HiddenSize, int OutputSize)
{
    /// <summary>Offset of W_xh (H×I, row-major) in θ: always 0.</summary>
    public int WxhOffset => 0;

    /// <summary>Offset of W_hh (H×H, row-major) in θ.</summary>
    public int WhhOffset => checked(HiddenSize * InputSize);

    /// <summary>Offset of b_h (H) in θ.</summary>
    public int BhOffset => checked(WhhOffset + (HiddenSize * HiddenSize));

    /// <summary>Offset of W_hy (O×H, row-major) in θ.</summary>
    public int WhyOffset => checked(BhOffset + HiddenSize);

    /// <summary>Offset of b_y (O) in θ.</summary>
    public int ByOffset => checked(WhyOffset + (OutputSize * HiddenSize));

    /// <summary>Total number of parameters: H·I + H·H + H + O·H + O (offsets and count are computed checked: a shape that
    /// <see cref="Validate"/> refuses may throw <see cref="OverflowException"/> here instead of wrapping).</summary>
    public int ParameterCount => checked(ByOffset + OutputSize);

    /// <summary>Prints the three sizes only (the offsets of an invalid shape are not defined). The record's ToString calls it.</summary>
#pragma warning disable IDE0051 // used by the compiler-generated ToString, which the analyzer does not see
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append($"InputSize = {InputSize}, HiddenSize = {HiddenSize}, OutputSize = {OutputSize}");
        return true;
    }
#pragma warning restore IDE0051

    /// <summary>The largest parameter count a shape may have (the block is one array).</summary>
    public const int MaxParameterCount = 1 << 30;

    /// <summary>Throws when any size is below 1 or the parameter block would not fit one array.</summary>
    /// <param name="paramName">The name reported in the exception.</param>
    public void Validate(string paramName)
    {
        if (InputSize < 1 || HiddenSize < 1 || OutputSize < 1)
        {
            throw new ArgumentOutOfRangeException(paramName, this,
                $"Every size of the shape must be at least 1; actual InputSize={InputSize}, HiddenSize={HiddenSize}, OutputSize={OutputSize}.");
        }

        // Each size is at most 2^30 here, so every product below is at most 2^60 and their sum cannot wrap a long.
        if (InputSize > MaxParameterCount || HiddenSize > MaxParameterCount || OutputSize > MaxParameterCount)
        {
            throw new ArgumentOutOfRangeException(paramName, this,
                $"The shape needs more than {MaxParameterCount} parameters (the largest supported); actual InputSize={InputSize}, HiddenSize={HiddenSize}, OutputSize={OutputSize}.");
        }

        long h = HiddenSize;
        long count = (h * InputSize) + (h * h) + h + ((long)OutputSize * h) + OutputSize;
        if (count > MaxParameterCount)
        {
            throw new ArgumentOutOfRangeException(paramName, this,
                $"The shape needs {count} parameters; at most {MaxParameterCount} are supported.");
        }
    }
}
