using System.Runtime.InteropServices;
using Bptt.Fast.Serving;
using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>
/// The aliasing rule, pair by pair: every writable span of an engine call placed over every other span of the call must
/// be refused with an <see cref="ArgumentException"/> naming the writable span, and leave every array bit-identical.
/// </summary>
public sealed class AliasingTests
{
    private static readonly RnnShape Shape = new(3, 5, 4); // P = 69, larger than any batch span below
    private const int T = 3, B = 2;

    private static readonly string[] Writables = ["gradients", "batch.FinalState", "batch.InitialStateGradient", "batch.InputGradient", "batch.HiddenStates"];
    private static readonly string[] All =
        ["parameters", "gradients", "batch.Inputs", "batch.Tokens", "batch.Targets", "batch.Lengths", "batch.InitialState", .. Writables[1..]];

    public enum EngineKind
    {
        Fast,
        Reference,
        Parallel,
    }

    public static TheoryData<EngineKind, bool, string, string> Pairs()
    {
        var data = new TheoryData<EngineKind, bool, string, string>();
        foreach (EngineKind kind in Enum.GetValues<EngineKind>())
        {
            foreach (bool tokens in new[] { false, true })
            {
                foreach (string w in Writables)
                {
                    foreach (string x in All)
                    {
                        if (x != w && Present(x, tokens) && Present(w, tokens))
                        {
                            data.Add(kind, tokens, w, x);
                        }
                    }
                }
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Pairs))]
    public void EveryWritableSpanOverEveryOtherSpanIsRefusedAndChangesNothing(EngineKind kind, bool tokens, string writable, string other)
    {
        var layout = new Layout(tokens, writable, other);
        byte[][] before = layout.Snapshot();
        SequenceBatch<float> batch = layout.Batch();
        ArgumentException e = kind switch
        {
            EngineKind.Parallel => Assert.Throws<ArgumentException>(() => Run(new ParallelBpttEngine(Shape, T, B, workers: 2), layout)),
            _ => Assert.Throws<ArgumentException>(() => new BpttEngine(Shape, T, B, path: kind == EngineKind.Fast ? KernelPath.Fast : KernelPath.Reference)
                .ComputeGradients(layout.Theta, layout.Batch(), layout.Gradients)),
        };

        // Both writable: the later one of the rule's order (gradients, then the batch outputs) is named.
        string expected = Writables.Contains(other) && Array.IndexOf(Writables, other) > Array.IndexOf(Writables, writable) ? other : writable;
        if (other == "parameters" && writable == "gradients")
        {
            expected = "gradients";
        }

        Assert.Equal(expected, e.ParamName);
        byte[][] after = layout.Snapshot();
        for (int k = 0; k < before.Length; k++)
        {
            Assert.True(before[k].AsSpan().SequenceEqual(after[k]), $"array {k} changed");
        }
    }

    [Fact]
    public void DisjointLayoutIsAcceptedByEveryEngine()
    {
        foreach (bool tokens in new[] { false, true })
        {
            var layout = new Layout(tokens, writable: null, other: null);
            float fast = new BpttEngine(Shape, T, B).ComputeGradients(layout.Theta, layout.Batch(), layout.Gradients);
            float reference = new BpttEngine(Shape, T, B, path: KernelPath.Reference).ComputeGradients(layout.Theta, layout.Batch(), layout.Gradients);
            using var parallel = new ParallelBpttEngine(Shape, T, B, workers: 2);
            float split = parallel.ComputeGradients(layout.Theta, layout.Batch(), layout.Gradients);
            Assert.True(Math.Abs(fast - reference) < 1e-4 && Math.Abs(split - reference) < 1e-4);
        }
    }

    [Fact]
    public void StepOutputOverTheStateIsRefusedBeforeTheStateAdvances()
    {
        var theta = new RnnParameters(Shape);
        theta.InitializeGlorot(3);
        var model = new RnnModel(theta, Activation.Tanh);
        RnnState state = model.CreateState();
        state.Hidden.Fill(0.25f);
        float[] hidden = state.Hidden.ToArray();

        // The output (O = 4 floats) laid over the state's hidden vector (H = 5 floats).
        Span<float> overState = MemoryMarshal.CreateSpan(ref state.Hidden[1], Shape.OutputSize);
        var e = Assert.Throws<ArgumentException>(() => model.Step(1, state, MemoryMarshal.CreateSpan(ref state.Hidden[1], Shape.OutputSize)));
        Assert.Equal("output", e.ParamName);
        Assert.Equal(hidden, state.Hidden.ToArray());
        Assert.DoesNotContain("'x'", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("'y'", e.Message, StringComparison.Ordinal);

        // Dense input: output over the input, and output over the state.
        float[] buffer = new float[8];
        Assert.Equal("output", Assert.Throws<ArgumentException>(() => model.Step(buffer.AsSpan(0, 3), state, buffer.AsSpan(2, 4))).ParamName);
        Assert.Equal("output", Assert.Throws<ArgumentException>(() => model.Step(new float[3], state, MemoryMarshal.CreateSpan(ref state.Hidden[0], 4))).ParamName);
        Assert.Equal(hidden, state.Hidden.ToArray());
        Assert.Equal(4, overState.Length);
    }

    [Fact]
    public void StepBatchOutputsOverTheStatesAreRefusedBeforeAnyStateAdvances()
    {
        var theta = new RnnParameters(Shape);
        theta.InitializeGlorot(4);
        var model = new RnnModel(theta, Activation.Tanh);
        RnnStateBatch states = model.CreateStateBatch(3);
        states.Hidden.Fill(-0.5f);
        float[] hidden = states.Hidden.ToArray();
        Span<float> outputs = MemoryMarshal.CreateSpan(ref states.Hidden[2], 3 * Shape.OutputSize);
        float[] outputsBefore = outputs.ToArray();
        int[] tokens = [0, 1, 2];
        var e = Assert.Throws<ArgumentException>(() => model.StepBatch(tokens, states, MemoryMarshal.CreateSpan(ref states.Hidden[2], 3 * Shape.OutputSize)));
        Assert.Equal("outputs", e.ParamName);
        Assert.Equal(hidden, states.Hidden.ToArray());
        Assert.Equal(outputsBefore, outputs.ToArray());

        // Outputs over the token ids.
        int[] ids = new int[20];
        Span<float> overIds = MemoryMarshal.Cast<int, float>(ids.AsSpan(0, 12));
        Assert.Equal("outputs", Assert.Throws<ArgumentException>(() => model.StepBatch(ids.AsSpan(0, 3), states, MemoryMarshal.Cast<int, float>(ids.AsSpan(0, 12)))).ParamName);
        Assert.Equal(12, overIds.Length);
        Assert.Equal(hidden, states.Hidden.ToArray());
    }

    private static float Run(ParallelBpttEngine engine, Layout layout)
    {
        using (engine)
        {
            return engine.ComputeGradients(layout.Theta, layout.Batch(), layout.Gradients);
        }
    }

    private static bool Present(string name, bool tokens) => name switch
    {
        "batch.Inputs" or "batch.InputGradient" => !tokens,
        "batch.Tokens" => tokens,
        _ => true,
    };

    /// <summary>Every span of one call, each in its own region of one arena, except that <c>writable</c> is laid one element into <c>other</c>.</summary>
    private sealed class Layout
    {
        private readonly float[] _arena = new float[4096];
        private readonly Dictionary<string, Region> _regions = [];
        private readonly bool _tokens;

        public Layout(bool tokens, string? writable, string? other)
        {
            _tokens = tokens;
            Theta = new RnnParameters(Shape);
            Theta.InitializeGlorot(17);
            Gradients = other == "parameters" && writable == "gradients" ? Theta : new RnnParameters(Shape);
            Gradients.Values.Fill(0.125f);
            int next = 0;
            foreach (string name in All)
            {
                if (!Present(name, tokens) || name is "parameters" or "gradients")
                {
                    continue;
                }

                _regions[name] = new Region(_arena, null, next, LengthOf(name));
                next += LengthOf(name) + 7;
            }

            if (writable is not null && other is not null && !(other == "parameters" && writable == "gradients"))
            {
                if (writable == "gradients")
                {
                    _regions[other] = new Region(null, Gradients, 1, LengthOf(other));
                }
                else if (other is "parameters" or "gradients")
                {
                    _regions[writable] = new Region(null, other == "parameters" ? Theta : Gradients, 1, LengthOf(writable));
                }
                else
                {
                    Region r = _regions[other];
                    _regions[writable] = r with { Offset = r.Offset + 1, Length = LengthOf(writable) };
                }
            }

            var random = new Internals.SplitMix64(5);
            foreach (string name in new[] { "batch.Inputs", "batch.InitialState" })
            {
                if (_regions.ContainsKey(name))
                {
                    Span<float> span = Float(name);
                    for (int k = 0; k < span.Length; k++)
                    {
                        span[k] = (2 * random.NextSingle()) - 1;
                    }
                }
            }

            FillIds("batch.Targets", k => k % Shape.OutputSize);
            FillIds("batch.Tokens", k => (k + 1) % Shape.InputSize);
            FillIds("batch.Lengths", k => k == 0 ? T : 1 + (k % T));
        }

        public RnnParameters Theta { get; }

        public RnnParameters Gradients { get; }

        public SequenceBatch<float> Batch()
        {
            SequenceBatch<float> batch = _tokens
                ? new SequenceBatch<float>(T, B, Int("batch.Tokens"), Int("batch.Targets"))
                : new SequenceBatch<float>(T, B, Float("batch.Inputs"), Int("batch.Targets"));
            return batch with
            {
                Lengths = Int("batch.Lengths"),
                InitialState = Float("batch.InitialState"),
                FinalState = Float("batch.FinalState"),
                InitialStateGradient = Float("batch.InitialStateGradient"),
                InputGradient = _tokens ? default : Float("batch.InputGradient"),
                HiddenStates = Float("batch.HiddenStates"),
            };
        }

        public byte[][] Snapshot() =>
            [MemoryMarshal.AsBytes(_arena.AsSpan()).ToArray(), MemoryMarshal.AsBytes(Theta.Values).ToArray(), MemoryMarshal.AsBytes(Gradients.Values).ToArray()];

        private static int LengthOf(string name) => name switch
        {
            "batch.Inputs" or "batch.InputGradient" => T * B * Shape.InputSize,
            "batch.Tokens" or "batch.Targets" => T * B,
            "batch.Lengths" => B,
            "batch.HiddenStates" => T * B * Shape.HiddenSize,
            _ => B * Shape.HiddenSize,
        };

        private Span<float> Float(string name) => _regions.TryGetValue(name, out Region? r) ? r.Span : default;

        private Span<int> Int(string name) => _regions.TryGetValue(name, out Region? r) ? MemoryMarshal.Cast<float, int>(r.Span) : default;

        /// <summary>A span's place: a slice of the arena, or of θ or the gradient block.</summary>
        private sealed record Region(float[]? Arena, RnnParameters? Block, int Offset, int Length)
        {
            public Span<float> Span => Arena is not null ? Arena.AsSpan(Offset, Length) : Block!.Values.Slice(Offset, Length);
        }

        private void FillIds(string name, Func<int, int> value)
        {
            Span<int> ids = Int(name);
            for (int k = 0; k < ids.Length; k++)
            {
                ids[k] = value(k);
            }
        }
    }
}
