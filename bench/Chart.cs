using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using ScottPlot;

namespace Bptt.Fast.Bench;

/// <summary>A grouped bar chart (ScottPlot) of % of FMA peak for every training workload and path.</summary>
public static class Chart
{
    public static void TrainingSteps(Summary summary, double peak, string path)
    {
        var rows = new List<(string Workload, string Path, double Percent)>();
        foreach (BenchmarkCase c in summary.BenchmarksCases)
        {
            if (WorkColumn.Describe(c) is TrainingStep t && summary[c]?.ResultStatistics?.Mean is double ns)
            {
                rows.Add((t.Workload.Name, t.Path.Name, 100 * t.Flops / ns / peak));
            }
        }

        string[] workloads = Workload.All.Select(w => w.Name).Where(n => rows.Any(r => r.Workload == n)).ToArray();
        string[] paths = Paths.All.Select(p => p.Name).Where(n => rows.Any(r => r.Path == n)).ToArray();
        Color[] palette = [Colors.Gray, Colors.SteelBlue, Colors.DarkOrange, Colors.SeaGreen, Colors.Purple];
        var plot = new Plot();
        var bars = new List<Bar>();
        for (int w = 0; w < workloads.Length; w++)
        {
            for (int p = 0; p < paths.Length; p++)
            {
                double value = rows.Where(r => r.Workload == workloads[w] && r.Path == paths[p]).Select(r => r.Percent).FirstOrDefault();
                bars.Add(new Bar { Position = (w * (paths.Length + 1)) + p, Value = value, FillColor = palette[p % palette.Length], Label = value.ToString("F0", System.Globalization.CultureInfo.InvariantCulture) });
            }
        }

        plot.Add.Bars(bars);
        Tick[] ticks = workloads.Select((w, i) => new Tick((i * (paths.Length + 1)) + ((paths.Length - 1) / 2.0), w)).ToArray();
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks);
        plot.Axes.Margins(bottom: 0);
        plot.YLabel("% of measured FMA peak");
        plot.Title($"Training step, one thread — {FmaPeak.Cpu} (peak {peak:F0} GFLOP/s)");
        for (int p = 0; p < paths.Length; p++)
        {
            plot.Legend.ManualItems.Add(new LegendItem { LabelText = paths[p], FillColor = palette[p % palette.Length] });
        }

        plot.Legend.Alignment = Alignment.UpperLeft;
        plot.ShowLegend();
        plot.SavePng(path, 900, 480);
    }
}
