using ScottPlot;

namespace Bptt.Fast.Cli;

/// <summary>The loss curve (per-step and smoothed), drawn with ScottPlot.</summary>
internal static class LossPlot
{
    public static void Save(IReadOnlyList<float> losses, string path, string title)
    {
        var plot = new Plot();
        double[] xs = Enumerable.Range(1, losses.Count).Select(i => (double)i).ToArray();
        double[] raw = losses.Select(l => (double)l).ToArray();
        var smooth = new double[raw.Length];
        double s = raw.Length > 0 ? raw[0] : 0;
        for (int i = 0; i < raw.Length; i++)
        {
            s = (0.98 * s) + (0.02 * raw[i]);
            smooth[i] = s;
        }

        var points = plot.Add.ScatterLine(xs, raw);
        points.Color = Colors.LightGray;
        points.LegendText = "per step";
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
