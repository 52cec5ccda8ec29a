using BenchmarkDotNet.Attributes;
using Bptt.Fast.Serving;
using Bptt.Fast.Reference;

namespace Bptt.Fast.Bench;

/// <summary>The serving shapes: I = O = 64 up to H = 256, 128 above.</summary>
public static class ServingShape
{
    public static int Vocabulary(int h) => h <= 256 ? 64 : 128;

    /// <summary>
    /// Processes per serving row, ours and ONNX Runtime's alike. On a shared machine a whole process can run 10–30% slow (the
    /// same code measured 2.95 µs in one process and 2.38 µs in another, minutes apart), so one launch per row makes a ratio
    /// partly a draw of two processes; three give each side its own best process in the "best iteration" column.
    /// </summary>
    public const int Launches = 3;

    /// <summary>The tanh model every serving row of size H runs (Glorot, seeded), ours and ONNX Runtime's alike.</summary>
    public static RnnModel Model(int h, ulong seed)
    {
        int v = Vocabulary(h);
        var theta = new RnnParameters(new RnnShape(v, h, v));
        theta.InitializeGlorot(seed);
        return new RnnModel(theta, Activation.Tanh);
    }
}

/// <summary>
/// One streaming inference step, token in, hₜ and probabilities out (I = O = <see cref="ServingShape.Vocabulary"/>): the fast
/// rows call <see cref="RnnModel.Step(int, RnnState, Span{float}, StepOutput)"/>; the reference row composes the scalar
/// kernels: u = b_h + W_xh[:, token], hₜ = f(u + W_hh hₜ₋₁), vₜ = W_hy hₜ + b_y, yₜ = softmax(vₜ); the ONNX Runtime row runs
/// the exported step graph (Gather, Gemm, Tanh, Gemm, Softmax) through <see cref="OnnxRuntimeRunner"/>.
/// </summary>
[ProcessCount(ServingShape.Launches)]
public class InferenceStep : IHasWork, IDisposable
{
    private float[] _wxhT = null!, _whhT = null!, _bh = null!, _why = null!, _by = null!, _h = null!, _hPrev = null!, _u = null!, _logits = null!, _probs = null!;
    private int _token;
    private RnnModel _model = null!;
    private RnnState _state = null!;
    private OnnxRuntimeRunner? _ort;

    [Params(128, 256, 512, 1024)]
    public int H { get; set; } = 128;

    [ParamsSource(nameof(PathValues))]
    public PathParam Path { get; set; } = Paths.Default;

    public static IEnumerable<PathParam> PathValues => Paths.WithOnnxRuntime;

    private int V => ServingShape.Vocabulary(H);

    public double Flops => 2.0 * ((H * (double)H) + (H * (double)V));

    public string Group => "H=" + H;

    public bool IsReference => Path.IsReference;

    [GlobalSetup]
    public void Setup()
    {
        int v = V;
        var random = new Random(2);
        float[] Make(int n, float scale) => Enumerable.Range(0, n).Select(_ => ((float)random.NextDouble() - 0.5f) * scale).ToArray();
        float s = 2f / MathF.Sqrt(H);
        _wxhT = Make(v * H, s);
        _whhT = Make(H * H, s);
        _bh = Make(H, 0.1f);
        _why = Make(v * H, s);
        _by = Make(v, 0.1f);
        _h = Make(H, 1f);
        _hPrev = Make(H, 1f);
        _u = new float[H];
        _logits = new float[v];
        _probs = new float[v];
        if (Path.IsOnnxRuntime)
        {
            _ort = new OnnxRuntimeRunner(OnnxExport.StepGraph(ServingShape.Model(H, 2), OnnxInput.Tokens, StepOutput.Probabilities), [1], 1, H, [1, v]);
        }
        else if (!IsReference)
        {
            var theta = new RnnParameters(new RnnShape(v, H, v));
            theta.InitializeGlorot(2);
            _model = new RnnModel(theta, Activation.Tanh, Path.Isa);
            _state = _model.CreateState();
        }

        Paths.WarmUp(() => Step());
    }

    [Benchmark]
    public float Step()
    {
        int v = V;
        _token = (_token + 7) % v;
        if (_ort is not null)
        {
            _ort.Tokens[0] = _token;
            _ort.Run();
            return _ort.Y[0];
        }

        (_h, _hPrev) = (_hPrev, _h);
        ReadOnlySpan<float> column = _wxhT.AsSpan(_token * H, H);
        if (IsReference)
        {
            for (int i = 0; i < H; i++)
            {
                _u[i] = _bh[i] + column[i];
            }

            ReferenceKernels.RnnStep<float>(_whhT, _hPrev, _u, _h, Activation.Tanh);
            ReferenceKernels.Gemv<float>(_why, v, H, _h, _logits);
            for (int k = 0; k < v; k++)
            {
                _logits[k] += _by[k];
            }

            ReferenceKernels.SoftmaxCrossEntropy<float>(_logits, 0, _probs);
            return _probs[0];
        }

        _model.Step(_token, _state, _probs);
        return _probs[0];
    }

    [GlobalCleanup]
    public void Dispose()
    {
        _ort?.Dispose();
        _ort = null;
        GC.SuppressFinalize(this);
    }
}

/// <summary>
/// One step of B independent streams at once: <see cref="RnnModel.StepBatch"/> on the best ISA, and ONNX Runtime running
/// the exported step graph with the same B. The concrete classes fix B: <see cref="InferenceBatch16"/> (the default run)
/// and <see cref="InferenceBatchSweep"/> (B = 4, 8, 32, 64; <c>--filter '*InferenceBatchSweep*'</c>).
/// </summary>
public abstract class InferenceBatch : IHasWork, IDisposable
{
    private RnnModel _model = null!;
    private RnnStateBatch _states = null!;
    private int[] _tokens = null!;
    private float[] _probs = null!;
    private OnnxRuntimeRunner? _ort;

    [Params(256, 512)]
    public int H { get; set; } = 256;

    [ParamsSource(nameof(PathValues))]
    public PathParam Path { get; set; } = Paths.Best;

    public static IEnumerable<PathParam> PathValues => [Paths.Best, new PathParam(Paths.OnnxRuntime, 100)];

    /// <summary>B, the streams stepped together.</summary>
    protected abstract int Streams { get; }

    private int V => ServingShape.Vocabulary(H);

    public double Flops => 2.0 * Streams * ((H * (double)H) + (H * (double)V));

    public string Group => $"batch{Streams} H={H}";

    public bool IsReference => false;

    [GlobalSetup]
    public void Setup()
    {
        int v = V;
        _tokens = Enumerable.Range(0, Streams).Select(k => (k * 7) % v).ToArray();
        if (Path.IsOnnxRuntime)
        {
            _ort = new OnnxRuntimeRunner(OnnxExport.StepGraph(ServingShape.Model(H, 3), OnnxInput.Tokens, StepOutput.Probabilities), [Streams], Streams, H, [Streams, v]);
            for (int k = 0; k < Streams; k++)
            {
                _ort.Tokens[k] = _tokens[k];
            }
        }
        else
        {
            _model = ServingShape.Model(H, 3);
            _states = _model.CreateStateBatch(Streams);
            _probs = new float[Streams * v];
        }

        Paths.WarmUp(Step);
    }

    [Benchmark]
    public void Step()
    {
        if (_ort is not null)
        {
            _ort.Run();
        }
        else
        {
            _model.StepBatch(_tokens, _states, _probs);
        }
    }

    [GlobalCleanup]
    public void Dispose()
    {
        _ort?.Dispose();
        _ort = null;
        GC.SuppressFinalize(this);
    }
}

/// <summary>One step of 16 streams, the default run's batched serving row (#11's target: 1.25× ONNX Runtime at H = 256 and 512).</summary>
[ProcessCount(ServingShape.Launches)]
public class InferenceBatch16 : InferenceBatch
{
    protected override int Streams => 16;
}

/// <summary>One step of 4, 8, 32 and 64 streams against ONNX Runtime; not in the default run: <c>--filter '*InferenceBatchSweep*'</c>.</summary>
[ProcessCount(ServingShape.Launches)]
public class InferenceBatchSweep : InferenceBatch
{
    [Params(4, 8, 32, 64)]
    public int B { get; set; } = 4;

    protected override int Streams => B;
}

/// <summary>
/// A T = 64 token sequence of one stream, every step's probabilities, the state carried from call to call:
/// <see cref="RnnModel.RunSequence(ReadOnlySpan{int}, RnnState, RnnSequenceWorkspace, Span{float}, StepOutput, SequenceOutput)"/>
/// on the best ISA, and ONNX Runtime running the exported sequence graph in both forms (its RNN operator, and the
/// recurrence unrolled over the 64 steps); "vs ONNX Runtime" compares with the faster of the two.
/// </summary>
[ProcessCount(ServingShape.Launches)]
public class InferenceSequence : IHasWork, IDisposable
{
    public const int Steps = 64;
    private RnnModel _model = null!;
    private RnnState _state = null!;
    private RnnSequenceWorkspace _workspace = null!;
    private int[] _tokens = null!;
    private float[] _probs = null!;
    private OnnxRuntimeRunner? _ort;

    [Params(128, 512)]
    public int H { get; set; } = 128;

    [ParamsSource(nameof(PathValues))]
    public PathParam Path { get; set; } = Paths.Best;

    public static IEnumerable<PathParam> PathValues => [Paths.Best, new PathParam(Paths.OnnxRuntime, 100), new PathParam(Paths.OnnxRuntimeUnrolled, 101)];

    private int V => ServingShape.Vocabulary(H);

    public double Flops => 2.0 * Steps * ((H * (double)H) + (H * (double)V));

    public string Group => "T=64 H=" + H;

    public bool IsReference => false;

    [GlobalSetup]
    public void Setup()
    {
        int v = V;
        var random = new Random(4);
        _tokens = Enumerable.Range(0, Steps).Select(_ => random.Next(v)).ToArray();
        RnnModel model = ServingShape.Model(H, 4);
        if (Path.IsOnnxRuntime)
        {
            byte[] graph = Path.Name == Paths.OnnxRuntimeUnrolled
                ? OnnxExport.SequenceGraph(model, OnnxInput.Tokens, StepOutput.Probabilities, OnnxSequenceForm.Unrolled, Steps)
                : OnnxExport.SequenceGraph(model, OnnxInput.Tokens, StepOutput.Probabilities);
            _ort = new OnnxRuntimeRunner(graph, [Steps, 1], 1, H, [Steps, 1, v]);
            for (int t = 0; t < Steps; t++)
            {
                _ort.Tokens[t] = _tokens[t];
            }
        }
        else
        {
            _model = model;
            _state = _model.CreateState();
            _workspace = _model.CreateSequenceWorkspace(Steps);
            _probs = new float[Steps * v];
        }

        Paths.WarmUp(Run);
    }

    [Benchmark]
    public void Run()
    {
        if (_ort is not null)
        {
            _ort.Run();
        }
        else
        {
            _model.RunSequence(_tokens, _state, _workspace, _probs);
        }
    }

    [GlobalCleanup]
    public void Dispose()
    {
        _ort?.Dispose();
        _ort = null;
        GC.SuppressFinalize(this);
    }
}

/// <summary>
/// Where <see cref="InferenceBatch16"/>'s time goes: its two GEMMs alone on the best ISA, with B packed once as
/// <see cref="RnnModel.StepBatch"/> has it: the recurrent product 16×H×H (U += H₋₁ W_hhᵀ) and the output layer 16×O×H.
/// Not in the default run: <c>--filter *BatchStepGemm*</c>.
/// </summary>
public class BatchStepGemm : IHasWork
{
    private const int Streams = 16;
    private float[] _a = null!, _c = null!;
    private Internals.AlignedBuffer _packedB = null!, _packA = null!;
    private int _n;

    [Params(256, 512)]
    public int H { get; set; } = 256;

    [Params("recurrent", "output")]
    public string Part { get; set; } = "recurrent";

    private int N => Part == "recurrent" ? H : ServingShape.Vocabulary(H);

    public double Flops => 2.0 * Streams * H * N;

    public string Group => $"{Part} H={H}";

    public bool IsReference => false;

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(5);
        _n = N;
        _a = Enumerable.Range(0, Streams * H).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        float[] b = Enumerable.Range(0, _n * H).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        _c = new float[Streams * _n];
        Kernels.KernelSet k = Kernels.KernelSets.Current();
        _packedB = new Internals.AlignedBuffer(k.PackedBLength(H, _n));
        k.PackB(true, H, _n, b, H, _packedB.Span);
        _packA = new Internals.AlignedBuffer(Kernels.Bodies.GemmBlocking.PackALength);
        Paths.WarmUp(Multiply);
    }

    [Benchmark]
    public void Multiply() => Kernels.KernelSets.Current().Multiply(false, Streams, _n, H, _a, H, _packedB.Span, 0f, _c, _n, _packA.Span);
}
