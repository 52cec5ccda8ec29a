using BenchmarkDotNet.Attributes;
using Bptt.Fast.Serving;

namespace Bptt.Fast.Bench;

/// <summary>
/// The steady state of a training step (workload S, dense and tokens) and of a streaming inference step (H = 128, 512)
/// on the default fast path, for <c>--aot</c>, which runs it under the JIT and as a NativeAOT binary compiled for the
/// machine's own instruction set, in one table.
/// </summary>
public class AotComparison
{
    private BpttEngine _engine = null!;
    private RnnParameters _theta = null!, _gradients = null!;
    private float[] _inputs = null!;
    private int[] _tokens = null!, _targets = null!;
    private RnnModel _model = null!;
    private RnnState _state = null!;
    private float[] _probs = null!;

    [Params("train S", "train S-tokens", "infer H=128", "infer H=512")]
    public string Case { get; set; } = "train S";

    [GlobalSetup]
    public void Setup()
    {
        if (Case.StartsWith("train", StringComparison.Ordinal))
        {
            Workload w = Case.EndsWith("tokens", StringComparison.Ordinal) ? Workload.STokens : Workload.S;
            _theta = new RnnParameters(w.Shape);
            _theta.InitializeGlorot(1);
            _gradients = new RnnParameters(w.Shape);
            _engine = new BpttEngine(w.Shape, w.T, w.B);
            (_inputs, _tokens, _targets) = w.Data();
            _engine.WarmUp();
            return;
        }

        int h = int.Parse(Case["infer H=".Length..], System.Globalization.CultureInfo.InvariantCulture);
        var theta = new RnnParameters(new RnnShape(64, h, 64));
        theta.InitializeGlorot(2);
        _model = new RnnModel(theta, Activation.Tanh);
        _state = _model.CreateState();
        _probs = new float[64];
        _model.WarmUp();
    }

    [Benchmark]
    public float Run()
    {
        if (_engine is not null)
        {
            SequenceBatch<float> batch = Case.EndsWith("tokens", StringComparison.Ordinal)
                ? new SequenceBatch<float>(Workload.S.T, 1, _tokens, _targets)
                : new SequenceBatch<float>(Workload.S.T, 1, _inputs, _targets);
            return _engine.ComputeGradients(_theta, batch, _gradients);
        }

        _model.Step(7, _state, _probs);
        return _probs[0];
    }
}
