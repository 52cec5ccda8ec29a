using System.Globalization;
using System.Text;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Reports;

namespace Bptt.Fast.Bench;

/// <summary>
/// Writes summaries to bench/results/&lt;machine&gt;/ (<see cref="Machine.Folder"/>: the CPU model with its
/// family/model/stepping, so that two CPUs of one marketing name never share a folder), headed by the machine's caches,
/// instruction sets, runtime and FMA peak, and a chart of the training rows.
/// </summary>
public static class Results
{
    public static void Write(IReadOnlyList<Summary> summaries, double peak, bool full, string file, string? chart)
    {
        string dir = Path.Combine(RepositoryRoot(), "bench", "results", Machine.Folder);
        Directory.CreateDirectory(dir);
        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture, $"# Bptt.Fast benchmark: {FmaPeak.Cpu}");
        md.AppendLine();
        md.Append(Machine.Describe(peak));
        md.AppendLine(CultureInfo.InvariantCulture, $"- Job: {(full ? "full" : "quick")}, one thread; written {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
        md.AppendLine();
        md.AppendLine("Training FLOPs are 3 × forward, forward = 2·T·B·(I·H + H·H + H·O); serving FLOPs are 2·T·B·(H·H + H·O). `vs reference` is the speed-up over the scalar reference path and `vs ONNX Runtime` the speed-up over the fastest ONNX Runtime graph for the same case (one intra-op and one inter-op thread, ORT_ENABLE_ALL, IOBinding over pre-made OrtValues), each measured in the same run.");
        md.AppendLine();
        foreach (Summary summary in summaries)
        {
            var log = new AccumulationLogger();
            MarkdownExporter.GitHub.ExportToLog(summary, log);
            md.Append(log.GetLog());
            md.AppendLine();
        }

        string target = Path.Combine(dir, file);
        File.WriteAllText(target, md.ToString());
        Console.WriteLine($"Results: {target}");
        if (chart is not null)
        {
            string png = Path.Combine(dir, chart);
            Chart.TrainingSteps(summaries[0], peak, png);
            Console.WriteLine($"Chart: {png}");
        }
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
