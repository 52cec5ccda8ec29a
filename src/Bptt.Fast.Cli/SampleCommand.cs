using System.Text;
using Bptt.Fast.Serving;
using Spectre.Console.Cli;

namespace Bptt.Fast.Cli;

/// <summary><c>bptt sample</c>: the checkpoint's header and vocabulary are checked before its parameters are read.</summary>
internal sealed class SampleCommand : Command<SampleSettings>
{
    public override int Execute(CommandContext context, SampleSettings settings, CancellationToken cancellationToken)
    {
        TextWriter output = RunContext.Of(context).Output;
        string checkpoint = settings.Checkpoint;
        if (checkpoint == TrainSettings.DefaultCheckpoint && !File.Exists(checkpoint) && !Directory.Exists(checkpoint))
        {
            throw new UsageException($"--checkpoint: no checkpoint at '{Path.GetFullPath(checkpoint)}', the default of bptt train and bptt sample; train one first or give --checkpoint PATH");
        }

        // The header, then the vocabulary, are checked before the parameters are allocated and read.
        CheckpointInfo info = InputFiles.ReadCheckpointInfo(checkpoint, "--checkpoint");
        Vocabulary vocabulary = InputFiles.ReadVocabulary(checkpoint + ".vocab", "--checkpoint");
        if (info.Shape.InputSize != vocabulary.Count || info.Shape.OutputSize != vocabulary.Count)
        {
            throw new InvalidDataException($"--checkpoint: '{checkpoint}' is a model of {info.Shape.InputSize} inputs and {info.Shape.OutputSize} outputs; '{checkpoint}.vocab' has {vocabulary.Count} symbols");
        }

        if (info.Shape.IsBidirectional)
        {
            throw new UsageException($"--checkpoint: '{checkpoint}' is a bidirectional model; its reverse direction reads a whole sequence from its end, so it cannot generate text one symbol at a time");
        }

        bool echo = settings.Prime is not null;
        var prime = new List<int>();
        foreach (Rune r in settings.Prime is { } given ? PrimeRunes(given) : [DefaultPrime(vocabulary)])
        {
            prime.Add(vocabulary.TryGetId(r, out int id) ? id : throw new UsageException($"--prime contains {Vocabulary.Describe(r)}, which is not in the model's vocabulary"));
        }

        var theta = new RnnParameters(info.Shape);
        try
        {
            Checkpoint.Load(checkpoint, theta);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"--checkpoint: '{checkpoint}' is not a usable checkpoint: {e.Message}");
        }

        var model = new RnnModel(theta, info.Activation);
        RnnState state = model.CreateState();
        var logits = new float[info.Shape.OutputSize];
        var random = new Random(settings.Seed);
        var text = new StringBuilder();
        Span<char> utf16 = stackalloc char[2];
        void Step(int id, int position)
        {
            model.Step(id, state, logits, StepOutput.Logits);
            if (!AllFinite(logits))
            {
                throw new InvalidDataException($"--checkpoint: '{checkpoint}': the model's output became non-finite after {position} symbols");
            }
        }

        for (int k = 0; k < prime.Count; k++)
        {
            Step(prime[k], k + 1);
            if (echo)
            {
                text.Append(utf16[..vocabulary[prime[k]].EncodeToUtf16(utf16)]);
            }
        }

        int length = settings.Length;
        for (int k = 0; k < length; k++)
        {
            int id = RnnModel.Sample(logits, settings.Temperature, random);
            text.Append(utf16[..vocabulary[id].EncodeToUtf16(utf16)]);
            if (k + 1 < length)
            {
                Step(id, prime.Count + k + 1);
            }
        }

        output.WriteLine(text.ToString());
        return 0;
    }

    /// <summary>
    /// The prime when none is given: a line break (a text model then starts as at the start of a line), else a space,
    /// else the first symbol that is not a control character (the grammar's B), else symbol 0.
    /// </summary>
    /// <param name="vocabulary">The model's vocabulary.</param>
    /// <returns>The symbol.</returns>
    internal static Rune DefaultPrime(Vocabulary vocabulary)
    {
        foreach (Rune preferred in new[] { new Rune('\n'), new Rune(' ') })
        {
            if (vocabulary.TryGetId(preferred, out _))
            {
                return preferred;
            }
        }

        for (int id = 0; id < vocabulary.Count; id++)
        {
            if (!Rune.IsControl(vocabulary[id]) && !Rune.IsWhiteSpace(vocabulary[id]))
            {
                return vocabulary[id];
            }
        }

        return vocabulary[0];
    }

    /// <summary>The scalar values of <c>--prime</c>; an unpaired surrogate or an empty prime is refused.</summary>
    private static List<Rune> PrimeRunes(string prime)
    {
        var runes = new List<Rune>();
        for (int at = 0; at < prime.Length;)
        {
            if (Rune.DecodeFromUtf16(prime.AsSpan(at), out Rune r, out int used) != System.Buffers.OperationStatus.Done)
            {
                throw new UsageException($"--prime contains an unpaired UTF-16 surrogate at position {at}");
            }

            runes.Add(r);
            at += used;
        }

        return runes.Count == 0 ? throw new UsageException("--prime must not be empty") : runes;
    }

    private static bool AllFinite(ReadOnlySpan<float> values)
    {
        foreach (float v in values)
        {
            if (!float.IsFinite(v))
            {
                return false;
            }
        }

        return true;
    }
}
