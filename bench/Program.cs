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
/// headline set (training steps S, S-tokens, M, BM, L; single and batched inference steps; GEMM 512³) on every path, prints one summary,
/// and writes bench/results/&lt;cpu&gt;.md and .png. <c>--full</c> gives the full statistical run. Any other arguments go to
/// BenchmarkSwitcher (e.g. <c>--filter *MatVec*</c>, <c>--list flat</c>); the kernel micro-benchmarks (Gemm, MatVec,
/// Elementwise) run that way.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        bool full = args.Contains("--full");
        bool aot = args.Contains("--aot");
        string[] rest = args.Where(a => a is not "--full" and not "--aot").ToArray();
        double peak = FmaPeak.Measure();
        Console.WriteLine($"CPU: {FmaPeak.Cpu}; measured single-core fp32 FMA peak: {peak:F1} GFLOP/s; fast path: {KernelInfo.Description}");

        IConfig config = Config(full);
        if (aot)
        {
            // JIT against NativeAOT (the CPU's own instruction set), same quick job, fast path only.
            Job jit = Job.ShortRun.WithWarmupCount(1).WithIterationCount(3).WithLaunchCount(1).WithIterationTime(Perfolizer.Horology.TimeInterval.FromMilliseconds(250));
            IConfig aotConfig = ManualConfig.CreateEmpty()
                .AddJob(jit.WithId("JIT"))
                .AddJob(jit.WithToolchain(BenchmarkDotNet.Toolchains.NativeAot.NativeAotToolchain.CreateBuilder().UseNuGet().IlcInstructionSet("native").TargetFrameworkMoniker("net10.0").ToToolchain()).WithId("NativeAOT"))
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
            IEnumerable<Summary> summaries = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(rest, config);
            return summaries.Any(s => s.HasCriticalValidationErrors) ? 1 : 0;
        }

        Summary summary = BenchmarkRunner.Run([typeof(TrainingStep), typeof(InferenceStep), typeof(InferenceBatch16), typeof(HeadlineGemm)], config.WithOptions(ConfigOptions.JoinSummary)).Single();
        Results.Write(summary, peak, full);
        return summary.HasCriticalValidationErrors ? 1 : 0;
    }

    private static IConfig Config(bool full)
    {
        Job job = full
            ? Job.Default
            : Job.ShortRun.WithWarmupCount(1).WithIterationCount(3).WithLaunchCount(1).WithIterationTime(Perfolizer.Horology.TimeInterval.FromMilliseconds(250));
        return ManualConfig.CreateEmpty()
            .AddJob(job.WithId(full ? "full" : "quick"))
            .AddDiagnoser(MemoryDiagnoser.Default)
            .AddColumnProvider(DefaultColumnProviders.Instance)
            .AddColumn(WorkColumn.Gflops, WorkColumn.PercentOfPeak, SpeedupColumn.Instance)
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
