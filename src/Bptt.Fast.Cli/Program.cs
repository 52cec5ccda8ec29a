namespace Bptt.Fast.Cli;

/// <summary>The <c>bptt</c> tool's entry point; the commands run in-process through <see cref="Commands.Run"/>.</summary>
public static class Program
{
    /// <summary>Runs the command line and returns the exit code (0 success, 1 failure, 2 bad usage).</summary>
    /// <param name="args">The arguments.</param>
    /// <returns>The exit code.</returns>
    public static int Main(string[] args) => Commands.Run(args, Console.Out, Console.Error, interactive: !Console.IsOutputRedirected);
}
