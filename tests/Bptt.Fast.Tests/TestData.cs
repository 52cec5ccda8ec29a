using System.Numerics;
using Bptt.Fast.Internals;

namespace Bptt.Fast.Tests;

/// <summary>A random BPTT problem: shape, options and data, all drawn from one seed (deterministic).</summary>
public sealed record ProblemSpec(RnnShape Shape, int Steps, int Batch, Activation Activation, bool Tokens, bool WithH0, bool Ragged, ulong Seed)
{
    public override string ToString() =>
        $"I={Shape.InputSize} H={Shape.HiddenSize} O={Shape.OutputSize}{(Shape.IsSingleLayer ? "" : $" L={Shape.Layers} D={Shape.Directions}")} T={Steps} B={Batch} {Activation} {(Tokens ? "tokens" : "dense")}{(WithH0 ? " h0" : "")}{(Ragged ? " ragged" : "")} seed={Seed}";
}

/// <summary>The arrays of one problem in element type T (double for oracles, float for the engine).</summary>
public sealed class Problem<T>
    where T : unmanaged, IFloatingPointIeee754<T>
{
    public Problem(ProblemSpec spec, double weightScale = 0.6)
    {
        Spec = spec;
        RnnShape s = spec.Shape;
        var random = new SplitMix64(spec.Seed);
        int rows = spec.Steps * spec.Batch;
        Theta = new T[s.ParameterCount];
        for (int k = 0; k < Theta.Length; k++)
        {
            Theta[k] = T.CreateChecked((float)(((2 * random.NextDouble()) - 1) * weightScale));
        }

        Inputs = spec.Tokens ? [] : new T[rows * s.InputSize];
        for (int k = 0; k < Inputs.Length; k++)
        {
            Inputs[k] = T.CreateChecked((float)((2 * random.NextDouble()) - 1));
        }

        Tokens = spec.Tokens ? new int[rows] : [];
        for (int k = 0; k < Tokens.Length; k++)
        {
            Tokens[k] = random.NextInt32(s.InputSize);
        }

        Targets = new int[rows];
        for (int k = 0; k < rows; k++)
        {
            // About one step in twelve has its target ignored (no loss there, the state still advances).
            Targets[k] = random.NextInt32(12) == 0 && k > 0 ? SequenceBatch<T>.IgnoreTarget : random.NextInt32(s.OutputSize);
        }

        H0 = spec.WithH0 ? new T[s.BlockCount * spec.Batch * s.HiddenSize] : [];
        for (int k = 0; k < H0.Length; k++)
        {
            H0[k] = T.CreateChecked((float)((2 * random.NextDouble()) - 1) * 0.8f);
        }

        Lengths = spec.Ragged ? new int[spec.Batch] : [];
        for (int b = 0; b < Lengths.Length; b++)
        {
            Lengths[b] = 1 + random.NextInt32(spec.Steps);
        }

        if (spec.Ragged)
        {
            Lengths[0] = spec.Steps; // at least one full-length sequence
        }

        // Steps past a sequence's length are never read: their token ids are garbage, outside [0, I) where the engine would
        // fault or throw if it gathered them.
        int[] garbage = [-1, -7, s.InputSize, int.MaxValue, int.MinValue];
        for (int k = 0; k < Tokens.Length && Lengths.Length > 0; k++)
        {
            if (k / spec.Batch >= Lengths[k % spec.Batch])
            {
                Tokens[k] = garbage[k % garbage.Length];
            }
        }
    }

    public ProblemSpec Spec { get; }

    public T[] Theta { get; }

    public T[] Inputs { get; }

    public int[] Tokens { get; }

    public int[] Targets { get; }

    public T[] H0 { get; }

    public int[] Lengths { get; }

    public SequenceBatch<T> Batch(Span<T> finalState = default, Span<T> h0Gradient = default, Span<T> inputGradient = default, Span<T> hiddenStates = default) =>
        Spec.Tokens
            ? new SequenceBatch<T>(Spec.Steps, Spec.Batch, Tokens, Targets) { InitialState = H0, Lengths = Lengths, FinalState = finalState, InitialStateGradient = h0Gradient, HiddenStates = hiddenStates }
            : new SequenceBatch<T>(Spec.Steps, Spec.Batch, Inputs, Targets) { InitialState = H0, Lengths = Lengths, FinalState = finalState, InitialStateGradient = h0Gradient, InputGradient = inputGradient, HiddenStates = hiddenStates };

    public int LengthOf(int b) => Lengths.Length == 0 ? Spec.Steps : Lengths[b];

    /// <summary>The same problem in another element type (values converted exactly from float).</summary>
    public Problem<TOther> As<TOther>()
        where TOther : unmanaged, IFloatingPointIeee754<TOther>
    {
        var other = new Problem<TOther>(Spec);
        for (int k = 0; k < Theta.Length; k++)
        {
            other.Theta[k] = TOther.CreateChecked(Theta[k]);
        }

        return other;
    }
}

public static class Tolerance
{
    /// <summary>max |a − b| relative to max |b| (with an absolute floor).</summary>
    public static double MaxRelative(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected, double floor = 1e-6)
    {
        double scale = floor, worst = 0;
        for (int k = 0; k < expected.Length; k++)
        {
            scale = Math.Max(scale, Math.Abs(expected[k]));
        }

        for (int k = 0; k < expected.Length; k++)
        {
            double d = Math.Abs(actual[k] - expected[k]);
            worst = double.IsNaN(d) ? double.PositiveInfinity : Math.Max(worst, d);
        }

        return worst / scale;
    }

    /// <summary>A block of the fast engine's results against the double oracle: max error relative to the block's largest element (floor 1e-3) ≤ tol.</summary>
    public static void AssertBlock(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected, double tol, string what)
    {
        double error = MaxRelative(actual, expected, floor: 1e-3);
        Xunit.Assert.True(error <= tol, $"{what}: max error {error:E2} relative to the block's largest element > {tol:E2}");
    }
}
