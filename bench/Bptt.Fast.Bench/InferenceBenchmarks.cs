using BenchmarkDotNet.Attributes;
using Bptt.Fast.Kernels;
using Bptt.Fast.Reference;

namespace Bptt.Fast.Bench;

/// <summary>
/// One streaming inference step, token in, hₜ and probabilities out, vocabulary 64: u = b_h + W_xh[:, token],
/// hₜ = f(u + W_hh hₜ₋₁) (fused step), vₜ = W_hy hₜ + b_y, yₜ = softmax(vₜ).
/// </summary>
public class InferenceStep : IHasWork
{
    private const int Vocabulary = 64;
    private float[] _wxhT = null!, _whhT = null!, _bh = null!, _why = null!, _by = null!, _h = null!, _hPrev = null!, _u = null!, _logits = null!, _probs = null!;
    private int _token;

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

        KernelIsa isa = Path.Isa;
        _bh.CopyTo(_u, 0);
        FastKernels.Axpy(isa, 1f, column, _u);
        FastKernels.RnnStep(isa, _whhT, _hPrev, _u, _h, Activation.Tanh);
        FastKernels.Gemv(isa, _why, Vocabulary, H, _h, _logits);
        FastKernels.Axpy(isa, 1f, _by, _logits);
        FastKernels.SoftmaxCrossEntropy(isa, _logits, 0, _probs);
        return _probs[0];
    }
}
