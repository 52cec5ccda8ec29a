using System.Diagnostics;
using System.Globalization;

namespace Bptt.Fast.Serving;

/// <summary>
/// Temporary files for atomic replacement of a target: <c>.{target name}.{process id}.{32 hex digits}.tmp</c> in the
/// target's folder, the digits from a fresh <see cref="Guid"/>, so concurrent saves (threads or processes) never share
/// one. A temporary file of the same target is an orphan, and is deleted before the next save writes, when it was last
/// written more than <see cref="OrphanAge"/> ago and its process is not running, or more than <see cref="StaleAge"/>
/// ago whatever its process id (ids are reused). A save in progress keeps writing its file, so it is never that old.
/// </summary>
internal static class AtomicFile
{
    /// <summary>How long a temporary file of a process that is gone is left alone.</summary>
    public static readonly TimeSpan OrphanAge = TimeSpan.FromMinutes(10);

    /// <summary>How long any temporary file is left alone.</summary>
    public static readonly TimeSpan StaleAge = TimeSpan.FromDays(1);

    /// <summary>A new temporary path beside <paramref name="target"/> (a full path), after removing its orphans.</summary>
    public static string TemporaryPathFor(string target)
    {
        string dir = Path.GetDirectoryName(target) ?? ".";
        string name = Path.GetFileName(target);
        RemoveOrphans(dir, name);
        return Path.Combine(dir, $".{name}.{Environment.ProcessId.ToString(CultureInfo.InvariantCulture)}.{Guid.NewGuid():N}.tmp");
    }

    /// <summary>Deletes <paramref name="path"/> if it exists, ignoring failures (a cleanup must not hide the error being handled).</summary>
    public static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Left for the next save's orphan sweep.
        }
    }

    /// <summary>Deletes the orphaned temporary files of <paramref name="name"/> in <paramref name="dir"/>; never throws for I/O.</summary>
    internal static void RemoveOrphans(string dir, string name)
    {
        string prefix = "." + name + ".";
        DateTime now = DateTime.UtcNow;
        try
        {
            foreach (FileInfo file in new DirectoryInfo(dir).EnumerateFiles(".*.tmp"))
            {
                // Ours are ".{name}.{pid}.{hex}.tmp": longer than the prefix and the suffix together (".{name}.tmp" has the
                // two overlapping on one dot and is someone else's file).
                if (file.Name.Length <= prefix.Length + 4 || !file.Name.StartsWith(prefix, StringComparison.Ordinal) || !file.Name.EndsWith(".tmp", StringComparison.Ordinal))
                {
                    continue;
                }

                if (!TryParseOwner(file.Name.AsSpan(prefix.Length, file.Name.Length - prefix.Length - 4), out int pid))
                {
                    continue; // not one of ours
                }

                TimeSpan age = now - file.LastWriteTimeUtc;
                if (age > StaleAge || (age > OrphanAge && !IsRunning(pid)))
                {
                    TryDelete(file.FullName);
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.SecurityException)
        {
            // The sweep is best effort; the save itself reports its own errors.
        }
    }

    /// <summary>Parses <c>{process id}.{hex digits}</c> (also the digits-only suffix of earlier versions).</summary>
    private static bool TryParseOwner(ReadOnlySpan<char> middle, out int pid)
    {
        pid = 0;
        int dot = middle.IndexOf('.');
        if (dot <= 0 || dot == middle.Length - 1)
        {
            return false;
        }

        ReadOnlySpan<char> token = middle[(dot + 1)..];
        foreach (char c in token)
        {
            if (!char.IsAsciiHexDigit(c))
            {
                return false;
            }
        }

        return int.TryParse(middle[..dot], NumberStyles.None, CultureInfo.InvariantCulture, out pid);
    }

    /// <summary>Whether process <paramref name="pid"/> is running; true when that cannot be told (keep the file).</summary>
    private static bool IsRunning(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return true;
        }
        catch (ArgumentException)
        {
            return false; // no such process
        }
        catch (Exception e) when (e is InvalidOperationException or PlatformNotSupportedException or NotSupportedException or System.ComponentModel.Win32Exception)
        {
            return true;
        }
    }
}
