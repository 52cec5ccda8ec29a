
namespace Bptt.Fast.Model;

/// <summary>Argument checks that know the model's types: shapes and parameter blocks.</summary>
internal static class ModelGuard
{
    public static void SameShape(RnnShape expected, RnnShape actual, string paramName)
    {
        if (expected != actual)
        {
            throw new ArgumentException($"Shape mismatch: expected {expected}, actual {actual}.", paramName);
        }
    }

    /// <summary>θ and ∂L/∂θ: both given, both of <paramref name="shape"/>, and two different blocks.</summary>
    public static void ParameterAndGradientBlocks(RnnShape shape, RnnParameters parameters, RnnParameters gradients)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(gradients);
        SameShape(shape, parameters.Shape, nameof(parameters));
        SameShape(shape, gradients.Shape, nameof(gradients));
        if (ReferenceEquals(parameters, gradients))
        {
            throw new ArgumentException("The gradient block must be a different object from the parameters.", nameof(gradients));
        }
    }
}
