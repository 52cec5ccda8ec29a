using System.Runtime.Intrinsics.X86;

namespace Bptt.Fast.Internals;

/// <summary>
/// The CPU's model name and per-core data cache sizes, read once: Linux sysfs where it exists, else CPUID (leaf 4 on
/// Intel, 0x8000001D or the legacy leaves 0x80000005/6 on AMD). Sizes are 0 when nothing could be read; the GEMM blocking
/// then falls back to its defaults.
/// </summary>
internal static class CpuInfo
{
    static CpuInfo()
    {
        Model = ReadModel();
        (L1Data, L2, L3) = ReadSysfs() ?? ReadCpuId() ?? (0, 0, 0);
    }

    /// <summary>The model name, e.g. "AMD EPYC 9B45" (or the architecture when unknown).</summary>
    public static string Model { get; }

    /// <summary>L1 data cache per core, bytes (0 when unknown).</summary>
    public static long L1Data { get; }

    /// <summary>L2 per core, bytes (0 when unknown).</summary>
    public static long L2 { get; }

    /// <summary>L3 as the CPU reports it, bytes (0 when unknown; often shared by many cores).</summary>
    public static long L3 { get; }

    /// <summary>"L1d 48 KiB, L2 1024 KiB, L3 …" for reports.</summary>
    public static string CacheSummary =>
        L1Data == 0 && L2 == 0 ? "cache sizes unknown" : $"L1d {L1Data / 1024} KiB, L2 {L2 / 1024} KiB, L3 {L3 / 1024} KiB";

    private static string ReadModel()
    {
        try
        {
            if (File.Exists("/proc/cpuinfo"))
            {
                foreach (string line in File.ReadLines("/proc/cpuinfo"))
                {
                    if (line.StartsWith("model name", StringComparison.Ordinal) || line.StartsWith("Model", StringComparison.Ordinal))
                    {
                        int colon = line.IndexOf(':', StringComparison.Ordinal);
                        if (colon > 0 && line[(colon + 1)..].Trim() is { Length: > 0 } name)
                        {
                            return name;
                        }
                    }
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // fall through to the architecture
        }

        return System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString();
    }

    private static (long L1, long L2, long L3)? ReadSysfs()
    {
        try
        {
            const string Root = "/sys/devices/system/cpu/cpu0/cache";
            if (!Directory.Exists(Root))
            {
                return null;
            }

            long l1 = 0, l2 = 0, l3 = 0;
            foreach (string dir in Directory.EnumerateDirectories(Root, "index*"))
            {
                string type = File.ReadAllText(Path.Combine(dir, "type")).Trim();
                int level = int.Parse(File.ReadAllText(Path.Combine(dir, "level")).Trim(), System.Globalization.CultureInfo.InvariantCulture);
                string size = File.ReadAllText(Path.Combine(dir, "size")).Trim();
                long bytes = size.EndsWith('K') ? long.Parse(size[..^1], System.Globalization.CultureInfo.InvariantCulture) * 1024
                    : size.EndsWith('M') ? long.Parse(size[..^1], System.Globalization.CultureInfo.InvariantCulture) << 20
                    : long.Parse(size, System.Globalization.CultureInfo.InvariantCulture);
                if (level == 1 && type is "Data" or "Unified")
                {
                    l1 = bytes;
                }
                else if (level == 2)
                {
                    l2 = bytes;
                }
                else if (level == 3)
                {
                    l3 = bytes;
                }
            }

            return l1 > 0 || l2 > 0 ? (l1, l2, l3) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or OverflowException)
        {
            return null;
        }
    }

    private static (long L1, long L2, long L3)? ReadCpuId()
    {
        if (!X86Base.IsSupported)
        {
            return null;
        }

        foreach (int leaf in new[] { 4, unchecked((int)0x8000001D) })
        {
            long l1 = 0, l2 = 0, l3 = 0;
            for (int sub = 0; sub < 8; sub++)
            {
                (int a, int b, int c, _) = X86Base.CpuId(leaf, sub);
                int type = a & 31, level = (a >> 5) & 7;
                if (type == 0)
                {
                    break;
                }

                long bytes = (((uint)b >> 22) + 1L) * (((b >> 12) & 0x3FF) + 1L) * ((b & 0xFFF) + 1L) * ((uint)c + 1L);
                if (level == 1 && type != 2)
                {
                    l1 = bytes;
                }
                else if (level == 2)
                {
                    l2 = bytes;
                }
                else if (level == 3)
                {
                    l3 = bytes;
                }
            }

            if (l1 > 0 || l2 > 0)
            {
                return (l1, l2, l3);
            }
        }

        (int maxExtended, _, _, _) = X86Base.CpuId(unchecked((int)0x80000000), 0);
        if ((uint)maxExtended >= 0x80000006)
        {
            (_, _, int l1c, _) = X86Base.CpuId(unchecked((int)0x80000005), 0);
            (_, _, int l2c, int l3d) = X86Base.CpuId(unchecked((int)0x80000006), 0);
            long l1 = ((uint)l1c >> 24) * 1024L, l2 = ((uint)l2c >> 16) * 1024L, l3 = ((uint)l3d >> 18) * 512L * 1024;
            return l1 > 0 || l2 > 0 ? (l1, l2, l3) : null;
        }

        return null;
    }
}
