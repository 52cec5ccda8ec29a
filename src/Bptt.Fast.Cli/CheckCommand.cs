using System.Globalization;
using Bptt.Fast.Reference;
using Bptt.Fast.Serving;
using Spectre.Console.Cli;

namespace Bptt.Fast.Cli;

/// <summary><c>bptt check</c>: the fast path and every serving call against the reference, and the reference against central differences.</summary>
internal sealed class CheckCommand : Command<CheckSettings>
{
    public override int Execute(CommandContext context, CheckSettings settings, CancellationToken cancellationToken)
    {
        TextWriter output = RunContext.Of(context).Output;
        output.WriteLine($"kernel path: {KernelInfo.Description}");
        var random = new Random(settings.Seed);
        double worstFast = 0, worstGradient = 0;
        foreach ((int i, int h, int od, int t, int b) in new[] { (3, 7, 5, 6, 1), (17, 33, 9, 5, 4), (64, 100, 31, 4, 2) })
        {
            var shape = new RnnShape(i, h, od);
            var theta = new RnnParameters(shape);
            theta.InitializeGlorot((ulong)random.Next());
            float[] x = Enumerable.Range(0, t * b * i).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
            int[] y = Enumerable.Range(0, t * b).Select(_ => random.Next(od)).ToArray();
            var fastGrad = new RnnParameters(shape);
            float fastLoss = new BpttEngine(shape, t, b).ComputeGradients(theta, new SequenceBatch<float>(t, b, x, y), fastGrad);
            double[] th = theta.Values.ToArray().Select(v => (double)v).ToArray();
            double[] xd = x.Select(v => (double)v).ToArray();
            var reference = new ReferenceBptt<double>(shape, t, b, Activation.Tanh);
            var refGrad = new double[shape.ParameterCount];
            double refLoss = reference.ComputeGradients(th, new SequenceBatch<double>(t, b, xd, y), refGrad);
            double scale = refGrad.Max(Math.Abs) + 1e-12;
            double fastError = Math.Max(Math.Abs(fastLoss - refLoss) / Math.Max(1, Math.Abs(refLoss)), refGrad.Select((g, k) => Math.Abs(g - fastGrad.Values[k]) / scale).Max());
            worstFast = Math.Max(worstFast, fastError);

            // Central differences of the double reference on a few parameters.
            double gradError = 0;
            for (int probe = 0; probe < 12; probe++)
            {
                int k = random.Next(th.Length);
                double saved = th[k];
                th[k] = saved + 1e-5;
                double plus = reference.Evaluate(th, new SequenceBatch<double>(t, b, xd, y));
                th[k] = saved - 1e-5;
                double minus = reference.Evaluate(th, new SequenceBatch<double>(t, b, xd, y));
                th[k] = saved;
                double numeric = (plus - minus) / 2e-5;
                gradError = Math.Max(gradError, Math.Abs(numeric - refGrad[k]) / Math.Max(1e-3, Math.Abs(numeric)));
            }

            worstGradient = Math.Max(worstGradient, gradError);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"I={i} H={h} O={od} T={t} B={b}: fast vs reference max relative error {fastError:E2}; reference vs finite differences {gradError:E2}"));
        }

        double worstServing = 0;
        foreach ((RnnShape shape, Activation activation) in new[]
        {
            (new RnnShape(11, 37, 13), Activation.Tanh),
            (new RnnShape(11, 37, 13) { Layers = 2 }, Activation.Relu),
            (new RnnShape(11, 37, 13) { Directions = 2 }, Activation.Sigmoid),
        })
        {
            double error = CheckServing(shape, activation, random);
            worstServing = Math.Max(worstServing, error);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"serving I={shape.InputSize} H={shape.HiddenSize} O={shape.OutputSize} L={shape.Layers} D={shape.Directions} {activation}: RnnModel's steps and sequences vs the reference forward pass, max probability error {error:E2}"));
        }

        bool pass = worstFast < 1e-4 && worstGradient < 1e-4 && worstServing < 1e-5;
        output.WriteLine(pass ? "PASS" : string.Create(CultureInfo.InvariantCulture, $"FAIL (fast {worstFast:E2}, gradient {worstGradient:E2}, serving {worstServing:E2}; limits 1e-4, 1e-4, 1e-5)"));
        return pass ? 0 : 1;
    }

    /// <summary>Serving rounds: enough calls of each entry point for tiered compilation to have promoted anything they call out of line.</summary>
    private const int ServingRounds = 32;

    /// <summary>
    /// Every serving entry point of <see cref="RnnModel"/> (token and dense steps, the batched step, and sequences of one
    /// and of B streams, fed in pieces that carry the state over) against ŷₜ of the double reference's forward pass, equation
    /// (4), over <see cref="ServingRounds"/> rounds; returns the largest absolute difference of a probability. A
    /// bidirectional model runs whole sequences only.
    /// </summary>
    private static double CheckServing(RnnShape shape, Activation activation, Random random)
    {
        const int T = 12, B = 5;
        int inputs = shape.InputSize, outputs = shape.OutputSize;
        var theta = new RnnParameters(shape);
        theta.InitializeGlorot((ulong)random.Next());
        int[] tokens = Enumerable.Range(0, T * B).Select(_ => random.Next(inputs)).ToArray(); // [T, B]
        float[] oneHot = new float[T * B * inputs];
        for (int r = 0; r < tokens.Length; r++)
        {
            oneHot[(r * inputs) + tokens[r]] = 1f;
        }

        var reference = new ReferenceBptt<double>(shape, T, B, activation);
        reference.Evaluate(theta.Values.ToArray().Select(v => (double)v).ToArray(), new SequenceBatch<double>(T, B, tokens, new int[T * B]));
        double[] expected = reference.Errors.ToArray(); // Evaluate leaves yₜ of (4) there: [T, B, O]

        var model = new RnnModel(theta, activation);
        var workspace = model.CreateSequenceWorkspace(T, B);
        float[] got = new float[(T + 1) * B * outputs]; // [T, B, O] and a last-step block after it
        int[] column = new int[T];
        float[] denseColumn = new float[T * inputs];
        int[] pieces = [0, 1, 4, 5, T]; // the sequence fed as 1, 3, 1 and T − 5 steps
        double worst = 0;
        void Compare(ReadOnlySpan<float> actual, int t, int b)
        {
            for (int k = 0; k < outputs; k++)
            {
                worst = Math.Max(worst, Math.Abs(actual[k] - expected[(((t * B) + b) * outputs) + k]));
            }
        }

        for (int round = 0; round < ServingRounds; round++)
        {
            for (int b = 0; b < B; b++)
            {
                for (int t = 0; t < T; t++)
                {
                    column[t] = tokens[(t * B) + b];
                    oneHot.AsSpan(((t * B) + b) * inputs, inputs).CopyTo(denseColumn.AsSpan(t * inputs, inputs));
                }

                if (!shape.IsBidirectional)
                {
                    RnnState tokenState = model.CreateState(), denseState = model.CreateState();
                    for (int t = 0; t < T; t++)
                    {
                        model.Step(column[t], tokenState, got.AsSpan(0, outputs));
                        Compare(got.AsSpan(0, outputs), t, b);
                        model.Step(denseColumn.AsSpan(t * inputs, inputs), denseState, got.AsSpan(0, outputs));
                        Compare(got.AsSpan(0, outputs), t, b);
                    }
                }

                RnnState state = model.CreateState(), dense = model.CreateState();
                for (int p = 0; p + 1 < pieces.Length; p++)
                {
                    (int from, int to) = shape.IsBidirectional ? (0, T) : (pieces[p], pieces[p + 1]);
                    model.RunSequence(column.AsSpan(from, to - from), state, workspace, got.AsSpan(0, (to - from) * outputs));
                    for (int t = from; t < to; t++)
                    {
                        Compare(got.AsSpan((t - from) * outputs, outputs), t, b);
                    }

                    model.RunSequence(denseColumn.AsSpan(from * inputs, (to - from) * inputs), dense, workspace, got.AsSpan(0, outputs), StepOutput.Probabilities, SequenceOutput.LastStep);
                    Compare(got.AsSpan(0, outputs), to - 1, b);
                    if (shape.IsBidirectional)
                    {
                        break;
                    }
                }
            }

            if (!shape.IsBidirectional)
            {
                RnnStateBatch states = model.CreateStateBatch(B);
                for (int t = 0; t < T; t++)
                {
                    model.StepBatch(tokens.AsSpan(t * B, B), states, got.AsSpan(0, B * outputs));
                    for (int b = 0; b < B; b++)
                    {
                        Compare(got.AsSpan(b * outputs, outputs), t, b);
                    }
                }
            }

            RnnStateBatch batch = model.CreateStateBatch(B), denseBatch = model.CreateStateBatch(B);
            for (int p = 0; p + 1 < pieces.Length; p++)
            {
                (int from, int to) = shape.IsBidirectional ? (0, T) : (pieces[p], pieces[p + 1]);
                model.RunSequenceBatch(tokens.AsSpan(from * B, (to - from) * B), batch, workspace, got.AsSpan(0, (to - from) * B * outputs));
                model.RunSequenceBatch(oneHot.AsSpan(from * B * inputs, (to - from) * B * inputs), denseBatch, workspace, got.AsSpan((to - from) * B * outputs, B * outputs), StepOutput.Probabilities, SequenceOutput.LastStep);
                for (int b = 0; b < B; b++)
                {
                    for (int t = from; t < to; t++)
                    {
                        Compare(got.AsSpan((((t - from) * B) + b) * outputs, outputs), t, b);
                    }

                    Compare(got.AsSpan(((to - from) * B * outputs) + (b * outputs), outputs), to - 1, b);
                }

                if (shape.IsBidirectional)
                {
                    break;
                }
            }
        }

        return worst;
    }
}
