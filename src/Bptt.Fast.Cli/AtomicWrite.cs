using System.Globalization;

namespace Bptt.Fast.Cli;

/// <summary>
/// Replaces a file whole or not at all: the new bytes go to a temporary file beside it (<c>.{name}.{pid}.{hex}.tmp</c>,
/// the library's naming), flushed to disk, which is then renamed over it. On any failure the temporary file is removed
/// and the old file is left as it was, so a full disk never leaves a truncated loss log, vocabulary or plot beside an
/// intact checkpoint. Appends (the loss log between saves) are flushed to disk instead.
/// </summary>
internal static class AtomicWrite
{
    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/>, atomically.</summary>
    /// <param name="path">The file to replace (or create).</param>
    /// <param name="write">Writes the whole new content to the stream it is given.</param>
    public static void Replace(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string temp = Path.Combine(Path.GetDirectoryName(full) ?? ".", $".{Path.GetFileName(full)}.{Environment.ProcessId.ToString(CultureInfo.InvariantCulture)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            try
            {
                File.Delete(temp);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // The failure being reported matters more than a leftover temporary file.
            }

            throw;
        }
    }

    /// <summary>Replaces <paramref name="path"/> with <paramref name="lines"/>, UTF-8 without a byte order mark, each line ended as <see cref="File.WriteAllLines(string, IEnumerable{string})"/> ends it.</summary>
    /// <param name="path">The file.</param>
    /// <param name="lines">The lines.</param>
    public static void ReplaceLines(string path, IEnumerable<string> lines) => Replace(path, stream => WriteLines(stream, lines));

    /// <summary>Appends <paramref name="lines"/> as <see cref="ReplaceLines"/> writes them, flushed to disk before it returns
    /// (an append cannot be atomic; a reader of a crashed append sees whole earlier lines and at most one partial last one).</summary>
    /// <param name="path">The file.</param>
    /// <param name="lines">The lines.</param>
    public static void AppendLinesDurably(string path, IEnumerable<string> lines)
    {
        using var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read);
        WriteLines(stream, lines);
        stream.Flush(flushToDisk: true);
    }

    private static void WriteLines(Stream stream, IEnumerable<string> lines)
    {
        using var writer = new StreamWriter(stream, new System.Text.UTF8Encoding(false), leaveOpen: true);
        foreach (string line in lines)
        {
            writer.WriteLine(line);
        }
    }
}
