using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Bptt.Fast.Bench;

/// <summary>
/// <c>dotnet run -c Release --project bench</c>: measures the FMA peak, runs the quick job over the
/// headline set (training steps S, S-tokens, M, BM, L; single-step, T = 64 sequence and 16-stream serving, each against
/// ONNX Runtime; GEMM 512³) on every path, prints one summary, and writes bench/results/&lt;machine&gt;/headline.md and
/// training.png, &lt;machine&gt; being the CPU model with its family/model/stepping. <c>--full</c> gives the full
/// statistical run; <c>--iterations N</c> gives the quick job N measured iterations instead of 3 (steadier ratios on a
/// busy machine). Any other arguments go to BenchmarkSwitcher (e.g. <c>--filter *MatVec*</c>, <c>--list flat</c>); the
/// kernel micro-benchmarks (Gemm, MatVec, Elementwise) run that way, and a run that measured anything writes its
/// summary to bench/results/&lt;machine&gt;/filtered.md.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        bool full = args.Contains("--full");
        bool aot = args.Contains("--aot") || args.Contains("--aot-v3");
        bool v3 = args.Contains("--aot-v3"); // AVX2 on both sides: NativeAOT for x86-64-v3 against the JIT with AVX-512 off
        int at = Array.IndexOf(args, "--iterations");
        int iterations = at >= 0 && at + 1 < args.Length && int.TryParse(args[at + 1], System.Globalization.CultureInfo.InvariantCulture, out int n) && n > 0 ? n : 3;
        string[] rest = args.Where((a, k) => a is not "--full" and not "--aot" and not "--aot-v3" && (at < 0 || (k != at && k != at + 1))).ToArray();
        bool listOnly = rest.Contains("--list") || rest.Contains("--help") || rest.Contains("--version");
        double peak = listOnly ? FmaPeak.Measure() : HeadlinePeak.Measure();
        Console.WriteLine($"CPU: {FmaPeak.Cpu} ({Machine.Folder}); caches: {Machine.Caches}; single-core fp32 FMA peak: {peak:F1} GFLOP/s; fast path: {KernelInfo.Description}");

        IConfig config = Config(full, iterations);
        if (aot)
        {
            // JIT against NativeAOT (the CPU's own instruction set; --aot-v3: x86-64-v3 against the JIT with AVX-512 off), same quick job.
            Job jit = Job.ShortRun.WithWarmupCount(1).WithIterationCount(iterations).WithLaunchCount(1).WithIterationTime(Perfolizer.Horology.TimeInterval.FromMilliseconds(250));
            if (v3)
            {
                jit = jit.WithEnvironmentVariables(new BenchmarkDotNet.Jobs.EnvironmentVariable("DOTNET_EnableAVX512", "0"));
            }

            IConfig aotConfig = ManualConfig.CreateEmpty()
                .AddJob(jit.WithId("JIT"))
                .AddJob(jit.WithToolchain(BenchmarkDotNet.Toolchains.NativeAot.NativeAotToolchain.CreateBuilder().UseNuGet().IlcInstructionSet(v3 ? "x86-64-v3" : "native").TargetFrameworkMoniker("net10.0").ToToolchain()).WithId("NativeAOT"))
                .AddDiagnoser(MemoryDiagnoser.Default)
                .AddColumnProvider(DefaultColumnProviders.Instance)
                .AddLogger(ConsoleLogger.Default)
                .AddExporter(MarkdownExporter.GitHub)
                .WithSummaryStyle(SummaryStyle.Default.WithCultureInfo(CultureInfo.InvariantCulture));
            string[] filter = rest.Length > 0 ? rest : ["--filter", "*AotComparison*"];
            return BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(filter, aotConfig).Any(s => s.HasCriticalValidationErrors) ? 1 : 0;
        }

        if (rest.Length > 0)
        {
            Summary[] summaries = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(rest, config).ToArray();
            if (summaries.Any(s => s.Reports.Any(r => r.Success)))
            {
                Results.Write(summaries, peak, full, "filtered.md", chart: null);
            }

            return summaries.Any(s => s.HasCriticalValidationErrors) ? 1 : 0;
        }

        Summary summary = BenchmarkRunner.Run(Headline, config.WithOptions(ConfigOptions.JoinSummary)).Single();
        Results.Write([summary], peak, full, "headline.md", chart: "training.png");
        return summary.HasCriticalValidationErrors ? 1 : 0;
    }

    /// <summary>The default run: training, serving against ONNX Runtime, and the headline GEMM.</summary>
    public static Type[] Headline => [typeof(TrainingStep), typeof(InferenceStep), typeof(InferenceSequence), typeof(InferenceBatch16), typeof(HeadlineGemm)];

    private static IConfig Config(bool full, int iterations)
    {
        Job job = full
            ? Job.Default
            : Job.ShortRun.WithWarmupCount(1).WithIterationCount(iterations).WithLaunchCount(1).WithIterationTime(Perfolizer.Horology.TimeInterval.FromMilliseconds(250));
        return ManualConfig.CreateEmpty()
            .AddJob(job.WithId(full ? "full" : "quick"))
            .AddDiagnoser(MemoryDiagnoser.Default)
            .AddColumnProvider(DefaultColumnProviders.Instance)
            .AddColumn(StatisticColumn.Min, WorkColumn.Gflops, WorkColumn.PercentOfPeak, SpeedupColumn.Instance, VsOnnxRuntimeColumn.Instance, VsOnnxRuntimeColumn.Best)
            .AddLogger(ConsoleLogger.Default)
            .AddExporter(MarkdownExporter.GitHub)
            .WithSummaryStyle(SummaryStyle.Default.WithCultureInfo(CultureInfo.InvariantCulture))
            .WithOrderer(new BenchmarkDotNet.Order.DefaultOrderer(BenchmarkDotNet.Order.SummaryOrderPolicy.Declared));
    }
}

/// <summary>GEMM 512³ alone, for the headline table.</summary>
public class HeadlineGemm : Gemm
{
    public override IEnumerable<string> Shapes => ["512³"];
}
