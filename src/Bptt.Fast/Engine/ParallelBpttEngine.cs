using System.Runtime.CompilerServices;
using Bptt.Fast.Engine;
using System.Runtime.ExceptionServices;
using Bptt.Fast.Internals;
using Bptt.Fast.Model;
using Bptt.Fast.Kernels;

namespace Bptt.Fast;

/// <summary>
/// Data-parallel BPTT on several cores: the B sequences of a batch are split into contiguous groups, one fast BPTT
/// workspace per worker computes each group's loss and gradient, and the gradients are summed. The result equals
/// <see cref="BpttEngine"/>'s within float rounding (only the order of the batch sum changes). The calling thread is
/// worker 0; the others are background threads started once. A steady-state call allocates nothing.
/// <para>Contract: every argument is validated once, on the calling thread, before any worker starts; the workers write
/// only their private buffers, and the caller's outputs (∂L/∂θ and the batch's outputs) are written by the calling
/// thread after every worker has succeeded, so a call that throws changes nothing. One call at a time: a call that
/// overlaps another throws <see cref="InvalidOperationException"/>. Dispose the engine to stop its threads; an engine that
/// is dropped without <see cref="Dispose"/> stops them from its finalizer (the threads never keep the engine alive).</para>
/// </summary>
public sealed unsafe class ParallelBpttEngine : IDisposable
{
    private static int s_liveThreads;
    private readonly Worker[] _workers;
    private readonly Coordinator _job;
    private readonly KernelSet _kernels;
    private SingleCaller _gate;
    private bool _disposed;

    /// <summary>Creates the engine and starts its worker threads.</summary>
    /// <param name="shape">The network sizes.</param>
    /// <param name="maxSteps">The largest T a call may use.</param>
    /// <param name="maxBatch">The largest B a call may use (at least 1).</param>
    /// <param name="activation">f of equation (2).</param>
    /// <param name="workers">Worker count (0: one per core); never more than <paramref name="maxBatch"/>.</param>
    /// <param name="maxWorkspaceBytes">The most memory all workers' workspaces may take together.</param>
    /// <param name="dropout">The dropout probability between stacked layers, as for <see cref="BpttEngine"/>; the mask is drawn per
    /// sequence of the whole batch, so it does not depend on the split.</param>
    /// <exception cref="ArgumentOutOfRangeException">As for <see cref="BpttEngine(RnnShape, int, int, Activation, KernelPath, long, float)"/>, or
    /// a worker count outside [0, 1024].</exception>
    public ParallelBpttEngine(RnnShape shape, int maxSteps, int maxBatch, Activation activation = Activation.Tanh, int workers = 0, long maxWorkspaceBytes = BpttEngine.DefaultMaxWorkspaceBytes, float dropout = 0f)
    {
        EngineLimits.Check(shape, maxSteps, maxBatch, activation, maxWorkspaceBytes);
        DropoutMask.CheckRate(dropout, nameof(dropout));
        Guard.InRange(workers, 0, 1024, nameof(workers));
        int count = Math.Min(workers == 0 ? Environment.ProcessorCount : workers, maxBatch);
        int perWorker = (maxBatch + count - 1) / count;
        KernelSet kernels = KernelSets.For(KernelInfo.Isa, activation);
        long rows = Sizes.Product(maxSteps, perWorker);
        long gatherFloats = Sizes.Sum(Sizes.Product(rows, Sizes.Sum(2L * shape.InputSize, shape.LayerOutputSize)), Sizes.Product(3L * shape.BlockCount * perWorker, shape.HiddenSize));
        long perWorkerBytes = Sizes.Sum(FastBptt.Plan(shape, maxSteps, perWorker, kernels, dropout).Bytes, Sizes.Sum(Sizes.Product(gatherFloats, 4), Sizes.Product(rows, 8)));
        perWorkerBytes = Sizes.Sum(perWorkerBytes, 4L * shape.ParameterCount);
        EngineLimits.CheckWorkspace(Sizes.Product(perWorkerBytes, count), maxWorkspaceBytes, maxSteps, maxBatch);
        var sizes = new WorkerSizes(shape, maxSteps, perWorker); // every worker buffer fits one array, checked before any is allocated
        Shape = shape;
        MaxSteps = maxSteps;
        MaxBatch = maxBatch;
        Activation = activation;
        Dropout = dropout;
        _kernels = kernels;
        _job = new Coordinator();
        _workers = new Worker[count];
        for (int w = 0; w < count; w++)
        {
            _workers[w] = new Worker(_job, w, new FastBptt(shape, maxSteps, perWorker, kernels, dropout), sizes);
        }

        for (int w = 1; w < count; w++)
        {
            _workers[w].Start();
        }
    }

    /// <summary>Stops the worker threads of an engine that was not disposed.</summary>
    ~ParallelBpttEngine()
    {
        // A constructor that threw part-way leaves some workers unset.
        Worker?[]? workers = _workers;
        for (int w = 1; workers is not null && w < workers.Length; w++)
        {
            workers[w]?.RequestStop();
        }
    }

    /// <summary>The network sizes.</summary>
    public RnnShape Shape { get; }

    /// <summary>The largest T a call may use.</summary>
    public int MaxSteps { get; }

    /// <summary>The largest B a call may use.</summary>
    public int MaxBatch { get; }

    /// <summary>f.</summary>
    public Activation Activation { get; }

    /// <summary>The dropout probability between stacked layers of a training pass (0: none).</summary>
    public float Dropout { get; }

    /// <summary>The number of workers, the calling thread included.</summary>
    public int Workers => _workers.Length;

    /// <summary>Worker threads alive in this process, over all engines (for the lifetime tests).</summary>
    internal static int LiveWorkerThreads => Volatile.Read(ref s_liveThreads);

    /// <summary>Test hook: when set, a worker whose index it returns true for fails after computing, before anything is published.</summary>
    internal Func<int, bool>? InjectFault
    {
        get => _job.InjectFault;
        set => _job.InjectFault = value;
    }

    /// <summary>
    /// As <see cref="BpttEngine.ComputeGradients"/>, with the batch split across the workers: returns L and writes (or adds)
    /// ∂L/∂θ, and the batch's optional outputs. Everything is checked before anything is written.
    /// </summary>
    /// <param name="parameters">θ.</param>
    /// <param name="batch">The sequences.</param>
    /// <param name="gradients">Receives ∂L/∂θ.</param>
    /// <param name="accumulate">Add to <paramref name="gradients"/> instead of overwriting it.</param>
    /// <returns>The loss L.</returns>
    /// <exception cref="ArgumentNullException">A block is null.</exception>
    /// <exception cref="ArgumentException">As for <see cref="BpttEngine.ComputeGradients"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">As for <see cref="BpttEngine.ComputeGradients"/>.</exception>
    /// <exception cref="InvalidOperationException">Another thread is inside a call of this engine.</exception>
    /// <exception cref="ObjectDisposedException">The engine was disposed.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public float ComputeGradients(RnnParameters parameters, in SequenceBatch<float> batch, RnnParameters gradients, bool accumulate = false)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ModelGuard.ParameterAndGradientBlocks(Shape, parameters, gradients);
        BatchValidation.ValidateCall<float>(Shape, MaxSteps, MaxBatch, parameters.Values, in batch, gradients.Values);
        _gate.Enter(this);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this); // disposed between the first check and the gate
            return Run(parameters, in batch, gradients, accumulate);
        }
        finally
        {
            _gate.Exit();
        }
    }

    /// <summary>
    /// Runs one call on internal dummy data with every worker busy, so that each worker's code is compiled before the
    /// first real call (see <see cref="BpttEngine.WarmUp"/>). It allocates its dummy data; call it once, after construction.
    /// </summary>
    /// <exception cref="InvalidOperationException">Another thread is inside a call of this engine.</exception>
    /// <exception cref="ObjectDisposedException">The engine was disposed.</exception>
    public void WarmUp()
    {
        var theta = new RnnParameters(Shape);
        var gradients = new RnnParameters(Shape);
        int steps = Math.Min(MaxSteps, 3), size = Math.Min(MaxBatch, Math.Max(Workers, Engine.FastBptt.BatchedRecurrenceMinBatch * Workers));
        int[] ids = new int[steps * size];
        ComputeGradients(theta, new SequenceBatch<float>(steps, size, ids, ids), gradients);
        ComputeGradients(theta, new SequenceBatch<float>(steps, size, new float[steps * size * Shape.InputSize], ids), gradients);
    }

    /// <summary>Stops the worker threads.</summary>
    /// <exception cref="InvalidOperationException">Another thread is inside a call of this engine (its workers are still
    /// reading that caller's memory; dispose after the call returns).</exception>
    public void Dispose()
    {
        _gate.Enter(this);
        try
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            for (int w = 1; w < _workers.Length; w++)
            {
                _workers[w].Stop();
            }

            _job.Done.Dispose();
            GC.SuppressFinalize(this);
        }
        finally
        {
            _gate.Exit();
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private float Run(RnnParameters parameters, in SequenceBatch<float> batch, RnnParameters gradients, bool accumulate)
    {
        int active = Math.Min(_workers.Length, batch.BatchSize);
        fixed (float* inputs = batch.Inputs, h0 = batch.InitialState, final = batch.FinalState, dh0 = batch.InitialStateGradient, dx = batch.InputGradient, states = batch.HiddenStates)
        fixed (int* tokens = batch.Tokens, targets = batch.Targets, lengths = batch.Lengths)
        {
            _job.Batch = new BatchPointers(batch.Steps, batch.BatchSize, batch.IsTokenInput, inputs, tokens, targets, lengths, h0, final, dh0, dx, states, batch.DropoutSeed);
            _job.Parameters = parameters;
            _job.Active = active;
            _job.Done.Reset(active);
            for (int w = 1; w < active; w++)
            {
                _workers[w].Signal();
            }

            _workers[0].Run();
            WaitForWorkers();
            _job.Parameters = null;

            for (int w = 0; w < active; w++)
            {
                if (_workers[w].Error is { } error)
                {
                    ExceptionDispatchInfo.Throw(error);
                }
            }

            // Every worker succeeded: only now do the caller's outputs change.
            double loss = 0;
            for (int w = 0; w < active; w++)
            {
                loss += _workers[w].Loss;
                _workers[w].Scatter();
                ReadOnlySpan<float> g = _workers[w].Gradients;
                if (w == 0 && !accumulate)
                {
                    g.CopyTo(gradients.Values);
                }
                else
                {
                    _kernels.Axpy(1f, g, gradients.Values);
                }
            }

            return (float)loss;
        }
    }

    /// <summary>
    /// Waits until every active worker has signalled. The workers read the caller's memory through the pointers of the
    /// <c>fixed</c> block until then, so the wait never ends early: an interrupt of this thread (<see cref="Thread.Interrupt"/>)
    /// is held until the workers are done and raised again after, for the thread's next blocking call.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void WaitForWorkers()
    {
        bool interrupted = false;
        while (true)
        {
            try
            {
                _job.Done.Wait();
                break;
            }
            catch (ThreadInterruptedException)
            {
                interrupted = true;
            }
        }

        if (interrupted)
        {
            Thread.CurrentThread.Interrupt();
        }
    }

    /// <summary>The caller's batch as raw pointers, valid while the calling thread waits inside <c>fixed</c>.</summary>
    private readonly struct BatchPointers(int steps, int size, bool tokens, float* inputs, int* tokenIds, int* targets, int* lengths, float* h0, float* final, float* dh0, float* dx, float* states, ulong dropoutSeed)
    {
        public readonly ulong DropoutSeed = dropoutSeed;
        public readonly int Steps = steps, Size = size;
        public readonly bool Tokens = tokens;
        public readonly float* Inputs = inputs, H0 = h0, Final = final, Dh0 = dh0, Dx = dx, States = states;
        public readonly int* TokenIds = tokenIds, Targets = targets, Lengths = lengths;
    }

    /// <summary>What the workers share for one call. The worker threads reference this, never the engine itself.</summary>
    private sealed class Coordinator
    {
        public CountdownEvent Done { get; } = new(1);

        public BatchPointers Batch { get; set; }

        public RnnParameters? Parameters { get; set; }

        public int Active { get; set; }

        public Func<int, bool>? InjectFault { get; set; }
    }

    /// <summary>
    /// The lengths of one worker's gather buffers for T·B' rows (B' = its share of maxBatch), each computed in 64 bits and
    /// refused with <see cref="ArgumentOutOfRangeException"/> naming maxSteps unless it fits one array: the workspace
    /// budget bounds their sum in bytes, not each product's range in int.
    /// </summary>
    private readonly struct WorkerSizes
    {
        public WorkerSizes(RnnShape shape, int maxSteps, int capacity)
        {
            long rows = Sizes.Product(maxSteps, capacity);
            Capacity = capacity;
            Rows = Sizes.ArrayLength(rows, nameof(maxSteps), "a worker's rows [T·B]");
            Inputs = Sizes.ArrayLength(Sizes.Product(rows, shape.InputSize), nameof(maxSteps), "a worker's inputs [T·B, I]");
            States = Sizes.ArrayLength(Sizes.Product(rows, shape.LayerOutputSize), nameof(maxSteps), "a worker's states [T·B, D·H]");
            Blocks = Sizes.ArrayLength(Sizes.Product(shape.BlockCount, capacity, shape.HiddenSize), nameof(maxSteps), "a worker's states [L·D, B, H]");
        }

        public int Capacity { get; }

        public int Rows { get; }

        public int Inputs { get; }

        public int States { get; }

        public int Blocks { get; }
    }

    private sealed class Worker
    {
        private readonly Coordinator _job;
        private readonly int _index;
        private readonly FastBptt _engine;
        private readonly SemaphoreSlim _start = new(0);
        private readonly float[] _gradients, _inputs, _h0, _final, _dh0, _dx, _states;
        private readonly int[] _tokens, _targets, _lengths;
        private Thread? _thread;
        private volatile bool _stop;
        private int _first, _count;

        public Worker(Coordinator job, int index, FastBptt engine, WorkerSizes sizes)
        {
            _job = job;
            _index = index;
            _engine = engine;
            _gradients = new float[engine.Shape.ParameterCount];
            _inputs = new float[sizes.Inputs];
            _dx = new float[sizes.Inputs];
            _states = new float[sizes.States];
            _h0 = new float[sizes.Blocks];
            _final = new float[sizes.Blocks];
            _dh0 = new float[sizes.Blocks];
            _tokens = new int[sizes.Rows];
            _targets = new int[sizes.Rows];
            _lengths = new int[sizes.Capacity];
        }

        public ReadOnlySpan<float> Gradients => _gradients;

        public double Loss { get; private set; }

        public Exception? Error { get; private set; }

        public void Start()
        {
            _thread = new Thread(Loop) { IsBackground = true, Name = $"Bptt.Fast worker {_index}" };
            _thread.Start();
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Signal() => _start.Release();

        /// <summary>Asks the thread to end without waiting (safe from a finalizer).</summary>
        public void RequestStop()
        {
            _stop = true;
            _start.Release();
        }

        public void Stop()
        {
            RequestStop();
            _thread?.Join();
            _start.Dispose();
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run()
        {
            try
            {
                Error = null;
                Compute();
            }
            catch (Exception e)
            {
                Error = e;
            }
            finally
            {
                _job.Done.Signal();
            }
        }

        /// <summary>Copies this worker's part of the batch outputs into the caller's spans (calling thread, after success).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Scatter()
        {
            BatchPointers p = _job.Batch;
            int ni = _engine.Shape.InputSize, nh = _engine.Shape.HiddenSize, nw = _engine.Shape.LayerOutputSize, first = _first, count = _count;
            for (int block = 0; block < _engine.Shape.BlockCount; block++)
            {
                // [L·D, B, H]: this worker's sequences are rows first..first+count of every block.
                long at = (((long)block * p.Size) + first) * nh;
                if (p.Final != null)
                {
                    _final.AsSpan(block * count * nh, count * nh).CopyTo(new Span<float>(p.Final + at, count * nh));
                }

                if (p.Dh0 != null)
                {
                    _dh0.AsSpan(block * count * nh, count * nh).CopyTo(new Span<float>(p.Dh0 + at, count * nh));
                }
            }

            if (p.Dx == null && p.States == null)
            {
                return;
            }

            for (int t = 0; t < p.Steps; t++)
            {
                for (int b = 0; b < count; b++)
                {
                    long src = ((long)t * count) + b, dst = ((long)t * p.Size) + first + b;
                    if (p.Dx != null)
                    {
                        _dx.AsSpan((int)(src * ni), ni).CopyTo(new Span<float>(p.Dx + (dst * ni), ni));
                    }

                    if (p.States != null)
                    {
                        _states.AsSpan((int)(src * nw), nw).CopyTo(new Span<float>(p.States + (dst * nw), nw));
                    }
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Loop()
        {
            Interlocked.Increment(ref s_liveThreads);
            try
            {
                while (true)
                {
                    _start.Wait();
                    if (_stop)
                    {
                        return;
                    }

                    Run();
                }
            }
            finally
            {
                Interlocked.Decrement(ref s_liveThreads);
            }
        }

        /// <summary>Gathers this worker's sequences and runs the validated fast BPTT into private buffers only.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void Compute()
        {
            BatchPointers p = _job.Batch;
            RnnShape s = _engine.Shape;
            int ni = s.InputSize, nh = s.HiddenSize, nw = s.LayerOutputSize, blocks = s.BlockCount, active = _job.Active;
            int first = (int)((long)p.Size * _index / active), count = (int)((long)p.Size * (_index + 1) / active) - first;
            _first = first;
            _count = count;
            int rows = p.Steps * count;
            for (int t = 0; t < p.Steps; t++)
            {
                for (int b = 0; b < count; b++)
                {
                    long src = ((long)t * p.Size) + first + b;
                    int dst = (t * count) + b;
                    _targets[dst] = p.Targets[src];
                    if (p.Tokens)
                    {
                        _tokens[dst] = p.TokenIds[src];
                    }
                    else
                    {
                        new ReadOnlySpan<float>(p.Inputs + (src * ni), ni).CopyTo(_inputs.AsSpan(dst * ni, ni));
                    }
                }
            }

            Span<int> lengths = p.Lengths == null ? default : _lengths.AsSpan(0, count);
            for (int b = 0; b < lengths.Length; b++)
            {
                lengths[b] = p.Lengths[first + b];
            }

            Span<float> h0 = p.H0 == null ? default : _h0.AsSpan(0, blocks * count * nh);
            for (int block = 0; p.H0 != null && block < blocks; block++)
            {
                new ReadOnlySpan<float>(p.H0 + ((((long)block * p.Size) + first) * nh), count * nh).CopyTo(h0.Slice(block * count * nh, count * nh));
            }

            var batch = p.Tokens
                ? new SequenceBatch<float>(p.Steps, count, _tokens.AsSpan(0, rows), _targets.AsSpan(0, rows))
                : new SequenceBatch<float>(p.Steps, count, _inputs.AsSpan(0, rows * ni), _targets.AsSpan(0, rows));
            batch = batch with
            {
                InitialState = h0,
                Lengths = lengths,
                FinalState = p.Final == null ? default : _final.AsSpan(0, blocks * count * nh),
                InitialStateGradient = p.Dh0 == null ? default : _dh0.AsSpan(0, blocks * count * nh),
                InputGradient = p.Dx == null ? default : _dx.AsSpan(0, rows * ni),
                HiddenStates = p.States == null ? default : _states.AsSpan(0, rows * nw),
                DropoutSeed = p.DropoutSeed,
            };
            _engine.DropoutSequenceOffset = first;
            Loss = _engine.ComputeGradients(_job.Parameters!.Values, batch, _gradients, accumulate: false);
            if (_job.InjectFault?.Invoke(_index) == true)
            {
                throw new InvalidOperationException($"Injected fault in worker {_index}.");
            }
        }
    }
}
