namespace Bptt.Fast.Cli;

/// <summary>The <c>bptt</c> tool's entry point; the commands run in-process through <see cref="Commands.Run(string[], TextWriter, TextWriter, bool)"/>.</summary>
public static class Program
{
    /// <summary>Runs the command line and returns the exit code (0 success, 1 failure, 2 bad usage, 70 internal error).</summary>
    /// <param name="args">The arguments.</param>
    /// <returns>The exit code.</returns>
    public static int Main(string[] args)
    {
        try
        {
            return Commands.Run(args, Console.Out, Console.Error, interactive: !Console.IsOutputRedirected);
        }
#pragma warning disable CA1031 // The last resort: whatever escaped the commands' own handling is still one line, not a stack trace.
        catch (Exception e)
#pragma warning restore CA1031
        {
            Commands.WriteError(Console.Error, $"internal error ({e.GetType().Name}): {e.Message}; please report it");
            return 70;
        }
    }
}
