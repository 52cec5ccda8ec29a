namespace Bptt.Fast.Model;

/// <summary>The one check of an <see cref="Activation"/> argument, for every entry point that takes one.</summary>
internal static class ActivationRule
{
    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming <paramref name="paramName"/> unless f is tanh, ReLU or sigmoid.</summary>
    /// <param name="activation">The value given.</param>
    /// <param name="paramName">The caller's parameter.</param>
    public static void Check(Activation activation, string paramName)
    {
        if (!Enum.IsDefined(activation))
        {
            throw new ArgumentOutOfRangeException(paramName, activation, "Expected Tanh, Relu or Sigmoid.");
        }
    }
}
