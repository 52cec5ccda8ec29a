using System.Diagnostics;
using System.Globalization;
using System.Text;
using Bptt.Fast.Reference;
using Bptt.Fast.Serving;
using Bptt.Fast.Training;
using Spectre.Console;

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
                  grammar's optimal loss.
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
                "train" => Train(new Options(rest, Set("resume", "force"), Set("text", "hidden", "chunk", "lr", "optimizer", "clip", "steps", "seed", "checkpoint", "every")), output, interactive),
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
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException or DecoderFallbackException or ArgumentException)
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

    private static int Train(Options o, TextWriter output, bool interactive)
    {
        string? textPath = o.String("text");
        int seed = o.Int("seed", 1, 0, int.MaxValue);
        string vocabulary;
        int[] stream;
        ReberGrammar.Corpus? evaluation = null;
        if (textPath is null)
        {
            ReberGrammar.Corpus corpus = ReberGrammar.Generate(strings: 3000, (ulong)seed);
            evaluation = ReberGrammar.Generate(strings: 600, (ulong)seed + 1000);
            vocabulary = ReberGrammar.Symbols;
            stream = corpus.Tokens;
        }
        else
        {
            string text = ReadText(textPath);
            vocabulary = new string(text.Distinct().Order().ToArray());
            stream = text.Select(c => vocabulary.IndexOf(c, StringComparison.Ordinal)).ToArray();
        }

        int hidden = o.Int("hidden", 64, 1, 4096);
        int chunk = o.Int("chunk", 20, 1, 1000);
        float lr = o.Float("lr", 0.005f, 1e-7f, 10f);
        float clip = o.Float("clip", 5f, 0f, 1e6f);
        int steps = o.Int("steps", textPath is null ? 8000 : 2000, 1, 100_000_000);
        int every = o.Int("every", 1000, 1, int.MaxValue);
        string checkpoint = Path.GetFullPath(o.String("checkpoint") ?? "bptt-model.ckpt");
        bool resume = o.Has("resume");
        if (stream.Length < chunk + 1)
        {
            throw new UsageException($"the text has {stream.Length} characters; --chunk {chunk} needs at least {chunk + 1}");
        }

        CheckWritable(checkpoint, resume || o.Has("force"));
        var shape = new RnnShape(vocabulary.Length, hidden, vocabulary.Length);
        var theta = new RnnParameters(shape);
        theta.InitializeGlorot((ulong)seed);
        Optimizer optimizer = (o.String("optimizer") ?? "adam") switch
        {
            "adam" => new Adam(shape, lr),
            "adamw" => new AdamW(shape, lr),
            "adagrad" => new Adagrad(shape, lr),
            "momentum" => new Momentum(shape, lr, 0.9f, nesterov: true),
            "sgd" => new GradientDescent(shape, lr),
            string other => throw new UsageException($"unknown optimizer '{other}' (adam, adamw, adagrad, momentum, sgd)"),
        };
        var engine = new BpttEngine(shape, chunk);
        var trainer = new TruncatedBpttTrainer(engine, optimizer, chunk, chunk, clip);
        var losses = new List<float>();
        int start = 0;
        if (resume)
        {
            CheckpointInfo info = Checkpoint.Load(checkpoint, theta, optimizer, trainer.State);
            start = (int)info.StepCount;
            losses.AddRange(ReadLosses(checkpoint + ".loss.csv", start));
            output.WriteLine($"resumed from {checkpoint} at step {start}");
        }

        int[] targets = stream[1..];
        int[] inputs = stream[..^1];
        int span = inputs.Length / chunk * chunk;
        var clock = Stopwatch.StartNew();
        double smoothed = double.NaN;

        void Update(int u)
        {
            int at = u * chunk % span;
            if (at == 0)
            {
                trainer.Reset(); // each pass over the corpus starts from h = 0
            }

            TrainingReport report = trainer.Train(theta, inputs.AsSpan(at, chunk), targets.AsSpan(at, chunk));
            if (report.Refused > 0)
            {
                throw new InvalidDataException($"step {u + 1}: the loss or gradient became non-finite; try a smaller --lr");
            }

            float perSymbol = (float)(report.Loss / chunk);
            losses.Add(perSymbol);
            smoothed = double.IsNaN(smoothed) ? perSymbol : (0.98 * smoothed) + (0.02 * perSymbol);
            if ((u + 1) % every == 0 || u + 1 == steps)
            {
                Checkpoint.Save(checkpoint, theta, Activation.Tanh, optimizer, carriedState: trainer.State);
                File.WriteAllLines(checkpoint + ".loss.csv", losses.Select((l, i) => $"{i + 1},{l.ToString("R", Inv)}"));
                File.WriteAllText(checkpoint + ".vocab", vocabulary, Encoding.UTF8);
            }
        }

        string Status(int u)
        {
            double rate = (u + 1 - start) * chunk / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
            double eta = (steps - u - 1) * chunk / Math.Max(rate, 1e-9);
            return string.Create(Inv, $"step {u + 1}/{steps}  loss {smoothed:F3} nats/symbol  {rate:F0} tokens/s  ETA {eta:F0}s");
        }

        if (interactive)
        {
            AnsiConsole.Progress().AutoClear(false).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    ProgressTask task = ctx.AddTask("training", maxValue: steps);
                    task.Value = start;
                    for (int u = start; u < steps; u++)
                    {
                        Update(u);
                        task.Increment(1);
                        if ((u & 31) == 0 || u + 1 == steps)
                        {
                            task.Description = Markup.Escape(Status(u));
                        }
                    }
                });
        }
        else
        {
            int report = Math.Max(1, steps / 20);
            for (int u = start; u < steps; u++)
            {
                Update(u);
                if ((u + 1) % report == 0 || u + 1 == steps)
                {
                    output.WriteLine(Status(u));
                }
            }
        }

        string plot = checkpoint + ".loss.png";
        LossPlot.Save(losses, plot, textPath is null ? "embedded Reber grammar" : Path.GetFileName(textPath));
        output.WriteLine($"checkpoint: {checkpoint}");
        output.WriteLine($"loss curve: {plot}");
        output.WriteLine(string.Create(Inv, $"final smoothed training loss: {smoothed:F4} nats/symbol over {losses.Count} steps"));
        if (evaluation is not null)
        {
            Score(new RnnModel(theta), evaluation, output);
        }

        return 0;
    }

    /// <summary>Runs the model over held-out grammar strings and reports its loss against the grammar's optimum.</summary>
    private static void Score(RnnModel model, ReberGrammar.Corpus corpus, TextWriter output)
    {
        RnnState state = model.CreateState();
        var probs = new float[model.Shape.OutputSize];
        double loss = 0;
        int legal = 0, n = corpus.Tokens.Length - 1;
        for (int t = 0; t < n; t++)
        {
            model.Step(corpus.Tokens[t], state, probs);
            loss -= Math.Log(Math.Max(probs[corpus.Tokens[t + 1]], 1e-30f));
            legal += (corpus.Legal[t] >> RnnModel.Greedy(probs) & 1) != 0 ? 1 : 0;
        }

        double model_ = loss / n, optimal = corpus.OptimalNatsPerSymbol;
        output.WriteLine(string.Create(Inv, $"held-out loss: {model_:F4} nats/symbol; grammar optimum: {optimal:F4} nats/symbol; ratio {model_ / optimal:F2}x (gap {model_ - optimal:F4})"));
        output.WriteLine(string.Create(Inv, $"top prediction legal: {100.0 * legal / n:F2}% of {n} steps"));
    }

    private static int Sample(Options o, TextWriter output)
    {
        string checkpoint = o.String("checkpoint") ?? throw new UsageException("sample needs --checkpoint PATH");
        int length = o.Int("length", 200, 1, 10_000_000);
        float temperature = o.Float("temperature", 1f, 1e-3f, 100f);
        int seed = o.Int("seed", 1, 0, int.MaxValue);
        if (!File.Exists(checkpoint))
        {
            throw new UsageException($"no checkpoint at '{checkpoint}'");
        }

        CheckpointInfo info = Checkpoint.ReadInfo(checkpoint);
        var theta = new RnnParameters(info.Shape);
        Checkpoint.Load(checkpoint, theta);
        string vocabulary = File.ReadAllText(checkpoint + ".vocab", Encoding.UTF8);
        if (vocabulary.Length != info.Shape.InputSize)
        {
            throw new InvalidDataException($"'{checkpoint}.vocab' has {vocabulary.Length} symbols; the model has {info.Shape.InputSize}");
        }

        var model = new RnnModel(theta, info.Activation);
        RnnState state = model.CreateState();
        var logits = new float[info.Shape.OutputSize];
        var random = new Random(seed);
        var text = new StringBuilder();
        string prime = o.String("prime") ?? vocabulary[..1];
        foreach (char c in prime)
        {
            int id = vocabulary.IndexOf(c, StringComparison.Ordinal);
            if (id < 0)
            {
                throw new UsageException($"--prime contains '{c}', which is not in the model's vocabulary");
            }

            model.Step(id, state, logits, StepOutput.Logits);
            text.Append(c);
        }

        for (int k = 0; k < length; k++)
        {
            int id = RnnModel.Sample(logits, temperature, random);
            text.Append(vocabulary[id]);
            model.Step(id, state, logits, StepOutput.Logits);
        }

        output.WriteLine(text.ToString());
        return 0;
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

        output.WriteLine($"CPU: {FmaPeak.Cpu}");
        output.WriteLine(string.Create(Inv, $"measured single-core fp32 FMA peak: {FmaPeak.Measure():F1} GFLOP/s"));
        return 0;
    }

    private static string ReadText(string path)
    {
        if (!File.Exists(path))
        {
            throw new UsageException($"no such file '{path}'");
        }

        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length == 0)
        {
            throw new UsageException($"'{path}' is empty");
        }

        if (Array.IndexOf(bytes, (byte)0) >= 0)
        {
            throw new UsageException($"'{path}' looks binary (it contains NUL bytes); give a UTF-8 text file");
        }

        try
        {
            return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw new UsageException($"'{path}' is not valid UTF-8 text");
        }
    }

    /// <summary>Fails before any training if the checkpoint cannot be written, or exists and may not be replaced.</summary>
    private static void CheckWritable(string checkpoint, bool mayReplace)
    {
        if (File.Exists(checkpoint) && !mayReplace)
        {
            throw new UsageException($"'{checkpoint}' exists; pass --resume to continue it or --force to replace it");
        }

        if (!File.Exists(checkpoint) && File.Exists(checkpoint + ".loss.csv") && !mayReplace)
        {
            throw new UsageException($"'{checkpoint}.loss.csv' exists; pass --force to replace it");
        }

        string dir = Path.GetDirectoryName(checkpoint)!;
        if (!Directory.Exists(dir))
        {
            throw new UsageException($"cannot write checkpoint: folder '{dir}' does not exist");
        }

        string probe = Path.Combine(dir, $".bptt-write-test-{Environment.ProcessId}");
        try
        {
            File.WriteAllText(probe, "");
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageException($"cannot write checkpoint in '{dir}': {e.Message}");
        }
    }

    private static IEnumerable<float> ReadLosses(string path, int count)
    {
        string[] lines = File.Exists(path) ? File.ReadAllLines(path) : [];
        if (lines.Length < count)
        {
            throw new InvalidDataException($"'{path}' holds {lines.Length} losses; the checkpoint is at step {count}");
        }

        return lines.Take(count).Select(l => float.Parse(l[(l.IndexOf(',', StringComparison.Ordinal) + 1)..], Inv));
    }
}
