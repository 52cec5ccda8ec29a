using System.Globalization;
using Bptt.Fast.Reference;
using Spectre.Console.Cli;

namespace Bptt.Fast.Cli;

/// <summary><c>bptt check</c>: the fast path against the reference, and the reference against central differences.</summary>
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

        bool pass = worstFast < 1e-4 && worstGradient < 1e-4;
        output.WriteLine(pass ? "PASS" : string.Create(CultureInfo.InvariantCulture, $"FAIL (fast {worstFast:E2}, gradient {worstGradient:E2}; limits 1e-4)"));
        return pass ? 0 : 1;
    }
}
