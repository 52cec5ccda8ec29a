using Bptt.Fast.Reference;
using FsCheck;
using FsCheck.Fluent;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>The whole fast engine, on each supported ISA, against the reference path computed in double.</summary>
public sealed class EngineParityTests
{
    private static readonly int[] Sizes = [1, 3, 7, 17, 31, 33, 100, 257];

    private static Gen<ProblemSpec> Shapes(int maxBatch) =>
        from i in Gen.Elements(Sizes)
        from h in Gen.Elements(Sizes)
        from o in Gen.Elements(Sizes)
        from t in Gen.Choose(1, 6)
        from b in Gen.Choose(1, maxBatch)
        from act in Gen.Elements(Activation.Tanh, Activation.Relu, Activation.Sigmoid)
        from tokens in Gen.Elements(false, true)
        from h0 in Gen.Elements(false, true)
        from ragged in Gen.Elements(false, true)
        from seed in Gen.Choose(0, int.MaxValue)
        select new ProblemSpec(new RnnShape(i, h, o), t, b, act, tokens, h0, ragged, (ulong)seed);

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void FastMatchesReferenceOnRandomShapes(KernelIsa isa) =>
        Generators.Check(Shapes(maxBatch: 6), spec => Compare(spec, isa), count: 40, seed: 11 + (ulong)isa);

    [Theory]
    [MemberData(nameof(KernelCases.Isas), MemberType = typeof(KernelCases))]
    public void FastMatchesReferenceOnTheBatchedRecurrencePath(KernelIsa isa)
    {
        foreach (int b in new[] { 4, 5, 8 })
        {
            foreach (Activation f in Enum.GetValues<Activation>())
            {
                Compare(new ProblemSpec(new RnnShape(17, 33, 7), 5, b, f, false, true, true, 100 + (ulong)b), isa);
                Compare(new ProblemSpec(new RnnShape(9, 100, 31), 4, b, f, true, false, true, 200 + (ulong)b), isa);
            }
        }
    }

    internal static void Compare(ProblemSpec spec, KernelIsa isa)
    {
        RnnShape s = spec.Shape;
        var pf = new Problem<float>(spec, weightScale: 1.5 / Math.Sqrt(Math.Max(s.InputSize, s.HiddenSize)));
        Problem<double> pd = pf.As<double>();
        int bh = spec.Batch * s.HiddenSize;

        var reference = new ReferenceBptt<double>(s, spec.Steps, spec.Batch, spec.Activation);
        var gd = new double[s.ParameterCount];
        var finalD = new double[bh];
        var dh0D = new double[bh];
        var dxD = spec.Tokens ? [] : new double[pd.Inputs.Length];
        var statesD = new double[spec.Steps * bh];
        double lossD = reference.ComputeGradients(pd.Theta, pd.Batch(finalD, dh0D, dxD, statesD), gd);

        var engine = new BpttEngine(s, spec.Steps, spec.Batch, spec.Activation, KernelPath.Fast, isa);
        var theta = new RnnParameters(s);
        pf.Theta.CopyTo(theta.Values);
        var grad = new RnnParameters(s);
        var finalF = new float[bh];
        var dh0F = new float[bh];
        var dxF = spec.Tokens ? [] : new float[pf.Inputs.Length];
        var statesF = new float[spec.Steps * bh];
        float lossF = engine.ComputeGradients(theta, pf.Batch(finalF, dh0F, dxF, statesF), grad);

        int reduction = spec.Steps * spec.Batch * Math.Max(s.InputSize, Math.Max(s.HiddenSize, s.OutputSize));
        double tol = (2e-6 * Math.Sqrt(reduction)) + 2e-6;
        string what = $"{isa} {spec}";
        Assert.True(Math.Abs(lossF - lossD) <= tol * Math.Max(1, Math.Abs(lossD)), $"loss {lossF} vs {lossD}: {what}");
        Tolerance.AssertBlock(grad.Wxh, gd.AsSpan(s.WxhOffset, s.WhhOffset), tol, "∂W_xh " + what);
        Tolerance.AssertBlock(grad.Whh, gd.AsSpan(s.WhhOffset, s.BhOffset - s.WhhOffset), tol, "∂W_hh " + what);
        Tolerance.AssertBlock(grad.Bh, gd.AsSpan(s.BhOffset, s.HiddenSize), tol, "∂b_h " + what);
        Tolerance.AssertBlock(grad.Why, gd.AsSpan(s.WhyOffset, s.ByOffset - s.WhyOffset), tol, "∂W_hy " + what);
        Tolerance.AssertBlock(grad.By, gd.AsSpan(s.ByOffset, s.OutputSize), tol, "∂b_y " + what);
        Tolerance.AssertBlock(finalF, finalD, tol, "final state " + what);
        Tolerance.AssertBlock(dh0F, dh0D, tol, "∂h0 " + what);
        Tolerance.AssertBlock(dxF, dxD, tol, "∂x " + what);
        Tolerance.AssertBlock(statesF, statesD, tol, "hidden states " + what);

        float evaluated = engine.Evaluate(theta, pf.Batch());
        Assert.Equal(lossF, evaluated);
    }
}
