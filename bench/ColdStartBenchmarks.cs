using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;
using Bptt.Fast.Serving;

namespace Bptt.Fast.Bench;

/// <summary>
/// The first call in a fresh process (<see cref="RunStrategy.ColdStart"/>: one launch per measurement, no warm-up): a
/// training step of workload S and a streaming inference step at H = 128, each with and without the library's
/// <c>WarmUp()</c> called in the setup. Tiered compilation is at its defaults. Run with <c>--filter '*ColdStart*'</c>;
/// compare with the steady-state rows of the default run.
/// </summary>
[SimpleJob(RunStrategy.ColdStart, launchCount: 15, warmupCount: 0, iterationCount: 1)]
public class ColdStart
{
    private BpttEngine _engine = null!;
    private RnnParameters _theta = null!, _gradients = null!;
    private float[] _inputs = null!;
    private int[] _targets = null!;
    private RnnModel _model = null!;
    private RnnState _state = null!;
    private float[] _probs = null!;

    [Params(false, true)]
    public bool WarmUp { get; set; }

    [GlobalSetup(Target = nameof(TrainingStep))]
    public void SetupTraining()
    {
        Workload w = Workload.S;
        _theta = new RnnParameters(w.Shape);
        _theta.InitializeGlorot(1);
        _gradients = new RnnParameters(w.Shape);
        _engine = new BpttEngine(w.Shape, w.T, w.B);
        (_inputs, _, _targets) = w.Data();
        if (WarmUp)
        {
            _engine.WarmUp();
        }
    }

    [GlobalSetup(Target = nameof(InferenceStep))]
    public void SetupInference()
    {
        var theta = new RnnParameters(new RnnShape(64, 128, 64));
        theta.InitializeGlorot(2);
        _model = new RnnModel(theta, Activation.Tanh);
        _state = _model.CreateState();
        _probs = new float[64];
        if (WarmUp)
        {
            _model.WarmUp();
        }
    }

    [Benchmark]
    public float TrainingStep() => _engine.ComputeGradients(_theta, new SequenceBatch<float>(Workload.S.T, 1, _inputs, _targets), _gradients);

    [Benchmark]
    public float InferenceStep()
    {
        _model.Step(7, _state, _probs);
        return _probs[0];
    }
}
