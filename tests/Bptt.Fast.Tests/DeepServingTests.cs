using Bptt.Fast.Internals;
using Bptt.Fast.Reference;
using Bptt.Fast.Serving;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>
/// Serving stacked and bidirectional networks: stacked steps (token and dense, one stream and many) and sequence calls of
/// every depth and direction equal the double reference's forward pass (every layer's state, the outputs, the final states
/// in the engine's <c>[L·D, B, H]</c> layout) on every ISA; a bidirectional model refuses to step; the deep paths allocate
/// nothing; the ONNX export refuses what it cannot write.
/// </summary>
public sealed class DeepServingTests
{
    private const double Tolerance = 1e-4;

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void StackedStepsEqualTheReferenceLayerByLayer(KernelIsa isa)
    {
        foreach (int layers in new[] { 2, 3 })
        {
            foreach (Activation f in Enum.GetValues<Activation>())
            {
                foreach (bool tokens in new[] { true, false })
                {
                    var shape = new RnnShape(13, 21, 9) { Layers = layers };
                    const int T = 9;
                    RnnParameters theta = Theta(shape, (ulong)(layers * 7));
                    Feed data = Feed.Create(shape, T, 1, tokens, seed: (ulong)layers + 40);
                    ReferenceBptt<double> reference = Forward(shape, f, theta, data, out double[] _);
                    double[] logits = Logits(theta, reference.HiddenStates, T);

                    var model = new RnnModel(theta, f, isa);
                    RnnState state = model.CreateState(), probabilities = model.CreateState();
                    Assert.Equal(layers * shape.HiddenSize, state.Hidden.Length);
                    data.H0.CopyTo(state.Hidden);
                    data.H0.CopyTo(probabilities.Hidden);
                    var v = new float[shape.OutputSize];
                    var y = new float[shape.OutputSize];
                    string what = $"{isa} L={layers} {f} {(tokens ? "tokens" : "dense")}";
                    for (int t = 0; t < T; t++)
                    {
                        if (tokens)
                        {
                            model.Step(data.Tokens[t], state, v, StepOutput.Logits);
                            model.Step(data.Tokens[t], probabilities, y);
                        }
                        else
                        {
                            model.Step(data.Inputs.AsSpan(t * shape.InputSize, shape.InputSize), state, v, StepOutput.Logits);
                            model.Step(data.Inputs.AsSpan(t * shape.InputSize, shape.InputSize), probabilities, y);
                        }

                        for (int l = 0; l < layers; l++)
                        {
                            AssertClose(state.Layer(l), reference.LayerStates(l, 0).Slice(t * shape.HiddenSize, shape.HiddenSize), $"layer {l} state at t={t}, {what}");
                            Assert.True(state.Layer(l).SequenceEqual(state.Hidden.Slice(l * shape.HiddenSize, shape.HiddenSize)), "Layer(l) is row l of Hidden");
                        }

                        AssertClose(v, logits.AsSpan(t * shape.OutputSize, shape.OutputSize), $"logits at t={t}, {what}");
                        AssertClose(y, Softmax(logits, t, shape.OutputSize), $"probabilities at t={t}, {what}");
                    }
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void StackedBatchedStepsEqualTheReferenceInTheEngineStateLayout(KernelIsa isa)
    {
        foreach (int layers in new[] { 2, 3 })
        {
            foreach (int b in new[] { 1, 3, 6 })
            {
                Activation f = b == 3 ? Activation.Relu : Activation.Tanh;
                var shape = new RnnShape(11, 19, 7) { Layers = layers };
                const int T = 6;
                RnnParameters theta = Theta(shape, (ulong)(layers + b));
                Feed data = Feed.Create(shape, T, b, tokens: true, seed: (ulong)(b * 10) + (ulong)layers);
                ReferenceBptt<double> reference = Forward(shape, f, theta, data, out double[] final);
                double[] logits = Logits(theta, reference.HiddenStates, T * b);

                var model = new RnnModel(theta, f, isa);
                RnnStateBatch states = model.CreateStateBatch(b);
                Assert.Equal(layers * b * shape.HiddenSize, states.Hidden.Length);
                data.H0.CopyTo(states.Hidden);
                var outputs = new float[b * shape.OutputSize];
                int block = b * shape.HiddenSize;
                string what = $"{isa} L={layers} B={b} {f}";
                for (int t = 0; t < T; t++)
                {
                    model.StepBatch(data.Tokens.AsSpan(t * b, b), states, outputs, StepOutput.Logits);
                    for (int l = 0; l < layers; l++)
                    {
                        AssertClose(states.Layer(l), reference.LayerStates(l, 0).Slice(t * block, block), $"layer {l} states at t={t}, {what}");
                    }

                    AssertClose(outputs, logits.AsSpan(t * b * shape.OutputSize, b * shape.OutputSize), $"logits at t={t}, {what}");
                }

                // After T steps the block is the reference's final state, [L, B, H] as in SequenceBatch.FinalState.
                AssertClose(states.Hidden, final, $"final states, {what}");
            }
        }
    }

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void StackedSequenceCallsInPiecesEqualTheReference(KernelIsa isa)
    {
        foreach (int layers in new[] { 2, 3 })
        {
            foreach (int b in new[] { 1, 2, 5 })
            {
                foreach (bool tokens in new[] { true, false })
                {
                    var shape = new RnnShape(10, 23, 8) { Layers = layers };
                    const int T = 7, First = 3;
                    Activation f = tokens ? Activation.Tanh : Activation.Sigmoid;
                    RnnParameters theta = Theta(shape, (ulong)(layers * b) + 3);
                    Feed data = Feed.Create(shape, T, b, tokens, seed: (ulong)(layers * 100) + (ulong)b + (tokens ? 0UL : 50UL));
                    ReferenceBptt<double> reference = Forward(shape, f, theta, data, out double[] final);
                    double[] logits = Logits(theta, reference.HiddenStates, T * b);

                    var model = new RnnModel(theta, f, isa);
                    RnnSequenceWorkspace workspace = model.CreateSequenceWorkspace(T, b);
                    var outputs = new float[T * b * shape.OutputSize];
                    float[] h = Run(model, data, b, workspace, outputs, First);
                    string what = $"{isa} L={layers} B={b} {(tokens ? "tokens" : "dense")}";
                    AssertClose(outputs, logits, $"logits of the two pieces, {what}");
                    AssertClose(h, final, $"final states, {what}");

                    // The last step only, as probabilities, in one call.
                    var last = new float[b * shape.OutputSize];
                    h = Run(model, data, b, workspace, last, T, StepOutput.Probabilities, SequenceOutput.LastStep);
                    AssertClose(h, final, $"final states (last step), {what}");
                    for (int r = 0; r < b; r++)
                    {
                        AssertClose(last.AsSpan(r * shape.OutputSize, shape.OutputSize), Softmax(logits, ((T - 1) * b) + r, shape.OutputSize), $"last-step probabilities of stream {r}, {what}");
                    }
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void BidirectionalSequenceCallsEqualTheReference(KernelIsa isa)
    {
        foreach (int layers in new[] { 1, 2, 3 })
        {
            foreach (int b in new[] { 1, 2, 5 })
            {
                foreach (bool tokens in new[] { true, false })
                {
                    var shape = new RnnShape(9, 17, 6) { Layers = layers, Directions = 2 };
                    const int T = 6;
                    Activation f = b == 2 ? Activation.Relu : Activation.Tanh;
                    RnnParameters theta = Theta(shape, (ulong)(layers * 31) + (ulong)b);
                    Feed data = Feed.Create(shape, T, b, tokens, seed: (ulong)(layers * 1000) + (ulong)b + (tokens ? 0UL : 7UL));
                    ReferenceBptt<double> reference = Forward(shape, f, theta, data, out double[] final);
                    double[] logits = Logits(theta, reference.HiddenStates, T * b);

                    var model = new RnnModel(theta, f, isa);
                    RnnSequenceWorkspace workspace = model.CreateSequenceWorkspace(T, b);
                    var outputs = new float[T * b * shape.OutputSize];
                    float[] h = Run(model, data, b, workspace, outputs, T);
                    string what = $"{isa} L={layers} D=2 B={b} {f} {(tokens ? "tokens" : "dense")}";
                    Assert.Equal(2 * layers * b * shape.HiddenSize, h.Length);
                    AssertClose(outputs, logits, $"logits, {what}");
                    AssertClose(h, final, $"final states (reverse: h at step 1), {what}");

                    var last = new float[b * shape.OutputSize];
                    h = Run(model, data, b, workspace, last, T, StepOutput.Probabilities, SequenceOutput.LastStep);
                    AssertClose(h, final, $"final states (last step), {what}");
                    for (int r = 0; r < b; r++)
                    {
                        AssertClose(last.AsSpan(r * shape.OutputSize, shape.OutputSize), Softmax(logits, ((T - 1) * b) + r, shape.OutputSize), $"last-step probabilities of stream {r}, {what}");
                    }
                }
            }
        }
    }

    [Fact]
    public void SteppingABidirectionalModelIsRefusedAndChangesNothing()
    {
        var shape = new RnnShape(5, 6, 4) { Directions = 2 };
        var model = new RnnModel(Theta(shape, 1), Activation.Tanh);
        RnnState state = model.CreateState();
        RnnStateBatch states = model.CreateStateBatch(2);
        Random(2 * shape.HiddenSize, 3).CopyTo(state.Hidden);
        Random(4 * shape.HiddenSize, 4).CopyTo(states.Hidden);
        float[] hidden = state.Hidden.ToArray(), block = states.Hidden.ToArray();
        var output = new float[shape.OutputSize];
        var outputs = new float[2 * shape.OutputSize];
        output.AsSpan().Fill(5f);
        outputs.AsSpan().Fill(5f);
        foreach (Action call in new Action[]
        {
            () => model.Step(1, state, output),
            () => model.Step(new float[shape.InputSize], state, output),
            () => model.StepBatch([1, 2], states, outputs),
        })
        {
            var e = Assert.Throws<InvalidOperationException>(call);
            Assert.Contains("bidirectional", e.Message, StringComparison.Ordinal);
            Assert.Contains("RunSequence", e.Message, StringComparison.Ordinal);
        }

        Assert.Equal(hidden, state.Hidden.ToArray());
        Assert.Equal(block, states.Hidden.ToArray());
        Assert.All(output, v => Assert.Equal(5f, v));
        Assert.All(outputs, v => Assert.Equal(5f, v));
    }

    [Fact]
    public void LayerViewsAndResetFollowTheStateLayout()
    {
        var shape = new RnnShape(4, 3, 2) { Layers = 2, Directions = 2 };
        var model = new RnnModel(Theta(shape, 2), Activation.Tanh);
        RnnState state = model.CreateState();
        state.Layer(1, 1).Fill(7f);
        Assert.Equal([0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 7, 7], state.Hidden.ToArray());
        Assert.Equal("layer", Assert.Throws<ArgumentOutOfRangeException>(() => state.Layer(2, 0)).ParamName);
        Assert.Equal("direction", Assert.Throws<ArgumentOutOfRangeException>(() => state.Layer(0, 2)).ParamName);

        RnnStateBatch states = model.CreateStateBatch(3);
        states.Hidden.Fill(1f);
        states.Layer(0, 1).Fill(2f);
        states.Reset(1);
        float[] h = states.Hidden.ToArray();
        int hs = shape.HiddenSize, blockLength = 3 * hs;
        for (int blk = 0; blk < 4; blk++)
        {
            for (int b = 0; b < 3; b++)
            {
                float expected = b == 1 ? 0f : blk == 1 ? 2f : 1f;
                Assert.All(h.AsSpan((blk * blockLength) + (b * hs), hs).ToArray(), v => Assert.Equal(expected, v));
            }
        }

        Assert.Equal("direction", Assert.Throws<ArgumentOutOfRangeException>(() => model.CreateStateBatch(1).Layer(1, 2)).ParamName);
    }

    [Fact]
    public void TheOnnxExportRefusesStackedAndBidirectionalModels()
    {
        foreach (RnnShape shape in new[] { new RnnShape(4, 5, 3) { Layers = 2 }, new RnnShape(4, 5, 3) { Directions = 2 } })
        {
            var model = new RnnModel(Theta(shape, 5), Activation.Tanh);
            foreach (Func<byte[]> export in new Func<byte[]>[]
            {
                () => OnnxExport.StepGraph(model, OnnxInput.Tokens),
                () => OnnxExport.SequenceGraph(model, OnnxInput.Dense),
                () => OnnxExport.SequenceGraph(model, OnnxInput.Tokens, StepOutput.Logits, OnnxSequenceForm.Unrolled, 3),
            })
            {
                var e = Assert.Throws<ArgumentException>(() => export());
                Assert.Equal("model", e.ParamName);
                Assert.Contains($"Layers = {shape.Layers}, Directions = {shape.Directions}", e.Message, StringComparison.Ordinal);
            }
        }
    }

    [Fact]
    public void WarmUpRunsOnDeepModelsAndChangesNoResult()
    {
        foreach (RnnShape shape in new[] { new RnnShape(6, 8, 5) { Layers = 3 }, new RnnShape(6, 8, 5) { Layers = 2, Directions = 2 } })
        {
            RnnParameters theta = Theta(shape, 9);
            var warm = new RnnModel(theta, Activation.Tanh);
            warm.WarmUp();
            var cold = new RnnModel(theta, Activation.Tanh);
            int[] tokens = [1, 4, 0, 5];
            float[] a = new float[4 * shape.OutputSize], b = new float[4 * shape.OutputSize];
            RnnState sa = warm.CreateState(), sb = cold.CreateState();
            warm.RunSequence(tokens, sa, warm.CreateSequenceWorkspace(4), a);
            cold.RunSequence(tokens, sb, cold.CreateSequenceWorkspace(4), b);
            Assert.Equal(b, a);
            Assert.Equal(sb.Hidden.ToArray(), sa.Hidden.ToArray());
        }
    }

    [Theory]
    [InlineData("stacked token step")]
    [InlineData("stacked dense step")]
    [InlineData("stacked batched step")]
    [InlineData("stacked sequence")]
    [InlineData("stacked sequence batch, dense")]
    [InlineData("bidirectional sequence")]
    [InlineData("bidirectional sequence batch")]
    public void DeepServingCallsAllocateNothing(string what)
    {
        bool bidirectional = what.StartsWith("bidirectional", StringComparison.Ordinal);
        RnnShape shape = bidirectional ? new RnnShape(12, 24, 10) { Layers = 2, Directions = 2 } : new RnnShape(12, 24, 10) { Layers = 3 };
        var model = new RnnModel(Theta(shape, 21), Activation.Tanh);
        model.WarmUp();
        const int T = 8, B = 5;
        int i = shape.InputSize, o = shape.OutputSize;
        RnnState state = model.CreateState();
        RnnStateBatch states = model.CreateStateBatch(B);
        RnnSequenceWorkspace workspace = model.CreateSequenceWorkspace(T, B);
        int[] ids = Feed.Create(shape, T, B, tokens: true, seed: 22).Tokens;
        float[] x = Random(T * B * i, 23);
        var output = new float[o];
        var outputs = new float[T * B * o];
        Action call = what switch
        {
            "stacked token step" => () => model.Step(ids[0], state, output, StepOutput.Logits),
            "stacked dense step" => () => model.Step(x.AsSpan(0, i), state, output),
            "stacked batched step" => () => model.StepBatch(ids.AsSpan(0, B), states, outputs.AsSpan(0, B * o)),
            "stacked sequence" or "bidirectional sequence" => () => model.RunSequence(ids.AsSpan(0, T), state, workspace, outputs.AsSpan(0, T * o)),
            "stacked sequence batch, dense" => () => model.RunSequenceBatch(x, states, workspace, outputs, StepOutput.Logits),
            _ => () => model.RunSequenceBatch(ids, states, workspace, outputs.AsSpan(0, B * o), StepOutput.Probabilities, SequenceOutput.LastStep),
        };

        call();
        AllocationProbe.AssertSteadyStateAllocatesNothing(call, calls: 50);
    }

    /// <summary>θ with Glorot weights and non-zero biases in every block and the head (a bias in the wrong place shows).</summary>
    internal static RnnParameters Theta(RnnShape shape, ulong seed)
    {
        var theta = new RnnParameters(shape);
        theta.InitializeGlorot(seed);
        var random = new SplitMix64(seed + 1);
        for (int l = 0; l < shape.Layers; l++)
        {
            for (int d = 0; d < shape.Directions; d++)
            {
                Span<float> bh = theta.LayerBh(l, d);
                for (int k = 0; k < bh.Length; k++)
                {
                    bh[k] = random.NextSingle() - 0.5f;
                }
            }
        }

        for (int k = 0; k < theta.By.Length; k++)
        {
            theta.By[k] = random.NextSingle() - 0.5f;
        }

        return theta;
    }

    internal static float[] Random(int n, ulong seed)
    {
        var random = new SplitMix64(seed);
        return Enumerable.Range(0, n).Select(_ => (2 * random.NextSingle()) - 1).ToArray();
    }

    /// <summary>T steps of B streams, time-major, with a random initial state for every block, <c>[L·D, B, H]</c>.</summary>
    private sealed record Feed(int Steps, int Batch, bool IsTokens, int[] Tokens, float[] Inputs, float[] H0)
    {
        public static Feed Create(RnnShape shape, int steps, int batch, bool tokens, ulong seed)
        {
            var random = new SplitMix64(seed);
            int rows = steps * batch;
            int[] ids = Enumerable.Range(0, rows).Select(_ => random.NextInt32(shape.InputSize)).ToArray();
            float[] inputs = Random(rows * shape.InputSize, seed + 1);
            float[] h0 = Random(shape.BlockCount * batch * shape.HiddenSize, seed + 2);
            return new Feed(steps, batch, tokens, ids, inputs, h0);
        }
    }

    /// <summary>The double reference's forward pass over the stream from its h₀ (θ converted exactly from float); its final states, [L·D, B, H], into <paramref name="final"/>.</summary>
    private static ReferenceBptt<double> Forward(RnnShape shape, Activation f, RnnParameters theta, Feed data, out double[] final)
    {
        var reference = new ReferenceBptt<double>(shape, data.Steps, data.Batch, f);
        double[] parameters = theta.Values.ToArray().Select(v => (double)v).ToArray();
        double[] h0 = data.H0.Select(v => (double)v).ToArray();
        int[] targets = new int[data.Steps * data.Batch];
        final = new double[h0.Length];
        if (data.IsTokens)
        {
            reference.Evaluate(parameters, new SequenceBatch<double>(data.Steps, data.Batch, data.Tokens, targets) { InitialState = h0, FinalState = final });
        }
        else
        {
            double[] x = data.Inputs.AsSpan(0, data.Steps * data.Batch * shape.InputSize).ToArray().Select(v => (double)v).ToArray();
            reference.Evaluate(parameters, new SequenceBatch<double>(data.Steps, data.Batch, x, targets) { InitialState = h0, FinalState = final });
        }

        return reference;
    }

    /// <summary>(3) in double from the reference's top-layer states: vₜ = W_hy [h→ ; h←] + b_y for each row.</summary>
    private static double[] Logits(RnnParameters theta, ReadOnlySpan<double> top, int rows)
    {
        RnnShape s = theta.Shape;
        int width = s.LayerOutputSize, o = s.OutputSize;
        var v = new double[rows * o];
        for (int r = 0; r < rows; r++)
        {
            for (int k = 0; k < o; k++)
            {
                double sum = theta.By[k];
                for (int j = 0; j < width; j++)
                {
                    sum += theta.Why[(k * width) + j] * top[(r * width) + j];
                }

                v[(r * o) + k] = sum;
            }
        }

        return v;
    }

    private static double[] Softmax(double[] logits, int row, int o)
    {
        ReadOnlySpan<double> v = logits.AsSpan(row * o, o);
        double max = v.ToArray().Max(), sum = 0;
        foreach (double x in v)
        {
            sum += Math.Exp(x - max);
        }

        var y = new double[o];
        for (int k = 0; k < o; k++)
        {
            y[k] = Math.Exp(v[k] - max) / sum;
        }

        return y;
    }

    /// <summary>The model over the stream from its h₀, in two calls (steps [0, first) and [first, T)) or one; returns the state after.</summary>
    private static float[] Run(RnnModel model, Feed data, int b, RnnSequenceWorkspace workspace, Span<float> outputs, int first, StepOutput kind = StepOutput.Logits, SequenceOutput steps = SequenceOutput.EveryStep)
    {
        int i = model.Shape.InputSize, o = model.Shape.OutputSize;
        RnnState state = model.CreateState();
        RnnStateBatch states = model.CreateStateBatch(b);
        Span<float> hidden = b == 1 ? state.Hidden : states.Hidden;
        data.H0.CopyTo(hidden);
        int at = 0;
        foreach (int length in first == data.Steps ? new[] { data.Steps } : new[] { first, data.Steps - first })
        {
            Span<float> y = steps == SequenceOutput.EveryStep ? outputs.Slice(at * b * o, length * b * o) : outputs;
            switch ((b == 1, data.IsTokens))
            {
                case (true, true):
                    model.RunSequence(data.Tokens.AsSpan(at, length), state, workspace, y, kind, steps);
                    break;
                case (true, false):
                    model.RunSequence(data.Inputs.AsSpan(at * i, length * i), state, workspace, y, kind, steps);
                    break;
                case (false, true):
                    model.RunSequenceBatch(data.Tokens.AsSpan(at * b, length * b), states, workspace, y, kind, steps);
                    break;
                default:
                    model.RunSequenceBatch(data.Inputs.AsSpan(at * b * i, length * b * i), states, workspace, y, kind, steps);
                    break;
            }

            at += length;
        }

        return hidden.ToArray();
    }

    /// <summary>max |actual − expected| ≤ <see cref="Tolerance"/> · max(1, max |expected|).</summary>
    private static void AssertClose(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = 1, worst = 0;
        int at = -1;
        for (int k = 0; k < expected.Length; k++)
        {
            scale = Math.Max(scale, Math.Abs(expected[k]));
        }

        for (int k = 0; k < expected.Length; k++)
        {
            double error = Math.Abs(actual[k] - expected[k]);
            if (!(error <= worst))
            {
                worst = error;
                at = k;
            }
        }

        Assert.True(worst <= Tolerance * scale, $"{what}: element {at} is {(at >= 0 ? actual[at] : 0)}, expected {(at >= 0 ? expected[at] : 0)} (error {worst:E2})");
    }
}
