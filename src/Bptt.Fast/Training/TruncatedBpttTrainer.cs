using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using Bptt.Fast.Internals;
using Bptt.Fast.Kernels.Bodies;
using Bptt.Fast.Model;

namespace Bptt.Fast.Training;

/// <summary>What one call of <see cref="TruncatedBpttTrainer"/>.Train did.</summary>
/// <param name="Loss">Σ Lₜ over the steps of the call (each step's loss counted once).</param>
/// <param name="Steps">Steps of the stream consumed.</param>
/// <param name="Updates">Optimizer steps applied.</param>
/// <param name="Refused">Optimizer steps refused because the loss or gradient was not finite.</param>
/// <param name="LastGradientNorm">‖∂L/∂θ‖₂ of the last update, before clipping (0 when clipping is off).</param>
/// <param name="PendingSteps">Steps of the stream buffered after the call, waiting for the next update (fewer than k1).</param>
public readonly record struct TrainingReport(double Loss, int Steps, int Updates, int Refused, float LastGradientNorm, int PendingSteps = 0);

/// <summary>
/// Truncated BPTT over one long stream (tokens or dense vectors), in the general k1/k2 form: every k1 new steps of the
/// stream it runs BPTT over the last k2 ≥ k1 steps and applies one optimizer step, whatever the boundaries of the
/// <c>Train</c> calls that deliver the stream: steps left over at the end of a call wait (<see cref="PendingSteps"/>) until
/// later calls complete the block, so any split of a stream gives the same θ as one call. <see cref="Flush"/> trains on
/// the pending steps at the end of a stream. The hidden state is carried across calls and the
/// gradient is cut k2 steps back. With k1 = k2 = k this is the classic chunked form: chunks of k steps, state carried,
/// gradient cut at each border. The last k2 inputs, targets and the states before them are kept in a sliding window
/// buffer; the window's older k2 − k1 steps contribute no loss (their targets are ignored) but carry the gradient back.
/// After construction nothing is allocated. A refused step (non-finite loss or gradient) leaves θ and the optimizer
/// unchanged, restores the carried state from before the block and empties the window.
/// A stacked network (L layers, one direction) carries every layer's state, <c>[L, H]</c>; when its windows overlap
/// (k2 &gt; k1), each update also runs the forward pass over the steps the next window drops, with the same θ (and the
/// same dropout mask), to get every layer's state where the next window starts. A bidirectional network is refused: its
/// reverse pass starts from the end of a sequence, which a stream does not have. With an engine built with dropout, each
/// update's mask comes from <see cref="SequenceBatch{T}.DropoutSeed"/> = the (n + 1)-th output of SplitMix64 seeded with
/// the trainer's dropout seed, n being the optimizer's step count before the update, so a run resumed from a checkpoint
/// (θ, optimizer state and step count, carried state) draws the masks the uninterrupted run would have drawn.
/// </summary>
public sealed class TruncatedBpttTrainer
{
    private readonly BpttEngine _engine;
    private readonly Optimizer _optimizer;
    private readonly RnnParameters _gradients;
    private readonly float[] _state, _stateBefore, _windowStart;
    private readonly float[] _inputs;     // [k2, I] dense history
    private readonly int[] _tokens;       // [k2] token history
    private readonly int[] _targets;      // [k2] target history
    private readonly int[] _windowTargets;
    private readonly float[] _states;     // one layer: [k2, H], the state before each step of the history; stacked: empty
    private readonly float[] _windowStates; // one layer: [k2, H], hₜ of the window; stacked: empty
    private readonly float[] _historyStart; // stacked: [L, H], every layer's state before the first history step; else empty
    private readonly int[] _ignored;      // stacked with k2 > k1: [k2] ignored targets, for the forward pass over the dropped steps; else empty
    private readonly RnnParameters? _prefixGradients; // stacked with k2 > k1 and dropout: the (zero) gradient of that pass
    private readonly bool _stacked;
    private readonly ulong _dropoutSeed;
    private int _count;   // trained history steps at the start of the window
    private int _pending; // steps after the history, not yet trained (fewer than k1 between calls)
    private bool _isTokens; // the kind of the stream in the window

    /// <summary>Creates a trainer.</summary>
    /// <param name="engine">The engine, of one direction (stacked or not); batch 1 is used, and its maxSteps must be at least k2.</param>
    /// <param name="optimizer">The update rule, for the engine's shape.</param>
    /// <param name="updateEvery">k1: steps between updates, at least 1.</param>
    /// <param name="backpropSteps">k2 ≥ k1: how far back each update propagates; 0 means k2 = k1.</param>
    /// <param name="clipNorm">If &gt; 0, the gradient is clipped to this global L2 norm before each update.</param>
    /// <param name="dropoutSeed">The seed of the dropout masks, used when the engine has a dropout rate above 0: the update
    /// after n optimizer steps draws its mask from the (n + 1)-th output of SplitMix64 seeded with it.</param>
    /// <exception cref="ArgumentNullException"><paramref name="engine"/> or <paramref name="optimizer"/> is null.</exception>
    /// <exception cref="ArgumentException">A bidirectional engine, or an optimizer of another shape.</exception>
    /// <exception cref="ArgumentOutOfRangeException">k1 or k2 out of range, or a negative clipping norm.</exception>
    public TruncatedBpttTrainer(BpttEngine engine, Optimizer optimizer, int updateEvery, int backpropSteps = 0, float clipNorm = 0f, ulong dropoutSeed = 0)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(optimizer);
        ModelGuard.SameShape(engine.Shape, optimizer.Shape, nameof(optimizer));
        if (engine.Shape.IsBidirectional)
        {
            throw new ArgumentException(
                $"TruncatedBpttTrainer trains one-direction networks: a reverse pass cannot be truncated over a stream (it starts from the end of a sequence, which a stream does not have); expected Directions = 1, actual {engine.Shape.Directions}.", nameof(engine));
        }

        int k2 = backpropSteps == 0 ? updateEvery : backpropSteps;
        Guard.InRange(updateEvery, 1, engine.MaxSteps, nameof(updateEvery));
        Guard.InRange(k2, updateEvery, engine.MaxSteps, nameof(backpropSteps));
        Guard.NonNegative(clipNorm, nameof(clipNorm));
        _engine = engine;
        _optimizer = optimizer;
        UpdateEvery = updateEvery;
        BackpropSteps = k2;
        ClipNorm = clipNorm;
        RnnShape s = engine.Shape;
        _stacked = s.Layers > 1;
        _dropoutSeed = dropoutSeed;
        int carried = Sizes.ArrayLength(Sizes.Product(s.Layers, s.HiddenSize), nameof(engine), "carried state [L, H]");
        _gradients = new RnnParameters(s);
        _state = new float[carried];
        _stateBefore = new float[carried];
        _windowStart = new float[carried];
        _inputs = new float[Sizes.ArrayLength(Sizes.Product(k2, s.InputSize), nameof(backpropSteps), "input window [k2, I]")];
        _tokens = new int[k2];
        _targets = new int[k2];
        _windowTargets = new int[k2];
        int history = _stacked ? 0 : Sizes.ArrayLength(Sizes.Product(k2, s.HiddenSize), nameof(backpropSteps), "state window [k2, H]");
        _states = new float[history];
        _windowStates = new float[history];
        bool overlapping = _stacked && k2 > updateEvery;
        _historyStart = _stacked ? new float[carried] : [];
        _ignored = overlapping ? new int[k2] : [];
        _ignored.AsSpan().Fill(SequenceBatch<float>.IgnoreTarget);
        _prefixGradients = overlapping && engine.Dropout > 0f ? new RnnParameters(s) : null;
    }

    /// <summary>k1.</summary>
    public int UpdateEvery { get; }

    /// <summary>k2.</summary>
    public int BackpropSteps { get; }

    /// <summary>The clipping norm, or 0 for none.</summary>
    public float ClipNorm { get; }

    /// <summary>The seed of the dropout masks (used only when the engine has a dropout rate above 0).</summary>
    public ulong DropoutSeed => _dropoutSeed;

    /// <summary>
    /// The carried hidden state h after the last trained step (writable, e.g. to restore it): <c>[L, H]</c>, every layer's
    /// state, layer-major (the engine's <see cref="SequenceBatch{T}.FinalState"/> of one sequence); H floats for one layer.
    /// Pending steps are not part of it yet. It must be finite: <see cref="Train(RnnParameters, ReadOnlySpan{int}, ReadOnlySpan{int})"/>
    /// and <see cref="Flush"/> refuse a non-finite state (<see cref="ArgumentException"/> naming <c>State</c>) before they
    /// change anything.
    /// </summary>
    public Span<float> State => _state;

    /// <summary>Steps received but not yet trained: they join the next block of k1 steps.</summary>
    public int PendingSteps => _pending;

    /// <summary>The gradient of the last update, in θ's layout, before clipping (the clip is applied inside the update).</summary>
    public RnnParameters LastGradients => _gradients;

    /// <summary>Forgets the stream: zero state, empty window, pending steps dropped.</summary>
    public void Reset()
    {
        Enter();
        Array.Clear(_state);
        _count = 0;
        _pending = 0;
        Exit();
    }

    /// <summary>Trains on the pending steps now, as a block shorter than k1 (e.g. at the end of a stream). Nothing happens when none are pending.</summary>
    /// <param name="parameters">θ, updated in place.</param>
    /// <returns>What was done.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="parameters"/> is null.</exception>
    /// <exception cref="ArgumentException">θ of another shape, non-finite θ, or a non-finite <see cref="State"/>.</exception>
    /// <exception cref="InvalidOperationException">Another thread is inside a call of this trainer, its engine or its optimizer,
    /// or the updates of this call would take the optimizer's step count past <see cref="Optimizer.MaxStepCount"/>; nothing
    /// has changed then.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public TrainingReport Flush(RnnParameters parameters)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ModelGuard.SameShape(_engine.Shape, parameters.Shape, nameof(parameters));
        Enter();
        try
        {
            UpdateExtent screened = CheckParameters(parameters);
            Guard.Finite<float>(_state, nameof(State)); // a state restored by the caller; before anything changes
            if (_pending == 0)
            {
                return default;
            }

            CheckStepBudget(1);

            float loss = TrainWindow(parameters, out bool applied, out float norm, screened, fresh: true);
            return new TrainingReport(loss, 0, applied ? 1 : 0, applied ? 0 : 1, norm);
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>Trains on the next <c>tokens.Length</c> steps of a token stream.</summary>
    /// <param name="parameters">θ, updated in place.</param>
    /// <param name="tokens">Input token ids, each in [0, I).</param>
    /// <param name="targets">Target ids, the same length, each in [0, O) or <see cref="SequenceBatch{T}.IgnoreTarget"/>.</param>
    /// <returns>What was done.</returns>
    /// <exception cref="InvalidOperationException">Another thread is inside a call of this trainer, its engine or its optimizer,
    /// or the updates of this call would take the optimizer's step count past <see cref="Optimizer.MaxStepCount"/>; nothing
    /// has changed then.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public TrainingReport Train(RnnParameters parameters, ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets) =>
        Train(parameters, default, tokens, targets, isTokens: true);

    /// <summary>Trains on the next <c>inputs.Length / I</c> steps of a dense stream.</summary>
    /// <param name="parameters">θ, updated in place.</param>
    /// <param name="inputs">xₜ for each step, <c>[N, I]</c>, finite.</param>
    /// <param name="targets">Target ids, N of them.</param>
    /// <returns>What was done.</returns>
    /// <exception cref="InvalidOperationException">Another thread is inside a call of this trainer, its engine or its optimizer,
    /// or the updates of this call would take the optimizer's step count past <see cref="Optimizer.MaxStepCount"/>; nothing
    /// has changed then.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public TrainingReport Train(RnnParameters parameters, ReadOnlySpan<float> inputs, ReadOnlySpan<int> targets) =>
        Train(parameters, inputs, default, targets, isTokens: false);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private TrainingReport Train(RnnParameters parameters, ReadOnlySpan<float> inputs, ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets, bool isTokens)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ModelGuard.SameShape(_engine.Shape, parameters.Shape, nameof(parameters));
        RnnShape s = _engine.Shape;
        int n = targets.Length;
        if (isTokens)
        {
            Guard.Length(n, tokens.Length, nameof(tokens), "targets.Length");
        }
        else
        {
            Guard.Length((long)n * s.InputSize, inputs.Length, nameof(inputs), "targets.Length × inputSize");
            Guard.Finite(inputs, nameof(inputs));
        }

        for (int t = 0; t < n; t++)
        {
            if ((isTokens && (uint)tokens[t] >= (uint)s.InputSize) || ((uint)targets[t] >= (uint)s.OutputSize && targets[t] != SequenceBatch<float>.IgnoreTarget))
            {
                throw new ArgumentOutOfRangeException(isTokens && (uint)tokens[t] >= (uint)s.InputSize ? nameof(tokens) : nameof(targets), $"Step {t} holds an id out of range (I = {s.InputSize}, O = {s.OutputSize}).");
            }
        }

        Enter();
        try
        {
            UpdateExtent screened = CheckParameters(parameters);
            Guard.Finite<float>(_state, nameof(State)); // a state restored by the caller; before anything changes
            CheckStepBudget((_pending + n) / UpdateEvery);
            bool fresh = true; // θ and the optimizer's state are as screened until the first update of this call
            if (_count + _pending > 0 && isTokens != _isTokens)
            {
                throw new ArgumentException($"The stream so far holds {(_isTokens ? "token" : "dense")} steps; expected the same kind, actual {(isTokens ? "token" : "dense")} steps (call Reset to start a new stream).", isTokens ? nameof(tokens) : nameof(inputs));
            }

            _isTokens = isTokens;
            double loss = 0;
            int updates = 0, refused = 0, i = s.InputSize, k1 = UpdateEvery;
            float norm = 0;
            for (int at = 0; at < n;)
            {
                if (_pending == 0)
                {
                    SlideWindow();
                }

                int take = Math.Min(k1 - _pending, n - at), end = _count + _pending;
                targets.Slice(at, take).CopyTo(_targets.AsSpan(end));
                if (isTokens)
                {
                    tokens.Slice(at, take).CopyTo(_tokens.AsSpan(end));
                }
                else
                {
                    inputs.Slice(at * i, take * i).CopyTo(_inputs.AsSpan(end * i));
                }

                _pending += take;
                at += take;
                if (_pending == k1)
                {
                    loss += TrainWindow(parameters, out bool applied, out norm, screened, fresh);
                    fresh = false;
                    updates += applied ? 1 : 0;
                    refused += applied ? 0 : 1;
                }
            }

            return new TrainingReport(loss, n, updates, refused, norm, _pending);
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>
    /// Takes the engine's and the optimizer's gates for the whole call, before anything changes: another thread inside a
    /// call of either (this trainer's, or its own use of the shared engine or optimizer) is refused here with
    /// <see cref="InvalidOperationException"/>, not part-way through a window.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Enter()
    {
        _engine.Gate.Enter(_engine);
        try
        {
            _optimizer.Gate.Enter(_optimizer);
        }
        catch
        {
            _engine.Gate.Exit();
            throw;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Exit()
    {
        _optimizer.Gate.Exit();
        _engine.Gate.Exit();
    }

    /// <summary>
    /// Refuses, before anything changes, a call whose <paramref name="windows"/> updates could take the optimizer's step
    /// count past <see cref="Optimizer.MaxStepCount"/> (the optimizer would refuse the first one beyond it part-way through).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void CheckStepBudget(int windows)
    {
        if (windows > 0 && _optimizer.StepCount > Optimizer.MaxStepCount - windows)
        {
            ThrowStepBudget(windows);
        }
    }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowStepBudget(int windows) =>
        throw new InvalidOperationException($"The optimizer's step count has reached its limit: expected at most {Optimizer.MaxStepCount} steps, actual {_optimizer.StepCount} and {windows} more in this call (restore a smaller count or Reset the optimizer).");

    /// <summary>
    /// θ's check (finite, or an <see cref="ArgumentException"/> naming the element) fused with the optimizer's screen of θ
    /// and its state: one read of θ for both. A non-finite state is not an error here: the step it would poison is refused.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private UpdateExtent CheckParameters(RnnParameters parameters)
    {
        UpdateExtent extent = _optimizer.ScreenParameters(parameters);
        if (!extent.Finite)
        {
            BatchValidation.ValidateParameters<float>(parameters.Values, nameof(parameters), _engine.Shape); // throws when θ is the culprit
        }

        return extent;
    }

    /// <summary>Drops the oldest history steps so that the history and a block of k1 new steps fit the k2-step window.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void SlideWindow()
    {
        int i = _engine.Shape.InputSize, h = _engine.Shape.HiddenSize;
        int drop = Math.Max(0, _count + UpdateEvery - BackpropSteps);
        if (drop > 0)
        {
            int keep = _count - drop;
            _targets.AsSpan(drop, keep).CopyTo(_targets);
            _tokens.AsSpan(drop, keep).CopyTo(_tokens);
            _inputs.AsSpan(drop * i, keep * i).CopyTo(_inputs);
            if (!_stacked)
            {
                _states.AsSpan(drop * h, keep * h).CopyTo(_states);
            }

            _count = keep;
        }
    }

    /// <summary>
    /// The dropout seed of the update that follows <paramref name="stepCount"/> optimizer steps: the (n + 1)-th output of
    /// SplitMix64 seeded with <paramref name="seed"/> (its state after n + 1 increments, finalised), a pure function of both.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static ulong StepDropoutSeed(ulong seed, long stepCount) =>
        new SplitMix64(unchecked(seed + ((ulong)stepCount * 0x9E3779B97F4A7C15UL))).NextUInt64();

    /// <summary>BPTT over the window (history, then the pending block) and one optimizer step; the block becomes history.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private float TrainWindow(RnnParameters parameters, out bool applied, out float norm, in UpdateExtent screened, bool fresh)
    {
        int h = _engine.Shape.HiddenSize, i = _engine.Shape.InputSize;
        int old = _count, block = _pending, length = old + block;
        _pending = 0;

        // The window starts from the state before its first step; its old steps carry gradient but no loss.
        ReadOnlySpan<float> startState = old == 0 ? _state : _stacked ? _historyStart : _states.AsSpan(0, h);
        startState.CopyTo(_windowStart);
        _state.CopyTo(_stateBefore);
        _windowTargets.AsSpan(0, old).Fill(SequenceBatch<float>.IgnoreTarget);
        _targets.AsSpan(old, block).CopyTo(_windowTargets.AsSpan(old));
        Span<float> windowStates = _stacked ? default : _windowStates.AsSpan(0, length * h);
        ulong seed = _engine.Dropout > 0f ? StepDropoutSeed(_dropoutSeed, _optimizer.StepCount) : 0;
        SequenceBatch<float> batch = _isTokens
            ? new SequenceBatch<float>(length, 1, _tokens.AsSpan(0, length), _windowTargets.AsSpan(0, length)) { InitialState = _windowStart, FinalState = _state, HiddenStates = windowStates, DropoutSeed = seed }
            : new SequenceBatch<float>(length, 1, _inputs.AsSpan(0, length * i), _windowTargets.AsSpan(0, length)) { InitialState = _windowStart, FinalState = _state, HiddenStates = windowStates, DropoutSeed = seed };
        float loss = _engine.ComputeGradientsCore(parameters, batch, _gradients, accumulate: false, parametersFinite: true, gateHeld: true); // Train checked θ
        if (_stacked)
        {
            NextHistoryStart(parameters, length, seed); // with θ as in this pass, before the update
        }

        // Clipping by global norm, fused into the update: the optimizer's screen pass measures ‖g‖, and the update scales g
        // by min(1, clip/‖g‖) as it reads it.
        applied = _optimizer.StepClipped(parameters, _gradients, loss, ClipNorm, out double fullNorm, screened, fresh);
        norm = ClipNorm > 0 ? (float)fullNorm : 0f;
        if (!applied)
        {
            _stateBefore.CopyTo(_state);
            _count = 0;
            return loss;
        }

        if (!_stacked)
        {
            // The state before window step j is hⱼ₋₁ of this forward pass (the window start for j = 0).
            _windowStart.CopyTo(_states.AsSpan(0, h));
            windowStates[..((length - 1) * h)].CopyTo(_states.AsSpan(h));
        }

        _count = length;
        return loss;
    }

    /// <summary>
    /// A stacked network: every layer's state before the first step that the next window keeps, into
    /// <see cref="_historyStart"/>. The next <see cref="SlideWindow"/> drops max(0, length + k1 − k2) steps: none keeps this
    /// window's start; all of them leave no history (the next window starts from the carried state); otherwise the state
    /// comes from the forward pass over the dropped steps from this window's start, with the same θ and dropout seed (the
    /// mask is a pure function of the seed and the step, so it is this window's mask), and no loss.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void NextHistoryStart(RnnParameters parameters, int length, ulong seed)
    {
        int drop = Math.Max(0, length + UpdateEvery - BackpropSteps), i = _engine.Shape.InputSize;
        if (drop == 0)
        {
            _windowStart.CopyTo(_historyStart);
            return;
        }

        if (drop == length)
        {
            return;
        }

        ReadOnlySpan<int> targets = _ignored.AsSpan(0, drop);
        SequenceBatch<float> prefix = _isTokens
            ? new SequenceBatch<float>(drop, 1, _tokens.AsSpan(0, drop), targets) { InitialState = _windowStart, FinalState = _historyStart, DropoutSeed = seed }
            : new SequenceBatch<float>(drop, 1, _inputs.AsSpan(0, drop * i), targets) { InitialState = _windowStart, FinalState = _historyStart, DropoutSeed = seed };
        if (_prefixGradients is null)
        {
            _engine.EvaluateCore(parameters, prefix, parametersFinite: true, gateHeld: true);
        }
        else
        {
            _engine.ComputeGradientsCore(parameters, prefix, _prefixGradients, accumulate: false, parametersFinite: true, gateHeld: true);
        }
    }
}
