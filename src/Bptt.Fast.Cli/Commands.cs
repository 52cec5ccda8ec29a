using System.Globalization;
using System.Reflection;
using System.Text;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Bptt.Fast.Cli;

/// <summary>What a command needs from the process that runs it: where to write, and whether a person is watching.</summary>
/// <param name="Output">stdout.</param>
/// <param name="Interactive">Whether stdout is a terminal (a progress bar instead of plain lines).</param>
/// <param name="IsaProblem">The <c>BPTT_FAST_ISA</c> problem, already printed as a warning, or null.</param>
internal sealed record RunContext(TextWriter Output, bool Interactive, string? IsaProblem)
{
    /// <summary>The context a command was registered with.</summary>
    /// <param name="context">Spectre.Console.Cli's context.</param>
    /// <returns>The run context.</returns>
    public static RunContext Of(CommandContext context) => (RunContext)context.Data!;
}

/// <summary>
/// The <c>bptt</c> commands (train, sample, check, info), parsed by Spectre.Console.Cli from one settings class each.
/// Every failure is one line on stderr and a non-zero exit code: 2 for bad usage, 1 for a bad or unwritable file.
/// </summary>
internal static class Commands
{
    /// <summary>The commands: name, settings type, and a line for the help.</summary>
    private static readonly (string Name, Type Settings, string Description)[] Table =
    [
        ("train", typeof(TrainSettings), "Train an Elman RNN on a UTF-8 text (holding out its end) or on the built-in grammar corpus."),
        ("sample", typeof(SampleSettings), "Generate text from a trained checkpoint."),
        ("check", typeof(CheckSettings), "Compare the fast path, the data-parallel engine and the serving calls with their references, and the reference with finite differences."),
        ("info", typeof(InfoSettings), "Print the kernel path, its kernels and the CPU."),
    ];

    public static int Run(string[] args, TextWriter output, TextWriter error, bool interactive) =>
        Run(args, output, error, interactive, KernelInfo.RequestedIsaProblem);

    /// <summary>Runs a command; <paramref name="isaProblem"/> (normally <see cref="KernelInfo.RequestedIsaProblem"/>) is printed as a warning first.</summary>
    internal static int Run(string[] args, TextWriter output, TextWriter error, bool interactive, string? isaProblem)
    {
        if (isaProblem is not null)
        {
            WriteError(error, $"warning: {isaProblem}");
        }

        CommandApp app = CreateApp(output, new RunContext(output, interactive, isaProblem));
        try
        {
            if (args.Length == 0)
            {
                // Usage on stdout, and the exit code of bad usage: no command was given.
                app.Run(["--help"]);
                return 2;
            }

            if (args[0] == "help")
            {
                // "bptt help" and "bptt help train" as "bptt --help" and "bptt train --help".
                args = args.Length == 1 ? ["--help"] : [.. args[1..], "--help"];
            }

            CheckArguments(args);
            return app.Run(args);
        }
        catch (Exception e) when (e is UsageException or CommandParseException or CommandRuntimeException)
        {
            WriteError(error, e.Message);
            return 2;
        }
        catch (OutOfMemoryException)
        {
            WriteError(error, "out of memory; try a smaller --hidden, --chunk, --steps or text");
            return 1;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            WriteError(error, e.Message);
            return 1;
        }
    }

    /// <summary>Writes <c>bptt: message</c> as exactly one line: line breaks and other control characters are escaped.</summary>
    /// <param name="error">stderr.</param>
    /// <param name="message">The message.</param>
    internal static void WriteError(TextWriter error, string message)
    {
        var line = new StringBuilder("bptt: ", message.Length + 6);
        foreach (char c in message)
        {
            _ = c switch
            {
                '\n' => line.Append("\\n"),
                '\r' => line.Append("\\r"),
                '\t' => line.Append("\\t"),
                _ when char.IsControl(c) || c is '\u2028' or '\u2029' => line.Append(string.Create(CultureInfo.InvariantCulture, $"\\u{(int)c:X4}")),
                _ => line.Append(c),
            };
        }

        error.WriteLine(line.ToString());
    }

    private static CommandApp CreateApp(TextWriter output, RunContext context)
    {
        IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = context.Interactive ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = context.Interactive ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = context.Interactive ? InteractionSupport.Detect : InteractionSupport.No,
            Out = new AnsiConsoleOutput(output),
        });
        if (!context.Interactive)
        {
            console.Profile.Width = 100;
        }

        var app = new CommandApp();
        app.Configure(c =>
        {
            c.SetApplicationName("bptt");
            c.SetApplicationVersion(typeof(Commands).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0");
            c.ConfigureConsole(console);
            c.PropagateExceptions();
            c.Settings.ShowOptionDefaultValues = false;
            c.UseStrictParsing();
            c.CaseSensitivity(CaseSensitivity.All);
            c.AddCommand<TrainCommand>("train").WithDescription(Table[0].Description).WithData(context)
                .WithExample("train", "--text", "book.txt")
                .WithExample("train", "--text", "book.txt", "--hidden", "256", "--epochs", "3", "--checkpoint", "book.ckpt");
            c.AddCommand<SampleCommand>("sample").WithDescription(Table[1].Description).WithData(context)
                .WithExample("sample", "--checkpoint", "book.ckpt", "--length", "500", "--temperature", "0.8");
            c.AddCommand<CheckCommand>("check").WithDescription(Table[2].Description).WithData(context);
            c.AddCommand<InfoCommand>("info").WithDescription(Table[3].Description).WithData(context);
        });
        return app;
    }

    /// <summary>
    /// Refuses, before parsing, what the parser would accept silently or report without the option's name: an option
    /// given twice, an unknown option, an option without its value, a flag with a value, or a value of the wrong type.
    /// The option names come from the settings classes' attributes, the same ones the parser and the help read.
    /// </summary>
    private static void CheckArguments(string[] args)
    {
        string command = args[0];
        if (command.StartsWith('-') || args.Contains("-h") || args.Contains("--help"))
        {
            return; // --help, --version and their mistakes are the parser's
        }

        Type settings = Table.FirstOrDefault(c => c.Name == command).Settings
            ?? throw new UsageException($"unknown command '{command}' (train, sample, check, info; see bptt --help)");
        Dictionary<string, OptionInfo> options = OptionInfo.Of(settings).ToDictionary(o => o.Name, StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int k = 1; k < args.Length; k++)
        {
            string arg = args[k];
            if (!IsOptionLike(arg))
            {
                throw new UsageException($"unexpected argument '{arg}' (bptt {command} takes only options; see bptt {command} --help)");
            }

            int equals = arg.IndexOf('=', StringComparison.Ordinal);
            string name = equals < 0 ? arg : arg[..equals];
            if (!options.TryGetValue(name, out OptionInfo? option))
            {
                throw new UsageException(options.Count == 0
                    ? $"unknown option {name}: bptt {command} takes no options"
                    : $"unknown option {name} for bptt {command} (see bptt {command} --help)");
            }

            if (!seen.Add(name))
            {
                throw new UsageException($"option {name} is given twice; give it once");
            }

            if (!option.TakesValue)
            {
                if (equals >= 0)
                {
                    throw new UsageException($"option {name} is a flag and takes no value");
                }

                continue;
            }

            string value;
            if (equals >= 0)
            {
                value = arg[(equals + 1)..];
            }
            else if (k + 1 < args.Length && !IsOptionLike(args[k + 1]))
            {
                value = args[++k];
            }
            else
            {
                throw new UsageException($"option {name} needs a value");
            }

            if (option.ParseProblem(value) is { } problem)
            {
                throw new UsageException(problem);
            }
        }
    }

    /// <summary>An option, as the parser sees it: <c>--name</c>, or <c>-x</c> that is not a negative number.</summary>
    private static bool IsOptionLike(string arg) =>
        arg.StartsWith("--", StringComparison.Ordinal) || (arg.Length > 1 && arg[0] == '-' && !char.IsAsciiDigit(arg[1]) && arg[1] != '.');
}
