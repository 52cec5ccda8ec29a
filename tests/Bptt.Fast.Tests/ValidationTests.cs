using Bptt.Fast.Training;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>
/// Bad input (docs/design.md, section 6): each case throws the right exception type naming the parameter, and leaves θ,
/// the gradient block, the caller's outputs and the caller's inputs exactly as they were.
/// </summary>
public sealed class ValidationTests
{
    private static readonly RnnShape Shape = new(3, 4, 5);
    private const int MaxSteps = 4, MaxBatch = 2;

    /// <summary>Every buffer a case may use, filled with recognisable values.</summary>
    public sealed class Buffers
    {
        public float[] Inputs = Fill(3 * 2 * 3, 0.25f);
        public int[] Tokens = [0, 1, 2, 0, 1, 2];
        public int[] Targets = [0, 1, 2, 3, 4, 0];
        public float[] H0 = Fill(2 * 4, 0.5f);
        public float[] Final = Fill(2 * 4, 7f);
        public float[] Dh0 = Fill(2 * 4, 8f);
        public float[] Dx = Fill(3 * 2 * 3, 9f);
        public int[] Lengths = [3, 2];

        public SequenceBatch<float> Dense() => new(3, 2, Inputs, Targets) { InitialState = H0, Lengths = Lengths, FinalState = Final, InitialStateGradient = Dh0, InputGradient = Dx };

        public SequenceBatch<float> Token() => new(3, 2, Tokens, Targets) { InitialState = H0, Lengths = Lengths, FinalState = Final, InitialStateGradient = Dh0 };

        private static float[] Fill(int n, float v) => Enumerable.Repeat(v, n).ToArray();
    }

    public delegate SequenceBatch<float> BatchFactory(Buffers b);

    public static readonly Dictionary<string, (BatchFactory Make, Type Exception, string Param)> Cases = new()
    {
        ["steps 0"] = (b => new SequenceBatch<float>(0, 2, ReadOnlySpan<float>.Empty, []), typeof(ArgumentOutOfRangeException), "batch.Steps"),
        ["steps above maxSteps"] = (b => new SequenceBatch<float>(5, 2, new float[30], new int[10]), typeof(ArgumentOutOfRangeException), "batch.Steps"),
        ["batch 0"] = (b => new SequenceBatch<float>(3, 0, ReadOnlySpan<float>.Empty, []), typeof(ArgumentOutOfRangeException), "batch.BatchSize"),
        ["batch above maxBatch"] = (b => new SequenceBatch<float>(1, 3, new float[9], new int[3]), typeof(ArgumentOutOfRangeException), "batch.BatchSize"),
        ["inputs too short"] = (b => new SequenceBatch<float>(3, 2, b.Inputs.AsSpan(1), b.Targets), typeof(ArgumentException), "batch.Inputs"),
        ["targets too short"] = (b => new SequenceBatch<float>(3, 2, b.Inputs, b.Targets.AsSpan(1)), typeof(ArgumentException), "batch.Targets"),
        ["target = O"] = (b => { b.Targets[2] = 5; return b.Dense(); }, typeof(ArgumentOutOfRangeException), "batch.Targets"),
        ["target -2 (only -1 means ignore)"] = (b => { b.Targets[0] = -2; return b.Dense(); }, typeof(ArgumentOutOfRangeException), "batch.Targets"),
        ["hidden states length"] = (b => b.Dense() with { HiddenStates = new float[5] }, typeof(ArgumentException), "batch.HiddenStates"),
        ["hidden states overlap dx"] = (b => { var shared = new float[40]; return b.Dense() with { InputGradient = shared.AsSpan(0, 18), HiddenStates = shared.AsSpan(10, 24) }; }, typeof(ArgumentException), "batch.HiddenStates"),
        ["token = I"] = (b => { b.Tokens[1] = 3; return b.Token(); }, typeof(ArgumentOutOfRangeException), "batch.Tokens"),
        ["token negative"] = (b => { b.Tokens[4] = -2; return b.Token(); }, typeof(ArgumentOutOfRangeException), "batch.Tokens"),
        ["tokens too short"] = (b => new SequenceBatch<float>(3, 2, b.Tokens.AsSpan(2), b.Targets), typeof(ArgumentException), "batch.Tokens"),
        ["length 0"] = (b => { b.Lengths[1] = 0; return b.Dense(); }, typeof(ArgumentOutOfRangeException), "batch.Lengths"),
        ["length above T"] = (b => { b.Lengths[0] = 4; return b.Dense(); }, typeof(ArgumentOutOfRangeException), "batch.Lengths"),
        ["lengths count"] = (b => b.Dense() with { Lengths = new int[] { 3 } }, typeof(ArgumentException), "batch.Lengths"),
        ["h0 length"] = (b => b.Dense() with { InitialState = b.H0.AsSpan(1) }, typeof(ArgumentException), "batch.InitialState"),
        ["h0 NaN"] = (b => { b.H0[3] = float.NaN; return b.Dense(); }, typeof(ArgumentException), "batch.InitialState"),
        ["input +inf"] = (b => { b.Inputs[4] = float.PositiveInfinity; return b.Dense(); }, typeof(ArgumentException), "batch.Inputs"),
        ["final state length"] = (b => b.Dense() with { FinalState = b.Final.AsSpan(0, 4) }, typeof(ArgumentException), "batch.FinalState"),
        ["dh0 length"] = (b => b.Dense() with { InitialStateGradient = b.Dh0.AsSpan(0, 3) }, typeof(ArgumentException), "batch.InitialStateGradient"),
        ["dx length"] = (b => b.Dense() with { InputGradient = b.Dx.AsSpan(1) }, typeof(ArgumentException), "batch.InputGradient"),
        ["dx with tokens"] = (b => b.Token() with { InputGradient = b.Dx }, typeof(ArgumentException), "batch.InputGradient"),
        ["final state overlaps h0"] = (b => b.Dense() with { FinalState = b.H0 }, typeof(ArgumentException), "batch.FinalState"),
        ["dh0 overlaps final state"] = (b => b.Dense() with { InitialStateGradient = b.Final }, typeof(ArgumentException), "batch.InitialStateGradient"),
        ["dx overlaps inputs"] = (b => b.Dense() with { InputGradient = b.Inputs }, typeof(ArgumentException), "batch.InputGradient"),
    };

    public static TheoryData<string, KernelPath> CaseNames()
    {
        var data = new TheoryData<string, KernelPath>();
        foreach (string name in Cases.Keys)
        {
            data.Add(name, KernelPath.Reference);
            data.Add(name, KernelPath.Fast);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void BadBatchThrowsAndChangesNothing(string name, KernelPath path)
    {
        (BatchFactory make, Type exception, string param) = Cases[name];
        var engine = new BpttEngine(Shape, MaxSteps, MaxBatch, Activation.Tanh, path);
        RnnParameters theta = NewTheta();
        var grad = new RnnParameters(Shape);
        grad.Values.Fill(3f);
        var buffers = new Buffers();
        float[] thetaBefore = theta.Values.ToArray();
        Buffers snapshot = Snapshot(buffers);

        Exception e = Assert.Throws(exception, () => engine.ComputeGradients(theta, make(buffers), grad));
        Assert.Equal(param, ((ArgumentException)e).ParamName);
        Assert.Equal(thetaBefore, theta.Values.ToArray());
        Assert.All(grad.Values.ToArray(), v => Assert.Equal(3f, v));
        Assert.Equal(snapshot.Final, buffers.Final);
        Assert.Equal(snapshot.Dh0, buffers.Dh0);
        Assert.Equal(snapshot.Dx, buffers.Dx);

        Exception e2 = Assert.Throws(exception, () => engine.Evaluate(theta, make(new Buffers())));
        Assert.Equal(param, ((ArgumentException)e2).ParamName);
    }

    [Fact]
    public void MessagesSayExpectedAndActual()
    {
        var engine = new BpttEngine(Shape, MaxSteps, MaxBatch);
        var b = new Buffers();
        var e = Assert.Throws<ArgumentException>(() => engine.Evaluate(NewTheta(), new SequenceBatch<float>(3, 2, b.Inputs.AsSpan(1), b.Targets)));
        Assert.Contains("expected 18", e.Message, StringComparison.Ordinal);
        Assert.Contains("actual 17", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(KernelPath.Reference)]
    [InlineData(KernelPath.Fast)]
    public void BadParametersThrowAndChangeNothing(KernelPath path)
    {
        var engine = new BpttEngine(Shape, MaxSteps, MaxBatch, Activation.Tanh, path);
        var b = new Buffers();
        RnnParameters theta = NewTheta();
        var grad = new RnnParameters(Shape);
        grad.Values.Fill(3f);

        var wrong = new RnnParameters(new RnnShape(3, 4, 6));
        Assert.Equal("parameters", Assert.Throws<ArgumentException>(() => engine.ComputeGradients(wrong, b.Dense(), grad)).ParamName);
        Assert.Equal("gradients", Assert.Throws<ArgumentException>(() => engine.ComputeGradients(theta, b.Dense(), wrong)).ParamName);
        Assert.Equal("gradients", Assert.Throws<ArgumentException>(() => engine.ComputeGradients(theta, b.Dense(), theta)).ParamName);
        Assert.Throws<ArgumentNullException>(() => engine.ComputeGradients(null!, b.Dense(), grad));

        theta.Whh[5] = float.NaN;
        float[] before = theta.Values.ToArray();
        Assert.Equal("parameters", Assert.Throws<ArgumentException>(() => engine.ComputeGradients(theta, b.Dense(), grad)).ParamName);
        Assert.Equal(before, theta.Values.ToArray());
        Assert.All(grad.Values.ToArray(), v => Assert.Equal(3f, v));
    }

    [Fact]
    public void ConstructorsRejectBadSizes()
    {
        Assert.Equal("shape", Assert.Throws<ArgumentOutOfRangeException>(() => new BpttEngine(new RnnShape(0, 4, 5), 4)).ParamName);
        Assert.Equal("shape", Assert.Throws<ArgumentOutOfRangeException>(() => new RnnParameters(new RnnShape(3, -1, 5))).ParamName);
        Assert.Equal("shape", Assert.Throws<ArgumentOutOfRangeException>(() => new RnnParameters(new RnnShape(100000, 100000, 5))).ParamName);
        Assert.Equal("maxSteps", Assert.Throws<ArgumentOutOfRangeException>(() => new BpttEngine(Shape, 0)).ParamName);
        Assert.Equal("maxBatch", Assert.Throws<ArgumentOutOfRangeException>(() => new BpttEngine(Shape, 4, 0)).ParamName);
        Assert.Equal("activation", Assert.Throws<ArgumentOutOfRangeException>(() => new BpttEngine(Shape, 4, 1, (Activation)9)).ParamName);
        Assert.Equal("path", Assert.Throws<ArgumentOutOfRangeException>(() => new BpttEngine(Shape, 4, 1, Activation.Tanh, (KernelPath)9)).ParamName);
        Assert.Equal("learningRate", Assert.Throws<ArgumentOutOfRangeException>(() => new GradientDescent(Shape, 0f)).ParamName);
        Assert.Equal("learningRate", Assert.Throws<ArgumentOutOfRangeException>(() => new GradientDescent(Shape, float.NaN)).ParamName);
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    public void NonFiniteGradientOrLossIsNotApplied(float poison)
    {
        RnnParameters theta = NewTheta();
        var grad = new RnnParameters(Shape);
        grad.Values.Fill(0.1f);
        var optimizer = new GradientDescent(Shape, 0.5f);
        byte[] before = Bits(theta);

        Assert.False(optimizer.Step(theta, grad, loss: poison));
        Assert.Equal(before, Bits(theta));
        grad.By[2] = poison;
        Assert.False(optimizer.Step(theta, grad, loss: 1f));
        Assert.Equal(before, Bits(theta));
        Assert.Equal(0, optimizer.StepCount);

        grad.By[2] = 0.1f;
        Assert.True(optimizer.Step(theta, grad, loss: 1f));
        Assert.Equal(1, optimizer.StepCount);
        Assert.Equal(before.Length, Bits(theta).Length);
        Assert.NotEqual(before, Bits(theta));
    }

    private static byte[] Bits(RnnParameters p) => System.Runtime.InteropServices.MemoryMarshal.AsBytes(p.Values).ToArray();

    private static RnnParameters NewTheta()
    {
        var theta = new RnnParameters(Shape);
        theta.InitializeGlorot(1);
        return theta;
    }

    private static Buffers Snapshot(Buffers b) => new()
    {
        Final = (float[])b.Final.Clone(),
        Dh0 = (float[])b.Dh0.Clone(),
        Dx = (float[])b.Dx.Clone(),
    };
}
