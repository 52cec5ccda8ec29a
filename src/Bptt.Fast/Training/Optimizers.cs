using System.Runtime.CompilerServices;
using Bptt.Fast.Internals;
using Bptt.Fast.Kernels.Bodies;

namespace Bptt.Fast.Training;

/// <summary>
/// Momentum: v ← μv + g′; classical θ ← θ − ηv, or Nesterov θ ← θ − η(g′ + μv) (the form PyTorch uses), with
/// g′ = ∂L/∂θ + λθ. State: the velocity v, in θ's layout.
/// </summary>
public sealed class Momentum : Optimizer
{
    /// <summary>Creates the optimizer.</summary>
    /// <param name="shape">The network sizes.</param>
    /// <param name="learningRate">η &gt; 0.</param>
    /// <param name="momentum">μ in [0, 1).</param>
    /// <param name="nesterov">Nesterov's look-ahead form.</param>
    /// <param name="weightDecay">λ ≥ 0.</param>
    public Momentum(RnnShape shape, float learningRate, float momentum = 0.9f, bool nesterov = false, float weightDecay = 0f)
        : base(shape, stateBlocks: 1)
    {
        Guard.Positive(learningRate, nameof(learningRate));
        Guard.UnitInterval(momentum, nameof(momentum));
        Guard.NonNegative(weightDecay, nameof(weightDecay));
        LearningRate = learningRate;
        MomentumFactor = momentum;
        Nesterov = nesterov;
        WeightDecay = weightDecay;
    }

    /// <summary>μ.</summary>
    public float MomentumFactor { get; }

    /// <summary>Whether the Nesterov form is used.</summary>
    public bool Nesterov { get; }

    /// <summary>λ.</summary>
    public float WeightDecay { get; }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override bool Update(Span<float> parameters, ReadOnlySpan<float> gradients, float gradientScale, bool commit) =>
        Kernels.Update(Rule(gradientScale), parameters, gradients, StateBlock(0), default, commit);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal override bool Admits(in UpdateExtent extent, float gradientScale) => Rule(gradientScale).Admits(extent);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private MomentumRule Rule(float gradientScale) => new(StepRate, MomentumFactor, WeightDecay, Nesterov, gradientScale);
}

/// <summary>Adagrad (Duchi, Hazan and Singer 2011): G ← G + g′²; θ ← θ − η g′/(√G + ε), g′ = ∂L/∂θ + λθ. State: G.</summary>
public sealed class Adagrad : Optimizer
{
    /// <summary>Creates the optimizer.</summary>
    /// <param name="shape">The network sizes.</param>
    /// <param name="learningRate">η &gt; 0 (0.1 is a common start for character models).</param>
    /// <param name="epsilon">ε &gt; 0.</param>
    /// <param name="weightDecay">λ ≥ 0.</param>
    public Adagrad(RnnShape shape, float learningRate, float epsilon = 1e-8f, float weightDecay = 0f)
        : base(shape, stateBlocks: 1)
    {
        Guard.Positive(learningRate, nameof(learningRate));
        Guard.Positive(epsilon, nameof(epsilon));
        Guard.NonNegative(weightDecay, nameof(weightDecay));
        LearningRate = learningRate;
        Epsilon = epsilon;
        WeightDecay = weightDecay;
    }

    /// <inheritdoc/>
    internal override bool LastStateNonNegative => true; // G, the sum of squared gradients

    /// <summary>ε.</summary>
    public float Epsilon { get; }

    /// <summary>λ.</summary>
    public float WeightDecay { get; }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override bool Update(Span<float> parameters, ReadOnlySpan<float> gradients, float gradientScale, bool commit) =>
        Kernels.Update(Rule(gradientScale), parameters, gradients, StateBlock(0), default, commit);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal override bool Admits(in UpdateExtent extent, float gradientScale) => Rule(gradientScale).Admits(extent);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private AdagradRule Rule(float gradientScale) => new(StepRate, Epsilon, WeightDecay, gradientScale);
}

/// <summary>
/// Adam (Kingma and Ba 2015, Algorithm 1, bias correction included): m ← β₁m + (1 − β₁)g′, v ← β₂v + (1 − β₂)g′²,
/// θ ← θ − α m̂/(√v̂ + ε), g′ = ∂L/∂θ + λθ (coupled L2 decay). State: m and v.
/// </summary>
public class Adam : Optimizer
{
    /// <summary>Creates the optimizer.</summary>
    /// <param name="shape">The network sizes.</param>
    /// <param name="learningRate">α &gt; 0.</param>
    /// <param name="beta1">β₁ in [0, 1).</param>
    /// <param name="beta2">β₂ in [0, 1).</param>
    /// <param name="epsilon">ε &gt; 0.</param>
    /// <param name="weightDecay">λ ≥ 0.</param>
    public Adam(RnnShape shape, float learningRate = 1e-3f, float beta1 = 0.9f, float beta2 = 0.999f, float epsilon = 1e-8f, float weightDecay = 0f)
        : base(shape, stateBlocks: 2)
    {
        Guard.Positive(learningRate, nameof(learningRate));
        Guard.UnitInterval(beta1, nameof(beta1));
        Guard.UnitInterval(beta2, nameof(beta2));
        Guard.Positive(epsilon, nameof(epsilon));
        Guard.NonNegative(weightDecay, nameof(weightDecay));
        LearningRate = learningRate;
        Beta1 = beta1;
        Beta2 = beta2;
        Epsilon = epsilon;
        WeightDecay = weightDecay;
    }

    /// <inheritdoc/>
    internal override bool LastStateNonNegative => true; // v, the moving average of squared gradients

    /// <summary>β₁.</summary>
    public float Beta1 { get; }

    /// <summary>β₂.</summary>
    public float Beta2 { get; }

    /// <summary>ε.</summary>
    public float Epsilon { get; }

    /// <summary>λ.</summary>
    public float WeightDecay { get; }

    /// <summary>Whether the decay is decoupled from the gradient (AdamW).</summary>
    protected virtual bool DecoupledWeightDecay
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        get => false;
    }

    /// <inheritdoc/>
    /// <remarks>Sealed: the step skips its exact probe when this rule's own bounds prove the result finite, so a subclass
    /// cannot swap the rule for another.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected sealed override bool Update(Span<float> parameters, ReadOnlySpan<float> gradients, float gradientScale, bool commit) =>
        Kernels.Update(Rule(gradientScale), parameters, gradients, StateBlock(0), StateBlock(1), commit);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal sealed override bool Admits(in UpdateExtent extent, float gradientScale) => Rule(gradientScale).Admits(extent);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private AdamRule Rule(float gradientScale) => new(StepRate, Beta1, Beta2, Epsilon, WeightDecay, DecoupledWeightDecay, StepCount + 1, gradientScale);
}

/// <summary>AdamW (Loshchilov and Hutter 2019): Adam on the plain gradient, and θ ← θ − αλθ decoupled from it.</summary>
public sealed class AdamW : Adam
{
    /// <summary>Creates the optimizer.</summary>
    /// <param name="shape">The network sizes.</param>
    /// <param name="learningRate">α &gt; 0.</param>
    /// <param name="weightDecay">λ ≥ 0 (0.01 by default).</param>
    /// <param name="beta1">β₁ in [0, 1).</param>
    /// <param name="beta2">β₂ in [0, 1).</param>
    /// <param name="epsilon">ε &gt; 0.</param>
    public AdamW(RnnShape shape, float learningRate = 1e-3f, float weightDecay = 0.01f, float beta1 = 0.9f, float beta2 = 0.999f, float epsilon = 1e-8f)
        : base(shape, learningRate, beta1, beta2, epsilon, weightDecay)
    {
    }

    /// <inheritdoc/>
    protected override bool DecoupledWeightDecay
    {
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        get => true;
    }
}
