using FsCheck;
using FsCheck.Fluent;

namespace Bptt.Fast.Tests;

/// <summary>Bounded generators and a deterministic runner for FsCheck properties (fixed seed: every run checks the same cases).</summary>
public static class Generators
{
    public static Gen<ProblemSpec> Problems(int maxSteps, int maxBatch, int maxSize, bool allowRelu = true) =>
        from i in Gen.Choose(1, maxSize)
        from h in Gen.Choose(1, maxSize)
        from o in Gen.Choose(1, maxSize)
        from t in Gen.Choose(1, maxSteps)
        from b in Gen.Choose(1, maxBatch)
        from act in Gen.Elements(allowRelu ? [Activation.Tanh, Activation.Relu, Activation.Sigmoid] : new[] { Activation.Tanh, Activation.Sigmoid })
        from tokens in Gen.Elements(false, true)
        from h0 in Gen.Elements(false, true)
        from ragged in Gen.Elements(false, true)
        from seed in Gen.Choose(0, int.MaxValue)
        select new ProblemSpec(new RnnShape(i, h, o), t, b, act, tokens, h0, ragged, (ulong)seed);

    /// <summary>Checks <paramref name="property"/> on <paramref name="count"/> generated cases, from a fixed seed.</summary>
    public static void Check<T>(Gen<T> gen, Action<T> property, int count, ulong seed = 20261127)
    {
        Config config = Config.QuickThrowOnFailure.WithMaxTest(count).WithReplay(seed, 1442695040888963407UL);
        Prop.ForAll(Arb.From(gen), property).Check(config);
    }
}
