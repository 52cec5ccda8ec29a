namespace Bptt.Fast.Tests;

/// <summary>
/// A second, deliberately separate forward pass over equations (1)–(6) in double, written from docs/design.md without
/// reference to the library's code: used to check the reference path's forward quantities and relu kinks.
/// </summary>
public static class IndependentForward
{
    public sealed record Result(double Loss, double[] StepLosses, double[] Hidden, double[] PreActivation);

    public static Result Run(Problem<double> p)
    {
        ProblemSpec spec = p.Spec;
        int ni = spec.Shape.InputSize, nh = spec.Shape.HiddenSize, no = spec.Shape.OutputSize, nb = spec.Batch;
        double[] th = p.Theta;
        int whh = spec.Shape.WhhOffset, bh = spec.Shape.BhOffset, why = spec.Shape.WhyOffset, by = spec.Shape.ByOffset;
        var hidden = new double[spec.Steps * nb * nh];
        var pre = new double[spec.Steps * nb * nh];
        var losses = new double[spec.Steps * nb];
        double total = 0;
        for (int b = 0; b < nb; b++)
        {
            var h = new double[nh];
            if (p.H0.Length > 0)
            {
                Array.Copy(p.H0, b * nh, h, 0, nh);
            }

            for (int t = 0; t < p.LengthOf(b); t++)
            {
                int row = (t * nb) + b;
                var hNew = new double[nh];
                for (int i = 0; i < nh; i++)
                {
                    double u = th[bh + i];
                    for (int j = 0; j < ni; j++)
                    {
                        double xj = spec.Tokens ? (p.Tokens[row] == j ? 1 : 0) : p.Inputs[(row * ni) + j];
                        u += th[(i * ni) + j] * xj;
                    }

                    for (int j = 0; j < nh; j++)
                    {
                        u += th[whh + (i * nh) + j] * h[j];
                    }

                    pre[(row * nh) + i] = u;
                    hNew[i] = spec.Activation switch
                    {
                        Activation.Tanh => Math.Tanh(u),
                        Activation.Relu => Math.Max(u, 0),
                        _ => 1 / (1 + Math.Exp(-u)),
                    };
                }

                h = hNew;
                Array.Copy(h, 0, hidden, row * nh, nh);
                var v = new double[no];
                for (int k = 0; k < no; k++)
                {
                    v[k] = th[by + k];
                    for (int j = 0; j < nh; j++)
                    {
                        v[k] += th[why + (k * nh) + j] * h[j];
                    }
                }

                double max = v.Max();
                double lse = max + Math.Log(v.Sum(z => Math.Exp(z - max)));
                losses[row] = p.Targets[row] < 0 ? 0 : lse - v[p.Targets[row]];
                total += losses[row];
            }
        }

        return new Result(total, losses, hidden, pre);
    }

    public static double MinAbsPreActivation(Problem<double> p)
    {
        Result r = Run(p);
        double min = double.PositiveInfinity;
        for (int b = 0; b < p.Spec.Batch; b++)
        {
            for (int t = 0; t < p.LengthOf(b); t++)
            {
                for (int i = 0; i < p.Spec.Shape.HiddenSize; i++)
                {
                    min = Math.Min(min, Math.Abs(r.PreActivation[(((t * p.Spec.Batch) + b) * p.Spec.Shape.HiddenSize) + i]));
                }
            }
        }

        return min;
    }
}
