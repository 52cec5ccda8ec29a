using BenchmarkDotNet.Attributes;
using Bptt.Fast.Serving;
using Bptt.Fast.Reference;

namespace Bptt.Fast.Bench;

/// <summary>
/// One streaming inference step, token in, hₜ and probabilities out, vocabulary 64: the fast rows call
/// <see cref="RnnModel.Step(int, RnnState, Span{float}, StepOutput)"/>; the reference row composes the scalar kernels:
/// u = b_h + W_xh[:, token], hₜ = f(u + W_hh hₜ₋₁), vₜ = W_hy hₜ + b_y, yₜ = softmax(vₜ).
/// </summary>
public class InferenceStep : IHasWork
{
    private const int Vocabulary = 64;
    private float[] _wxhT = null!, _whhT = null!, _bh = null!, _why = null!, _by = null!, _h = null!, _hPrev = null!, _u = null!, _logits = null!, _probs = null!;
    private int _token;
    private RnnModel _model = null!;
    private RnnState _state = null!;

    [Params(128, 256, 512, 1024)]
    public int H { get; set; } = 128;

    [ParamsSource(nameof(PathValues))]
    public PathParam Path { get; set; } = Paths.Default;

    public static IEnumerable<PathParam> PathValues => Paths.All;

    public double Flops => 2.0 * ((H * (double)H) + (H * (double)Vocabulary));

    public string Group => "H=" + H;

    public bool IsReference => Path.IsReference;

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(2);
        float[] Make(int n, float scale) => Enumerable.Range(0, n).Select(_ => ((float)random.NextDouble() - 0.5f) * scale).ToArray();
        float s = 2f / MathF.Sqrt(H);
        _wxhT = Make(Vocabulary * H, s);
        _whhT = Make(H * H, s);
        _bh = Make(H, 0.1f);
        _why = Make(Vocabulary * H, s);
        _by = Make(Vocabulary, 0.1f);
        _h = Make(H, 1f);
        _hPrev = Make(H, 1f);
        _u = new float[H];
        _logits = new float[Vocabulary];
        _probs = new float[Vocabulary];
        if (!IsReference)
        {
            var theta = new RnnParameters(new RnnShape(Vocabulary, H, Vocabulary));
            theta.InitializeGlorot(2);
            _model = new RnnModel(theta, Activation.Tanh, Path.Isa);
            _state = _model.CreateState();
        }

        Paths.WarmUp(() => Step());
    }

    [Benchmark]
    public float Step()
    {
        _token = (_token + 7) % Vocabulary;
        (_h, _hPrev) = (_hPrev, _h);
        ReadOnlySpan<float> column = _wxhT.AsSpan(_token * H, H);
        if (IsReference)
        {
            for (int i = 0; i < H; i++)
            {
                _u[i] = _bh[i] + column[i];
            }

            ReferenceKernels.RnnStep<float>(_whhT, _hPrev, _u, _h, Activation.Tanh);
            ReferenceKernels.Gemv<float>(_why, Vocabulary, H, _h, _logits);
            for (int k = 0; k < Vocabulary; k++)
            {
                _logits[k] += _by[k];
            }

            ReferenceKernels.SoftmaxCrossEntropy<float>(_logits, 0, _probs);
            return _probs[0];
        }

        _model.Step(_token, _state, _probs);
        return _probs[0];
    }
}

/// <summary>One step of 16 independent streams at once (<see cref="RnnModel.StepBatch"/>), vocabulary 64.</summary>
public class InferenceBatch16 : IHasWork
{
    private const int Vocabulary = 64, Streams = 16;
    private RnnModel _model = null!;
    private RnnStateBatch _states = null!;
    private int[] _tokens = null!;
    private float[] _probs = null!;

    [Params(256, 512)]
    public int H { get; set; } = 256;

    public double Flops => 2.0 * Streams * ((H * (double)H) + (H * (double)Vocabulary));

    public string Group => "batch16 H=" + H;

    public bool IsReference => false;

    [GlobalSetup]
    public void Setup()
    {
        var theta = new RnnParameters(new RnnShape(Vocabulary, H, Vocabulary));
        theta.InitializeGlorot(3);
        _model = new RnnModel(theta, Activation.Tanh);
        _states = _model.CreateStateBatch(Streams);
        _tokens = Enumerable.Range(0, Streams).Select(k => (k * 7) % Vocabulary).ToArray();
        _probs = new float[Streams * Vocabulary];
        Paths.WarmUp(Step);
    }

    [Benchmark]
    public void Step() => _model.StepBatch(_tokens, _states, _probs);
}
