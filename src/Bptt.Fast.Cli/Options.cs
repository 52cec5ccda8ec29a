using System.Globalization;

namespace Bptt.Fast.Cli;

/// <summary>A usage error: printed as one line, exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary><c>--name value</c> and <c>--flag</c> options, each checked against the command's known names and ranges.</summary>
internal sealed class Options
{
    private readonly Dictionary<string, string?> _values = new(StringComparer.Ordinal);

    public Options(IEnumerable<string> args, IReadOnlySet<string> flags, IReadOnlySet<string> valued)
    {
        using IEnumerator<string> e = args.GetEnumerator();
        while (e.MoveNext())
        {
            string arg = e.Current;
            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg.Length < 3)
            {
                throw new UsageException($"unexpected argument '{arg}'");
            }

            string name = arg[2..];
            if (flags.Contains(name))
            {
                _values[name] = null;
            }
            else if (valued.Contains(name))
            {
                if (!e.MoveNext() || (e.Current.StartsWith("--", StringComparison.Ordinal) && (flags.Contains(e.Current[2..]) || valued.Contains(e.Current[2..]))))
                {
                    throw new UsageException($"option --{name} needs a value");
                }

                _values[name] = e.Current;
            }
            else
            {
                throw new UsageException($"unknown option --{name}");
            }
        }
    }

    public bool Has(string name) => _values.ContainsKey(name);

    public string? String(string name) => _values.TryGetValue(name, out string? v) ? v : null;

    public int Int(string name, int fallback, int min, int max)
    {
        if (String(name) is not { } text)
        {
            return fallback;
        }

        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) || value < min || value > max)
        {
            throw new UsageException($"--{name} must be an integer in [{min}, {max}], got '{text}'");
        }

        return value;
    }

    public float Float(string name, float fallback, float min, float max)
    {
        if (String(name) is not { } text)
        {
            return fallback;
        }

        if (!float.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out float value) || !float.IsFinite(value) || value < min || value > max)
        {
            throw new UsageException($"--{name} must be a number in [{min.ToString(CultureInfo.InvariantCulture)}, {max.ToString(CultureInfo.InvariantCulture)}], got '{text}'");
        }

        return value;
    }
}
