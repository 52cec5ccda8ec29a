using Bptt.Fast.Serving;
using Microsoft.ML.OnnxRuntime;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>
/// Every exported graph runs in ONNX Runtime and gives RnnModel's outputs (≤ 1e−5 normwise) and state: step, RNN
/// operator and unrolled sequence graphs, token (OneHot and Gather forms) and dense input, every activation.
/// </summary>
public sealed class OnnxExportTests
{
    public enum GraphKind
    {
        Step,
        RnnOperator,
        Unrolled,
    }

    public static TheoryData<GraphKind, OnnxInput, Activation> Cases()
    {
        var data = new TheoryData<GraphKind, OnnxInput, Activation>();
        foreach (GraphKind kind in Enum.GetValues<GraphKind>())
        {
            foreach (OnnxInput input in Enum.GetValues<OnnxInput>())
            {
                foreach (Activation f in Enum.GetValues<Activation>())
                {
                    data.Add(kind, input, f);
                }
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void OnnxRuntimeGivesTheModelsOutputs(GraphKind kind, OnnxInput input, Activation f)
    {
        // I ≤ H: token input of the RNN operator goes through OneHot; I > H: through Gather with an identity W.
        foreach (RnnShape shape in new[] { new RnnShape(7, 12, 5), new RnnShape(20, 8, 6) })
        {
            foreach (StepOutput output in Enum.GetValues<StepOutput>())
            {
                Compare(kind, input, f, shape, output);
            }
        }
    }

    private static void Compare(GraphKind kind, OnnxInput input, Activation f, RnnShape shape, StepOutput output)
    {
        const int B = 3;
        int t = kind == GraphKind.Step ? 1 : 6, i = shape.InputSize, h = shape.HiddenSize, o = shape.OutputSize;
        var model = new RnnModel(SequenceServingTests.Theta(shape, 31), f);
        byte[] graph = kind switch
        {
            GraphKind.Step => OnnxExport.StepGraph(model, input, output),
            GraphKind.RnnOperator => OnnxExport.SequenceGraph(model, input, output),
            _ => OnnxExport.SequenceGraph(model, input, output, OnnxSequenceForm.Unrolled, t),
        };

        int[] ids = SequenceServingTests.Tokens(t * B, i, 32);
        float[] x = SequenceServingTests.Dense(t * B * i, 33);
        float[] h0 = SequenceServingTests.Dense(B * h, 34);

        // Ours: T steps of B streams, every step's output.
        RnnStateBatch states = model.CreateStateBatch(B);
        h0.CopyTo(states.Hidden);
        var expected = new float[t * B * o];
        RnnSequenceWorkspace workspace = model.CreateSequenceWorkspace(t, B);
        if (input == OnnxInput.Tokens)
        {
            model.RunSequenceBatch(ids, states, workspace, expected, output);
        }
        else
        {
            model.RunSequenceBatch(x, states, workspace, expected, output);
        }

        // ONNX Runtime, one thread, all graph optimizations.
        using var options = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        using var session = new InferenceSession(graph, options);
        long[] xShape = (kind, input) switch
        {
            (GraphKind.Step, OnnxInput.Tokens) => [B],
            (GraphKind.Step, _) => [B, i],
            (_, OnnxInput.Tokens) => [t, B],
            _ => [t, B, i],
        };
        using OrtValue xValue = input == OnnxInput.Tokens
            ? OrtValue.CreateTensorValueFromMemory(ids.Select(v => (long)v).ToArray(), xShape)
            : OrtValue.CreateTensorValueFromMemory(x, xShape);
        using OrtValue hValue = OrtValue.CreateTensorValueFromMemory(h0.ToArray(), [B, h]);
        using var run = new RunOptions();
        using IDisposableReadOnlyCollection<OrtValue> results = session.Run(run, ["x", "h"], [xValue, hValue], ["y", "h_out"]);
        ReadOnlySpan<float> y = results.First().GetTensorDataAsSpan<float>();
        ReadOnlySpan<float> hOut = results.Last().GetTensorDataAsSpan<float>();
        string what = $"{kind} {input} {f} {shape} {output}";
        Assert.True(SequenceServingTests.Normwise(y, expected) <= 1e-5, $"{what}: y differs by {SequenceServingTests.Normwise(y, expected)}");
        Assert.True(SequenceServingTests.Normwise(hOut, states.Hidden) <= 1e-5, $"{what}: h_out differs by {SequenceServingTests.Normwise(hOut, states.Hidden)}");
        Assert.Equal(kind == GraphKind.Step ? new long[] { B, o } : [t, B, o], results.First().GetTensorTypeAndShape().Shape);
    }

    [Fact]
    public void TheStateCarriesAcrossRunsOfTheStepGraph()
    {
        var shape = new RnnShape(9, 16, 4);
        var model = new RnnModel(SequenceServingTests.Theta(shape, 40), Activation.Sigmoid);
        int[] ids = SequenceServingTests.Tokens(10, shape.InputSize, 41);
        using var options = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1 };
        using var session = new InferenceSession(OnnxExport.StepGraph(model, OnnxInput.Tokens, StepOutput.Probabilities), options);
        RnnState state = model.CreateState();
        var ours = new float[shape.OutputSize];
        var h = new float[shape.HiddenSize];
        using var run = new RunOptions();
        foreach (int id in ids)
        {
            model.Step(id, state, ours);
            using OrtValue xValue = OrtValue.CreateTensorValueFromMemory(new long[] { id }, [1]);
            using OrtValue hValue = OrtValue.CreateTensorValueFromMemory(h, [1, shape.HiddenSize]);
            using IDisposableReadOnlyCollection<OrtValue> results = session.Run(run, ["x", "h"], [xValue, hValue], ["y", "h_out"]);
            Assert.True(SequenceServingTests.Normwise(results.First().GetTensorDataAsSpan<float>(), ours) <= 1e-5);
            h = results.Last().GetTensorDataAsSpan<float>().ToArray();
        }

        Assert.True(SequenceServingTests.Normwise(h, state.Hidden) <= 1e-5);
    }

    [Fact]
    public void BadArgumentsAreRefused()
    {
        var model = new RnnModel(SequenceServingTests.Theta(new RnnShape(3, 4, 2), 1), Activation.Tanh);
        Assert.Equal("model", Assert.Throws<ArgumentNullException>(() => OnnxExport.StepGraph(null!, OnnxInput.Tokens)).ParamName);
        Assert.Equal("input", Assert.Throws<ArgumentOutOfRangeException>(() => OnnxExport.StepGraph(model, (OnnxInput)5)).ParamName);
        Assert.Equal("output", Assert.Throws<ArgumentOutOfRangeException>(() => OnnxExport.SequenceGraph(model, OnnxInput.Dense, (StepOutput)5)).ParamName);
        Assert.Equal("form", Assert.Throws<ArgumentOutOfRangeException>(() => OnnxExport.SequenceGraph(model, OnnxInput.Dense, StepOutput.Logits, (OnnxSequenceForm)5)).ParamName);
        Assert.Equal("unrolledSteps", Assert.Throws<ArgumentOutOfRangeException>(() => OnnxExport.SequenceGraph(model, OnnxInput.Dense, StepOutput.Logits, OnnxSequenceForm.Unrolled, 0)).ParamName);
        Assert.Equal("unrolledSteps", Assert.Throws<ArgumentOutOfRangeException>(() => OnnxExport.SequenceGraph(model, OnnxInput.Dense, StepOutput.Logits, OnnxSequenceForm.Unrolled, OnnxExport.MaxUnrolledSteps + 1)).ParamName);
    }

    [Fact]
    public void ATokenTableSumThatOverflowsIsRefusedNotWrittenAsInfinity()
    {
        // b_h[1] + W_xh[1, 2] = 3e38 + 3e38 overflows to +∞: finite θ, which the model accepts, but the token graphs hold
        // the sum as an initializer, and no non-finite value may reach an exported file.
        var shape = new RnnShape(3, 4, 2);
        RnnParameters theta = SequenceServingTests.Theta(shape, 1);
        theta.Bh[1] = 3e38f;
        theta.Wxh[(1 * shape.InputSize) + 2] = 3e38f;
        var model = new RnnModel(theta, Activation.Tanh);
        foreach (Func<byte[]> export in new Func<byte[]>[]
        {
            () => OnnxExport.StepGraph(model, OnnxInput.Tokens),
            () => OnnxExport.SequenceGraph(model, OnnxInput.Tokens, StepOutput.Logits, OnnxSequenceForm.Unrolled, 4),
        })
        {
            var e = Assert.Throws<ArgumentException>(export);
            Assert.Equal("model", e.ParamName);
            Assert.Contains("W_xh[1, 2]", e.Message, StringComparison.Ordinal);
        }

        // Dense graphs and the RNN operator's token graph keep b_h and W_xh apart, and export.
        Assert.NotEmpty(OnnxExport.StepGraph(model, OnnxInput.Dense));
        Assert.NotEmpty(OnnxExport.SequenceGraph(model, OnnxInput.Tokens));
    }
}
