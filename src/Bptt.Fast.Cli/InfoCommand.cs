using System.Runtime.InteropServices;
using Spectre.Console.Cli;

namespace Bptt.Fast.Cli;

/// <summary><c>bptt info</c>: <see cref="KernelInfo"/>'s description and kernels, and the CPU. It measures nothing.</summary>
internal sealed class InfoCommand : Command<InfoSettings>
{
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

        output.WriteLine($"CPU: {KernelInfo.CpuModel} ({RuntimeInformation.ProcessArchitecture}, {Environment.ProcessorCount} logical cores; {KernelInfo.CacheSizes})");
        if (KernelInfo.UnusedHardware is { } unused)
        {
            output.WriteLine($"note: {unused}");
        }

        output.WriteLine("FMA peak: not measured by bptt; the benchmarks (bench/ in the repository) measure it");
        return 0;
    }
}
