using System.Globalization;
using Bptt.Fast.Serving;
using Bptt.Fast.Training;

namespace Bptt.Fast.Cli;

/// <summary>
/// The files <c>bptt train</c> writes: the checkpoint, <c>&lt;checkpoint&gt;.vocab</c>, <c>.loss.csv</c> and <c>.loss.svg</c>.
/// <see cref="Check"/> runs before training and writes nothing that stays; <see cref="Save"/> writes the loss log first
/// and the checkpoint last, so a crash between them leaves a log that is at least as long as the checkpoint's step count.
/// </summary>
internal sealed class OutputFiles(string checkpoint, Vocabulary vocabulary)
{
    private int _logged = -1; // losses already in the .loss.csv file; -1 until this run's first save rewrites it

    /// <summary>Whether this run continues the checkpoint at <see cref="CheckpointPath"/> (<c>--resume</c>) rather than replacing it.</summary>
    public bool Continues { get; init; }

    /// <summary>The model's vocabulary, written to <see cref="VocabularyPath"/>.</summary>
    public Vocabulary Vocabulary { get; } = vocabulary;

    /// <summary>The checkpoint's full path.</summary>
    public string CheckpointPath { get; } = checkpoint;

    /// <summary>The vocabulary file.</summary>
    public string VocabularyPath => CheckpointPath + ".vocab";

    /// <summary>The per-step loss log.</summary>
    public string LossLogPath => CheckpointPath + ".loss.csv";

    /// <summary>The loss plot.</summary>
    public string PlotPath => CheckpointPath + ".loss.svg";

    /// <summary>
    /// Fails, before anything is trained or written, unless every output can be written: the folder exists and takes new
    /// files, no output is a folder, a dangling link, or a special file, and an existing output is replaced only when
    /// <paramref name="mayReplace"/> (<c>--resume</c> or <c>--force</c>) and is writable.
    /// </summary>
    /// <param name="mayReplace">Whether existing outputs may be replaced.</param>
    public void Check(bool mayReplace)
    {
        string? dir = Path.GetDirectoryName(CheckpointPath);
        if (Path.EndsInDirectorySeparator(CheckpointPath) || Directory.Exists(CheckpointPath) || dir is null)
        {
            throw new UsageException($"--checkpoint: '{CheckpointPath}' is a folder; give a file path");
        }

        if (!Directory.Exists(dir))
        {
            throw new UsageException($"--checkpoint: cannot write checkpoint: folder '{dir}' does not exist");
        }

        foreach (string target in new[] { CheckpointPath, VocabularyPath, LossLogPath, PlotPath })
        {
            if (Directory.Exists(target))
            {
                throw new UsageException($"--checkpoint: '{target}' is a folder; remove it or choose another --checkpoint");
            }

            var info = new FileInfo(target);
            if (info.LinkTarget is not null && info.ResolveLinkTarget(returnFinalTarget: true) is not { Exists: true })
            {
                throw new UsageException($"--checkpoint: '{target}' is a link to a missing file; remove it or choose another --checkpoint");
            }

            if (!File.Exists(target))
            {
                continue;
            }

            if (!mayReplace)
            {
                throw new UsageException(target == CheckpointPath
                    ? $"--checkpoint: '{target}' exists; pass --resume to continue it or --force to replace it"
                    : $"--checkpoint: '{target}' exists; pass --force to replace it");
            }

            if (info.Length == 0)
            {
                throw new UsageException($"--checkpoint: '{target}' exists but is empty or not a regular file; remove it or choose another --checkpoint");
            }

            try
            {
                using var probe = new FileStream(target, FileMode.Open, FileAccess.Write, FileShare.ReadWrite, bufferSize: 1);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new UsageException($"--checkpoint: cannot write '{target}': {e.Message}");
            }
        }

        string temporary = Path.Combine(dir, $".bptt-write-test-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            using var probe = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1, FileOptions.DeleteOnClose);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"--checkpoint: cannot write checkpoint in '{dir}': {e.Message}");
        }
    }

    /// <summary>Saves the loss log (rewritten on this run's first save, appended to after), the vocabulary, then the checkpoint.</summary>
    /// <param name="theta">θ.</param>
    /// <param name="activation">f.</param>
    /// <param name="optimizer">The optimizer, whose state is saved.</param>
    /// <param name="carried">The trainer's carried hidden state.</param>
    /// <param name="losses">Every loss so far, step 1 first.</param>
    /// <param name="dropout">The dropout between layers the run trains with (recorded for --resume).</param>
    public void Save(RnnParameters theta, Activation activation, Optimizer optimizer, ReadOnlySpan<float> carried, IReadOnlyList<float> losses, float dropout)
    {
        try
        {
            if (_logged < 0)
            {
                // A replaced run's checkpoint must not outlive its vocabulary and loss log: it goes first, so that a crash
                // before this run's checkpoint leaves none rather than one that disagrees with the new vocabulary.
                if (!Continues && File.Exists(CheckpointPath))
                {
                    File.Delete(CheckpointPath);
                }

                AtomicWrite.ReplaceLines(LossLogPath, Lines(losses, 0)); // whole or not at all, like the checkpoint
                byte[] vocabulary = Vocabulary.ToFileBytes();
                AtomicWrite.Replace(VocabularyPath, stream => stream.Write(vocabulary));
            }
            else
            {
                AtomicWrite.AppendLinesDurably(LossLogPath, Lines(losses, _logged)); // on disk before the checkpoint that counts them
            }

            _logged = losses.Count;
            Checkpoint.Save(CheckpointPath, theta, activation, optimizer, carriedState: carried, dropout: dropout);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"--checkpoint: saving step {losses.Count} failed: {e.Message}", e);
        }
    }

    private static IEnumerable<string> Lines(IReadOnlyList<float> losses, int from)
    {
        for (int i = from; i < losses.Count; i++)
        {
            yield return $"{i + 1},{losses[i].ToString("R", CultureInfo.InvariantCulture)}";
        }
    }
}
