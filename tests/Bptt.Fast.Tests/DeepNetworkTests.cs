using Bptt.Fast.Reference;
using FsCheck;
using FsCheck.Fluent;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>
/// Stacked and bidirectional networks (docs/design.md, section 1.1): the double reference against central differences
/// (with and without a fixed dropout mask), the fast engine on every ISA against the reference, and the properties that
/// tie the generalisation to the seed's network: an identity layer on top changes nothing, and two directions are two
/// one-direction networks, one of them on reversed sequences.
/// </summary>
public sealed class DeepNetworkTests
{

    private static Gen<ProblemSpec> DeepProblems(int maxSteps, int maxBatch, int maxSize, int maxLayers = 3) =>
        from p in Generators.Problems(maxSteps, maxBatch, maxSize)
        from layers in Gen.Choose(1, maxLayers)
        from directions in Gen.Choose(1, 2)
        select p with { Shape = p.Shape with { Layers = layers, Directions = directions } };

    [Fact]
    public void ReferenceGradientsOfStackedAndBidirectionalNetworksMatchCentralDifferences() =>
        Generators.Check(DeepProblems(maxSteps: 5, maxBatch: 3, maxSize: 5), spec => CheckGradients(spec, dropout: 0f), count: 40, seed: 1301);

    [Fact]
    public void ReferenceGradientsWithAFixedDropoutMaskMatchCentralDifferences() =>
        Generators.Check(DeepProblems(maxSteps: 4, maxBatch: 3, maxSize: 5), spec => CheckGradients(spec with { Shape = spec.Shape with { Layers = Math.Max(2, spec.Shape.Layers) } }, dropout: 0.3f), count: 25, seed: 1302);

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 2)]
    [InlineData(2, 1)]
    [InlineData(2, 2)]
    [InlineData(3, 1)]
    [InlineData(3, 2)]
    public void EveryActivationIsCheckedForEveryDepthAndDirection(int layers, int directions)
    {
        foreach (Activation f in Enum.GetValues<Activation>())
        {
            foreach (bool tokens in new[] { false, true })
            {
                var spec = new ProblemSpec(new RnnShape(3, 4, 3) { Layers = layers, Directions = directions }, 4, 3, f, tokens, WithH0: true, Ragged: true, (ulong)((layers * 10) + directions));
                CheckGradients(spec, dropout: 0f);
            }
        }
    }

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void FastMatchesTheReferenceOnOddSizes(KernelIsa isa) =>
        Generators.Check(
            from p in ParityProblems()
            from dropout in Gen.Elements(0f, 0f, 0.25f)
            select (p, dropout),
            c => CompareFastWithReference(c.p, c.dropout, isa), count: 30, seed: 1303 + (ulong)isa);

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void FastMatchesTheReferenceOnTheBatchedRecurrencePath(KernelIsa isa)
    {
        foreach (int directions in new[] { 1, 2 })
        {
            foreach (Activation f in Enum.GetValues<Activation>())
            {
                CompareFastWithReference(new ProblemSpec(new RnnShape(17, 33, 7) { Layers = 2, Directions = directions }, 5, 5, f, false, true, true, 400 + (ulong)directions), 0f, isa);
                CompareFastWithReference(new ProblemSpec(new RnnShape(9, 31, 13) { Layers = 3, Directions = directions }, 4, 6, f, true, false, true, 500 + (ulong)directions), 0.2f, isa);
            }
        }
    }

    /// <summary>L = 1 is the seed's network: a relu layer with W_xh = I, W_hh = 0 and b_h = 0 stacked on it passes its
    /// (non-negative) states through exactly, so the two-layer loss equals the one-layer loss bit for bit.</summary>
    [Fact]
    public void AnIdentityLayerOnTopChangesNothing() =>
        Generators.Check(Generators.Problems(maxSteps: 6, maxBatch: 6, maxSize: 9), spec =>
        {
            RnnShape one = spec.Shape;
            RnnShape two = one with { Layers = 2 };
            var pf = new Problem<float>(spec with { Activation = Activation.Relu });
            var theta1 = new RnnParameters(one);
            pf.Theta.CopyTo(theta1.Values);
            var theta2 = new RnnParameters(two);
            theta1.Wxh.CopyTo(theta2.LayerWxh(0, 0));
            theta1.Whh.CopyTo(theta2.LayerWhh(0, 0));
            theta1.Bh.CopyTo(theta2.LayerBh(0, 0));
            Span<float> identity = theta2.LayerWxh(1, 0);
            for (int i = 0; i < one.HiddenSize; i++)
            {
                identity[(i * one.HiddenSize) + i] = 1f;
            }

            theta1.Why.CopyTo(theta2.Why);
            theta1.By.CopyTo(theta2.By);
            float[] h0Two = new float[2 * spec.Batch * one.HiddenSize];
            pf.H0.CopyTo(h0Two);
            SequenceBatch<float> batch1 = pf.Batch();
            SequenceBatch<float> batch2 = pf.Batch() with { InitialState = spec.WithH0 ? h0Two : default };
            float loss1 = new BpttEngine(one, spec.Steps, spec.Batch, Activation.Relu).Evaluate(theta1, batch1);
            float loss2 = new BpttEngine(two, spec.Steps, spec.Batch, Activation.Relu).Evaluate(theta2, batch2);
            Assert.Equal(loss1, loss2);
            double ref1 = new ReferenceBptt<double>(one, spec.Steps, spec.Batch, Activation.Relu).Evaluate(pf.As<double>().Theta, pf.As<double>().Batch());
            Assert.True(Math.Abs(ref1 - loss1) <= 1e-4 * Math.Max(1, Math.Abs(ref1)), $"{ref1} vs {loss1} for {spec}");
        }, count: 60, seed: 1304);

    /// <summary>A one-layer bidirectional network's states are those of its forward block on the sequences, and of its reverse
    /// block run forward on each sequence reversed within its own length, concatenated: exactly on the double reference,
    /// and within float rounding on the fast engine of every ISA.</summary>
    [Fact]
    public void TwoDirectionsAreTwoOneDirectionNetworksOneOnReversedSequences() =>
        Generators.Check(Generators.Problems(maxSteps: 6, maxBatch: 6, maxSize: 9), spec =>
        {
            CheckDirectionSplit<double>(spec, (s, theta, batch) => new ReferenceBptt<double>(s, batch.Steps, batch.BatchSize, spec.Activation).Evaluate(theta, batch), exact: true);
            foreach (KernelIsa isa in KernelCases.SupportedIsas())
            {
                CheckDirectionSplit<float>(spec, (s, theta, batch) =>
                {
                    var parameters = new RnnParameters(s);
                    theta.CopyTo(parameters.Values);
                    new BpttEngine(s, batch.Steps, batch.BatchSize, spec.Activation, KernelPath.Fast, isa).Evaluate(parameters, batch);
                }, exact: false);
            }
        }, count: 60, seed: 1305);

    private delegate void Forward<T>(RnnShape shape, T[] theta, SequenceBatch<T> batch)
        where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>;

    private static void CheckDirectionSplit<T>(ProblemSpec spec, Forward<T> forward, bool exact)
        where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        RnnShape bi = spec.Shape with { Directions = 2 };
        RnnShape one = spec.Shape;
        var p = new Problem<T>(spec with { Shape = bi });
        int hidden = one.HiddenSize, size = spec.Batch, steps = spec.Steps, rows = steps * size, inputs = one.InputSize;
        var statesBi = new T[rows * 2 * hidden];
        var finalBi = new T[2 * size * hidden];
        forward(bi, p.Theta, p.Batch(finalBi, default, default, statesBi));

        foreach (int d in new[] { 0, 1 })
        {
            // The block of direction d as a one-layer network (its head does not matter for the states).
            var theta = new T[one.ParameterCount];
            RnnLayerBlock block = bi.Block(0, d);
            p.Theta.AsSpan(block.WxhOffset, block.End - block.WxhOffset).CopyTo(theta);
            int[] tokens = (int[])p.Tokens.Clone();
            T[] x = (T[])p.Inputs.Clone();
            if (d == 1)
            {
                for (int b = 0; b < size; b++)
                {
                    int length = p.LengthOf(b);
                    for (int t = 0; t < length; t++)
                    {
                        int from = ((length - 1 - t) * size) + b, to = (t * size) + b;
                        if (spec.Tokens)
                        {
                            tokens[to] = p.Tokens[from];
                        }
                        else
                        {
                            p.Inputs.AsSpan(from * inputs, inputs).CopyTo(x.AsSpan(to * inputs, inputs));
                        }
                    }
                }
            }

            T[] h0 = spec.WithH0 ? p.H0.AsSpan(d * size * hidden, size * hidden).ToArray() : [];
            var states = new T[rows * hidden];
            var final = new T[size * hidden];
            var targets = new int[rows];
            SequenceBatch<T> batch = spec.Tokens
                ? new SequenceBatch<T>(steps, size, tokens, targets)
                : new SequenceBatch<T>(steps, size, x, targets);
            forward(one, theta, batch with { InitialState = h0, Lengths = p.Lengths, HiddenStates = states, FinalState = final });
            for (int b = 0; b < size; b++)
            {
                int length = p.LengthOf(b);
                for (int t = 0; t < steps; t++)
                {
                    int source = d == 0 ? t : length - 1 - t;
                    ReadOnlySpan<T> expected = t < length ? states.AsSpan(((source * size) + b) * hidden, hidden) : new T[hidden];
                    AssertSame(expected, statesBi.AsSpan((((t * size) + b) * 2 * hidden) + (d * hidden), hidden), exact, $"direction {d}, t {t}, b {b}: {spec}");
                }

                AssertSame(final.AsSpan(b * hidden, hidden), finalBi.AsSpan(((d * size) + b) * hidden, hidden), exact, $"final state of direction {d}, b {b}: {spec}");
            }
        }
    }

    private static void AssertSame<T>(ReadOnlySpan<T> expected, ReadOnlySpan<T> actual, bool exact, string what)
        where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int k = 0; k < expected.Length; k++)
        {
            double e = double.CreateChecked(expected[k]), a = double.CreateChecked(actual[k]);
            Assert.True(exact ? e == a : Math.Abs(e - a) <= 2e-5 * Math.Max(1, Math.Abs(e)), $"{what}[{k}]: {a} vs {e}");
        }
    }

    [Fact]
    public void TheParallelEngineEqualsTheSerialOneForStackedBidirectionalNetworksWithDropout()
    {
        var spec = new ProblemSpec(new RnnShape(7, 12, 5) { Layers = 2, Directions = 2 }, 6, 7, Activation.Tanh, false, true, true, 77);
        var p = new Problem<float>(spec, weightScale: 0.4);
        RnnShape s = spec.Shape;
        var theta = new RnnParameters(s);
        p.Theta.CopyTo(theta.Values);
        int bh = s.BlockCount * spec.Batch * s.HiddenSize;
        var serial = new BpttEngine(s, spec.Steps, spec.Batch, spec.Activation, dropout: 0.3f);
        var gSerial = new RnnParameters(s);
        var (finalS, dh0S, dxS, statesS) = (new float[bh], new float[bh], new float[p.Inputs.Length], new float[spec.Steps * spec.Batch * s.LayerOutputSize]);
        float lossS = serial.ComputeGradients(theta, p.Batch(finalS, dh0S, dxS, statesS) with { DropoutSeed = 99 }, gSerial);
        using var parallel = new ParallelBpttEngine(s, spec.Steps, spec.Batch, spec.Activation, workers: 3, dropout: 0.3f);
        var gParallel = new RnnParameters(s);
        var (finalP, dh0P, dxP, statesP) = (new float[bh], new float[bh], new float[p.Inputs.Length], new float[spec.Steps * spec.Batch * s.LayerOutputSize]);
        float lossP = parallel.ComputeGradients(theta, p.Batch(finalP, dh0P, dxP, statesP) with { DropoutSeed = 99 }, gParallel);
        Assert.True(Math.Abs(lossS - lossP) <= 1e-4 * Math.Abs(lossS), $"{lossS} vs {lossP}");
        AssertNear(gSerial.Values, gParallel.Values, "gradients");
        AssertNear(finalS, finalP, "final states");
        AssertNear(dh0S, dh0P, "∂h0");
        AssertNear(dxS, dxP, "∂x");
        AssertNear(statesS, statesP, "hidden states");
    }

    [Fact]
    public void DropoutIsDeterministicFromTheSeedAndOnlyInTraining()
    {
        var spec = new ProblemSpec(new RnnShape(5, 8, 4) { Layers = 3 }, 5, 2, Activation.Tanh, true, false, false, 5);
        var p = new Problem<float>(spec);
        var theta = new RnnParameters(spec.Shape);
        p.Theta.CopyTo(theta.Values);
        var engine = new BpttEngine(spec.Shape, 5, 2, dropout: 0.5f);
        var plain = new BpttEngine(spec.Shape, 5, 2);
        var g = new RnnParameters(spec.Shape);
        float a = engine.ComputeGradients(theta, p.Batch() with { DropoutSeed = 1 }, g);
        float b = engine.ComputeGradients(theta, p.Batch() with { DropoutSeed = 1 }, g);
        float c = engine.ComputeGradients(theta, p.Batch() with { DropoutSeed = 2 }, g);
        float noDrop = plain.ComputeGradients(theta, p.Batch(), g);
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
        Assert.NotEqual(a, noDrop);
        Assert.Equal(noDrop, engine.Evaluate(theta, p.Batch() with { DropoutSeed = 1 }));
    }

    [Fact]
    public void ShapesAndDropoutOutOfRangeAreRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>("shape", () => new BpttEngine(new RnnShape(2, 2, 2) { Layers = 0 }, 4));
        Assert.Throws<ArgumentOutOfRangeException>("shape", () => new BpttEngine(new RnnShape(2, 2, 2) { Layers = RnnShape.MaxLayers + 1 }, 4));
        Assert.Throws<ArgumentOutOfRangeException>("shape", () => new BpttEngine(new RnnShape(2, 2, 2) { Directions = 3 }, 4));
        Assert.Throws<ArgumentOutOfRangeException>("shape", () => new BpttEngine(new RnnShape(2, 2, 2) { Directions = 0 }, 4));
        Assert.Throws<ArgumentOutOfRangeException>("shape", () => new RnnParameters(new RnnShape(1, 20000, 1) { Layers = 4, Directions = 2 }));
        foreach (float p in new[] { -0.1f, 1f, float.NaN, float.PositiveInfinity })
        {
            Assert.Throws<ArgumentOutOfRangeException>("dropout", () => new BpttEngine(new RnnShape(2, 2, 2) { Layers = 2 }, 4, dropout: p));
            Assert.Throws<ArgumentOutOfRangeException>("dropout", () => new ParallelBpttEngine(new RnnShape(2, 2, 2) { Layers = 2 }, 4, 2, dropout: p));
        }
    }

    [Fact]
    public void StateSpansOfAStackedBatchHaveTheLayerDirectionLayoutAndAWrongOneChangesNothing()
    {
        var shape = new RnnShape(3, 4, 2) { Layers = 2, Directions = 2 };
        var engine = new BpttEngine(shape, 3, 2);
        var theta = new RnnParameters(shape);
        theta.InitializeGlorot(1);
        var grad = new RnnParameters(shape);
        grad.Values.Fill(7f);
        int[] ids = [0, 1, 2, 0, 1, 2];
        foreach (int wrong in new[] { 2 * 4, (4 * 2 * 4) + 1, (4 * 2 * 4) - 1 })
        {
            var e = Assert.Throws<ArgumentException>("batch.InitialState", () => engine.ComputeGradients(theta, new SequenceBatch<float>(3, 2, ids, [0, 1, 1, 0, 1, 0]) { InitialState = new float[wrong] }, grad));
            Assert.Contains("32", e.Message);
            Assert.Throws<ArgumentException>("batch.FinalState", () => engine.ComputeGradients(theta, new SequenceBatch<float>(3, 2, ids, [0, 1, 1, 0, 1, 0]) { FinalState = new float[wrong] }, grad));
            Assert.Throws<ArgumentException>("batch.InitialStateGradient", () => engine.ComputeGradients(theta, new SequenceBatch<float>(3, 2, ids, [0, 1, 1, 0, 1, 0]) { InitialStateGradient = new float[wrong] }, grad));
        }

        Assert.Throws<ArgumentException>("batch.HiddenStates", () => engine.ComputeGradients(theta, new SequenceBatch<float>(3, 2, ids, [0, 1, 1, 0, 1, 0]) { HiddenStates = new float[3 * 2 * 4] }, grad));
        Assert.All(grad.Values.ToArray(), v => Assert.Equal(7f, v));
        engine.ComputeGradients(theta, new SequenceBatch<float>(3, 2, ids, [0, 1, 1, 0, 1, 0]) { InitialState = new float[32], FinalState = new float[32], HiddenStates = new float[3 * 2 * 8] }, grad);
    }

    [Fact]
    public void TheParameterLayoutIsContiguousLayerByLayerAndKeepsTheSeedsForOneLayer()
    {
        foreach (int layers in new[] { 1, 2, 3 })
        {
            foreach (int directions in new[] { 1, 2 })
            {
                var s = new RnnShape(5, 3, 4) { Layers = layers, Directions = directions };
                int expected = 0;
                for (int l = 0; l < layers; l++)
                {
                    for (int d = 0; d < directions; d++)
                    {
                        RnnLayerBlock b = s.Block(l, d);
                        Assert.Equal(expected, b.WxhOffset);
                        Assert.Equal(l == 0 ? 5 : 3 * directions, b.InputSize);
                        expected += (3 * b.InputSize) + 9 + 3;
                        Assert.Equal(expected, b.End);
                    }
                }

                Assert.Equal(expected, s.WhyOffset);
                Assert.Equal(expected + (4 * 3 * directions), s.ByOffset);
                Assert.Equal(expected + (4 * 3 * directions) + 4, s.ParameterCount);
                Assert.Throws<ArgumentOutOfRangeException>("layer", () => s.Block(layers, 0));
                Assert.Throws<ArgumentOutOfRangeException>("direction", () => s.Block(0, directions));
            }
        }

        // One layer, one direction: the seed's W_xh, W_hh, b_h, W_hy, b_y at the seed's offsets, and the same Glorot draws.
        var seed = new RnnShape(5, 3, 4);
        Assert.Equal((0, 15, 24, 27, 39, 43), (seed.WxhOffset, seed.WhhOffset, seed.BhOffset, seed.WhyOffset, seed.ByOffset, seed.ParameterCount));
        var one = new RnnParameters(seed);
        one.InitializeGlorot(42);
        var two = new RnnParameters(seed with { Layers = 2 });
        two.InitializeGlorot(42);
        Assert.True(one.Values[..seed.WhyOffset].SequenceEqual(two.Values[..seed.WhyOffset]), "the first layer draws first, as before");
    }

    private static Gen<ProblemSpec> ParityProblems()
    {
        int[] sizes = [1, 3, 7, 17, 33];
        return from i in Gen.Elements(sizes)
               from h in Gen.Elements(sizes)
               from o in Gen.Elements(sizes)
               from t in Gen.Choose(1, 5)
               from b in Gen.Choose(1, 6)
               from layers in Gen.Choose(1, 3)
               from directions in Gen.Choose(1, 2)
               from act in Gen.Elements(Activation.Tanh, Activation.Relu, Activation.Sigmoid)
               from tokens in Gen.Elements(false, true)
               from h0 in Gen.Elements(false, true)
               from ragged in Gen.Elements(false, true)
               from seed in Gen.Choose(0, int.MaxValue)
               select new ProblemSpec(new RnnShape(i, h, o) { Layers = layers, Directions = directions }, t, b, act, tokens, h0, ragged, (ulong)seed);
    }

    internal static void CompareFastWithReference(ProblemSpec spec, float dropout, KernelIsa isa)
    {
        RnnShape s = spec.Shape;
        var pf = new Problem<float>(spec, weightScale: 1.5 / Math.Sqrt(Math.Max(s.InputSize, s.LayerOutputSize)));
        Problem<double> pd = pf.As<double>();
        int bh = s.BlockCount * spec.Batch * s.HiddenSize, statesLength = spec.Steps * spec.Batch * s.LayerOutputSize;
        const ulong DropSeed = 31337;

        var reference = new ReferenceBptt<double>(s, spec.Steps, spec.Batch, spec.Activation, dropout);
        var gd = new double[s.ParameterCount];
        var (finalD, dh0D, statesD) = (new double[bh], new double[bh], new double[statesLength]);
        var dxD = spec.Tokens ? [] : new double[pd.Inputs.Length];
        double lossD = reference.ComputeGradients(pd.Theta, pd.Batch(finalD, dh0D, dxD, statesD) with { DropoutSeed = DropSeed }, gd);

        var engine = new BpttEngine(s, spec.Steps, spec.Batch, spec.Activation, KernelPath.Fast, isa, dropout: dropout);
        var theta = new RnnParameters(s);
        pf.Theta.CopyTo(theta.Values);
        var grad = new RnnParameters(s);
        var (finalF, dh0F, statesF) = (new float[bh], new float[bh], new float[statesLength]);
        var dxF = spec.Tokens ? [] : new float[pf.Inputs.Length];
        float lossF = engine.ComputeGradients(theta, pf.Batch(finalF, dh0F, dxF, statesF) with { DropoutSeed = DropSeed }, grad);

        int reduction = spec.Steps * spec.Batch * Math.Max(s.InputSize, Math.Max(s.LayerOutputSize, s.OutputSize));
        double tol = ((2e-6 * Math.Sqrt(reduction)) + 2e-6) * s.Layers;
        string what = $"{isa} {spec} L={s.Layers} D={s.Directions} p={dropout}";
        Assert.True(Math.Abs(lossF - lossD) <= tol * Math.Max(1, Math.Abs(lossD)), $"loss {lossF} vs {lossD}: {what}");
        for (int l = 0; l < s.Layers; l++)
        {
            for (int d = 0; d < s.Directions; d++)
            {
                RnnLayerBlock b = s.Block(l, d);
                Tolerance.AssertBlock(grad.Values.Slice(b.WxhOffset, b.WxhLength), gd.AsSpan(b.WxhOffset, b.WxhLength), tol, $"∂W_xh({l},{d}) {what}");
                Tolerance.AssertBlock(grad.Values.Slice(b.WhhOffset, b.BhOffset - b.WhhOffset), gd.AsSpan(b.WhhOffset, b.BhOffset - b.WhhOffset), tol, $"∂W_hh({l},{d}) {what}");
                Tolerance.AssertBlock(grad.Values.Slice(b.BhOffset, s.HiddenSize), gd.AsSpan(b.BhOffset, s.HiddenSize), tol, $"∂b_h({l},{d}) {what}");
            }
        }

        Tolerance.AssertBlock(grad.Why, gd.AsSpan(s.WhyOffset, s.ByOffset - s.WhyOffset), tol, "∂W_hy " + what);
        Tolerance.AssertBlock(grad.By, gd.AsSpan(s.ByOffset, s.OutputSize), tol, "∂b_y " + what);
        Tolerance.AssertBlock(finalF, finalD, tol, "final state " + what);
        Tolerance.AssertBlock(dh0F, dh0D, tol, "∂h0 " + what);
        Tolerance.AssertBlock(dxF, dxD, tol, "∂x " + what);
        Tolerance.AssertBlock(statesF, statesD, tol, "hidden states " + what);

        // Evaluate never drops: it equals the reference's forward pass without dropout.
        float evaluated = engine.Evaluate(theta, pf.Batch());
        double evaluatedD = reference.Evaluate(pd.Theta, pd.Batch());
        Assert.True(Math.Abs(evaluated - evaluatedD) <= tol * Math.Max(1, Math.Abs(evaluatedD)), $"evaluate {evaluated} vs {evaluatedD}: {what}");
    }

    private static void CheckGradients(ProblemSpec spec, float dropout)
    {
        RnnShape s = spec.Shape;
        (Problem<double> p, ReferenceBptt<double> engine) = FindProblemAwayFromKinks(spec, dropout);
        const ulong DropSeed = 4242;
        var grad = new double[s.ParameterCount];
        var dh0 = new double[s.BlockCount * spec.Batch * s.HiddenSize];
        var dx = spec.Tokens ? [] : new double[p.Inputs.Length];
        var scratch = new double[s.ParameterCount];
        double[] h0 = spec.WithH0 ? p.H0 : new double[dh0.Length];
        engine.ComputeGradients(p.Theta, p.Batch(default, dh0, dx) with { InitialState = h0, DropoutSeed = DropSeed }, grad);

        // With dropout the loss is that of the training pass with the same seed, so the mask is fixed.
        double Loss() => dropout > 0f
            ? engine.ComputeGradients(p.Theta, p.Batch() with { InitialState = h0, DropoutSeed = DropSeed }, scratch)
            : engine.Evaluate(p.Theta, p.Batch() with { InitialState = h0 });
        for (int k = 0; k < p.Theta.Length; k++)
        {
            CentralDifferences.AssertClose(grad[k], CentralDifferences.Numeric(p.Theta, k, Loss), $"θ[{k}]", spec);
        }

        for (int k = 0; k < h0.Length; k++)
        {
            CentralDifferences.AssertClose(dh0[k], CentralDifferences.Numeric(h0, k, Loss), $"h0[{k}]", spec);
        }

        for (int k = 0; k < dx.Length; k++)
        {
            CentralDifferences.AssertClose(dx[k], CentralDifferences.Numeric(p.Inputs, k, Loss), $"x[{k}]", spec);
        }
    }

    /// <summary>Relu is not differentiable at 0: redraw until every pre-activation of every block is at least 1e-3 away from it.</summary>
    private static (Problem<double>, ReferenceBptt<double>) FindProblemAwayFromKinks(ProblemSpec spec, float dropout)
    {
        var engine = new ReferenceBptt<double>(spec.Shape, spec.Steps, spec.Batch, spec.Activation, dropout);
        for (ulong attempt = 0; ; attempt++)
        {
            var p = new Problem<double>(spec with { Seed = spec.Seed + (attempt * 7919) });
            if (spec.Activation != Activation.Relu)
            {
                return (p, engine);
            }

            engine.ComputeGradients(p.Theta, p.Batch() with { DropoutSeed = 4242 }, new double[spec.Shape.ParameterCount]);
            double min = double.PositiveInfinity;
            for (int l = 0; l < spec.Shape.Layers; l++)
            {
                for (int d = 0; d < spec.Shape.Directions; d++)
                {
                    ReadOnlySpan<double> u = engine.LayerPreActivations(l, d);
                    for (int row = 0; row < spec.Steps * spec.Batch; row++)
                    {
                        if (row / spec.Batch < p.LengthOf(row % spec.Batch))
                        {
                            foreach (double v in u.Slice(row * spec.Shape.HiddenSize, spec.Shape.HiddenSize))
                            {
                                min = Math.Min(min, Math.Abs(v));
                            }
                        }
                    }
                }
            }

            if (min > 1e-3)
            {
                return (p, engine);
            }
        }
    }

    private static void AssertNear(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int k = 0; k < expected.Length; k++)
        {
            Assert.True(Math.Abs(expected[k] - actual[k]) <= 1e-4 * Math.Max(1, Math.Abs(expected[k])), $"{what}[{k}]: {expected[k]} vs {actual[k]}");
        }
    }
}
