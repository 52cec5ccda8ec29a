using System.Globalization;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using System.Text;

namespace Bptt.Fast.Bench;

/// <summary>
/// What machine a result comes from: the CPU model, its family/model/stepping (or arm64 implementer/part/revision),
/// the cache sizes, the instruction sets and the runtime. <see cref="Folder"/> names the results folder so that two
/// different CPUs sold under one model name (e.g. "AMD EPYC" in a VM) never overwrite each other's results.
/// </summary>
public static class Machine
{
    private static readonly Dictionary<string, string> CpuInfo = ReadCpuInfo();

    /// <summary>e.g. "amd-epyc-f26m2s1": the model name, then the family/model/stepping, lower-case, dashes only.</summary>
    public static string Folder { get; } = Slug(KernelInfo.CpuModel) + "-" + Signature();

    /// <summary>e.g. "L1d 48 KiB, L2 1 MiB, L3 32 MiB" (from sysfs, else CPUID's cache leaves).</summary>
    public static string Caches { get; } = ReadCaches();

    /// <summary>The x86 or arm64 vector extensions the runtime reports, and the path Bptt.Fast runs.</summary>
    public static string Isa
    {
        get
        {
            var sets = new List<string>();
            if (Avx2.IsSupported)
            {
                sets.Add("AVX2");
            }

            if (Fma.IsSupported)
            {
                sets.Add("FMA");
            }

            if (Avx512F.IsSupported)
            {
                sets.Add("AVX-512F");
            }

            if (System.Runtime.Intrinsics.Arm.AdvSimd.Arm64.IsSupported)
            {
                sets.Add("AdvSimd");
            }

            return $"{string.Join(", ", sets)}; Bptt.Fast path: {KernelInfo.Description}";
        }
    }

    /// <summary>The runtime and OS.</summary>
    public static string Runtime => $"{RuntimeInformation.FrameworkDescription} on {RuntimeInformation.OSDescription} ({RuntimeInformation.ProcessArchitecture}), {Environment.ProcessorCount} logical cores";

    private static string Signature()
    {
        if (CpuInfo.TryGetValue("cpu family", out string? family) && CpuInfo.TryGetValue("model", out string? model) && CpuInfo.TryGetValue("stepping", out string? stepping))
        {
            return $"f{family}m{model}s{stepping}";
        }

        if (CpuInfo.TryGetValue("CPU implementer", out string? implementer) && CpuInfo.TryGetValue("CPU part", out string? part))
        {
            return $"i{implementer}p{part}r{CpuInfo.GetValueOrDefault("CPU revision", "0")}".Replace("0x", "", StringComparison.Ordinal);
        }

        // No /proc/cpuinfo signature: the cache sizes tell CPUs of one name apart.
        return Slug(Caches);
    }

    /// <summary>Lower-case letters and digits joined by single dashes, trademark marks dropped.</summary>
    public static string Slug(string text)
    {
        // Trademark marks carry no information: "Intel(R) Xeon(R) Processor" becomes "intel-xeon-processor".
        foreach (string mark in (string[])["(R)", "(r)", "(TM)", "(tm)", "®", "™"])
        {
            text = text.Replace(mark, string.Empty, StringComparison.Ordinal);
        }

        string slug = new string(text.Select(c => char.IsLetterOrDigit(c) ? char.ToLowerInvariant(c) : '-').ToArray()).Trim('-');
        while (slug.Contains("--", StringComparison.Ordinal))
        {
            slug = slug.Replace("--", "-", StringComparison.Ordinal);
        }

        return slug.Length == 0 ? "unknown" : slug;
    }

    private static Dictionary<string, string> ReadCpuInfo()
    {
        var fields = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            foreach (string line in File.ReadLines("/proc/cpuinfo"))
            {
                int colon = line.IndexOf(':', StringComparison.Ordinal);
                if (line.Length == 0)
                {
                    break; // the first processor only
                }

                if (colon > 0)
                {
                    fields.TryAdd(line[..colon].Trim(), line[(colon + 1)..].Trim());
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return fields;
    }

    private static string ReadCaches()
    {
        var caches = new SortedDictionary<string, long>(StringComparer.Ordinal);
        try
        {
            foreach (string dir in Directory.EnumerateDirectories("/sys/devices/system/cpu/cpu0/cache", "index*"))
            {
                string level = File.ReadAllText(Path.Combine(dir, "level")).Trim();
                string type = File.ReadAllText(Path.Combine(dir, "type")).Trim();
                string size = File.ReadAllText(Path.Combine(dir, "size")).Trim();
                long bytes = long.Parse(size.TrimEnd('K', 'M'), CultureInfo.InvariantCulture) * (size.EndsWith('M') ? 1 << 20 : 1 << 10);
                caches[Name(level, type)] = bytes;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
        }

        if (caches.Count == 0 && X86Base.IsSupported)
        {
            // CPUID leaf 4 (Intel) or 0x8000001D (AMD): one sub-leaf per cache; size = ways × partitions × line × sets.
            (int vendorEbx, _, _, _) = X86Base.CpuId(0, 0);
            int leaf = vendorEbx == 0x68747541 ? unchecked((int)0x8000001D) : 4; // "Auth"enticAMD
            for (int sub = 0; sub < 8; sub++)
            {
                (int eax, int ebx, int ecx, _) = X86Base.CpuId(leaf, sub);
                int type = eax & 0x1F;
                if (type == 0)
                {
                    break;
                }

                long size = (long)(((ebx >> 22) & 0x3FF) + 1) * (((ebx >> 12) & 0x3FF) + 1) * ((ebx & 0xFFF) + 1) * ((long)(uint)ecx + 1);
                caches[Name(((eax >> 5) & 7).ToString(CultureInfo.InvariantCulture), type switch { 1 => "Data", 2 => "Instruction", _ => "Unified" })] = size;
            }
        }

        if (caches.Count == 0 && X86Base.IsSupported && (uint)X86Base.CpuId(unchecked((int)0x80000000), 0).Eax >= 0x80000006)
        {
            // AMD's older leaves, which some hypervisors expose instead: L1d in 0x80000005, L2 and L3 in 0x80000006.
            int l1 = X86Base.CpuId(unchecked((int)0x80000005), 0).Ecx;
            (_, _, int l2, int l3) = X86Base.CpuId(unchecked((int)0x80000006), 0);
            AddKib(caches, "L1d", (uint)l1 >> 24);
            AddKib(caches, "L2", (uint)l2 >> 16);
            AddKib(caches, "L3", ((uint)l3 >> 18) * 512L);
        }

        if (caches.Count == 0)
        {
            return CpuInfo.TryGetValue("cache size", out string? size) ? $"cache size {size}" : "cache sizes unknown";
        }

        return string.Join(", ", caches.Select(c => $"{c.Key} {Size(c.Value)}"));
    }

    private static void AddKib(SortedDictionary<string, long> caches, string name, long kib)
    {
        if (kib > 0)
        {
            caches[name] = kib << 10;
        }
    }

    private static string Name(string level, string type) => "L" + level + type switch
    {
        "Data" => "d",
        "Instruction" => "i",
        _ => "",
    };

    private static string Size(long bytes) => bytes >= 1 << 20 && bytes % (1 << 20) == 0
        ? $"{bytes >> 20} MiB"
        : $"{bytes >> 10} KiB";

    /// <summary>The lines that head every results file.</summary>
    public static string Describe(double peak)
    {
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"- CPU: {FmaPeak.Cpu} ({Signature()}); caches: {Caches}");
        text.AppendLine(CultureInfo.InvariantCulture, $"- ISA: {Isa}");
        text.AppendLine(CultureInfo.InvariantCulture, $"- Runtime: {Runtime}; ONNX Runtime {OnnxRuntimeVersion}");
        text.AppendLine(CultureInfo.InvariantCulture, $"- Single-core fp32 FMA peak: {peak:F1} GFLOP/s (best of {HeadlinePeak.Rounds} rounds of 5 timed runs)");
        return text.ToString();
    }

    private static string OnnxRuntimeVersion =>
        typeof(Microsoft.ML.OnnxRuntime.InferenceSession).Assembly.GetName().Version?.ToString() ?? "?";
}

/// <summary>
/// The FMA peak the headline reports: <see cref="FmaPeak.Measure"/> (best of 5 runs) repeated in several rounds with
/// pauses between them, keeping the best, so that one unlucky round (another process, a frequency dip) cannot lower
/// the peak and inflate every "% of peak".
/// </summary>
public static class HeadlinePeak
{
    public const int Rounds = 5;

    /// <summary>The best peak measured, GFLOP/s (NaN before <see cref="Measure"/>).</summary>
    public static double Gflops { get; private set; } = double.NaN;

    public static double Measure()
    {
        double best = 0;
        for (int round = 0; round < Rounds; round++)
        {
            best = Math.Max(best, FmaPeak.Measure());
            Thread.Sleep(100);
        }

        Gflops = best;
        return best;
    }
}
