using System.Runtime.CompilerServices;
using Bptt.Fast.Internals;
using Bptt.Fast.Model;
using Bptt.Fast.Kernels;
using Bptt.Fast.Kernels.Bodies;

namespace Bptt.Fast.Training;

/// <summary>
/// Applies θ ← update(θ, ∂L/∂θ) over the single parameter block, after the whole gradient is known (docs/design.md, section 1:
/// the derivation differentiates with respect to one fixed θ, so no weight changes while the gradient is still being summed).
/// A step whose loss or gradient holds NaN or ±∞, or whose result would (an overflow from finite inputs, or a non-finite
/// state restored from outside), is refused: <see cref="Step(RnnParameters, RnnParameters, float, float)"/> returns false and θ and the optimizer state stay
/// bit-identical. A step allocates nothing.
/// </summary>
public abstract class Optimizer
{
    private readonly RnnParameters[] _state;
    private float _learningRate = 1f;
    private float _stepRate = 1f;
    private SingleCaller _gate;

    /// <summary>Creates an optimizer for blocks of <paramref name="shape"/> with <paramref name="stateBlocks"/> blocks of state.</summary>
    /// <param name="shape">The network sizes.</param>
    /// <param name="stateBlocks">How many θ-shaped state blocks the rule keeps (momentum: 1, Adam: 2).</param>
    protected Optimizer(RnnShape shape, int stateBlocks = 0)
    {
        shape.Validate(nameof(shape));
        Shape = shape;
        _state = new RnnParameters[stateBlocks];
        for (int k = 0; k < stateBlocks; k++)
        {
            _state[k] = new RnnParameters(shape);
        }
    }

    /// <summary>The kernels of the process's instruction set (the same choice as every engine's).</summary>
    internal KernelSet Kernels { get; } = KernelSets.Current();

    /// <summary>The optimizer's state, each block in θ's layout (for checkpoints): velocity, accumulators, moments.</summary>
    public IReadOnlyList<RnnParameters> State => _state;

    /// <summary>The network sizes.</summary>
    public RnnShape Shape { get; }

    /// <summary>The largest step count an optimizer reaches (2^53, exact in double and far beyond any run): beyond it
    /// <see cref="Step(RnnParameters, RnnParameters, float, float)"/> throws instead of wrapping the counter, and checkpoints holding more are refused.</summary>
    public const long MaxStepCount = 1L << 53;

    /// <summary>
    /// The learning rate (η, or Adam's α): finite and &gt; 0. It may change between steps, for a schedule: the state and
    /// the step count carry over, and a step reads the rate once, when it starts.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A value that is not finite and &gt; 0.</exception>
    public float LearningRate
    {
        get => _learningRate;
        set
        {
            Guard.Positive(value, nameof(LearningRate));
            _learningRate = value;
        }
    }

    /// <summary>The learning rate of the step in progress: <see cref="LearningRate"/> read once as the step starts, so that
    /// the screen's bounds and the update use the same rate even if another thread sets it meanwhile.</summary>
    internal float StepRate => _stepRate;

    /// <summary>
    /// The optimizer's concurrency gate: <c>Step</c>, <see cref="Reset"/> and <see cref="RestoreStepCount"/> take it, so that
    /// a second thread inside a call of the same optimizer gets <see cref="InvalidOperationException"/> instead of a lost
    /// step count or a screen that no longer describes the state; the trainer holds it for its whole call.
    /// </summary>
    internal ref SingleCaller Gate
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => ref _gate;
    }

    /// <summary>The number of steps applied so far (refused steps do not count).</summary>
    public long StepCount { get; protected set; }

    /// <summary>
    /// Applies one update if <paramref name="loss"/> and every gradient element are finite; otherwise changes nothing.
    /// </summary>
    /// <param name="parameters">θ, updated in place.</param>
    /// <param name="gradients">∂L/∂θ, read only.</param>
    /// <param name="loss">The loss of the step (optional); a non-finite loss refuses the step.</param>
    /// <returns>True when the update was applied; false when it was refused for a non-finite loss or gradient.</returns>
    /// <exception cref="ArgumentNullException">A block is null.</exception>
    /// <exception cref="ArgumentException">A block of another shape, or the same block for θ and the gradient.</exception>
    /// <exception cref="InvalidOperationException">The step count has reached <see cref="MaxStepCount"/>, or another thread is inside a call of this optimizer.</exception>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)] // not inlined, so that WarmUp compiles it
    public bool Step(RnnParameters parameters, RnnParameters gradients, float loss = 0f) => Step(parameters, gradients, loss, 1f);

    /// <summary>
    /// As <see cref="Step(RnnParameters, RnnParameters, float)"/>, with the gradient multiplied by
    /// <paramref name="gradientScale"/> inside the update (clipping by global norm fused into the step: no separate pass
    /// over the gradient, which stays unscaled).
    /// </summary>
    /// <param name="parameters">θ, updated in place.</param>
    /// <param name="gradients">∂L/∂θ, read only.</param>
    /// <param name="loss">The loss of the step; a non-finite loss refuses the step.</param>
    /// <param name="gradientScale">The factor applied to every gradient element, finite and &gt; 0 (1: none).</param>
    /// <returns>True when the update was applied; false when it was refused.</returns>
    /// <exception cref="ArgumentNullException">A block is null.</exception>
    /// <exception cref="ArgumentException">A block of another shape, or the same block for θ and the gradient.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="gradientScale"/> is not finite and &gt; 0.</exception>
    /// <exception cref="InvalidOperationException">The step count has reached <see cref="MaxStepCount"/>, or another thread is inside a call of this optimizer.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool Step(RnnParameters parameters, RnnParameters gradients, float loss, float gradientScale)
    {
        _gate.Enter(this);
        try
        {
            return StepCore(parameters, gradients, loss, gradientScale);
        }
        finally
        {
            _gate.Exit();
        }
    }

    /// <summary>The step, for a caller that holds <see cref="Gate"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private bool StepCore(RnnParameters parameters, RnnParameters gradients, float loss, float gradientScale)
    {
        CheckStep(parameters, gradients);
        Guard.Positive(gradientScale, nameof(gradientScale));
        return float.IsFinite(loss) && Apply(parameters.Values, gradients.Values, gradientScale, Screen(parameters, gradients));
    }

    /// <summary>
    /// The trainer's step: clipping by global norm and the update in two passes over θ, g and the state instead of four.
    /// The screen's pass yields ‖g‖ (exactly as <see cref="GradientClipping.GlobalNorm"/> computes it), then the step runs
    /// as <see cref="Step(RnnParameters, RnnParameters, float, float)"/> with g scaled by min(1, clip/‖g‖). When
    /// <paramref name="screened"/>, θ and the state were already measured by <see cref="ScreenParameters"/> and only g is
    /// read before the update: the caller guarantees that neither changed since (the trainer measures them as its call
    /// starts, and between then and its first step only the engine runs, which reads θ). The caller holds
    /// <see cref="Gate"/> (the trainer for its whole call, <see cref="WarmUp"/> for its own).
    /// </summary>
    /// <param name="parameters">θ, updated in place.</param>
    /// <param name="gradients">∂L/∂θ, read only.</param>
    /// <param name="loss">The loss of the step; a non-finite loss refuses the step.</param>
    /// <param name="clipNorm">The largest norm g keeps, finite and ≥ 0 (0: no clipping).</param>
    /// <param name="norm">‖g‖₂ before clipping (NaN or ∞ when an element is).</param>
    /// <param name="parametersExtent">θ's and the state's extent when <paramref name="screened"/>.</param>
    /// <param name="screened">Whether <paramref name="parametersExtent"/> holds them.</param>
    /// <returns>True when the update was applied; false when it was refused.</returns>
    [MethodImpl(MethodImplOptions.NoInlining | MethodImplOptions.AggressiveOptimization)]
    internal bool StepClipped(RnnParameters parameters, RnnParameters gradients, float loss, float clipNorm, out double norm, in UpdateExtent parametersExtent, bool screened)
    {
        CheckStep(parameters, gradients);
        Guard.NonNegative(clipNorm, nameof(clipNorm));
        UpdateExtent extent = screened ? Combine(parametersExtent, Kernels.Screen(gradients.Values, gradients.Values, default, default, 0)) : Screen(parameters, gradients);
        norm = Math.Sqrt(extent.SumOfSquares);
        float scale = double.IsFinite(norm) && norm > clipNorm && clipNorm > 0 ? (float)(clipNorm / norm) : 1f;
        return float.IsFinite(loss) && Apply(parameters.Values, gradients.Values, scale, extent);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void CheckStep(RnnParameters parameters, RnnParameters gradients)
    {
        _stepRate = _learningRate;
        ModelGuard.ParameterAndGradientBlocks(Shape, parameters, gradients);
        if (StepCount >= MaxStepCount)
        {
            throw new InvalidOperationException($"The step count has reached its limit: expected at most {MaxStepCount} steps, actual {StepCount}.");
        }
    }

    /// <summary>
    /// θ's and the state's part of the screen, ahead of the gradient: one pass over θ and the state blocks (θ also stands
    /// in for g, whose fields are then meaningless; its second read comes from L1). The trainer runs it where it must check
    /// θ anyway, so the check and the screen share one read of θ. <see cref="UpdateExtent.Finite"/> false means θ or the
    /// state holds a NaN or ±∞.
    /// </summary>
    /// <param name="parameters">θ, of this optimizer's shape (the caller checked).</param>
    /// <returns>The extent of θ and the state.</returns>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal UpdateExtent ScreenParameters(RnnParameters parameters) =>
        Kernels.Screen(parameters.Values, parameters.Values, _state.Length >= 1 ? _state[0].Values : default, _state.Length >= 2 ? _state[1].Values : default, _state.Length);

    /// <summary>The extent of θ and the state from <paramref name="parameters"/>, of g from <paramref name="gradient"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static UpdateExtent Combine(in UpdateExtent parameters, in UpdateExtent gradient) =>
        new(parameters.Finite && gradient.Finite, parameters.Theta, gradient.Gradient, parameters.State0, parameters.State1, parameters.LastStateNonNegative, gradient.SumOfSquares);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private UpdateExtent Screen(RnnParameters parameters, RnnParameters gradients) =>
        Kernels.Screen(parameters.Values, gradients.Values, _state.Length >= 1 ? _state[0].Values : default, _state.Length >= 2 ? _state[1].Values : default, _state.Length);

    /// <summary>
    /// Applies the update unless a new value of θ or of the state would be NaN or ±∞. When the screen's bounds prove every
    /// new value finite (the common case: finite inputs far from float's range), the update is committed in one pass;
    /// otherwise an exact probe computes every new value without writing, and the step is refused if any is non-finite
    /// (a NaN or ±∞ in the gradient, the state or θ, or an overflow from finite inputs), leaving everything bit-identical.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private bool Apply(Span<float> parameters, ReadOnlySpan<float> gradients, float scale, in UpdateExtent extent)
    {
        if (!(extent.Finite && Admits(extent, scale)) && !Update(parameters, gradients, scale, commit: false))
        {
            return false;
        }

        Update(parameters, gradients, scale, commit: true);
        StepCount++;
        return true;
    }

    /// <summary>
    /// Whether the built-in rule's bounds prove that inputs within <paramref name="extent"/> give finite results (see
    /// <see cref="IUpdateRule.Admits"/>). False (the default, and for every rule defined outside this library) leaves the
    /// decision to the exact probe.
    /// </summary>
    /// <param name="extent">The inputs' extent.</param>
    /// <param name="gradientScale">The factor g is multiplied by.</param>
    /// <returns>Whether the probe may be skipped.</returns>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal virtual bool Admits(in UpdateExtent extent, float gradientScale) => false;

    /// <summary>Whether the last state block holds sums of squares (Adagrad's G, Adam's v), which are never negative:
    /// a checkpoint refuses to save or load one with a sign bit set, which would make every later step refused.</summary>
    internal virtual bool LastStateNonNegative => false;

    /// <summary>
    /// Compiles the whole step before the first real one: both <c>Step</c> overloads, the update rule in its probe and
    /// commit modes, and the refused path, each run on a throwaway θ and gradient of zeros. A step writes the optimizer's
    /// state and step count, so both are saved first and restored after, under the optimizer's gate: the optimizer is
    /// left exactly as it was. It allocates its dummy data; call it once, after construction.
    /// </summary>
    public void WarmUp()
    {
        var theta = new RnnParameters(Shape);
        var gradients = new RnnParameters(Shape);
        RnnParameters[] saved = [.. _state.Select(block => block.Clone())];
        _gate.Enter(this);
        long steps = StepCount;
        try
        {
            _stepRate = _learningRate;
            Update(theta.Values, gradients.Values, 1f, commit: false);
            Update(theta.Values, gradients.Values, 1f, commit: true);
            if (steps < MaxStepCount)
            {
                StepCore(theta, gradients, 0f, 1f);
                StepCore(theta, gradients, float.NaN, 1f);
                StepClipped(theta, gradients, 0f, 1f, out _, default, screened: false);
                StepClipped(theta, gradients, 0f, 1f, out _, ScreenParameters(theta), screened: true);
            }
        }
        finally
        {
            for (int k = 0; k < saved.Length; k++)
            {
                saved[k].Values.CopyTo(_state[k].Values);
            }

            StepCount = steps;
            _gate.Exit();
        }

        if (StepCount < MaxStepCount)
        {
            Step(theta, gradients, float.NaN); // the public overloads too: a refused step (non-finite loss) changes nothing
        }
    }

    /// <summary>Clears the state and the step count, as if new.</summary>
    public void Reset()
    {
        _gate.Enter(this);
        foreach (RnnParameters block in _state)
        {
            block.Clear();
        }

        StepCount = 0;
        _gate.Exit();
    }

    /// <summary>Sets the step count, e.g. when restoring a checkpoint together with <see cref="State"/>.</summary>
    /// <param name="stepCount">The number of steps applied so far, at least 0.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="stepCount"/> is outside [0, <see cref="MaxStepCount"/>].</exception>
    public void RestoreStepCount(long stepCount)
    {
        if (stepCount < 0 || stepCount > MaxStepCount)
        {
            throw new ArgumentOutOfRangeException(nameof(stepCount), stepCount, $"Expected a step count in [0, {MaxStepCount}], actual {stepCount}.");
        }

        _gate.Enter(this);
        StepCount = stepCount;
        _gate.Exit();
    }

    /// <summary>The state block <paramref name="index"/> as a span.</summary>
    /// <param name="index">The block.</param>
    /// <returns>The block's values.</returns>
    protected Span<float> StateBlock(int index) => _state[index].Values;

    /// <summary>
    /// The update rule itself, called only with finite gradients of the right shape. With <paramref name="commit"/> false
    /// it computes the new θ and state without writing anything and returns whether every new value is finite; with
    /// <paramref name="commit"/> true it writes them, with exactly the same arithmetic. <see cref="Step(RnnParameters, RnnParameters, float, float)"/> commits only
    /// after a probe returned true.
    /// </summary>
    /// <param name="parameters">θ.</param>
    /// <param name="gradients">∂L/∂θ.</param>
    /// <param name="gradientScale">The factor every gradient element is multiplied by before the rule uses it (1: none).</param>
    /// <param name="commit">Write the result (true) or only check it (false).</param>
    /// <returns>Whether every new value of θ and of the state is finite (probe mode); true after a commit.</returns>
    protected abstract bool Update(Span<float> parameters, ReadOnlySpan<float> gradients, float gradientScale, bool commit);
}

/// <summary>The seed's rule, plain gradient descent: θ ← θ − η (∂L/∂θ + λθ), with λ = 0 by default.</summary>
public sealed class GradientDescent : Optimizer
{
    /// <summary>Creates the optimizer.</summary>
    /// <param name="shape">The network sizes.</param>
    /// <param name="learningRate">η, finite and &gt; 0.</param>
    /// <param name="weightDecay">λ, finite and ≥ 0 (L2 penalty ½λ‖θ‖² added to the loss).</param>
    public GradientDescent(RnnShape shape, float learningRate, float weightDecay = 0f)
        : base(shape)
    {
        Guard.Positive(learningRate, nameof(learningRate));
        Guard.NonNegative(weightDecay, nameof(weightDecay));
        LearningRate = learningRate;
        WeightDecay = weightDecay;
    }

    /// <summary>λ.</summary>
    public float WeightDecay { get; }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected override bool Update(Span<float> parameters, ReadOnlySpan<float> gradients, float gradientScale, bool commit) =>
        Kernels.Update(Rule(gradientScale), parameters, gradients, default, default, commit);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal override bool Admits(in UpdateExtent extent, float gradientScale) => Rule(gradientScale).Admits(extent);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private GradientDescentRule Rule(float gradientScale) => new(StepRate, WeightDecay, gradientScale);
}
