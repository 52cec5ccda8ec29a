namespace Bptt.Fast.Bench;

/// <summary>A row of every table: the reference path, or the fast path forced onto one ISA.</summary>
public sealed record PathParam(string Name, int Order) : IComparable<PathParam>, IComparable
{
    public bool IsReference => Name == Paths.Reference;

    /// <summary>An ONNX Runtime row (a serving baseline, not a Bptt.Fast path).</summary>
    public bool IsOnnxRuntime => Name.StartsWith(Paths.OnnxRuntime, StringComparison.Ordinal);

    /// <summary>The ISA of a fast row (parsed once: the benchmark bodies read it on every call).</summary>
    public KernelIsa Isa { get; } = Name.StartsWith("Fast.", StringComparison.Ordinal) ? Enum.Parse<KernelIsa>(Name["Fast.".Length..]) : KernelIsa.Scalar;

    /// <summary>The kernel set of a fast row (tanh; the kernel rows that need another activation resolve their own).</summary>
    internal Kernels.KernelSet Kernels => Bptt.Fast.Kernels.KernelSets.For(Isa, Activation.Tanh);

    public int CompareTo(PathParam? other) => Order.CompareTo(other?.Order ?? -1);

    public int CompareTo(object? obj) => CompareTo(obj as PathParam);

    public override string ToString() => Name;
}

/// <summary>The rows: the reference path, then the fast path on each ISA this machine supports, fastest first.</summary>
public static class Paths
{
    public const string Reference = "Reference";

    /// <summary>ONNX Runtime running the exported graph (for a sequence: its RNN operator).</summary>
    public const string OnnxRuntime = "OnnxRuntime";

    /// <summary>ONNX Runtime running the exported sequence graph unrolled over T.</summary>
    public const string OnnxRuntimeUnrolled = "OnnxRuntime.Unrolled";

    public static IEnumerable<PathParam> All =>
        new[] { Reference }.Concat(new[] { KernelIsa.Avx512, KernelIsa.Avx2, KernelIsa.AdvSimd, KernelIsa.Vector, KernelIsa.Scalar }
            .Where(KernelInfo.IsSupported).Select(isa => "Fast." + isa)).Select((name, i) => new PathParam(name, i));

    public static PathParam Default => All.First();

    /// <summary>The fast path on the best ISA this machine supports (what a user gets by default).</summary>
    public static PathParam Best => All.Single(p => p.Name == "Fast." + KernelInfo.BestSupported);

    /// <summary>Every path of <see cref="All"/>, then ONNX Runtime: the rows of the single-step serving table.</summary>
    public static IEnumerable<PathParam> WithOnnxRuntime => All.Append(new PathParam(OnnxRuntime, 100));

    /// <summary>Set by the bench smoke test, which runs each body once, untimed.</summary>
    public static bool SkipWarmUp { get; set; }

    /// <summary>
    /// Runs a benchmark body until the runtime's tiered JIT has promoted it (calls, a pause past the tiering delay, calls
    /// again), so that the measured iterations, and the Allocated column, see only the steady state.
    /// </summary>
    public static void WarmUp(Action body)
    {
        if (SkipWarmUp)
        {
            return;
        }

        var first = System.Diagnostics.Stopwatch.StartNew();
        body();
        if (first.ElapsedMilliseconds > 500)
        {
            return; // a slow body (the reference path at large sizes) gets enough warm-up from the job itself
        }

        for (int round = 0; round < 3; round++)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            for (int k = 0; k < 40 && (k < 2 || clock.ElapsedMilliseconds < 1500); k++)
            {
                body();
            }

            Thread.Sleep(200);
        }
    }
}
