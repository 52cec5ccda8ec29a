using System.Globalization;
using System.Text;
using Bptt.Fast.Reference;
using Bptt.Fast.Serving;

namespace Bptt.Fast.Cli;

/// <summary>The <c>bptt</c> commands: train, sample, check, info. Every failure is one line on stderr and a non-zero exit code.</summary>
internal static class Commands
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public const string Usage = """
        usage: bptt <command> [options]
          train   [--text FILE] [--hidden N] [--chunk K] [--lr X] [--optimizer adam|adamw|adagrad|momentum|sgd]
                  [--clip X] [--steps N] [--seed S] [--checkpoint PATH] [--every N] [--resume] [--force]
                  With no --text, trains on a generated embedded Reber grammar corpus and scores it against the
                  grammar's optimal loss. --text is UTF-8 of at most 128 MiB; its symbols are its distinct Unicode
                  scalar values (a leading byte-order mark is dropped). --resume refuses a text whose vocabulary
                  differs from <checkpoint>.vocab unless --force is given.
          sample  --checkpoint PATH [--length N] [--temperature T] [--seed S] [--prime TEXT]
          check   fast path against the reference and against finite differences on random shapes
          info    the kernel path, the CPU and its measured FMA peak
        """;

    public static int Run(string[] args, TextWriter output, TextWriter error, bool interactive) =>
        Run(args, output, error, interactive, KernelInfo.RequestedIsaProblem);

    /// <summary>Runs a command; <paramref name="isaProblem"/> (normally <see cref="KernelInfo.RequestedIsaProblem"/>) is printed as a warning first.</summary>
    internal static int Run(string[] args, TextWriter output, TextWriter error, bool interactive, string? isaProblem)
    {
        if (isaProblem is not null)
        {
            WriteError(error, $"warning: {isaProblem}");
        }

        try
        {
            if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
            {
                output.WriteLine(Usage);
                return args.Length == 0 ? 2 : 0;
            }

            string[] rest = args[1..];
            return args[0] switch
            {
                "train" => TrainCommand.Run(new Options(rest, Set("resume", "force"), Set("text", "hidden", "chunk", "lr", "optimizer", "clip", "steps", "seed", "checkpoint", "every")), output, interactive),
                "sample" => Sample(new Options(rest, Set(), Set("checkpoint", "length", "temperature", "seed", "prime")), output),
                "check" => Check(new Options(rest, Set(), Set("seed")), output),
                "info" => Info(new Options(rest, Set(), Set()), output, isaProblem),
                _ => throw new UsageException($"unknown command '{args[0]}' (train, sample, check, info)"),
            };
        }
        catch (UsageException e)
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
                _ when char.IsControl(c) || c is '\u2028' or '\u2029' => line.Append(string.Create(Inv, $"\\u{(int)c:X4}")),
                _ => line.Append(c),
            };
        }

        error.WriteLine(line.ToString());
    }

    private static HashSet<string> Set(params string[] names) => new(names, StringComparer.Ordinal);

    private static int Sample(Options o, TextWriter output)
    {
        string checkpoint = o.String("checkpoint") ?? throw new UsageException("sample needs --checkpoint PATH");
        int length = o.Int("length", 200, 1, 10_000_000);
        float temperature = o.Float("temperature", 1f, 1e-3f, 100f);
        int seed = o.Int("seed", 1, 0, int.MaxValue);
        string? primeOption = o.String("prime");
        if (checkpoint.Length == 0 || checkpoint.Contains('\0', StringComparison.Ordinal))
        {
            throw new UsageException("--checkpoint needs a file path");
        }

        // The header, then the vocabulary, are checked before the parameters are allocated and read.
        CheckpointInfo info = InputFiles.ReadCheckpointInfo(checkpoint, "--checkpoint");
        Vocabulary vocabulary = InputFiles.ReadVocabulary(checkpoint + ".vocab", "--checkpoint");
        if (info.Shape.InputSize != vocabulary.Count || info.Shape.OutputSize != vocabulary.Count)
        {
            throw new InvalidDataException($"--checkpoint: '{checkpoint}' is a model of {info.Shape.InputSize} inputs and {info.Shape.OutputSize} outputs; '{checkpoint}.vocab' has {vocabulary.Count} symbols");
        }

        var prime = new List<int>();
        foreach (Rune r in PrimeRunes(primeOption ?? vocabulary[0].ToString()))
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
        var random = new Random(seed);
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
            text.Append(utf16[..vocabulary[prime[k]].EncodeToUtf16(utf16)]);
        }

        for (int k = 0; k < length; k++)
        {
            int id = RnnModel.Sample(logits, temperature, random);
            text.Append(utf16[..vocabulary[id].EncodeToUtf16(utf16)]);
            if (k + 1 < length)
            {
                Step(id, prime.Count + k + 1);
            }
        }

        output.WriteLine(text.ToString());
        return 0;
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

    private static int Check(Options o, TextWriter output)
    {
        int seed = o.Int("seed", 7, 0, int.MaxValue);
        output.WriteLine($"kernel path: {KernelInfo.Description}");
        var random = new Random(seed);
        double worstFast = 0, worstGradient = 0;
        foreach ((int i, int h, int od, int t, int b) in new[] { (3, 7, 5, 6, 1), (17, 33, 9, 5, 4), (64, 100, 31, 4, 2) })
        {
            var shape = new RnnShape(i, h, od);
            var theta = new RnnParameters(shape);
            theta.InitializeGlorot((ulong)random.Next());
            float[] x = Enumerable.Range(0, t * b * i).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
            int[] y = Enumerable.Range(0, t * b).Select(_ => random.Next(od)).ToArray();
            var fastGrad = new RnnParameters(shape);
            float fastLoss = new BpttEngine(shape, t, b).ComputeGradients(theta, new SequenceBatch<float>(t, b, x, y), fastGrad);
            double[] th = theta.Values.ToArray().Select(v => (double)v).ToArray();
            double[] xd = x.Select(v => (double)v).ToArray();
            var reference = new ReferenceBptt<double>(shape, t, b, Activation.Tanh);
            var refGrad = new double[shape.ParameterCount];
            double refLoss = reference.ComputeGradients(th, new SequenceBatch<double>(t, b, xd, y), refGrad);
            double scale = refGrad.Max(Math.Abs) + 1e-12;
            double fastError = Math.Max(Math.Abs(fastLoss - refLoss) / Math.Max(1, Math.Abs(refLoss)), refGrad.Select((g, k) => Math.Abs(g - fastGrad.Values[k]) / scale).Max());
            worstFast = Math.Max(worstFast, fastError);

            // Central differences of the double reference on a few parameters.
            double gradError = 0;
            for (int probe = 0; probe < 12; probe++)
            {
                int k = random.Next(th.Length);
                double saved = th[k];
                th[k] = saved + 1e-5;
                double plus = reference.Evaluate(th, new SequenceBatch<double>(t, b, xd, y));
                th[k] = saved - 1e-5;
                double minus = reference.Evaluate(th, new SequenceBatch<double>(t, b, xd, y));
                th[k] = saved;
                double numeric = (plus - minus) / 2e-5;
                gradError = Math.Max(gradError, Math.Abs(numeric - refGrad[k]) / Math.Max(1e-3, Math.Abs(numeric)));
            }

            worstGradient = Math.Max(worstGradient, gradError);
            output.WriteLine(string.Create(Inv, $"I={i} H={h} O={od} T={t} B={b}: fast vs reference max relative error {fastError:E2}; reference vs finite differences {gradError:E2}"));
        }

        bool pass = worstFast < 1e-4 && worstGradient < 1e-4;
        output.WriteLine(pass ? "PASS" : string.Create(Inv, $"FAIL (fast {worstFast:E2}, gradient {worstGradient:E2}; limits 1e-4)"));
        return pass ? 0 : 1;
    }

    private static int Info(Options o, TextWriter output, string? isaProblem)
    {
        _ = o;
        output.WriteLine($"kernel path: {KernelInfo.Description} (best supported: {KernelInfo.BestSupported})");
        if (isaProblem is not null)
        {
            output.WriteLine($"warning: {isaProblem}");
        }

        foreach (string name in KernelInfo.KernelNames)
        {
            output.WriteLine($"  {name}");
        }

        output.WriteLine($"CPU: {KernelInfo.CpuModel} ({KernelInfo.CacheSizes})");
        if (KernelInfo.UnusedHardware is { } unused)
        {
            output.WriteLine($"note: {unused}");
        }
        return 0;
    }
}
