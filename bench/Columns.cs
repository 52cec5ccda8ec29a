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
        return ns is null || work is null ? "-" : format(work.Flops, ns.Value, FmaPeak.GflopsPerSecond);
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
