using System.Security.Cryptography;
using Bptt.Fast.Cli;
using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>
/// Runs <c>bptt</c> in-process in a fresh temporary folder, and checks a refusal: the exit code, exactly one line on
/// stderr that starts with <c>bptt: </c> and names what was wrong, nothing on stdout, and not one file created, changed
/// or removed. Commands run without the <c>BPTT_FAST_ISA</c> warning so that the line count does not depend on the
/// environment of the test run.
/// </summary>
public abstract class CliHarness : IDisposable
{
    protected CliHarness() => Dir = Directory.CreateTempSubdirectory("bptt-cli-adv-").FullName;

    protected string Dir { get; }

    public void Dispose()
    {
        Directory.Delete(Dir, recursive: true);
        GC.SuppressFinalize(this);
    }

    protected string P(string name) => Path.Combine(Dir, name);

    protected static (int Code, string Out, string Err) Run(params string[] args) => RunWith(null, args);

    protected static (int Code, string Out, string Err) RunWith(string? isaProblem, params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        int code = Commands.Run(args, output, error, interactive: false, isaProblem);
        return (code, output.ToString(), error.ToString());
    }

    /// <summary>Runs a command that must be refused, and checks the refusal and that the folder is unchanged.</summary>
    /// <param name="expectedCode">The exit code.</param>
    /// <param name="mentions">Texts the error line must contain (an option, a file name).</param>
    /// <param name="args">The command line.</param>
    /// <returns>The error line.</returns>
    protected string AssertRefused(int expectedCode, string[] mentions, params string[] args)
    {
        Dictionary<string, string> before = Snapshot();
        (int code, string output, string error) = Run(args);
        Assert.True(code == expectedCode, $"exit code {code}, expected {expectedCode}; stderr: {error}; stdout: {output}");
        AssertOneErrorLine(error);
        foreach (string m in mentions)
        {
            Assert.Contains(m, error, StringComparison.Ordinal);
        }

        Assert.Equal(string.Empty, output);
        Assert.Equal(before, Snapshot());
        return error;
    }

    protected static void AssertOneErrorLine(string error)
    {
        Assert.StartsWith("bptt: ", error, StringComparison.Ordinal);
        Assert.EndsWith("\n", error, StringComparison.Ordinal);
        Assert.Equal(1, error.Count(c => c == '\n'));
        Assert.DoesNotContain('\r', error.TrimEnd('\r', '\n'));
        Assert.DoesNotContain("   at ", error, StringComparison.Ordinal);
    }

    /// <summary>Every entry under the folder: kind, length, last write time and a hash of the content (up to 1 MiB).</summary>
    /// <returns>Relative path → description.</returns>
    protected Dictionary<string, string> Snapshot()
    {
        var entries = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string path in Directory.EnumerateFileSystemEntries(Dir, "*", SearchOption.AllDirectories))
        {
            string key = Path.GetRelativePath(Dir, path);
            var info = new FileInfo(path);
            if (info.LinkTarget is not null)
            {
                entries[key] = $"link -> {info.LinkTarget}";
            }
            else if (Directory.Exists(path))
            {
                entries[key] = "folder";
            }
            else
            {
                string hash = info.Length <= 1 << 20 ? Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path))) : "large";
                entries[key] = $"{info.Length} bytes, {info.LastWriteTimeUtc.Ticks}, {hash}";
            }
        }

        return entries;
    }

    /// <summary>Trains a small text model (3 distinct symbols unless given) at <paramref name="checkpoint"/>.</summary>
    protected void TrainSmall(string checkpoint, string text = "abcabcaabbcc", int steps = 6)
    {
        File.WriteAllText(P("small.txt"), string.Concat(Enumerable.Repeat(text, 10)));
        (int code, _, string error) = Run("train", "--text", P("small.txt"), "--steps", steps.ToString(System.Globalization.CultureInfo.InvariantCulture), "--hidden", "4", "--chunk", "5", "--checkpoint", P(checkpoint));
        Assert.True(code == 0, error);
    }
}
