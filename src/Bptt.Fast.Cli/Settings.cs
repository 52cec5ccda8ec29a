using System.ComponentModel;
using System.Globalization;
using System.Reflection;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Bptt.Fast.Cli;

/// <summary>A usage error: printed as one line, exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>
/// The base of every command's settings. Each option is declared once, on its property: its name and value placeholder
/// (<see cref="CommandOptionAttribute"/>), its help text (<see cref="DescriptionAttribute"/>) and its checks (the
/// <see cref="OptionCheckAttribute"/> subclasses), which <see cref="Validate"/> applies with the option's name in the message.
/// <see cref="Commands"/> reads the same attributes to refuse repeated, unknown and value-less options before parsing.
/// </summary>
internal abstract class BpttSettings : CommandSettings
{
    /// <inheritdoc/>
    public sealed override ValidationResult Validate()
    {
        foreach (OptionInfo option in OptionInfo.Of(GetType()))
        {
            object? value = option.Property.GetValue(this);
            foreach (OptionCheckAttribute check in option.Property.GetCustomAttributes<OptionCheckAttribute>())
            {
                if (value is not null && check.Problem(value) is { } problem)
                {
                    return ValidationResult.Error($"{option.Name} {problem}");
                }
            }
        }

        return Check() is { } error ? ValidationResult.Error(error) : ValidationResult.Success();
    }

    /// <summary>Checks that involve more than one option.</summary>
    /// <returns>The problem, or null.</returns>
    protected virtual string? Check() => null;
}

/// <summary>One option of a settings class, read from its attributes.</summary>
/// <param name="Name">The long name with its dashes, e.g. <c>--hidden</c>.</param>
/// <param name="TakesValue">False for a flag.</param>
/// <param name="Property">The property it sets.</param>
internal sealed record OptionInfo(string Name, bool TakesValue, PropertyInfo Property)
{
    /// <summary>The options of a settings type, in declaration order.</summary>
    /// <param name="settings">A <see cref="BpttSettings"/> type.</param>
    /// <returns>The options.</returns>
    public static IEnumerable<OptionInfo> Of(Type settings)
    {
        foreach (PropertyInfo property in settings.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (property.GetCustomAttribute<CommandOptionAttribute>() is { } option)
            {
                yield return new OptionInfo("--" + option.LongNames[0], option.ValueName is not null, property);
            }
        }
    }

    /// <summary>Why <paramref name="text"/> cannot be this option's value, or null: the type's parse, in the invariant culture.</summary>
    /// <param name="text">The value as given.</param>
    /// <returns>The problem, or null.</returns>
    public string? ParseProblem(string text)
    {
        Type type = Nullable.GetUnderlyingType(Property.PropertyType) ?? Property.PropertyType;
        if (type == typeof(int) && !int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _))
        {
            return Property.GetCustomAttribute<WholeAttribute>() is { } range
                ? string.Create(CultureInfo.InvariantCulture, $"{Name} must be a whole number in [{range.Min}, {range.Max}], got '{text}'")
                : $"{Name} must be a whole number, got '{text}'";
        }

        if (type == typeof(float) && !float.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out _))
        {
            return Property.GetCustomAttribute<NumberAttribute>() is { } range
                ? string.Create(CultureInfo.InvariantCulture, $"{Name} must be a number in [{range.Min:0.#########}, {range.Max:0.#########}], got '{text}'")
                : $"{Name} must be a number, got '{text}'";
        }

        return null;
    }
}

/// <summary>A check of an option's value; the message follows the option's name.</summary>
[AttributeUsage(AttributeTargets.Property, AllowMultiple = true)]
internal abstract class OptionCheckAttribute : Attribute
{
    /// <summary>Why the value is refused, or null.</summary>
    /// <param name="value">The parsed value (never null).</param>
    /// <returns>E.g. "must be a whole number in [1, 4096], got 0".</returns>
    public abstract string? Problem(object value);
}

/// <summary>A whole number in [Min, Max].</summary>
/// <param name="min">The least value.</param>
/// <param name="max">The largest value.</param>
internal sealed class WholeAttribute(int min, int max) : OptionCheckAttribute
{
    public int Min { get; } = min;

    public int Max { get; } = max;

    public override string? Problem(object value) => value is int v && (v < Min || v > Max)
        ? string.Create(CultureInfo.InvariantCulture, $"must be a whole number in [{Min}, {Max}], got {v}")
        : null;
}

/// <summary>A finite number in [Min, Max].</summary>
/// <param name="min">The least value.</param>
/// <param name="max">The largest value.</param>
internal sealed class NumberAttribute(double min, double max) : OptionCheckAttribute
{
    public double Min { get; } = min;

    public double Max { get; } = max;

    public override string? Problem(object value) => value is float v && (!float.IsFinite(v) || v < Min || v > Max)
        ? string.Create(CultureInfo.InvariantCulture, $"must be a finite number in [{Min:0.#########}, {Max:0.#########}], got {v}")
        : null;
}

/// <summary>One of the listed words.</summary>
/// <param name="words">The allowed values.</param>
internal sealed class OneOfAttribute(params string[] words) : OptionCheckAttribute
{
    public IReadOnlyList<string> Words { get; } = words;

    public override string? Problem(object value) => value is string s && !Words.Contains(s, StringComparer.Ordinal)
        ? $"must be one of {string.Join(", ", Words)}, got '{s}'"
        : null;
}

/// <summary>A file path: not empty or blank, no NUL character.</summary>
internal sealed class FilePathAttribute : OptionCheckAttribute
{
    public override string? Problem(object value) => value is string s && (string.IsNullOrWhiteSpace(s) || s.Contains('\0', StringComparison.Ordinal))
        ? "needs a file path"
        : null;
}

/// <summary><c>bptt train</c>.</summary>
internal sealed class TrainSettings : BpttSettings
{
    /// <summary>The default <c>--checkpoint</c> of <c>train</c> and <c>sample</c>.</summary>
    public const string DefaultCheckpoint = "bptt-model.ckpt";

    [CommandOption("--text <FILE>")]
    [Description("Train on this UTF-8 text (at most 128 MiB; its symbols are its distinct Unicode scalar values). Without it, on a generated embedded Reber grammar corpus, scored against the grammar's optimal loss.")]
    [FilePath]
    public string? Text { get; init; }

    [CommandOption("--validation <FRACTION>")]
    [Description("With --text: the fraction at the end of the text held out for evaluation (default 0.1; 0 turns it off). Held-out loss is reported at each checkpoint and at the end.")]
    [Number(0, 0.5)]
    public float? Validation { get; init; }

    [CommandOption("--hidden <N>")]
    [Description("Hidden units (default 64 for the grammar, 128 for a text; with --resume, the checkpoint's).")]
    [Whole(1, 4096)]
    public int? Hidden { get; init; }

    [CommandOption("--layers <N>")]
    [Description("Stacked recurrent layers, each of --hidden units (default 1; with --resume, the checkpoint's).")]
    [Whole(1, 64)]
    public int? Layers { get; init; }

    [CommandOption("--dropout <P>")]
    [Description("Inverted dropout probability between stacked layers while training (default 0; needs --layers 2 or more; with --resume, the checkpoint's).")]
    [Number(0, 0.9)]
    public float? Dropout { get; init; }

    [CommandOption("--chunk <K>")]
    [Description("Truncated-BPTT chunk: steps per update, and how far back the gradient flows (default 20).")]
    [Whole(1, 1000)]
    public int Chunk { get; init; } = 20;

    [CommandOption("--lr <X>")]
    [Description("Learning rate, where a cosine schedule starts (default 0.005 for the grammar; for a text 0.256/hidden, at most 0.002, so 0.002 at 128 hidden units and 0.001 at 256, and half that with --schedule constant).")]
    [Number(1e-7, 10)]
    public float? Lr { get; init; }

    [CommandOption("--optimizer <NAME>")]
    [Description("adam, adamw, adagrad, momentum or sgd (default adam; with --resume, the checkpoint's).")]
    [OneOf("adam", "adamw", "adagrad", "momentum", "sgd")]
    public string? Optimizer { get; init; }

    [CommandOption("--schedule <NAME>")]
    [Description("Learning rate over the run: cosine (from --lr down to a tenth of it at the end; the default) or constant.")]
    [OneOf("constant", "cosine")]
    public string? Schedule { get; init; }

    [CommandOption("--clip <X>")]
    [Description("Clip the gradient to this global L2 norm; 0 turns clipping off (default 5).")]
    [Number(0, 1e6)]
    public float Clip { get; init; } = 5f;

    [CommandOption("--steps <N>")]
    [Description("Updates to train, in all (default 8000 for the grammar; for a text, one pass over its training part).")]
    [Whole(1, TrainCommand.MaxSteps)]
    public int? Steps { get; init; }

    [CommandOption("--epochs <N>")]
    [Description("With --text, instead of --steps: whole passes over the training part of the text.")]
    [Whole(1, 10_000)]
    public int? Epochs { get; init; }

    [CommandOption("--seed <S>")]
    [Description("Seed of the initial weights and of the grammar corpus (default 1).")]
    [Whole(0, int.MaxValue)]
    public int Seed { get; init; } = 1;

    [CommandOption("--checkpoint <PATH>")]
    [Description("The checkpoint (default bptt-model.ckpt); <PATH>.vocab, <PATH>.loss.csv and the plot <PATH>.loss.svg are written beside it.")]
    [FilePath]
    public string Checkpoint { get; init; } = DefaultCheckpoint;

    [CommandOption("--every <N>")]
    [Description("Save, and evaluate the held-out part, every N updates and at the end (default: a tenth of the run).")]
    [Whole(1, int.MaxValue)]
    public int? Every { get; init; }

    [CommandOption("--resume")]
    [Description("Continue the checkpoint (weights, optimizer state, step count, carried hidden state) up to --steps or --epochs.")]
    public bool Resume { get; init; }

    [CommandOption("--force")]
    [Description("Replace existing outputs; with --resume, accept a text whose vocabulary differs from <PATH>.vocab.")]
    public bool Force { get; init; }

    protected override string? Check() =>
        Steps is not null && Epochs is not null ? "give --steps or --epochs, not both"
        : Text is null && Epochs is not null ? "--epochs needs --text (the grammar corpus is generated; use --steps)"
        : Text is null && Validation is not null ? "--validation needs --text (the grammar's held-out strings are generated apart)"
        : null;
}

/// <summary><c>bptt sample</c>.</summary>
internal sealed class SampleSettings : BpttSettings
{
    [CommandOption("--checkpoint <PATH>")]
    [Description("The model to sample from, with <PATH>.vocab beside it (default bptt-model.ckpt, as for bptt train).")]
    [FilePath]
    public string Checkpoint { get; init; } = TrainSettings.DefaultCheckpoint;

    [CommandOption("--length <N>")]
    [Description("Symbols to generate after the prime (default 200).")]
    [Whole(1, 10_000_000)]
    public int Length { get; init; } = 200;

    [CommandOption("--temperature <T>")]
    [Description("Softmax temperature: below 1 more predictable, above 1 more varied (default 1).")]
    [Number(1e-3, 100)]
    public float Temperature { get; init; } = 1f;

    [CommandOption("--seed <S>")]
    [Description("Seed of the sampler (default 1).")]
    [Whole(0, int.MaxValue)]
    public int Seed { get; init; } = 1;

    [CommandOption("--prime <TEXT>")]
    [Description("Text fed to the model first, and printed. Default: a line break if the vocabulary has one, else a space, else its first printable symbol (not printed).")]
    public string? Prime { get; init; }
}

/// <summary><c>bptt check</c>.</summary>
internal sealed class CheckSettings : BpttSettings
{
    [CommandOption("--seed <S>")]
    [Description("Seed of the random shapes and values (default 7).")]
    [Whole(0, int.MaxValue)]
    public int Seed { get; init; } = 7;
}

/// <summary><c>bptt info</c>: no options.</summary>
internal sealed class InfoSettings : BpttSettings;
