using System.Runtime.ExceptionServices;
using Bptt.Fast.Internals;
using Bptt.Fast.Kernels;

namespace Bptt.Fast;

/// <summary>
/// Data-parallel BPTT on several cores: the B sequences of a batch are split into contiguous groups, one
/// <see cref="BpttEngine"/> per worker computes each group's loss and gradient, and the gradients are summed. The result
/// equals <see cref="BpttEngine"/>'s within float rounding (only the order of the batch sum changes). The calling thread
/// is worker 0; the others are dedicated background threads started once. A steady-state call allocates nothing.
/// Dispose it to stop the threads. One call at a time.
/// </summary>
public sealed unsafe class ParallelBpttEngine : IDisposable
{
    private readonly Worker[] _workers;
    private readonly CountdownEvent _done;
    private BatchPointers _batch;
    private RnnParameters? _parameters;
    private int _active;
    private bool _disposed;

    /// <summary>Creates the engine and starts its worker threads.</summary>
    /// <param name="shape">The network sizes.</param>
    /// <param name="maxSteps">The largest T a call may use.</param>
    /// <param name="maxBatch">The largest B a call may use (at least 1).</param>
    /// <param name="activation">f of equation (2).</param>
    /// <param name="workers">Worker count (0: one per core); never more than <paramref name="maxBatch"/>.</param>
    public ParallelBpttEngine(RnnShape shape, int maxSteps, int maxBatch, Activation activation = Activation.Tanh, int workers = 0)
    {
        shape.Validate(nameof(shape));
        Guard.InRange(maxSteps, 1, 1 << 20, nameof(maxSteps));
        Guard.InRange(maxBatch, 1, 1 << 16, nameof(maxBatch));
        Guard.InRange(workers, 0, 1024, nameof(workers));
        int count = Math.Min(workers == 0 ? Environment.ProcessorCount : workers, maxBatch);
        int perWorker = (maxBatch + count - 1) / count;
        Shape = shape;
        MaxSteps = maxSteps;
        MaxBatch = maxBatch;
        Activation = activation;
        _done = new CountdownEvent(1);
        _workers = new Worker[count];
        for (int w = 0; w < count; w++)
        {
            _workers[w] = new Worker(this, w, new BpttEngine(shape, maxSteps, perWorker, activation), perWorker);
        }

        for (int w = 1; w < count; w++)
        {
            _workers[w].Start();
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

    /// <summary>The number of workers, the calling thread included.</summary>
    public int Workers => _workers.Length;

    /// <summary>
    /// As <see cref="BpttEngine.ComputeGradients"/>, with the batch split across the workers: returns L and writes (or adds)
    /// ∂L/∂θ, and the batch's optional outputs. Everything is checked before anything is written.
    /// </summary>
    /// <param name="parameters">θ.</param>
    /// <param name="batch">The sequences.</param>
    /// <param name="gradients">Receives ∂L/∂θ.</param>
    /// <param name="accumulate">Add to <paramref name="gradients"/> instead of overwriting it.</param>
    /// <returns>The loss L.</returns>
    public float ComputeGradients(RnnParameters parameters, in SequenceBatch<float> batch, RnnParameters gradients, bool accumulate = false)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Guard.ParameterAndGradientBlocks(Shape, parameters, gradients);

        BatchValidation.ValidateParameters<float>(parameters.Values, nameof(parameters), Shape);
        BatchValidation.Validate(in batch, Shape, MaxSteps, MaxBatch);
        fixed (float* inputs = batch.Inputs, h0 = batch.InitialState, final = batch.FinalState, dh0 = batch.InitialStateGradient, dx = batch.InputGradient, states = batch.HiddenStates)
        fixed (int* tokens = batch.Tokens, targets = batch.Targets, lengths = batch.Lengths)
        {
            _batch = new BatchPointers(batch.Steps, batch.BatchSize, batch.IsTokenInput, inputs, tokens, targets, lengths, h0, final, dh0, dx, states);
            _parameters = parameters;
            int active = Math.Min(_workers.Length, batch.BatchSize);
            _active = active;
            _done.Reset(active);
            for (int w = 1; w < active; w++)
            {
                _workers[w].Signal();
            }

            _workers[0].Run();
            _done.Wait();
            _parameters = null;
        }

        for (int w = 0; w < _active; w++)
        {
            if (_workers[w].Error is { } error)
            {
                ExceptionDispatchInfo.Throw(error);
            }
        }

        double loss = 0;
        for (int w = 0; w < _active; w++)
        {
            loss += _workers[w].Loss;
            ReadOnlySpan<float> g = _workers[w].Gradients.Values;
            if (w == 0 && !accumulate)
            {
                g.CopyTo(gradients.Values);
            }
            else
            {
                FastKernels.Axpy(1f, g, gradients.Values);
            }
        }

        return (float)loss;
    }

    /// <summary>Stops the worker threads.</summary>
    public void Dispose()
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

        _done.Dispose();
    }

    /// <summary>The caller's batch as raw pointers, valid while the calling thread waits inside <c>fixed</c>.</summary>
    private readonly struct BatchPointers(int steps, int size, bool tokens, float* inputs, int* tokenIds, int* targets, int* lengths, float* h0, float* final, float* dh0, float* dx, float* states)
    {
        public readonly int Steps = steps, Size = size;
        public readonly bool Tokens = tokens;
        public readonly float* Inputs = inputs, H0 = h0, Final = final, Dh0 = dh0, Dx = dx, States = states;
        public readonly int* TokenIds = tokenIds, Targets = targets, Lengths = lengths;
    }

    private sealed class Worker
    {
        private readonly ParallelBpttEngine _owner;
        private readonly int _index, _capacity;
        private readonly BpttEngine _engine;
        private readonly SemaphoreSlim _start = new(0);
        private readonly float[] _inputs, _h0, _final, _dh0, _dx, _states;
        private readonly int[] _tokens, _targets, _lengths;
        private Thread? _thread;
        private volatile bool _stop;

        public Worker(ParallelBpttEngine owner, int index, BpttEngine engine, int capacity)
        {
            _owner = owner;
            _index = index;
            _engine = engine;
            _capacity = capacity;
            RnnShape s = engine.Shape;
            int rows = engine.MaxSteps * capacity;
            Gradients = new RnnParameters(s);
            _inputs = new float[rows * s.InputSize];
            _dx = new float[rows * s.InputSize];
            _states = new float[rows * s.HiddenSize];
            _h0 = new float[capacity * s.HiddenSize];
            _final = new float[capacity * s.HiddenSize];
            _dh0 = new float[capacity * s.HiddenSize];
            _tokens = new int[rows];
            _targets = new int[rows];
            _lengths = new int[capacity];
        }

        public RnnParameters Gradients { get; }

        public double Loss { get; private set; }

        public Exception? Error { get; private set; }

        public void Start()
        {
            _thread = new Thread(Loop) { IsBackground = true, Name = $"Bptt.Fast worker {_index}" };
            _thread.Start();
        }

        public void Signal() => _start.Release();

        public void Stop()
        {
            _stop = true;
            _start.Release();
            _thread?.Join();
            _start.Dispose();
        }

        private void Loop()
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

        /// <summary>Gathers this worker's sequences, runs the engine, scatters the outputs back.</summary>
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
                _owner._done.Signal();
            }
        }

        private void Compute()
        {
            BatchPointers p = _owner._batch;
            RnnShape s = _engine.Shape;
            int ni = s.InputSize, nh = s.HiddenSize, active = _owner._active;
            int first = (int)((long)p.Size * _index / active), count = (int)((long)p.Size * (_index + 1) / active) - first;
            int rows = p.Steps * count;
            for (int t = 0; t < p.Steps; t++)
            {
                for (int b = 0; b < count; b++)
                {
                    int src = (t * p.Size) + first + b, dst = (t * count) + b;
                    _targets[dst] = p.Targets[src];
                    if (p.Tokens)
                    {
                        _tokens[dst] = p.TokenIds[src];
                    }
                    else
                    {
                        new ReadOnlySpan<float>(p.Inputs + ((long)src * ni), ni).CopyTo(_inputs.AsSpan(dst * ni, ni));
                    }
                }
            }

            Span<int> lengths = p.Lengths == null ? default : _lengths.AsSpan(0, count);
            for (int b = 0; b < lengths.Length; b++)
            {
                lengths[b] = p.Lengths[first + b];
            }

            Span<float> h0 = p.H0 == null ? default : _h0.AsSpan(0, count * nh);
            if (p.H0 != null)
            {
                new ReadOnlySpan<float>(p.H0 + ((long)first * nh), count * nh).CopyTo(h0);
            }

            var batch = p.Tokens
                ? new SequenceBatch<float>(p.Steps, count, _tokens.AsSpan(0, rows), _targets.AsSpan(0, rows))
                : new SequenceBatch<float>(p.Steps, count, _inputs.AsSpan(0, rows * ni), _targets.AsSpan(0, rows));
            batch = batch with
            {
                InitialState = h0,
                Lengths = lengths,
                FinalState = p.Final == null ? default : _final.AsSpan(0, count * nh),
                InitialStateGradient = p.Dh0 == null ? default : _dh0.AsSpan(0, count * nh),
                InputGradient = p.Dx == null ? default : _dx.AsSpan(0, rows * ni),
                HiddenStates = p.States == null ? default : _states.AsSpan(0, rows * nh),
            };
            Loss = _engine.ComputeGradients(_owner._parameters!, batch, Gradients);

            if (p.Final != null)
            {
                _final.AsSpan(0, count * nh).CopyTo(new Span<float>(p.Final + ((long)first * nh), count * nh));
            }

            if (p.Dh0 != null)
            {
                _dh0.AsSpan(0, count * nh).CopyTo(new Span<float>(p.Dh0 + ((long)first * nh), count * nh));
            }

            for (int t = 0; t < p.Steps; t++)
            {
                for (int b = 0; b < count; b++)
                {
                    int src = (t * count) + b, dst = (t * p.Size) + first + b;
                    if (p.Dx != null)
                    {
                        _dx.AsSpan(src * ni, ni).CopyTo(new Span<float>(p.Dx + ((long)dst * ni), ni));
                    }

                    if (p.States != null)
                    {
                        _states.AsSpan(src * nh, nh).CopyTo(new Span<float>(p.States + ((long)dst * nh), nh));
                    }
                }
            }
        }
    }
}
