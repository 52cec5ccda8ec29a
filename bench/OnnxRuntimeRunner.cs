using Bptt.Fast.Serving;
using Microsoft.ML.OnnxRuntime;

namespace Bptt.Fast.Bench;

/// <summary>
/// ONNX Runtime as a serving baseline, set up the way its documentation recommends for low latency on one core: one
/// intra-op and one inter-op thread, sequential execution, every graph optimization (ORT_ENABLE_ALL), and IOBinding with
/// OrtValues made once over pinned arrays, so a run copies nothing in or out. The state is carried as with
/// <see cref="RnnState"/>: two bindings alternate h → h_out and h_out → h, so no run copies the state either.
/// </summary>
public sealed class OnnxRuntimeRunner : IDisposable
{
    private readonly InferenceSession _session;
    private readonly RunOptions _run = new();
    private readonly OrtValue _x, _y, _hA, _hB;
    private readonly OrtIoBinding _forward, _backward;
    private readonly float[] _stateA, _stateB;
    private bool _flip;

    /// <param name="graph">The ONNX model (from <see cref="OnnxExport"/>).</param>
    /// <param name="xShape">The shape of the token input x (int64).</param>
    /// <param name="streams">B.</param>
    /// <param name="hidden">H.</param>
    /// <param name="yShape">The shape of y.</param>
    public OnnxRuntimeRunner(byte[] graph, long[] xShape, int streams, int hidden, long[] yShape)
    {
        using var options = new SessionOptions
        {
            IntraOpNumThreads = 1,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
        };
        _session = new InferenceSession(graph, options);
        Tokens = new long[xShape.Aggregate(1L, (a, b) => a * b)];
        Y = new float[yShape.Aggregate(1L, (a, b) => a * b)];
        _stateA = new float[streams * hidden];
        _stateB = new float[streams * hidden];
        _x = OrtValue.CreateTensorValueFromMemory(Tokens, xShape);
        _y = OrtValue.CreateTensorValueFromMemory(Y, yShape);
        _hA = OrtValue.CreateTensorValueFromMemory(_stateA, [streams, hidden]);
        _hB = OrtValue.CreateTensorValueFromMemory(_stateB, [streams, hidden]);
        _forward = Bind(_hA, _hB);
        _backward = Bind(_hB, _hA);
    }

    /// <summary>The token ids of the next run (the array x is bound to).</summary>
    public long[] Tokens { get; }

    /// <summary>The last run's y.</summary>
    public float[] Y { get; }

    /// <summary>The state after the last run.</summary>
    public ReadOnlySpan<float> State => _flip ? _stateB : _stateA;

    /// <summary>One run: x and the current state in, y and the next state out.</summary>
    public void Run()
    {
        _session.RunWithBinding(_run, _flip ? _backward : _forward);
        _flip = !_flip;
    }

    public void Dispose()
    {
        _forward.Dispose();
        _backward.Dispose();
        _x.Dispose();
        _y.Dispose();
        _hA.Dispose();
        _hB.Dispose();
        _run.Dispose();
        _session.Dispose();
    }

    private OrtIoBinding Bind(OrtValue h, OrtValue hOut)
    {
        OrtIoBinding binding = _session.CreateIoBinding();
        binding.BindInput("x", _x);
        binding.BindInput("h", h);
        binding.BindOutput("y", _y);
        binding.BindOutput("h_out", hOut);
        return binding;
    }
}
