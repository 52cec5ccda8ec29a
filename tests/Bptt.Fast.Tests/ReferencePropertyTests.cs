using Bptt.Fast.Reference;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>Properties of the reference path (docs/design.md, section 7).</summary>
public sealed class ReferencePropertyTests
{
    [Fact]
    public void LossIsTheSumOfStepLossesAndMatchesAnIndependentForward() =>
        Generators.Check(Generators.Problems(6, 3, 7), spec =>
        {
            var p = new Problem<double>(spec);
            var engine = new ReferenceBptt<double>(spec.Shape, spec.Steps, spec.Batch, spec.Activation);
            double loss = engine.ComputeGradients(p.Theta, p.Batch(), new double[spec.Shape.ParameterCount]);
            double sum = 0;
            foreach (double lt in engine.StepLosses)
            {
                sum += lt;
            }

            Assert.Equal(sum, loss, 1e-10);
            IndependentForward.Result independent = IndependentForward.Run(p);
            Assert.Equal(independent.Loss, loss, 1e-10);
            for (int k = 0; k < independent.Hidden.Length; k++)
            {
                Assert.Equal(independent.Hidden[k], engine.HiddenStates[k], 1e-12);
            }
        }, count: 50);

    [Fact]
    public void ErrorsSumToZeroOverClassesAtEveryStep() =>
        Generators.Check(Generators.Problems(6, 3, 7), spec =>
        {
            var p = new Problem<double>(spec);
            var engine = new ReferenceBptt<double>(spec.Shape, spec.Steps, spec.Batch, spec.Activation);
            engine.ComputeGradients(p.Theta, p.Batch(), new double[spec.Shape.ParameterCount]);
            int o = spec.Shape.OutputSize;
            for (int row = 0; row < spec.Steps * spec.Batch; row++)
            {
                double sum = 0;
                for (int k = 0; k < o; k++)
                {
                    sum += engine.Errors[(row * o) + k];
                }

                Assert.Equal(0.0, sum, 1e-12);
            }
        }, count: 50);

    [Fact]
    public void BatchEqualsTheSumOfSingleSequences() =>
        Generators.Check(Generators.Problems(6, 4, 7), spec =>
        {
            var p = new Problem<double>(spec);
            RnnShape s = spec.Shape;
            var batched = new ReferenceBptt<double>(s, spec.Steps, spec.Batch, spec.Activation);
            var gBatch = new double[s.ParameterCount];
            var finalBatch = new double[spec.Batch * s.HiddenSize];
            double lossBatch = batched.ComputeGradients(p.Theta, p.Batch(finalBatch), gBatch);

            var single = new ReferenceBptt<double>(s, spec.Steps, 1, spec.Activation);
            var gSum = new double[s.ParameterCount];
            double lossSum = 0;
            for (int b = 0; b < spec.Batch; b++)
            {
                int length = p.LengthOf(b); // a ragged sequence run alone at its own length
                var x = spec.Tokens ? [] : new double[length * s.InputSize];
                var tokens = spec.Tokens ? new int[length] : [];
                var targets = new int[length];
                for (int t = 0; t < length; t++)
                {
                    int row = (t * spec.Batch) + b;
                    targets[t] = p.Targets[row];
                    if (spec.Tokens)
                    {
                        tokens[t] = p.Tokens[row];
                    }
                    else
                    {
                        Array.Copy(p.Inputs, row * s.InputSize, x, t * s.InputSize, s.InputSize);
                    }
                }

                double[] h0 = spec.WithH0 ? p.H0[(b * s.HiddenSize)..((b + 1) * s.HiddenSize)] : [];
                var final = new double[s.HiddenSize];
                SequenceBatch<double> one = spec.Tokens
                    ? new SequenceBatch<double>(length, 1, tokens, targets) { InitialState = h0, FinalState = final }
                    : new SequenceBatch<double>(length, 1, x, targets) { InitialState = h0, FinalState = final };
                lossSum += single.ComputeGradients(p.Theta, one, gSum, accumulate: true);
                for (int j = 0; j < s.HiddenSize; j++)
                {
                    Assert.Equal(final[j], finalBatch[(b * s.HiddenSize) + j], 1e-12);
                }
            }

            Assert.Equal(lossSum, lossBatch, 1e-10);
            for (int k = 0; k < gSum.Length; k++)
            {
                Assert.Equal(gSum[k], gBatch[k], 1e-10);
            }
        }, count: 50);

    [Fact]
    public void FloatAndDoubleReferenceAgreeWithinFloatTolerance() =>
        Generators.Check(Generators.Problems(6, 3, 7), spec =>
        {
            var pf = new Problem<float>(spec);
            Problem<double> pd = pf.As<double>();
            RnnShape s = spec.Shape;
            var gf = new float[s.ParameterCount];
            var gd = new double[s.ParameterCount];
            float lf = new ReferenceBptt<float>(s, spec.Steps, spec.Batch, spec.Activation).ComputeGradients(pf.Theta, pf.Batch(), gf);
            double ld = new ReferenceBptt<double>(s, spec.Steps, spec.Batch, spec.Activation).ComputeGradients(pd.Theta, pd.Batch(), gd);
            Assert.Equal(ld, lf, Math.Max(1e-5, Math.Abs(ld) * 1e-5));
            Assert.True(Tolerance.MaxRelative(gf, gd) < 1e-5, $"gradient differs for {spec}");
        }, count: 50);

    [Fact]
    public void SteadyStateCallsAllocateNothing()
    {
        var spec = new ProblemSpec(new RnnShape(5, 6, 4), 5, 2, Activation.Tanh, false, true, true, 3);
        var p = new Problem<double>(spec);
        var engine = new ReferenceBptt<double>(spec.Shape, 5, 2, Activation.Tanh);
        var grad = new double[spec.Shape.ParameterCount];
        AllocationProbe.AssertSteadyStateAllocatesNothing(
            () =>
            {
                engine.ComputeGradients(p.Theta, p.Batch(), grad);
                engine.Evaluate(p.Theta, p.Batch());
            },
            calls: 20);
    }
}
