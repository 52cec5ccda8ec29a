using System.Runtime.InteropServices;
using Bptt.Fast.Internals;
using Bptt.Fast.Serving;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>
/// Sequence inference (<see cref="RnnModel.RunSequence(ReadOnlySpan{int}, RnnState, RnnSequenceWorkspace, Span{float}, StepOutput, SequenceOutput)"/>
/// and its batch and dense overloads): equal to T single steps, streams fed in pieces equal one call, every refusal
/// changes nothing, and no call allocates.
/// </summary>
public sealed class SequenceServingTests
{
    private static readonly RnnShape Shape = new(13, 40, 11);

    internal static RnnParameters Theta(RnnShape shape, ulong seed)
    {
        var theta = new RnnParameters(shape);
        theta.InitializeGlorot(seed);
        var random = new SplitMix64(seed + 1);
        for (int k = 0; k < theta.Bh.Length; k++)
        {
            theta.Bh[k] = random.NextSingle() - 0.5f;
        }

        for (int k = 0; k < theta.By.Length; k++)
        {
            theta.By[k] = random.NextSingle() - 0.5f;
        }

        return theta;
    }

    internal static int[] Tokens(int n, int vocabulary, ulong seed)
    {
        var random = new SplitMix64(seed);
        return Enumerable.Range(0, n).Select(_ => random.NextInt32(vocabulary)).ToArray();
    }

    internal static float[] Dense(int n, ulong seed)
    {
        var random = new SplitMix64(seed);
        return Enumerable.Range(0, n).Select(_ => (2f * random.NextSingle()) - 1f).ToArray();
    }

    /// <summary>‖a − b‖ / ‖b‖ (0 when both are 0).</summary>
    internal static double Normwise(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double diff = 0, norm = 0;
        for (int k = 0; k < expected.Length; k++)
        {
            diff += (actual[k] - (double)expected[k]) * (actual[k] - (double)expected[k]);
            norm += expected[k] * (double)expected[k];
        }

        return norm == 0 ? Math.Sqrt(diff) : Math.Sqrt(diff / norm);
    }

    public static TheoryData<KernelIsa, Activation, bool> Cases()
    {
        var data = new TheoryData<KernelIsa, Activation, bool>();
        foreach (KernelIsa isa in KernelCases.SupportedIsas())
        {
            foreach (Activation f in Enum.GetValues<Activation>())
            {
                data.Add(isa, f, true);
                data.Add(isa, f, false);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void OneCallEqualsTSingleStepsAndPiecesEqualOneCall(KernelIsa isa, Activation f, bool tokens)
    {
        const int T = 23;
        int i = Shape.InputSize, h = Shape.HiddenSize, o = Shape.OutputSize;
        var model = new RnnModel(Theta(Shape, 3), f, isa);
        int[] ids = Tokens(T, i, 4);
        float[] x = Dense(T * i, 5);
        float[] h0 = Dense(h, 6);
        RnnSequenceWorkspace workspace = model.CreateSequenceWorkspace(T);
        foreach (StepOutput kind in Enum.GetValues<StepOutput>())
        {
            // T single steps.
            RnnState single = model.CreateState();
            h0.CopyTo(single.Hidden);
            var expected = new float[T * o];
            for (int t = 0; t < T; t++)
            {
                if (tokens)
                {
                    model.Step(ids[t], single, expected.AsSpan(t * o, o), kind);
                }
                else
                {
                    model.Step(x.AsSpan(t * i, i), single, expected.AsSpan(t * o, o), kind);
                }
            }

            // One call.
            RnnState whole = model.CreateState();
            h0.CopyTo(whole.Hidden);
            var actual = new float[T * o];
            Run(model, tokens, ids, x, 0, T, whole, workspace, actual, kind, SequenceOutput.EveryStep);
            Assert.True(Normwise(actual, expected) <= 1e-5, $"{kind}: {Normwise(actual, expected)}");
            Assert.True(Normwise(whole.Hidden, single.Hidden) <= 1e-6);

            // Pieces of 1, 7, 15 steps: every step's output, and the last step's only.
            RnnState pieces = model.CreateState();
            RnnState lastOnly = model.CreateState();
            h0.CopyTo(pieces.Hidden);
            h0.CopyTo(lastOnly.Hidden);
            var stitched = new float[T * o];
            var last = new float[o];
            int start = 0;
            foreach (int length in new[] { 1, 7, 15 })
            {
                Run(model, tokens, ids, x, start, length, pieces, workspace, stitched.AsSpan(start * o, length * o), kind, SequenceOutput.EveryStep);
                Run(model, tokens, ids, x, start, length, lastOnly, workspace, last, kind, SequenceOutput.LastStep);
                Assert.True(Normwise(last, expected.AsSpan(((start + length - 1) * o), o)) <= 1e-5);
                start += length;
            }

            Assert.Equal(T, start);
            Assert.Equal(whole.Hidden.ToArray(), pieces.Hidden.ToArray()); // the same kernels in the same order: bit for bit
            Assert.Equal(whole.Hidden.ToArray(), lastOnly.Hidden.ToArray());
            Assert.True(Normwise(stitched, expected) <= 1e-5);
        }
    }

    private static void Run(RnnModel model, bool tokens, int[] ids, float[] x, int start, int length, RnnState state, RnnSequenceWorkspace workspace, Span<float> outputs, StepOutput kind, SequenceOutput steps)
    {
        int i = model.Shape.InputSize;
        if (tokens)
        {
            model.RunSequence(ids.AsSpan(start, length), state, workspace, outputs, kind, steps);
        }
        else
        {
            model.RunSequence(x.AsSpan(start * i, length * i), state, workspace, outputs, kind, steps);
        }
    }

    [Theory]
    [InlineData(2, true)]
    [InlineData(2, false)]
    [InlineData(5, true)]
    [InlineData(5, false)]
    public void ABatchOfSequencesEqualsEachStreamAloneAndStepBatch(int b, bool tokens)
    {
        const int T = 9;
        int i = Shape.InputSize, h = Shape.HiddenSize, o = Shape.OutputSize;
        foreach (Activation f in Enum.GetValues<Activation>())
        {
            var model = new RnnModel(Theta(Shape, 7), f);
            int[] ids = Tokens(T * b, i, 8);
            float[] x = Dense(T * b * i, 9);
            float[] h0 = Dense(b * h, 10);
            RnnStateBatch states = model.CreateStateBatch(b);
            h0.CopyTo(states.Hidden);
            var outputs = new float[T * b * o];
            RnnSequenceWorkspace workspace = model.CreateSequenceWorkspace(T, b);
            if (tokens)
            {
                model.RunSequenceBatch(ids, states, workspace, outputs, StepOutput.Logits);
            }
            else
            {
                model.RunSequenceBatch(x, states, workspace, outputs, StepOutput.Logits);
            }

            // Each stream alone, through single steps.
            for (int s = 0; s < b; s++)
            {
                RnnState single = model.CreateState();
                h0.AsSpan(s * h, h).CopyTo(single.Hidden);
                var y = new float[o];
                for (int t = 0; t < T; t++)
                {
                    int row = (t * b) + s;
                    if (tokens)
                    {
                        model.Step(ids[row], single, y, StepOutput.Logits);
                    }
                    else
                    {
                        model.Step(x.AsSpan(row * i, i), single, y, StepOutput.Logits);
                    }

                    Assert.True(Normwise(outputs.AsSpan(row * o, o), y) <= 1e-5, $"f={f}, stream {s}, step {t}");
                }

                Assert.True(Normwise(states.Hidden.Slice(s * h, h), single.Hidden) <= 1e-5);
            }

            if (tokens)
            {
                // T calls of StepBatch, and the last step only.
                RnnStateBatch stepped = model.CreateStateBatch(b);
                h0.CopyTo(stepped.Hidden);
                var y = new float[b * o];
                for (int t = 0; t < T; t++)
                {
                    model.StepBatch(ids.AsSpan(t * b, b), stepped, y);
                }

                RnnStateBatch lastOnly = model.CreateStateBatch(b);
                h0.CopyTo(lastOnly.Hidden);
                var last = new float[b * o];
                model.RunSequenceBatch(ids, lastOnly, workspace, last, StepOutput.Probabilities, SequenceOutput.LastStep);
                Assert.True(Normwise(last, y) <= 1e-5);
                Assert.True(Normwise(lastOnly.Hidden, stepped.Hidden) <= 1e-5);
            }
        }
    }

    [Theory]
    [InlineData("tokens")]
    [InlineData("dense")]
    [InlineData("tokens, last step")]
    [InlineData("batch of 2")]
    [InlineData("batch of 6, dense")]
    [InlineData("the bench's T = 64, H = 512")]
    public void ASequenceCallAllocatesNothing(string what)
    {
        if (what.StartsWith("the bench", StringComparison.Ordinal))
        {
            var big = new RnnModel(Theta(new RnnShape(128, 512, 128), 1), Activation.Tanh);
            int[] tokens = Tokens(64, 128, 2);
            RnnState s = big.CreateState();
            RnnSequenceWorkspace w = big.CreateSequenceWorkspace(64);
            var y = new float[64 * 128];
            AllocationProbe.AssertSteadyStateAllocatesNothing(() => big.RunSequence(tokens, s, w, y), calls: 20);
            return;
        }

        var model = new RnnModel(Theta(Shape, 11), Activation.Tanh);
        const int T = 16;
        int i = Shape.InputSize, o = Shape.OutputSize;
        RnnSequenceWorkspace workspace = model.CreateSequenceWorkspace(T, 6);
        RnnState state = model.CreateState();
        RnnStateBatch two = model.CreateStateBatch(2), six = model.CreateStateBatch(6);
        int[] ids = Tokens(T * 2, i, 12);
        float[] x = Dense(T * 6 * i, 13);
        var outputs = new float[T * 6 * o];
        Action call = what switch
        {
            "tokens" => () => model.RunSequence(ids.AsSpan(0, T), state, workspace, outputs.AsSpan(0, T * o)),
            "dense" => () => model.RunSequence(x.AsSpan(0, T * i), state, workspace, outputs.AsSpan(0, T * o), StepOutput.Logits),
            "tokens, last step" => () => model.RunSequence(ids.AsSpan(0, T), state, workspace, outputs.AsSpan(0, o), StepOutput.Probabilities, SequenceOutput.LastStep),
            "batch of 2" => () => model.RunSequenceBatch(ids, two, workspace, outputs.AsSpan(0, T * 2 * o)),
            _ => () => model.RunSequenceBatch(x, six, workspace, outputs),
        };

        call();
        AllocationProbe.AssertSteadyStateAllocatesNothing(call, calls: 50);
    }

    [Fact]
    public void EveryRefusalHasItsTypeAndNameAndChangesNothing()
    {
        var model = new RnnModel(Theta(Shape, 14), Activation.Tanh);
        int i = Shape.InputSize, h = Shape.HiddenSize, o = Shape.OutputSize;
        RnnState state = model.CreateState();
        Dense(h, 15).CopyTo(state.Hidden);
        RnnStateBatch states = model.CreateStateBatch(3);
        Dense(3 * h, 16).CopyTo(states.Hidden);
        RnnSequenceWorkspace workspace = model.CreateSequenceWorkspace(8, 3);
        var other = new RnnModel(Theta(new RnnShape(i, h + 1, o), 1), Activation.Tanh);
        int[] ids = Tokens(8, i, 17);
        float[] x = Dense(8 * i, 18);
        var outputs = new float[8 * 3 * o];
        Dense(outputs.Length, 19).CopyTo(outputs, 0);
        float[] hidden = state.Hidden.ToArray(), block = states.Hidden.ToArray(), before = outputs.ToArray();

        void Refused<TException>(string paramName, Action call)
            where TException : ArgumentException
        {
            Assert.Equal(paramName, Assert.Throws<TException>(call).ParamName);
            Assert.Equal(hidden, state.Hidden.ToArray());
            Assert.Equal(block, states.Hidden.ToArray());
            Assert.Equal(before, outputs);
        }

        Span<float> Out(int n) => outputs.AsSpan(0, n);
        Refused<ArgumentNullException>("state", () => model.RunSequence(ids, null!, workspace, Out(8 * o)));
        Refused<ArgumentNullException>("workspace", () => model.RunSequence(ids, state, null!, Out(8 * o)));
        Refused<ArgumentNullException>("states", () => model.RunSequenceBatch(ids.AsSpan(0, 6), null!, workspace, Out(6 * o)));
        Refused<ArgumentException>("state", () => model.RunSequence(ids, other.CreateState(), workspace, Out(8 * o)));
        Refused<ArgumentException>("workspace", () => model.RunSequence(ids, state, other.CreateSequenceWorkspace(8), Out(8 * o)));
        Refused<ArgumentException>("tokens", () => model.RunSequence(ReadOnlySpan<int>.Empty, state, workspace, Out(o)));
        Refused<ArgumentException>("inputs", () => model.RunSequence(ReadOnlySpan<float>.Empty, state, workspace, Out(o)));
        Refused<ArgumentException>("inputs", () => model.RunSequence(x.AsSpan(0, i + 1), state, workspace, Out(o)));
        Refused<ArgumentException>("tokens", () => model.RunSequenceBatch(ids.AsSpan(0, 5), states, workspace, Out(o)));
        Refused<ArgumentException>("inputs", () => model.RunSequenceBatch(x.AsSpan(0, 2 * i), states, workspace, Out(o)));
        Refused<ArgumentOutOfRangeException>("tokens", () => model.RunSequence(new[] { 1, 2, i }, state, workspace, Out(3 * o)));
        Refused<ArgumentOutOfRangeException>("tokens", () => model.RunSequence(new[] { -1 }, state, workspace, Out(o)));
        float[] bad = x.ToArray();
        bad[^1] = float.NaN;
        Refused<ArgumentException>("inputs", () => model.RunSequence(bad, state, workspace, Out(8 * o)));
        Refused<ArgumentException>("workspace", () => model.RunSequence(Tokens(9, i, 1), state, workspace, Out(9 * o)));
        Refused<ArgumentException>("workspace", () => model.RunSequenceBatch(ids.AsSpan(0, 4), model.CreateStateBatch(4), workspace, Out(4 * o)));
        Refused<ArgumentException>("outputs", () => model.RunSequence(ids, state, workspace, Out((8 * o) - 1)));
        Refused<ArgumentException>("outputs", () => model.RunSequence(ids, state, workspace, Out(8 * o), StepOutput.Logits, SequenceOutput.LastStep));
        Refused<ArgumentException>("outputs", () => model.RunSequenceBatch(ids.AsSpan(0, 6), states, workspace, Out(6 * o), StepOutput.Logits, SequenceOutput.LastStep));
        Refused<ArgumentOutOfRangeException>("kind", () => model.RunSequence(ids, state, workspace, Out(8 * o), (StepOutput)7));
        Refused<ArgumentOutOfRangeException>("steps", () => model.RunSequence(ids, state, workspace, Out(8 * o), StepOutput.Logits, (SequenceOutput)7));

        // Writable spans that overlap the state or the inputs.
        Refused<ArgumentException>("outputs", () => model.RunSequence(ids.AsSpan(0, 1), state, workspace, state.Hidden[..o], StepOutput.Logits, SequenceOutput.LastStep));
        float[] shared = new float[8 * o];
        Refused<ArgumentException>("outputs", () => model.RunSequence(MemoryMarshal.Cast<float, int>(shared.AsSpan(0, 8)), state, workspace, shared));
        Refused<ArgumentException>("outputs", () => model.RunSequence(shared.AsSpan(0, i), state, workspace, shared.AsSpan(i - 1, o), StepOutput.Logits));
        Refused<ArgumentException>("outputs", () => model.RunSequenceBatch(ids.AsSpan(0, 3), states, workspace, states.Hidden[..(3 * o)], StepOutput.Logits));

        // Workspace sizes.
        Assert.Equal("maxSteps", Assert.Throws<ArgumentOutOfRangeException>(() => model.CreateSequenceWorkspace(0)).ParamName);
        Assert.Equal("maxBatch", Assert.Throws<ArgumentOutOfRangeException>(() => model.CreateSequenceWorkspace(1, 0)).ParamName);
        Assert.Equal("maxBatch", Assert.Throws<ArgumentOutOfRangeException>(() => model.CreateSequenceWorkspace(1, RnnSequenceWorkspace.MaxBatchLimit + 1)).ParamName);
        Assert.Equal("maxSteps", Assert.Throws<ArgumentOutOfRangeException>(() => model.CreateSequenceWorkspace(int.MaxValue, 1 << 16)).ParamName);
    }

    [Fact]
    public void OneWorkspaceServesManyStatesAndIsReleasedAfterARefusal()
    {
        var model = new RnnModel(Theta(Shape, 20), Activation.Relu);
        RnnSequenceWorkspace workspace = model.CreateSequenceWorkspace(5);
        int[] a = Tokens(5, Shape.InputSize, 21), b = Tokens(5, Shape.InputSize, 22);
        RnnState first = model.CreateState(), second = model.CreateState(), alone = model.CreateState();
        var y = new float[5 * Shape.OutputSize];
        var z = new float[5 * Shape.OutputSize];
        model.RunSequence(a, first, workspace, y);
        Assert.Throws<ArgumentException>(() => model.RunSequence(b, second, workspace, y.AsSpan(1)));
        model.RunSequence(b, second, workspace, y);
        model.RunSequence(b, alone, model.CreateSequenceWorkspace(5), z);
        Assert.Equal(z, y);
        Assert.Equal(alone.Hidden.ToArray(), second.Hidden.ToArray());
    }
}
