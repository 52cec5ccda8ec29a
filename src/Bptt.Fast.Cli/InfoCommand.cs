using System.Runtime.InteropServices;
using System.Text;
using Spectre.Console.Cli;

namespace Bptt.Fast.Cli;

/// <summary><c>bptt info</c>: <see cref="KernelInfo"/>'s description and kernels, and the CPU. It measures nothing.</summary>
internal sealed class InfoCommand : Command<InfoSettings>
{
    /// <summary>The most of <c>/proc/cpuinfo</c> read to find the model name.</summary>
    private const int MaxCpuInfoBytes = 1 << 20;

    public override int Execute(CommandContext context, InfoSettings settings, CancellationToken cancellationToken)
    {
        RunContext run = RunContext.Of(context);
        TextWriter output = run.Output;
        output.WriteLine($"kernel path: {KernelInfo.Description} (best supported: {KernelInfo.BestSupported})");
        if (run.IsaProblem is not null)
        {
            output.WriteLine($"warning: {run.IsaProblem}");
        }

        foreach (string name in KernelInfo.KernelNames)
        {
            output.WriteLine($"  {name}");
        }

        output.WriteLine($"CPU: {CpuModel()} ({RuntimeInformation.ProcessArchitecture}, {Environment.ProcessorCount} logical cores)");
        output.WriteLine("FMA peak: not measured by bptt; the benchmarks (bench/ in the repository) measure it");
        return 0;
    }

    /// <summary>The CPU's model name from <c>/proc/cpuinfo</c> ("model name", or arm64's "Model"), or "unknown CPU".</summary>
    /// <returns>The name.</returns>
    internal static string CpuModel()
    {
        try
        {
            if (!File.Exists("/proc/cpuinfo"))
            {
                return "unknown CPU";
            }

            // /proc files report length 0: read up to a bound, line by line.
            using var reader = new StreamReader("/proc/cpuinfo", Encoding.UTF8);
            int read = 0;
            for (string? line = reader.ReadLine(); line is not null && read < MaxCpuInfoBytes; line = reader.ReadLine())
            {
                read += line.Length + 1;
                int colon = line.IndexOf(':', StringComparison.Ordinal);
                if (colon > 0 && line[..colon].Trim() is "model name" or "Model" or "Processor" or "cpu model" && line[(colon + 1)..].Trim() is { Length: > 0 } name)
                {
                    return name.Length > 200 ? name[..200] : name;
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "unknown CPU";
        }

        return "unknown CPU";
    }
}
