using Bptt.Fast.Reference;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>The reference gradients (equations 7–16) against central finite differences of L, in double.</summary>
public sealed class GradientCheckTests
{

    [Fact]
    public void ReferenceGradientsMatchCentralDifferences() =>
        Generators.Check(Generators.Problems(maxSteps: 6, maxBatch: 3, maxSize: 7), CheckProblem, count: 60);

    [Theory]
    [InlineData(Activation.Tanh, false)]
    [InlineData(Activation.Relu, true)]
    [InlineData(Activation.Sigmoid, false)]
    [InlineData(Activation.Tanh, true)]
    public void SizesOfOneAreCovered(Activation activation, bool tokens) =>
        CheckProblem(new ProblemSpec(new RnnShape(1, 1, 1), 1, 1, activation, tokens, true, false, 7));

    private static void CheckProblem(ProblemSpec spec)
    {
        Problem<double> p = FindProblemAwayFromKinks(spec);
        RnnShape s = spec.Shape;
        var engine = new ReferenceBptt<double>(s, spec.Steps, spec.Batch, spec.Activation);
        var grad = new double[s.ParameterCount];
        var dh0 = new double[spec.Batch * s.HiddenSize];
        var dx = spec.Tokens ? [] : new double[p.Inputs.Length];
        engine.ComputeGradients(p.Theta, p.Batch(default, dh0, dx), grad);

        double Loss() => engine.Evaluate(p.Theta, p.Batch());
        for (int k = 0; k < p.Theta.Length; k++)
        {
            CentralDifferences.AssertClose(grad[k], CentralDifferences.Numeric(p.Theta, k, Loss), $"θ[{k}] ({Block(s, k)})", spec);
        }

        if (spec.WithH0)
        {
            for (int k = 0; k < p.H0.Length; k++)
            {
                CentralDifferences.AssertClose(dh0[k], CentralDifferences.Numeric(p.H0, k, Loss), $"h0[{k}]", spec);
            }
        }
        else
        {
            // Without a caller's h₀ the state starts at zero; the gradient with respect to that zero state is still W_hhᵀ δ₁.
            var withZeroH0 = new double[spec.Batch * s.HiddenSize];
            double LossZ() => engine.Evaluate(p.Theta, p.Batch() with { InitialState = withZeroH0 });
            for (int k = 0; k < withZeroH0.Length; k++)
            {
                CentralDifferences.AssertClose(dh0[k], CentralDifferences.Numeric(withZeroH0, k, LossZ), $"h0[{k}] (zero state)", spec);
            }
        }

        for (int k = 0; k < dx.Length; k++)
        {
            CentralDifferences.AssertClose(dx[k], CentralDifferences.Numeric(p.Inputs, k, Loss), $"x[{k}]", spec);
        }
    }

    /// <summary>Relu is not differentiable at 0: redraw until every pre-activation is at least 1e-3 away from it.</summary>
    private static Problem<double> FindProblemAwayFromKinks(ProblemSpec spec)
    {
        for (ulong attempt = 0; ; attempt++)
        {
            var p = new Problem<double>(spec with { Seed = spec.Seed + (attempt * 7919) });
            if (spec.Activation != Activation.Relu || IndependentForward.MinAbsPreActivation(p) > 1e-3)
            {
                return p;
            }
        }
    }

    private static string Block(RnnShape s, int k) =>
        k < s.WhhOffset ? "Wxh" : k < s.BhOffset ? "Whh" : k < s.WhyOffset ? "bh" : k < s.ByOffset ? "Why" : "by";
}
