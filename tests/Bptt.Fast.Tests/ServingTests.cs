using Bptt.Fast.Internals;
using Bptt.Fast.Serving;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>Streaming inference: equal to the engine's forward pass, safe to share, allocation-free.</summary>
public sealed class ServingTests
{
    private static readonly RnnShape Shape = new(13, 40, 11);

    private static RnnParameters Theta(ulong seed)
    {
        var theta = new RnnParameters(Shape);
        theta.InitializeGlorot(seed);
        var random = new SplitMix64(seed);
        for (int k = 0; k < theta.Bh.Length; k++)
        {
            theta.Bh[k] = random.NextSingle() - 0.5f;
        }

        return theta;
    }

    private static int[] Tokens(int n, ulong seed)
    {
        var random = new SplitMix64(seed);
        return Enumerable.Range(0, n).Select(_ => random.NextInt32(Shape.InputSize)).ToArray();
    }

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void SteppingOneTokenAtATimeEqualsTheEngineForwardPass(KernelIsa isa)
    {
        foreach (Activation f in Enum.GetValues<Activation>())
        {
            RnnParameters theta = Theta(3);
            int[] tokens = Tokens(30, 4);
            var states = new float[30 * Shape.HiddenSize];
            var engine = new BpttEngine(Shape, 30, 1, f, KernelPath.Reference);
            engine.Evaluate(theta, new SequenceBatch<float>(30, 1, tokens, new int[30]) { HiddenStates = states });
            var model = new RnnModel(theta, f, isa);
            RnnState state = model.CreateState();
            var logits = new float[Shape.OutputSize];
            var probs = new float[Shape.OutputSize];
            for (int t = 0; t < 30; t++)
            {
                model.Step(tokens[t], state, logits, StepOutput.Logits);
                for (int j = 0; j < Shape.HiddenSize; j++)
                {
                    Assert.Equal(states[(t * Shape.HiddenSize) + j], state.Hidden[j], 2e-5f);
                }

                // (3): the logits are W_hy hₜ + b_y.
                for (int k = 0; k < Shape.OutputSize; k++)
                {
                    double v = theta.By[k];
                    for (int j = 0; j < Shape.HiddenSize; j++)
                    {
                        v += theta.Why[(k * Shape.HiddenSize) + j] * (double)state.Hidden[j];
                    }

                    Assert.Equal(v, logits[k], 1e-4);
                }
            }

            RnnState other = model.CreateState();
            foreach (int token in tokens)
            {
                model.Step(token, other, probs);
            }

            Assert.Equal(1.0, probs.Sum(), 1e-5);
            Assert.Equal(RnnModel.Greedy(logits), RnnModel.Greedy(probs));
        }
    }

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void DenseSteppingMatchesTheReferenceStatesAndADoubleSoftmax(KernelIsa isa)
    {
        foreach (Activation f in Enum.GetValues<Activation>())
        {
            RnnParameters theta = Theta(5);
            const int T = 25;
            var random = new SplitMix64(6);
            float[] inputs = Enumerable.Range(0, T * Shape.InputSize).Select(_ => (2 * random.NextSingle()) - 1).ToArray();
            var states = new float[T * Shape.HiddenSize];
            new BpttEngine(Shape, T, 1, f, KernelPath.Reference).Evaluate(theta, new SequenceBatch<float>(T, 1, inputs, new int[T]) { HiddenStates = states });
            var model = new RnnModel(theta, f, isa);
            RnnState state = model.CreateState();
            var probs = new float[Shape.OutputSize];
            for (int t = 0; t < T; t++)
            {
                model.Step(inputs.AsSpan(t * Shape.InputSize, Shape.InputSize), state, probs, StepOutput.Probabilities);
                double[] logits = new double[Shape.OutputSize];
                for (int k = 0; k < Shape.OutputSize; k++)
                {
                    logits[k] = theta.By[k];
                    for (int j = 0; j < Shape.HiddenSize; j++)
                    {
                        Assert.Equal(states[(t * Shape.HiddenSize) + j], state.Hidden[j], 2e-5f);
                        logits[k] += theta.Why[(k * Shape.HiddenSize) + j] * (double)states[(t * Shape.HiddenSize) + j];
                    }
                }

                double max = logits.Max(), sum = logits.Sum(v => Math.Exp(v - max));
                for (int k = 0; k < Shape.OutputSize; k++)
                {
                    double expected = Math.Exp(logits[k] - max) / sum;
                    Assert.True(Math.Abs(probs[k] - expected) <= 1e-5 * Math.Max(expected, 1e-3), $"{isa} {f} t={t} class {k}: {probs[k]} vs {expected}");
                }
            }
        }
    }

    [Fact]
    public void BatchedSteppingEqualsSteppingEachStreamAlone()
    {
        RnnParameters theta = Theta(5);
        var model = new RnnModel(theta, Activation.Tanh);
        const int B = 16;
        RnnStateBatch batch = model.CreateStateBatch(B);
        var singles = Enumerable.Range(0, B).Select(_ => model.CreateState()).ToArray();
        var outputs = new float[B * Shape.OutputSize];
        var single = new float[Shape.OutputSize];
        for (int t = 0; t < 12; t++)
        {
            int[] tokens = Tokens(B, (ulong)(100 + t));
            model.StepBatch(tokens, batch, outputs);
            for (int b = 0; b < B; b++)
            {
                model.Step(tokens[b], singles[b], single);
                for (int k = 0; k < Shape.OutputSize; k++)
                {
                    Assert.Equal(single[k], outputs[(b * Shape.OutputSize) + k], 1e-5f);
                }
            }
        }
    }

    [Fact]
    public void ConcurrentCallersGetExactlyTheResultsOfSequentialCallers()
    {
        var model = new RnnModel(Theta(6), Activation.Tanh);
        const int Callers = 8, Steps = 200;
        float[][] Run(int caller)
        {
            RnnState state = model.CreateState();
            int[] tokens = Tokens(Steps, (ulong)caller);
            var outputs = new float[Steps][];
            for (int t = 0; t < Steps; t++)
            {
                outputs[t] = new float[Shape.OutputSize];
                model.Step(tokens[t], state, outputs[t]);
            }

            return outputs;
        }

        float[][][] sequential = Enumerable.Range(0, Callers).Select(Run).ToArray();
        var concurrent = new float[Callers][][];
        Parallel.For(0, Callers, new ParallelOptions { MaxDegreeOfParallelism = Callers }, c => concurrent[c] = Run(c));
        for (int c = 0; c < Callers; c++)
        {
            for (int t = 0; t < Steps; t++)
            {
                Assert.Equal(sequential[c][t], concurrent[c][t]); // bit for bit
            }
        }
    }

    [Theory]
    [InlineData("token step")]
    [InlineData("dense step")]
    [InlineData("sample")]
    [InlineData("batched step")]
    public void AStepAllocatesNothing(string what)
    {
        var model = new RnnModel(Theta(7), Activation.Tanh);
        RnnState state = model.CreateState();
        RnnStateBatch batch = model.CreateStateBatch(4);
        var output = new float[Shape.OutputSize];
        var outputs = new float[4 * Shape.OutputSize];
        int[] tokens = [1, 2, 3, 4];
        float[] x = Enumerable.Repeat(0.1f, Shape.InputSize).ToArray();
        var random = new Random(1);
        int token = 0;
        model.Step(token, state, output, StepOutput.Logits);
        Action step = what switch
        {
            "token step" => () => model.Step(token, state, output, StepOutput.Logits),
            "dense step" => () => model.Step(x, state, output),
            "sample" => () => token = RnnModel.Sample(output, 0.8f, random),
            _ => () => model.StepBatch(tokens, batch, outputs),
        };

        AllocationProbe.AssertSteadyStateAllocatesNothing(step, calls: 100);
    }

    [Fact]
    public void SamplingFollowsTheTemperature()
    {
        float[] logits = [2f, 1f, 0f, -1f];
        var random = new Random(42);
        var counts = new int[4];
        for (int k = 0; k < 40000; k++)
        {
            counts[RnnModel.Sample(logits, 1f, random)]++;
        }

        double z = logits.Sum(v => Math.Exp(v));
        for (int k = 0; k < 4; k++)
        {
            Assert.Equal(Math.Exp(logits[k]) / z, counts[k] / 40000.0, 0.01);
        }

        Assert.All(Enumerable.Range(0, 200), _ => Assert.Equal(0, RnnModel.Sample(logits, 0.01f, random)));
        Assert.Equal(0, RnnModel.Greedy(logits));
        Assert.Equal("temperature", Assert.Throws<ArgumentOutOfRangeException>(() => RnnModel.Sample(logits, 0f, random)).ParamName);
    }

    [Fact]
    public void BadInputIsRejected()
    {
        var model = new RnnModel(Theta(8), Activation.Tanh);
        RnnState state = model.CreateState();
        var output = new float[Shape.OutputSize];
        Assert.Equal("token", Assert.Throws<ArgumentOutOfRangeException>(() => model.Step(13, state, output)).ParamName);
        Assert.Equal("output", Assert.Throws<ArgumentException>(() => model.Step(1, state, new float[3])).ParamName);
        Assert.Equal("input", Assert.Throws<ArgumentException>(() => model.Step(new float[Shape.InputSize].Select(_ => float.NaN).ToArray(), state, output)).ParamName);
        Assert.Equal("state", Assert.Throws<ArgumentException>(() => model.Step(1, new RnnModel(new RnnParameters(new RnnShape(13, 41, 11)), Activation.Tanh).CreateState(), output)).ParamName);
        var bad = Theta(9);
        bad.Why[0] = float.NaN;
        Assert.Equal("parameters", Assert.Throws<ArgumentException>(() => new RnnModel(bad, Activation.Tanh)).ParamName);
    }
}
