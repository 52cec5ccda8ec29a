using System.Globalization;
using Bptt.Fast.Reference;
using Bptt.Fast.Serving;
using Spectre.Console.Cli;

namespace Bptt.Fast.Cli;

/// <summary><c>bptt check</c>: the fast path, the data-parallel engine and every serving call against their references, and the reference against central differences.</summary>
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
            double scale = refGrad.Select(Math.Abs).Aggregate(0.0, Math.Max) + 1e-12;

            // Folded with Math.Max, which keeps a NaN (LINQ's Max ranks NaN below every number and would pass it).
            double fastError = Math.Max(Math.Abs(fastLoss - refLoss) / Math.Max(1, Math.Abs(refLoss)), refGrad.Select((g, k) => Math.Abs(g - fastGrad.Values[k]) / scale).Aggregate(0.0, Math.Max));
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

        double worstParallel = CheckParallel(random);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"data-parallel engine (two workers) vs one engine: max relative error {worstParallel:E2}"));

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

        bool pass = worstFast < 1e-4 && worstGradient < 1e-4 && worstParallel < 1e-4 && worstServing < 1e-5;
        output.WriteLine(pass ? "PASS" : string.Create(CultureInfo.InvariantCulture, $"FAIL (fast {worstFast:E2}, gradient {worstGradient:E2}, data-parallel {worstParallel:E2}, serving {worstServing:E2}; limits 1e-4, 1e-4, 1e-4, 1e-5)"));
        return pass ? 0 : 1;
    }

    /// <summary>
    /// <see cref="ParallelBpttEngine"/> with two workers (each takes half of the batch) against one <see cref="BpttEngine"/>
    /// on the same random batches of a two-layer model, eight calls: the largest difference of the loss and of any
    /// gradient element, relative to the loss and to the largest gradient element. The split only reorders sums.
    /// </summary>
    private static double CheckParallel(Random random)
    {
        const int T = 5, B = 4;
        var shape = new RnnShape(17, 33, 9) { Layers = 2 };
        var theta = new RnnParameters(shape);
        theta.InitializeGlorot((ulong)random.Next());
        RnnParameters single = new(shape), split = new(shape);
        var engine = new BpttEngine(shape, T, B);
        using var parallel = new ParallelBpttEngine(shape, T, B, workers: 2);
        double worst = 0;
        for (int call = 0; call < 8; call++)
        {
            float[] x = Enumerable.Range(0, T * B * shape.InputSize).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
            int[] y = Enumerable.Range(0, T * B).Select(_ => random.Next(shape.OutputSize)).ToArray();
            var batch = new SequenceBatch<float>(T, B, x, y);
            float one = engine.ComputeGradients(theta, batch, single);
            float two = parallel.ComputeGradients(theta, batch, split);
            double scale = single.Values.ToArray().Max(Math.Abs) + 1e-12;
            worst = Math.Max(worst, Math.Abs(one - two) / Math.Max(1, Math.Abs(one)));
            for (int k = 0; k < shape.ParameterCount; k++)
            {
                worst = Math.Max(worst, Math.Abs(single.Values[k] - split.Values[k]) / scale); // a NaN stays NaN
            }
        }

        return worst;
    }

    /// <summary>Rounds of the serving check; odd rounds ask for logits, even rounds for probabilities.</summary>
    private const int ServingRounds = 32;

    /// <summary>
    /// Every serving entry point of <see cref="RnnModel"/> against ŷₜ of the double reference's forward pass, equation (4):
    /// token and dense steps, the batched step, and sequences of one and of B streams with every step's output and with
    /// the last step's only, each fed in pieces that carry the state over. The model has non-zero biases, the dense
    /// inputs are random, logits are compared through a softmax, and the output buffer is filled with NaN before every
    /// call, so a path that writes nothing fails. Returns the largest absolute difference of a probability (NaN when one
    /// is missing). A bidirectional model runs whole sequences only.
    /// </summary>
    private static double CheckServing(RnnShape shape, Activation activation, Random random)
    {
        const int T = 12, B = 5;
        int inputs = shape.InputSize, outputs = shape.OutputSize;
        var theta = new RnnParameters(shape);
        theta.InitializeGlorot((ulong)random.Next());
        for (int l = 0; l < shape.Layers; l++)
        {
            for (int d = 0; d < shape.Directions; d++)
            {
                Fill(theta.LayerBh(l, d), random);
            }
        }

        Fill(theta.By, random);
        int[] tokens = Enumerable.Range(0, T * B).Select(_ => random.Next(inputs)).ToArray(); // [T, B]
        float[] dense = Enumerable.Range(0, T * B * inputs).Select(_ => (float)random.NextDouble() - 0.5f).ToArray(); // [T, B, I]
        double[] th = theta.Values.ToArray().Select(v => (double)v).ToArray();
        var reference = new ReferenceBptt<double>(shape, T, B, activation);
        reference.Evaluate(th, new SequenceBatch<double>(T, B, tokens, new int[T * B]));
        double[] tokenExpected = reference.Errors.ToArray(); // Evaluate leaves yₜ of (4) there: [T, B, O]
        reference.Evaluate(th, new SequenceBatch<double>(T, B, dense.Select(v => (double)v).ToArray(), new int[T * B]));
        double[] denseExpected = reference.Errors.ToArray();

        var model = new RnnModel(theta, activation);
        var workspace = model.CreateSequenceWorkspace(T, B);
        float[] got = new float[T * B * outputs];
        int[] column = new int[T];
        float[] denseColumn = new float[T * inputs];
        int[] pieces = shape.IsBidirectional ? [0, T] : [0, 1, 4, 5, T]; // the sequence fed as 1, 3, 1 and T − 5 steps
        double worst = 0;
        StepOutput kind = StepOutput.Probabilities;
        Span<float> Fresh(int length)
        {
            got.AsSpan().Fill(float.NaN);
            return got.AsSpan(0, length);
        }

        void Compare(double[] expected, int t, int b, int row)
        {
            ReadOnlySpan<float> actual = got.AsSpan(row * outputs, outputs);
            double max = kind == StepOutput.Logits ? actual.ToArray().Max() : 0, sum = 0;
            for (int k = 0; k < outputs && kind == StepOutput.Logits; k++)
            {
                sum += Math.Exp(actual[k] - max);
            }

            for (int k = 0; k < outputs; k++)
            {
                double p = kind == StepOutput.Logits ? Math.Exp(actual[k] - max) / sum : actual[k];
                worst = Math.Max(worst, Math.Abs(p - expected[(((t * B) + b) * outputs) + k])); // a NaN stays NaN
            }
        }

        for (int round = 0; round < ServingRounds; round++)
        {
            kind = round % 2 == 0 ? StepOutput.Probabilities : StepOutput.Logits;
            for (int b = 0; b < B; b++)
            {
                for (int t = 0; t < T; t++)
                {
                    column[t] = tokens[(t * B) + b];
                    dense.AsSpan(((t * B) + b) * inputs, inputs).CopyTo(denseColumn.AsSpan(t * inputs, inputs));
                }

                if (!shape.IsBidirectional)
                {
                    RnnState tokenState = model.CreateState(), denseState = model.CreateState();
                    for (int t = 0; t < T; t++)
                    {
                        model.Step(column[t], tokenState, Fresh(outputs), kind);
                        Compare(tokenExpected, t, b, 0);
                        model.Step(denseColumn.AsSpan(t * inputs, inputs), denseState, Fresh(outputs), kind);
                        Compare(denseExpected, t, b, 0);
                    }
                }

                RnnState[] states = [model.CreateState(), model.CreateState(), model.CreateState(), model.CreateState()];
                for (int p = 0; p + 1 < pieces.Length; p++)
                {
                    int from = pieces[p], to = pieces[p + 1], n = to - from;
                    model.RunSequence(column.AsSpan(from, n), states[0], workspace, Fresh(n * outputs), kind);
                    for (int t = from; t < to; t++)
                    {
                        Compare(tokenExpected, t, b, t - from);
                    }

                    model.RunSequence(denseColumn.AsSpan(from * inputs, n * inputs), states[1], workspace, Fresh(n * outputs), kind);
                    for (int t = from; t < to; t++)
                    {
                        Compare(denseExpected, t, b, t - from);
                    }

                    model.RunSequence(column.AsSpan(from, n), states[2], workspace, Fresh(outputs), kind, SequenceOutput.LastStep);
                    Compare(tokenExpected, to - 1, b, 0);
                    model.RunSequence(denseColumn.AsSpan(from * inputs, n * inputs), states[3], workspace, Fresh(outputs), kind, SequenceOutput.LastStep);
                    Compare(denseExpected, to - 1, b, 0);
                }
            }

            if (!shape.IsBidirectional)
            {
                RnnStateBatch states = model.CreateStateBatch(B);
                for (int t = 0; t < T; t++)
                {
                    model.StepBatch(tokens.AsSpan(t * B, B), states, Fresh(B * outputs), kind);
                    for (int b = 0; b < B; b++)
                    {
                        Compare(tokenExpected, t, b, b);
                    }
                }
            }

            RnnStateBatch[] batches = [model.CreateStateBatch(B), model.CreateStateBatch(B), model.CreateStateBatch(B), model.CreateStateBatch(B)];
            for (int p = 0; p + 1 < pieces.Length; p++)
            {
                int from = pieces[p], to = pieces[p + 1], n = to - from;
                model.RunSequenceBatch(tokens.AsSpan(from * B, n * B), batches[0], workspace, Fresh(n * B * outputs), kind);
                CompareRows(tokenExpected, from, to);
                model.RunSequenceBatch(dense.AsSpan(from * B * inputs, n * B * inputs), batches[1], workspace, Fresh(n * B * outputs), kind);
                CompareRows(denseExpected, from, to);
                model.RunSequenceBatch(tokens.AsSpan(from * B, n * B), batches[2], workspace, Fresh(B * outputs), kind, SequenceOutput.LastStep);
                CompareRows(tokenExpected, to - 1, to);
                model.RunSequenceBatch(dense.AsSpan(from * B * inputs, n * B * inputs), batches[3], workspace, Fresh(B * outputs), kind, SequenceOutput.LastStep);
                CompareRows(denseExpected, to - 1, to);
            }
        }

        return worst;

        void CompareRows(double[] expected, int from, int to)
        {
            for (int t = from; t < to; t++)
            {
                for (int b = 0; b < B; b++)
                {
                    Compare(expected, t, b, ((t - from) * B) + b);
                }
            }
        }
    }

    /// <summary>Random values in [−0.5, 0.5).</summary>
    private static void Fill(Span<float> values, Random random)
    {
        for (int k = 0; k < values.Length; k++)
        {
            values[k] = (float)random.NextDouble() - 0.5f;
        }
    }
}
