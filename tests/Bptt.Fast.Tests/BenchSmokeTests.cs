using Bptt.Fast.Bench;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>Every benchmark body runs once, untimed, on every path, so that CI catches a broken bench.</summary>
public sealed class BenchSmokeTests
{
    public static TheoryData<string> PathNames()
    {
        var data = new TheoryData<string>();
        foreach (PathParam p in Paths.All)
        {
            data.Add(p.Name);
        }

        return data;
    }

    [Theory]
    [InlineData("Intel(R) Xeon(R) Processor", "intel-xeon-processor")]
    [InlineData("Intel(R) Core(TM) i7-8700K CPU @ 3.70GHz", "intel-core-i7-8700k-cpu-3-70ghz")]
    [InlineData("AMD EPYC 7B13 64-Core Processor", "amd-epyc-7b13-64-core-processor")]
    [InlineData("(R)", "unknown")]
    public void ResultFolderNamesDropTrademarkMarks(string model, string slug) => Assert.Equal(slug, Machine.Slug(model));

    [Theory]
    [MemberData(nameof(PathNames))]
    public void EveryBenchmarkBodyRunsOnce(string pathName)
    {
        Paths.SkipWarmUp = true;
        PathParam path = Paths.All.Single(p => p.Name == pathName);
        foreach (Workload w in new[] { Workload.S, Workload.STokens })
        {
            var training = new TrainingStep { Workload = w, Path = path };
            training.Setup();
            float loss = training.Step();

            // The first step's loss is the loss of θ₀ on the workload's data, computed here on the reference path.
            var theta = new RnnParameters(w.Shape);
            theta.InitializeGlorot(1);
            (float[] inputs, int[] tokens, int[] targets) = w.Data();
            SequenceBatch<float> batch = w.Tokens ? new(w.T, w.B, tokens, targets) : new(w.T, w.B, inputs, targets);
            float expected = new BpttEngine(w.Shape, w.T, w.B, path: KernelPath.Reference).Evaluate(theta, batch);
            Assert.True(Math.Abs(loss - expected) <= 1e-4 * Math.Abs(expected), $"{path.Name} {w.Name}: {loss} vs {expected}");

            // Training FLOPs: 3 × forward, forward = 2·T·B·(I·H + H·H + H·O).
            (int i, int h, int o) = (w.Shape.InputSize, w.Shape.HiddenSize, w.Shape.OutputSize);
            Assert.Equal(3.0 * 2 * w.T * w.B * ((i * h) + (h * h) + (h * o)), training.Flops);
        }

        // A two-layer workload runs too; its FLOPs add the second layer's (D·H)·H + H·H per row: for S-2L,
        // 64·128 + 128·128 (layer 1) + 128·128 + 128·128 (layer 2) + 128·64 (head) = 65,536 per row.
        var stacked = new TrainingStep { Workload = Workload.S2, Path = path };
        stacked.Setup();
        Assert.True(float.IsFinite(stacked.Step()));
        Assert.Equal(3.0 * 2 * 64 * 65_536, stacked.Flops);
        Assert.Equal(3.0 * 2 * 32 * 16 * ((2 * ((128 * 512) + (512 * 512))) + (2 * ((1024 * 512) + (512 * 512))) + (1024 * 128)), new TrainingStep { Workload = Workload.BM2Bi }.Flops);

        var inference = new InferenceStep { H = 128, Path = path };
        inference.Setup();
        Assert.True(float.IsFinite(inference.Step()));

        var gemm = new Gemm { Shape = "S 64×128×128", Path = path };
        gemm.Setup();
        gemm.Multiply();
        Assert.Equal(2.0 * 64 * 128 * 128, gemm.Flops);

        foreach (string kernel in new[] { "Gemv", "GemvTransposed", "RnnStep" })
        {
            var matVec = new MatVec { Kernel = kernel, H = 128, Path = path };
            matVec.Setup();
            matVec.Run();
        }

        foreach (string kernel in new[] { "SoftmaxCrossEntropy", "Tanh" })
        {
            var elementwise = new Elementwise { Kernel = kernel, N = 64, Path = path };
            elementwise.Setup();
            Assert.True(float.IsFinite(elementwise.Run()));
        }
    }

    [Fact]
    public void PathIndependentBodiesRunOnce()
    {
        Paths.SkipWarmUp = true;
        foreach (PathParam path in InferenceBatch.PathValues)
        {
            using var batch = new InferenceBatch16 { H = 256, Path = path };
            batch.Setup();
            batch.Step();
            using var sweep = new InferenceBatchSweep { H = 256, B = 4, Path = path };
            sweep.Setup();
            sweep.Step();
        }

        foreach (PathParam path in InferenceSequence.PathValues)
        {
            using var sequence = new InferenceSequence { H = 128, Path = path };
            sequence.Setup();
            sequence.Run();
        }

        foreach (string part in new[] { "recurrent", "output" })
        {
            var gemm = new BatchStepGemm { H = 256, Part = part };
            gemm.Setup();
            gemm.Multiply();
        }

        using var ort = new InferenceStep { H = 128, Path = InferenceStep.PathValues.Single(p => p.IsOnnxRuntime) };
        ort.Setup();
        Assert.True(float.IsFinite(ort.Step()));
        using var parallel = new DataParallel { Workload = Workload.BM, Workers = 2 };
        parallel.Setup();
        Assert.True(float.IsFinite(parallel.Step()));
    }

    [Fact]
    public void TheHeadlineSetCoversEveryWorkloadAndPath()
    {
        Assert.Equal(["S", "S-tokens", "S-2L", "M", "M-2L", "BM", "BM-2L-bi", "L"], TrainingStep.Workloads.Select(w => w.Name));
        Assert.Equal((2, 1, 2, 1, 2, 2), (Workload.S2.Shape.Layers, Workload.S2.Shape.Directions, Workload.M2.Shape.Layers, Workload.M2.Shape.Directions, Workload.BM2Bi.Shape.Layers, Workload.BM2Bi.Shape.Directions));
        Assert.Equal(Paths.Reference, Paths.All.First().Name);
        Assert.Contains(Paths.All, p => p.Name == "Fast." + KernelInfo.BestSupported);
        Assert.Contains(InferenceStep.PathValues, p => p.IsOnnxRuntime);
        Assert.Equal([64, 64, 128, 128], new[] { 128, 256, 512, 1024 }.Select(ServingShape.Vocabulary));
        Assert.True(Workload.S.CompareTo(Workload.L) < 0);
    }

    [Fact]
    public void TheOnnxRuntimeRowComputesWhatOurRowComputes()
    {
        // The bench's ONNX Runtime runner (IOBinding, two bindings that alternate the state) against RnnModel.Step.
        Serving.RnnModel model = ServingShape.Model(32, 9);
        using var runner = new OnnxRuntimeRunner(Serving.OnnxExport.StepGraph(model, Serving.OnnxInput.Tokens, Serving.StepOutput.Probabilities), [1], 1, 32, [1, 64]);
        Serving.RnnState state = model.CreateState();
        var ours = new float[64];
        foreach (int token in new[] { 3, 60, 0, 17, 17, 42 })
        {
            model.Step(token, state, ours);
            runner.Tokens[0] = token;
            runner.Run();
            Assert.True(SequenceServingTests.Normwise(runner.Y, ours) <= 1e-5);
            Assert.True(SequenceServingTests.Normwise(runner.State, state.Hidden) <= 1e-5);
        }
    }
}
