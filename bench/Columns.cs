using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Parameters;
using BenchmarkDotNet.Running;

namespace Bptt.Fast.Bench;

/// <summary>Benchmarks that know how much work one operation does.</summary>
public interface IHasWork
{
    /// <summary>Floating-point operations of one call for this case's parameters.</summary>
    double Flops { get; }

    /// <summary>The name of the row this case is compared with ("Reference" rows compare with themselves).</summary>
    string Group { get; }

    /// <summary>True for the reference (baseline) row of its group.</summary>
    bool IsReference { get; }
}

/// <summary>GFLOP/s, % of the measured FMA peak, and the speed-up over the reference row of the same group.</summary>
public sealed class WorkColumn(string name, Func<double, double, double, string> format) : IColumn
{
    public static readonly WorkColumn Gflops = new("GFLOP/s", (flops, ns, _) => (flops / ns).ToString("F1", System.Globalization.CultureInfo.InvariantCulture));

    public static readonly WorkColumn PercentOfPeak = new("% of peak", (flops, ns, peak) => (100 * flops / ns / peak).ToString("F1", System.Globalization.CultureInfo.InvariantCulture) + "%");

    public string Id => "Bptt.Fast." + name;

    public string ColumnName => name;

    public bool AlwaysShow => true;

    public ColumnCategory Category => ColumnCategory.Custom;

    public int PriorityInCategory => 0;

    public bool IsNumeric => true;

    public UnitType UnitType => UnitType.Dimensionless;

    public string Legend => name == "GFLOP/s" ? "Useful fp32 GFLOP per second (training counted as 3 × forward)" : "GFLOP/s over the single-core FMA peak measured at start-up";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
    {
        BenchmarkReport? report = summary[benchmarkCase];
        double? ns = report?.ResultStatistics?.Mean;
        IHasWork? work = Describe(benchmarkCase);
        return ns is null || work is null ? "-" : format(work.Flops, ns.Value, HeadlinePeak.Gflops);
    }

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public bool IsAvailable(Summary summary) => true;

    /// <summary>An instance of the benchmark class with this case's parameters applied (cheap: no setup runs).</summary>
    public static IHasWork? Describe(BenchmarkCase benchmarkCase)
    {
        if (Activator.CreateInstance(benchmarkCase.Descriptor.Type) is not IHasWork work)
        {
            return null;
        }

        foreach (ParameterInstance p in benchmarkCase.Parameters.Items)
        {
            benchmarkCase.Descriptor.Type.GetProperty(p.Name)?.SetValue(work, p.Value);
            benchmarkCase.Descriptor.Type.GetField(p.Name)?.SetValue(work, p.Value);
        }

        return work;
    }
}

/// <summary>How many times faster than the reference row of the same group (the Ratio column, inverted and joined across paths).</summary>
public sealed class SpeedupColumn : IColumn
{
    public static readonly SpeedupColumn Instance = new();

    public string Id => "Bptt.Fast.Speedup";

    public string ColumnName => "vs reference";

    public bool AlwaysShow => true;

    public ColumnCategory Category => ColumnCategory.Custom;

    public int PriorityInCategory => 1;

    public bool IsNumeric => true;

    public UnitType UnitType => UnitType.Dimensionless;

    public string Legend => "Speed-up over the reference (scalar) path on the same workload, measured in the same run";

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
    {
        IHasWork? me = WorkColumn.Describe(benchmarkCase);
        double? mine = summary[benchmarkCase]?.ResultStatistics?.Mean;
        if (me is null || mine is null)
        {
            return "-";
        }

        foreach (BenchmarkCase other in summary.BenchmarksCases)
        {
            IHasWork? o = WorkColumn.Describe(other);
            if (o is not null && o.IsReference && o.Group == me.Group && other.Descriptor.Type == benchmarkCase.Descriptor.Type)
            {
                double? reference = summary[other]?.ResultStatistics?.Mean;
                return reference is null ? "-" : (reference.Value / mine.Value).ToString("F1", System.Globalization.CultureInfo.InvariantCulture) + "×";
            }
        }

        return "-";
    }

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public bool IsAvailable(Summary summary) => true;
}

/// <summary>
/// How many times faster than ONNX Runtime on the same case, measured in the same run: the fastest ONNX Runtime row of
/// the same benchmark and group (for a sequence, the faster of its RNN-operator and unrolled graphs) over this row. The
/// main column compares means; the "best" column compares each row's fastest iteration, which on a shared, noisy machine
/// is the better estimate of what each side can do (other processes only ever add time).
/// </summary>
public sealed class VsOnnxRuntimeColumn(bool best) : IColumn
{
    public static readonly VsOnnxRuntimeColumn Instance = new(best: false);

    public static readonly VsOnnxRuntimeColumn Best = new(best: true);

    public string Id => "Bptt.Fast.VsOnnxRuntime" + (best ? ".Best" : "");

    public string ColumnName => best ? "vs ONNX Runtime (best iteration)" : "vs ONNX Runtime";

    public bool AlwaysShow => true;

    public ColumnCategory Category => ColumnCategory.Custom;

    public int PriorityInCategory => best ? 3 : 2;

    public bool IsNumeric => true;

    public UnitType UnitType => UnitType.Dimensionless;

    public string Legend => best
        ? "The same ratio from each row's fastest iteration (robust to other processes on a shared machine)"
        : "Speed-up over the fastest ONNX Runtime graph for the same case (1 thread, ORT_ENABLE_ALL, IOBinding), measured in the same run";

    public static bool IsOnnxRuntime(BenchmarkCase benchmarkCase) =>
        benchmarkCase.Parameters.Items.Any(p => p.Value is PathParam { IsOnnxRuntime: true });

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
    {
        IHasWork? me = WorkColumn.Describe(benchmarkCase);
        double? mine = Time(summary, benchmarkCase);
        if (me is null || mine is null)
        {
            return "-";
        }

        double fastest = double.PositiveInfinity;
        foreach (BenchmarkCase other in summary.BenchmarksCases)
        {
            if (other.Descriptor.Type == benchmarkCase.Descriptor.Type && IsOnnxRuntime(other) && WorkColumn.Describe(other)?.Group == me.Group
                && Time(summary, other) is double ort)
            {
                fastest = Math.Min(fastest, ort);
            }
        }

        return double.IsPositiveInfinity(fastest) ? "-" : (fastest / mine.Value).ToString("F2", System.Globalization.CultureInfo.InvariantCulture) + "×";
    }

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public bool IsAvailable(Summary summary) => true;

    private double? Time(Summary summary, BenchmarkCase benchmarkCase)
    {
        BenchmarkDotNet.Mathematics.Statistics? statistics = summary[benchmarkCase]?.ResultStatistics;
        return best ? statistics?.Min : statistics?.Mean;
    }
}
