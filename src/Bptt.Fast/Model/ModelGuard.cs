using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace Bptt.Fast.Model;

/// <summary>Argument checks that know the model's types: shapes and parameter blocks.</summary>
internal static class ModelGuard
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void SameShape(RnnShape expected, RnnShape actual, string paramName)
    {
        if (expected != actual)
        {
            ShapeMismatch(expected, actual, paramName);
        }
    }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void ShapeMismatch(RnnShape expected, RnnShape actual, string paramName) =>
        throw new ArgumentException($"Shape mismatch: expected {expected}, actual {actual}.", paramName);

    /// <summary>Refuses a stacked or bidirectional shape where a component supports the one-layer network only.</summary>
    /// <param name="shape">The shape to check.</param>
    /// <param name="paramName">The parameter reported.</param>
    /// <param name="component">What refuses it, for the message.</param>
    public static void SingleLayer(RnnShape shape, string paramName, string component)
    {
        if (!shape.IsSingleLayer)
        {
            throw new ArgumentException(
                $"{component} supports one layer and one direction; expected Layers = 1 and Directions = 1, actual Layers = {shape.Layers}, Directions = {shape.Directions}.", paramName);
        }
    }

    /// <summary>θ and ∂L/∂θ: both given, both of <paramref name="shape"/>, and two different blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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
