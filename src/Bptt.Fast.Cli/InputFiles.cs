using System.Buffers;
using System.Globalization;
using System.Text;
using Bptt.Fast.Serving;

namespace Bptt.Fast.Cli;

/// <summary>A text turned into symbol ids: the vocabulary (distinct scalar values, ascending) and the token stream.</summary>
/// <param name="Vocabulary">The distinct symbols in ascending order of their scalar values.</param>
/// <param name="Tokens">The text as symbol ids.</param>
internal sealed record TextCorpus(Vocabulary Vocabulary, int[] Tokens);

/// <summary>
/// Every file the tool reads, read with a bound: a file whose size is known and too large is refused before it is read,
/// and one whose size cannot be known (a pipe, a device) is read only up to the bound. Each problem is one exception
/// whose message names the option and the file.
/// </summary>
internal static class InputFiles
{
    /// <summary>The largest <c>--text</c>, 128 MiB: room for enwik8 (10⁸ bytes), at most 4 bytes of tokens per byte.</summary>
    public const long MaxTextBytes = 128L << 20;

    /// <summary>The longest line of a <c>.loss.csv</c> file ("step,loss").</summary>
    public const int MaxLossLineBytes = 64;

    /// <summary>Reads and decodes <c>--text</c>: UTF-8 without NUL bytes, a leading byte-order mark dropped.</summary>
    /// <param name="path">The file.</param>
    /// <returns>The vocabulary and the token stream.</returns>
    /// <exception cref="UsageException">Missing, a folder, unreadable, too large, empty, binary or not UTF-8.</exception>
    public static TextCorpus ReadText(string path)
    {
        Exception Fail(string why) => new UsageException($"--text: '{path}' {why}");
        (byte[] buffer, int length) = ReadBounded(path, MaxTextBytes, refuseNul: true, Fail);
        int skip = buffer.AsSpan(0, length).StartsWith(Vocabulary.ByteOrderMark) ? Vocabulary.ByteOrderMark.Length : 0;
        ReadOnlySpan<byte> bytes = buffer.AsSpan(skip, length - skip);
        if (bytes.IsEmpty)
        {
            throw Fail(length == 0 ? "is empty" : "holds only a byte-order mark");
        }

        // Pass 1: validate, count the symbols and mark the scalar values seen. Pass 2: write the ids.
        var ids = new int[0x110000];
        int count = 0;
        for (int at = 0; at < bytes.Length; count++)
        {
            if (bytes[at] < 0x80)
            {
                ids[bytes[at++]] = 1;
                continue;
            }

            if (Rune.DecodeFromUtf8(bytes[at..], out Rune rune, out int used) != OperationStatus.Done)
            {
                throw Fail($"is not valid UTF-8 text (byte {skip + at})");
            }

            ids[rune.Value] = 1;
            at += used;
        }

        var symbols = new List<Rune>();
        for (int v = 0; v < ids.Length; v++)
        {
            if (ids[v] != 0)
            {
                ids[v] = symbols.Count;
                symbols.Add(new Rune(v));
            }
        }

        var tokens = new int[count];
        for (int at = 0, k = 0; at < bytes.Length; k++)
        {
            Rune.DecodeFromUtf8(bytes[at..], out Rune rune, out int used);
            tokens[k] = ids[rune.Value];
            at += used;
        }

        return new TextCorpus(Vocabulary.Of(symbols), tokens);
    }

    /// <summary>Reads the <c>.vocab</c> file next to a checkpoint.</summary>
    /// <param name="path">The file.</param>
    /// <param name="option">The option that named the checkpoint, for the message.</param>
    /// <returns>The vocabulary.</returns>
    /// <exception cref="InvalidDataException">Missing, not a regular file, unreadable, too large or malformed.</exception>
    public static Vocabulary ReadVocabulary(string path, string option)
    {
        Exception Fail(string why) => new InvalidDataException($"{option}: '{path}' {why}");
        RequireRegularFile(path, Vocabulary.MaxFileBytes, Fail);
        (byte[] buffer, int length) = ReadBounded(path, Vocabulary.MaxFileBytes, refuseNul: false, Fail);
        try
        {
            return Vocabulary.Parse(buffer.AsSpan(0, length));
        }
        catch (InvalidDataException e)
        {
            throw Fail($"is not a vocabulary file: {e.Message}");
        }
    }

    /// <summary>Reads the first <paramref name="count"/> losses of a <c>.loss.csv</c> file (lines "step,loss", step 1, 2, …).</summary>
    /// <param name="path">The file.</param>
    /// <param name="count">Losses needed (the checkpoint's step count).</param>
    /// <returns>The losses.</returns>
    /// <exception cref="InvalidDataException">Missing, unreadable, malformed, or shorter than <paramref name="count"/>.</exception>
    public static List<float> ReadLosses(string path, int count)
    {
        Exception Fail(string why) => new InvalidDataException($"--resume: '{path}' {why}");
        RequireRegularFile(path, long.MaxValue, Fail);
        var losses = new List<float>();
        var line = new byte[MaxLossLineBytes];
        int length = 0;
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 1 << 16);
            int b;
            while (losses.Count < count && (b = file.ReadByte()) >= 0)
            {
                if (b == '\n')
                {
                    losses.Add(ParseLoss(line.AsSpan(0, length), losses.Count + 1, Fail));
                    length = 0;
                }
                else if (length == line.Length)
                {
                    throw Fail($"line {losses.Count + 1} is longer than {MaxLossLineBytes} bytes; expected \"step,loss\"");
                }
                else
                {
                    line[length++] = (byte)b;
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Fail($"cannot be read: {e.Message}");
        }

        if (losses.Count < count && length > 0)
        {
            losses.Add(ParseLoss(line.AsSpan(0, length), losses.Count + 1, Fail));
        }

        return losses.Count < count ? throw Fail($"holds {losses.Count} losses; the checkpoint is at step {count}") : losses;
    }

    /// <summary>The header of a checkpoint file, after checking it is a regular file that fits the format.</summary>
    /// <param name="path">The file.</param>
    /// <param name="option">The option that named it, for the message.</param>
    /// <returns>The header.</returns>
    /// <exception cref="UsageException">Missing or a folder.</exception>
    /// <exception cref="InvalidDataException">Not a regular file, too large, unreadable or corrupted.</exception>
    public static CheckpointInfo ReadCheckpointInfo(string path, string option)
    {
        if (Directory.Exists(path))
        {
            throw new UsageException($"{option}: '{path}' is a folder; give the checkpoint file");
        }

        if (!File.Exists(path))
        {
            throw new UsageException($"{option}: no checkpoint at '{path}'");
        }

        Exception Fail(string why) => new InvalidDataException($"{option}: '{path}' {why}");
        RequireRegularFile(path, Array.MaxLength, Fail);
        try
        {
            return Checkpoint.ReadInfo(path);
        }
        catch (InvalidDataException e)
        {
            throw Fail($"is not a usable checkpoint: {e.Message}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Fail($"cannot be read: {e.Message}");
        }
    }

    /// <summary>
    /// Refuses what is not a regular file of 1 to <paramref name="maxBytes"/> bytes. Devices, pipes and /proc files
    /// report a length of 0 and are refused here, before anything opens (and blocks on) them.
    /// </summary>
    private static void RequireRegularFile(string path, long maxBytes, Func<string, Exception> fail)
    {
        if (Directory.Exists(path))
        {
            throw fail("is a folder");
        }

        var info = new FileInfo(path);
        if (!File.Exists(path))
        {
            throw fail("does not exist");
        }

        if (info.Length == 0)
        {
            throw fail("is empty or not a regular file");
        }

        if (info.Length > maxBytes)
        {
            throw fail($"is {info.Length.ToString("N0", CultureInfo.InvariantCulture)} bytes; at most {Size(maxBytes)} is read");
        }
    }

    /// <summary>Reads at most <paramref name="limit"/> bytes, whatever the file claims; refuses a larger file.</summary>
    private static (byte[] Buffer, int Length) ReadBounded(string path, long limit, bool refuseNul, Func<string, Exception> fail)
    {
        if (Directory.Exists(path))
        {
            throw fail("is a folder");
        }

        if (!File.Exists(path))
        {
            throw fail("does not exist");
        }

        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 0);
            long known = file.CanSeek ? file.Length : 0;
            if (known > limit)
            {
                throw fail($"is {known.ToString("N0", CultureInfo.InvariantCulture)} bytes; the limit is {Size(limit)}");
            }

            var buffer = new byte[(int)Math.Min(known > 0 ? known + 1 : 1 << 16, limit + 1)];
            int length = 0;
            while (true)
            {
                if (length == buffer.Length)
                {
                    if (length > limit)
                    {
                        throw fail($"is larger than the limit of {Size(limit)}");
                    }

                    Array.Resize(ref buffer, (int)Math.Min(2L * buffer.Length, limit + 1));
                }

                int n = file.Read(buffer, length, buffer.Length - length);
                if (n == 0)
                {
                    return (buffer, length);
                }

                if (refuseNul && buffer.AsSpan(length, n).Contains((byte)0))
                {
                    throw fail("looks binary (it contains NUL bytes); give a UTF-8 text file");
                }

                length += n;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw fail($"cannot be read: {e.Message}");
        }
    }

    private static float ParseLoss(ReadOnlySpan<byte> line, int step, Func<string, Exception> fail)
    {
        if (line.EndsWith((byte)'\r'))
        {
            line = line[..^1];
        }

        int comma = line.IndexOf((byte)',');
        if (comma < 0
            || !int.TryParse(line[..comma], NumberStyles.None, CultureInfo.InvariantCulture, out int index) || index != step
            || !float.TryParse(line[(comma + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out float loss)
            || !float.IsFinite(loss) || loss < 0)
        {
            throw fail($"line {step} is not \"{step},<finite loss>\"");
        }

        return loss;
    }

    /// <summary>A byte count for a message, e.g. "128 MiB".</summary>
    /// <param name="bytes">The count.</param>
    /// <returns>The text.</returns>
    public static string Size(long bytes) => bytes >= 1L << 30 && bytes % (1L << 30) == 0 ? $"{bytes >> 30} GiB"
        : bytes >= 1L << 20 && bytes % (1L << 20) == 0 ? $"{bytes >> 20} MiB"
        : bytes >= 1L << 30 ? string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):F1} GiB")
        : $"{bytes.ToString("N0", CultureInfo.InvariantCulture)} bytes";
}
