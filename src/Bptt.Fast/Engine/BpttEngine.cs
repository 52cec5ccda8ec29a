using System.Runtime.CompilerServices;
using Bptt.Fast.Engine;
using Bptt.Fast.Internals;
using Bptt.Fast.Model;
using Bptt.Fast.Kernels;
using Bptt.Fast.Reference;

namespace Bptt.Fast;

/// <summary>
/// Computes the loss and the BPTT gradient of an Elman network over a batch of sequences (docs/design.md, section 1).
/// The engine owns every buffer, sized once from (maxSteps, maxBatch): after construction a call allocates nothing.
/// One engine serves one thread at a time (use one engine per thread); a call that overlaps another call of the same
/// engine throws <see cref="InvalidOperationException"/> instead of mixing their buffers.
/// </summary>
public sealed class BpttEngine
{
    private readonly IBpttCore _core;
    private SingleCaller _gate;

    /// <summary>The engine's concurrency gate, for a caller that runs several engine calls as one of its own (the trainer).</summary>
    internal ref SingleCaller Gate
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => ref _gate;
    }

    /// <summary>Creates an engine and its workspace.</summary>
    /// <param name="shape">The network sizes.</param>
    /// <param name="maxSteps">The largest T a call may use (at least 1).</param>
    /// <param name="maxBatch">The largest B a call may use (at least 1).</param>
    /// <param name="activation">The recurrent non-linearity f of equation (2).</param>
    /// <param name="path">The fast path (default) or the scalar reference path.</param>
    /// <param name="maxWorkspaceBytes">The most memory the workspace may take (default <see cref="DefaultMaxWorkspaceBytes"/>).</param>
    /// <param name="dropout">The inverted-dropout probability p between stacked layers, in [0, 1) (default 0): applied by
    /// <see cref="ComputeGradients"/> only, with the mask drawn from <see cref="SequenceBatch{T}.DropoutSeed"/>; <see cref="Evaluate"/> never drops.</param>
    /// <exception cref="ArgumentOutOfRangeException">A size below 1, a shape above <see cref="RnnShape.MaxParameterCount"/>
    /// parameters, maxSteps above 2^20, maxBatch above 2^16, an undefined enum value, a dropout outside [0, 1), or a workspace above
    /// <paramref name="maxWorkspaceBytes"/> (or a buffer above <see cref="Array.MaxLength"/> elements).</exception>
    public BpttEngine(RnnShape shape, int maxSteps, int maxBatch = 1, Activation activation = Activation.Tanh, KernelPath path = KernelPath.Fast, long maxWorkspaceBytes = DefaultMaxWorkspaceBytes, float dropout = 0f)
        : this(shape, maxSteps, maxBatch, activation, path, KernelInfo.Isa, maxWorkspaceBytes, dropout)
    {
    }

    /// <summary>An engine whose fast path runs the kernels of <paramref name="isa"/> (tests and benchmarks compare ISAs in one process).</summary>
    internal BpttEngine(RnnShape shape, int maxSteps, int maxBatch, Activation activation, KernelPath path, KernelIsa isa, long maxWorkspaceBytes = DefaultMaxWorkspaceBytes, float dropout = 0f)
    {
        EngineLimits.Check(shape, maxSteps, maxBatch, activation, maxWorkspaceBytes);
        DropoutMask.CheckRate(dropout, nameof(dropout));
        if (!Enum.IsDefined(path))
        {
            throw new ArgumentOutOfRangeException(nameof(path), path, "Expected Fast or Reference.");
        }

        Shape = shape;
        MaxSteps = maxSteps;
        MaxBatch = maxBatch;
        Activation = activation;
        Path = path;
        Dropout = dropout;
        if (path == KernelPath.Reference)
        {
            EngineLimits.CheckWorkspace(ReferenceBptt<float>.WorkspaceBytes(shape, maxSteps, maxBatch), maxWorkspaceBytes, maxSteps, maxBatch);
            _core = new ReferenceCore(shape, maxSteps, maxBatch, activation, dropout);
            Isa = KernelIsa.Scalar;
        }
        else
        {
            KernelSet kernels = KernelSets.For(isa, activation);
            EngineLimits.CheckWorkspace(FastBptt.Plan(shape, maxSteps, maxBatch, kernels, dropout).Bytes, maxWorkspaceBytes, maxSteps, maxBatch);
            _core = new FastBptt(shape, maxSteps, maxBatch, kernels, dropout);
            Isa = isa;
        }
    }

    /// <summary>
    /// The default workspace budget of an engine, 1 GiB: a constructor whose buffers for (maxSteps, maxBatch) would need
    /// more throws instead of reserving it. Pass a larger maxWorkspaceBytes to allow more (buffers are still limited to
    /// <see cref="Array.MaxLength"/> elements each).
    /// </summary>
    public const long DefaultMaxWorkspaceBytes = 1L << 30;

    /// <summary>The network sizes.</summary>
    public RnnShape Shape { get; }

    /// <summary>The largest T a call may use.</summary>
    public int MaxSteps { get; }

    /// <summary>The largest B a call may use.</summary>
    public int MaxBatch { get; }

    /// <summary>The recurrent non-linearity f.</summary>
    public Activation Activation { get; }

    /// <summary>The dropout probability p between stacked layers of a training pass (0: none).</summary>
    public float Dropout { get; }

    /// <summary>Which implementation runs.</summary>
    public KernelPath Path { get; }

    /// <summary>The instruction set the fast path runs on (<see cref="KernelInfo.Isa"/> unless chosen internally); Scalar for the reference path.</summary>
    public KernelIsa Isa { get; }

    /// <summary>
    /// Runs the forward and backward pass and returns L = Σ_b Σₜ Lₜ (equations 1–16). Writes ∂L/∂θ into
    /// <paramref name="gradients"/>: it overwrites it, or adds to it when <paramref name="accumulate"/> is true.
    /// Also writes the optional outputs of <paramref name="batch"/> (final state, ∂L/∂h₀, ∂L/∂x, every hₜ).
    /// Every argument is checked before anything is written; a call that throws changes nothing.
    /// </summary>
    /// <param name="parameters">θ; must match <see cref="Shape"/> and be finite.</param>
    /// <param name="batch">The sequences; T ≤ <see cref="MaxSteps"/>, B ≤ <see cref="MaxBatch"/>.</param>
    /// <param name="gradients">Receives ∂L/∂θ; a different block of the same shape.</param>
    /// <param name="accumulate">Add to <paramref name="gradients"/> instead of overwriting it.</param>
    /// <returns>The loss L; NaN or ±∞ only if the arithmetic overflowed.</returns>
    /// <exception cref="ArgumentNullException">A block is null.</exception>
    /// <exception cref="ArgumentException">A shape or length mismatch, non-finite θ or dense input, or a writable span
    /// (∂L/∂θ, FinalState, InitialStateGradient, InputGradient, HiddenStates) that overlaps any other argument.</exception>
    /// <exception cref="ArgumentOutOfRangeException">T or B out of [1, max], a length out of [1, T], or a token or target id out of range.</exception>
    /// <exception cref="InvalidOperationException">Another thread is inside a call of this engine.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public float ComputeGradients(RnnParameters parameters, in SequenceBatch<float> batch, RnnParameters gradients, bool accumulate = false) =>
        ComputeGradientsCore(parameters, in batch, gradients, accumulate, parametersFinite: false);

    /// <summary>
    /// <see cref="ComputeGradients(RnnParameters, in SequenceBatch{float}, RnnParameters, bool)"/> for a caller that has
    /// already checked, in this call, that θ is finite (the trainer checks θ once per <c>Train</c> call, and every step it
    /// applies keeps θ finite): <paramref name="parametersFinite"/> skips the scan of θ, every other check still runs.
    /// <paramref name="gateHeld"/>: the caller holds <see cref="Gate"/> for its whole call (the trainer, so that another
    /// thread's call on this engine is refused before the trainer changes anything), so this call does not take it again.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal float ComputeGradientsCore(RnnParameters parameters, in SequenceBatch<float> batch, RnnParameters gradients, bool accumulate, bool parametersFinite, bool gateHeld = false)
    {
        ModelGuard.ParameterAndGradientBlocks(Shape, parameters, gradients);
        BatchValidation.ValidateCall<float>(Shape, MaxSteps, MaxBatch, parameters.Values, in batch, gradients.Values, parametersFinite);
        if (gateHeld)
        {
            return _core.ComputeGradients(parameters.Values, in batch, gradients.Values, accumulate);
        }

        _gate.Enter(this);
        try
        {
            return _core.ComputeGradients(parameters.Values, in batch, gradients.Values, accumulate);
        }
        finally
        {
            _gate.Exit();
        }
    }

    /// <summary>Runs the forward pass only and returns L. Writes the batch's final state and hidden states when given.</summary>
    /// <param name="parameters">θ; must match <see cref="Shape"/> and be finite.</param>
    /// <param name="batch">The sequences.</param>
    /// <returns>The loss L.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="parameters"/> is null.</exception>
    /// <exception cref="ArgumentException">As for <see cref="ComputeGradients"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">As for <see cref="ComputeGradients"/>.</exception>
    /// <exception cref="InvalidOperationException">Another thread is inside a call of this engine.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public float Evaluate(RnnParameters parameters, in SequenceBatch<float> batch) => EvaluateCore(parameters, in batch, parametersFinite: false);

    /// <summary><see cref="Evaluate(RnnParameters, in SequenceBatch{float})"/>, skipping the scan of θ when the caller has
    /// checked it in this call (as <see cref="ComputeGradientsCore"/>). <paramref name="gateHeld"/>: the caller holds
    /// <see cref="Gate"/> for its whole call (the trainer), so this call does not take it again.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal float EvaluateCore(RnnParameters parameters, in SequenceBatch<float> batch, bool parametersFinite, bool gateHeld = false)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ModelGuard.SameShape(Shape, parameters.Shape, nameof(parameters));
        BatchValidation.ValidateCall<float>(Shape, MaxSteps, MaxBatch, parameters.Values, in batch, default, parametersFinite);
        if (gateHeld)
        {
            return _core.Evaluate(parameters.Values, in batch);
        }

        _gate.Enter(this);
        try
        {
            return _core.Evaluate(parameters.Values, in batch);
        }
        finally
        {
            _gate.Exit();
        }
    }

    /// <summary>
    /// Runs every code path this engine uses once on internal dummy data (token and dense input, forward and backward,
    /// and the batched recurrence when <see cref="MaxBatch"/> ≥ 4), so that the JIT has compiled them before the first
    /// real call, and touches every page of the workspace once. The kernels are compiled fully optimised on first use, so
    /// after <see cref="WarmUp"/> the first real call runs close to steady-state speed. It allocates its dummy data; call it
    /// once, after construction.
    /// </summary>
    /// <exception cref="InvalidOperationException">Another thread is inside a call of this engine.</exception>
    public void WarmUp()
    {
        var theta = new RnnParameters(Shape);
        var gradients = new RnnParameters(Shape);
        int steps = Math.Min(MaxSteps, 3);
        foreach (int size in new[] { 1, Math.Min(MaxBatch, Engine.FastBptt.BatchedRecurrenceMinBatch) }.Distinct())
        {
            int rows = steps * size;
            int[] ids = new int[rows];
            float[] inputs = new float[rows * Shape.InputSize];
            ComputeGradients(theta, new SequenceBatch<float>(steps, size, ids, ids), gradients);
            ComputeGradients(theta, new SequenceBatch<float>(steps, size, inputs, ids), gradients);
            Evaluate(theta, new SequenceBatch<float>(steps, size, ids, ids));
        }

        _gate.Enter(this); // it writes the workspace, as a call does
        try
        {
            _core.TouchWorkspace();
        }
        finally
        {
            _gate.Exit();
        }
    }
}
