using System.Globalization;
using System.Text;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Reports;

namespace Bptt.Fast.Bench;

/// <summary>Writes the summary to bench/results/&lt;cpu&gt;.md and a chart of the training rows to &lt;cpu&gt;.png.</summary>
public static class Results
{
    public static void Write(Summary summary, double peak, bool full)
    {
        string dir = Path.Combine(RepositoryRoot(), "bench", "results");
        Directory.CreateDirectory(dir);
        string slug = new string(FmaPeak.Cpu.Select(c => char.IsLetterOrDigit(c) ? char.ToLowerInvariant(c) : '-').ToArray()).Trim('-');
        while (slug.Contains("--", StringComparison.Ordinal))
        {
            slug = slug.Replace("--", "-", StringComparison.Ordinal);
        }

        var log = new AccumulationLogger();
        MarkdownExporter.GitHub.ExportToLog(summary, log);
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture, $"# Bptt.Fast benchmark: {FmaPeak.Cpu}");
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"Measured single-core fp32 FMA peak: **{peak:F1} GFLOP/s**. Fast path default: {KernelInfo.Description}. Job: {(full ? "full" : "quick")}, one thread.");
        md.AppendLine("Training FLOPs are 3 × forward, forward = 2·T·B·(I·H + H·H + H·O). `vs reference` is the speed-up over the scalar reference path measured in the same run.");
        md.AppendLine();
        md.Append(log.GetLog());
        File.WriteAllText(Path.Combine(dir, slug + ".md"), md.ToString());
        string png = Path.Combine(dir, slug + ".png");
        Chart.TrainingSteps(summary, peak, png);
        Console.WriteLine($"Results: {Path.Combine(dir, slug + ".md")} and {png}");
    }

    private static string RepositoryRoot()
    {
        foreach (string start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (string? dir = start; dir is not null; dir = Path.GetDirectoryName(dir))
            {
                if (File.Exists(Path.Combine(dir, "Bptt.Fast.sln")))
                {
                    return dir;
                }
            }
        }

        return Directory.GetCurrentDirectory();
    }
}
