using ScottPlot;

namespace Bptt.Fast.Cli;

/// <summary>The loss curve (per-step and smoothed), drawn with ScottPlot.</summary>
internal static class LossPlot
{
    /// <summary>The most points drawn per line; longer runs are drawn as the means of equal runs of steps.</summary>
    public const int MaxPoints = 4000;

    public static void Save(IReadOnlyList<float> losses, string path, string title)
    {
        // The smoothed curve runs over every step; both lines are then averaged down to at most MaxPoints points.
        int n = losses.Count, stride = Math.Max(1, (n + MaxPoints - 1) / MaxPoints), points = (n + stride - 1) / stride;
        var xs = new double[points];
        var raw = new double[points];
        var smooth = new double[points];
        double s = n > 0 ? losses[0] : 0;
        for (int i = 0; i < n; i++)
        {
            s = (0.98 * s) + (0.02 * losses[i]);
            int bucket = i / stride, size = Math.Min(stride, n - (bucket * stride));
            xs[bucket] += (i + 1.0) / size;
            raw[bucket] += (double)losses[i] / size;
            smooth[bucket] += s / size;
        }

        var plot = new Plot();
        var perStep = plot.Add.ScatterLine(xs, raw);
        perStep.Color = Colors.LightGray;
        perStep.LegendText = stride == 1 ? "per step" : $"mean of {stride} steps";
        var line = plot.Add.ScatterLine(xs, smooth);
        line.Color = Colors.SteelBlue;
        line.LineWidth = 2;
        line.LegendText = "smoothed";
        plot.Title($"bptt train — {title}");
        plot.XLabel("update");
        plot.YLabel("loss (nats per symbol)");
        plot.ShowLegend();
        plot.SavePng(path, 800, 450);
    }
}
