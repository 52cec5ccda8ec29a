using Bptt.Fast.Reference;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>
/// A case small enough to work by hand: T = 2, I = H = O = 2, tanh, h₀ = 0, one sequence.
///
///   W_xh = [[0.5, −0.3], [0.2, 0.4]]   W_hh = [[0.1, 0.2], [−0.3, 0.05]]   b_h = [0.01, −0.02]
///   W_hy = [[0.7, −0.5], [0.3, 0.8]]   b_y = [0.05, −0.05]
///   x₁ = [1, 0], x₂ = [0, 1];  targets: class 1 at t = 1, class 0 at t = 2.
///
/// Forward:
///   (1) u₁ = W_xh x₁ + W_hh·0 + b_h = [0.5 + 0.01, 0.2 − 0.02] = [0.51, 0.18];   (2) h₁ = tanh(u₁)
///   (3) v₁ = W_hy h₁ + b_y;  (4) y₁ = softmax(v₁);  (6) L₁ = −ln y₁[1]
///   (1) u₂ = W_xh x₂ + W_hh h₁ + b_h = [−0.3 + 0.1h₁[0] + 0.2h₁[1] + 0.01,  0.4 − 0.3h₁[0] + 0.05h₁[1] − 0.02]
///   (2) h₂ = tanh(u₂);  v₂, y₂ as above;  L₂ = −ln y₂[0];  (5) L = L₁ + L₂
/// Backward:
///   (7) e₁ = y₁ − [0, 1],  e₂ = y₂ − [1, 0]
///   (11) δ₂ = (W_hyᵀ e₂) ⊙ (1 − h₂²)
///   (12) δ₁ = (W_hyᵀ e₁ + W_hhᵀ δ₂) ⊙ (1 − h₁²)
///   (8) ∂b_y = e₁ + e₂;  (9) ∂W_hy[k, j] = e₁[k]h₁[j] + e₂[k]h₂[j]
///   (13) ∂W_hh[i, j] = δ₁[i]·h₀[j] + δ₂[i]h₁[j] = δ₂[i]h₁[j]   (h₀ = 0)
///   (14) ∂W_xh[i, j] = δ₁[i]x₁[j] + δ₂[i]x₂[j]: column 0 is δ₁, column 1 is δ₂ (the inputs are one-hot)
///   (15) ∂b_h = δ₁ + δ₂;  (16) ∂h₀ = W_hhᵀ δ₁
/// Each line below is one of these lines, element by element, with Math.Tanh and Math.Exp.
/// </summary>
public sealed class WorkedExampleTests
{
    private static readonly double[] Theta =
    [
        0.5, -0.3, 0.2, 0.4,   // W_xh
        0.1, 0.2, -0.3, 0.05,  // W_hh
        0.01, -0.02,           // b_h
        0.7, -0.5, 0.3, 0.8,   // W_hy
        0.05, -0.05,           // b_y
    ];

    private static readonly double[] Inputs = [1, 0, 0, 1];
    private static readonly int[] Targets = [1, 0];

    [Fact]
    public void ReferenceMatchesTheHandDerivation()
    {
        Expected x = Derive();
        var engine = new ReferenceBptt<double>(new RnnShape(2, 2, 2), 2, 1, Activation.Tanh);
        var grad = new double[Theta.Length];
        var dh0 = new double[2];
        double loss = engine.ComputeGradients(Theta, new SequenceBatch<double>(2, 1, Inputs, Targets) { InitialStateGradient = dh0 }, grad);

        Assert.Equal(x.Loss, loss, 1e-12);
        AssertAll(x.H, engine.HiddenStates);
        AssertAll(x.Delta, engine.Deltas);
        AssertAll(x.Gradient, grad);
        AssertAll(x.H0Gradient, dh0);
    }

    [Fact]
    public void FastPathMatchesTheHandDerivation()
    {
        Expected x = Derive();
        var shape = new RnnShape(2, 2, 2);
        var theta = new RnnParameters(shape);
        var grad = new RnnParameters(shape);
        for (int k = 0; k < Theta.Length; k++)
        {
            theta.Values[k] = (float)Theta[k];
        }

        var engine = new BpttEngine(shape, 2);
        float loss = engine.ComputeGradients(theta, new SequenceBatch<float>(2, 1, [1f, 0f, 0f, 1f], Targets), grad);
        Assert.Equal(x.Loss, loss, 1e-5);
        for (int k = 0; k < Theta.Length; k++)
        {
            Assert.Equal(x.Gradient[k], grad.Values[k], 1e-5);
        }
    }

    private static void AssertAll(double[] expected, ReadOnlySpan<double> actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int k = 0; k < expected.Length; k++)
        {
            Assert.Equal(expected[k], actual[k], 1e-12);
        }
    }

    private sealed record Expected(double Loss, double[] H, double[] Delta, double[] Gradient, double[] H0Gradient);

    private static Expected Derive()
    {
        // (1)–(2), t = 1: u₁ = [0.51, 0.18].
        double h10 = Math.Tanh(0.51), h11 = Math.Tanh(0.18);

        // (3)–(4), (6), t = 1.
        double v10 = (0.7 * h10) - (0.5 * h11) + 0.05, v11 = (0.3 * h10) + (0.8 * h11) - 0.05;
        double z1 = Math.Exp(v10) + Math.Exp(v11);
        double y10 = Math.Exp(v10) / z1, y11 = Math.Exp(v11) / z1;
        double l1 = -Math.Log(y11);

        // (1)–(2), t = 2.
        double h20 = Math.Tanh(-0.3 + (0.1 * h10) + (0.2 * h11) + 0.01);
        double h21 = Math.Tanh(0.4 - (0.3 * h10) + (0.05 * h11) - 0.02);
        double v20 = (0.7 * h20) - (0.5 * h21) + 0.05, v21 = (0.3 * h20) + (0.8 * h21) - 0.05;
        double z2 = Math.Exp(v20) + Math.Exp(v21);
        double y20 = Math.Exp(v20) / z2, y21 = Math.Exp(v21) / z2;
        double l2 = -Math.Log(y20);

        // (7) errors.
        double e10 = y10, e11 = y11 - 1, e20 = y20 - 1, e21 = y21;

        // (11) δ₂ = (W_hyᵀ e₂) ⊙ (1 − h₂²).
        double d20 = ((0.7 * e20) + (0.3 * e21)) * (1 - (h20 * h20));
        double d21 = ((-0.5 * e20) + (0.8 * e21)) * (1 - (h21 * h21));

        // (12) δ₁ = (W_hyᵀ e₁ + W_hhᵀ δ₂) ⊙ (1 − h₁²);  W_hhᵀ = [[0.1, −0.3], [0.2, 0.05]].
        double d10 = ((0.7 * e10) + (0.3 * e11) + (0.1 * d20) - (0.3 * d21)) * (1 - (h10 * h10));
        double d11 = ((-0.5 * e10) + (0.8 * e11) + (0.2 * d20) + (0.05 * d21)) * (1 - (h11 * h11));

        double[] gradient =
        [
            d10, d20, d11, d21,                                        // (14) ∂W_xh: column 0 = δ₁, column 1 = δ₂
            d20 * h10, d20 * h11, d21 * h10, d21 * h11,                // (13) ∂W_hh = δ₂ h₁ᵀ
            d10 + d20, d11 + d21,                                      // (15) ∂b_h
            (e10 * h10) + (e20 * h20), (e10 * h11) + (e20 * h21),      // (9)  ∂W_hy row 0
            (e11 * h10) + (e21 * h20), (e11 * h11) + (e21 * h21),      // (9)  ∂W_hy row 1
            e10 + e20, e11 + e21,                                      // (8)  ∂b_y
        ];

        // (16) ∂h₀ = W_hhᵀ δ₁.
        double[] dh0 = [(0.1 * d10) - (0.3 * d11), (0.2 * d10) + (0.05 * d11)];
        return new Expected(l1 + l2, [h10, h11, h20, h21], [d10, d11, d20, d21], gradient, dh0);
    }
}
