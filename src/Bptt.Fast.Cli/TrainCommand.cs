using System.Diagnostics;
using System.Globalization;
using Bptt.Fast.Serving;
using Bptt.Fast.Training;
using Spectre.Console;

namespace Bptt.Fast.Cli;

/// <summary>
/// <c>bptt train</c>. Every option, the text, the model's size, every output path and, with <c>--resume</c>, the
/// checkpoint, its vocabulary and its loss log are checked before anything is allocated for training or written.
/// </summary>
internal static class TrainCommand
{
    /// <summary>The most updates a run may take.</summary>
    public const int MaxSteps = 100_000_000;

    /// <summary>The most memory a training run may plan to use, 4 GiB (less where the machine has less).</summary>
    public const long MaxTrainingBytes = 4L << 30;

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>The <c>--optimizer</c> names and the type names a checkpoint records for them.</summary>
    private static readonly (string Option, string TypeName)[] OptimizerNames =
    [
        ("adam", nameof(Adam)), ("adamw", nameof(AdamW)), ("adagrad", nameof(Adagrad)), ("momentum", nameof(Momentum)), ("sgd", nameof(GradientDescent)),
    ];

    public static int Run(Options o, TextWriter output, bool interactive)
    {
        string? textPath = o.String("text");
        int seed = o.Int("seed", 1, 0, int.MaxValue);
        int chunk = o.Int("chunk", 20, 1, 1000);
        float lr = o.Float("lr", 0.005f, 1e-7f, 10f);
        float clip = o.Float("clip", 5f, 0f, 1e6f);
        int steps = o.Int("steps", textPath is null ? 8000 : 2000, 1, MaxSteps);
        int every = o.Int("every", 1000, 1, int.MaxValue);
        int? hiddenOption = o.Has("hidden") ? o.Int("hidden", 64, 1, 4096) : null;
        string? optimizerOption = o.String("optimizer");
        if (optimizerOption is not null && !OptimizerNames.Any(n => n.Option == optimizerOption))
        {
            throw new UsageException($"--optimizer: unknown optimizer '{optimizerOption}' (adam, adamw, adagrad, momentum, sgd)");
        }

        bool resume = o.Has("resume"), force = o.Has("force");
        var outputs = new OutputFiles(OutputFiles.FullPath(o.String("checkpoint")), BuildCorpus(textPath, seed, out int[] stream, out ReberGrammar.Corpus? evaluation));
        Vocabulary vocabulary = outputs.Vocabulary;
        if (vocabulary.Count < 2)
        {
            throw new UsageException($"--text: '{textPath}' has only one distinct symbol, {Vocabulary.Describe(vocabulary[0])}; there is nothing to predict");
        }

        if (stream.Length < chunk + 1)
        {
            throw new UsageException($"--text: '{textPath}' has {stream.Length} symbols; --chunk {chunk} needs at least {chunk + 1}");
        }

        // With --resume, the checkpoint's header supplies --hidden and --optimizer when they are not given.
        string checkpoint = outputs.CheckpointPath;
        CheckpointInfo? saved = resume ? InputFiles.ReadCheckpointInfo(checkpoint, "--resume") : null;
        int hidden = hiddenOption ?? saved?.Shape.HiddenSize ?? 64;
        string optimizerName = optimizerOption ?? (saved is null ? "adam" : OptimizerOption(saved, checkpoint));
        Activation activation = saved?.Activation ?? Activation.Tanh;
        var shape = new RnnShape(vocabulary.Count, hidden, vocabulary.Count);
        CheckSize(shape, chunk, StateBlocks(optimizerName, lr), steps, textPath);
        List<float> losses = saved is null ? [] : CheckResume(saved, outputs, shape, optimizerName, steps, force, textPath);
        outputs.Check(mayReplace: resume || force);

        var theta = new RnnParameters(shape);
        theta.InitializeGlorot((ulong)seed);
        Optimizer optimizer = CreateOptimizer(optimizerName, shape, lr);
        var engine = new BpttEngine(shape, chunk, 1, activation);
        var trainer = new TruncatedBpttTrainer(engine, optimizer, chunk, chunk, clip);
        int start = 0;
        if (saved is not null)
        {
            try
            {
                Checkpoint.Load(checkpoint, theta, optimizer, saved.CarriedStateLength == 0 ? default : trainer.State);
            }
            catch (InvalidDataException e)
            {
                throw new InvalidDataException($"--resume: '{checkpoint}' is not a usable checkpoint: {e.Message}");
            }

            start = (int)saved.StepCount;
            output.WriteLine($"resumed from {checkpoint} at step {start}");
        }

        // The targets are the stream shifted by one: step t reads stream[t] and predicts stream[t + 1].
        int span = (stream.Length - 1) / chunk * chunk;
        var clock = Stopwatch.StartNew();
        double smoothed = double.NaN;

        void Update(int u)
        {
            int at = (int)((long)u * chunk % span);
            if (at == 0)
            {
                trainer.Reset(); // each pass over the corpus starts from h = 0
            }

            TrainingReport report = trainer.Train(theta, stream.AsSpan(at, chunk), stream.AsSpan(at + 1, chunk));
            if (report.Refused > 0)
            {
                throw new InvalidDataException($"step {u + 1}: the loss or gradient became non-finite; try a smaller --lr");
            }

            float perSymbol = (float)(report.Loss / chunk);
            losses.Add(perSymbol);
            smoothed = double.IsNaN(smoothed) ? perSymbol : (0.98 * smoothed) + (0.02 * perSymbol);
            if ((u + 1) % every == 0 || u + 1 == steps)
            {
                outputs.Save(theta, activation, optimizer, trainer.State, losses);
            }
        }

        string Status(int u)
        {
            double rate = (double)(u + 1 - start) * chunk / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
            double eta = (double)(steps - u - 1) * chunk / Math.Max(rate, 1e-9);
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

        try
        {
            LossPlot.Save(losses, outputs.PlotPath, textPath is null ? "embedded Reber grammar" : Path.GetFileName(textPath));
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or BadImageFormatException)
        {
            // ScottPlot draws with SkiaSharp's native library, which a minimal system may lack.
            throw new IOException($"--checkpoint: the loss plot '{outputs.PlotPath}' could not be drawn ({e.GetType().Name}: {e.Message}); the checkpoint and the loss log are saved", e);
        }

        output.WriteLine($"checkpoint: {checkpoint}");
        output.WriteLine($"loss curve: {outputs.PlotPath}");
        output.WriteLine(string.Create(Inv, $"final smoothed training loss: {smoothed:F4} nats/symbol over {losses.Count} steps"));
        if (evaluation is not null)
        {
            Score(new RnnModel(theta, activation), evaluation, output);
        }

        return 0;
    }

    /// <summary>
    /// An estimate of the memory a run needs, in bytes: θ, its gradient, the optimizer state and the checkpoint's bytes
    /// (each a parameter block), copies of θ for scoring, the engine's and trainer's workspaces, and the loss log.
    /// </summary>
    /// <param name="shape">The network sizes (already validated).</param>
    /// <param name="chunk">--chunk.</param>
    /// <param name="stateBlocks">The optimizer's θ-shaped state blocks.</param>
    /// <param name="steps">--steps.</param>
    /// <returns>The estimate.</returns>
    internal static long TrainingBytes(RnnShape shape, int chunk, int stateBlocks, int steps)
    {
        long i = shape.InputSize, h = shape.HiddenSize, o = shape.OutputSize, k = chunk;
        long p = (h * i) + (h * h) + h + (o * h) + o;
        long blocks = p * (5 + (2L * stateBlocks));
        long engine = (3 * h * h) + (2 * i * h) + (((2 * k) + 1) * h) + (k * o) + (2 * k * i) + Math.Max(Math.Max(i, o) * h, k * Math.Max(i, h));
        long trainer = (k * i) + (2 * k * h);
        return 4 * (blocks + engine + trainer + steps);
    }

    /// <summary>The training memory limit here: <see cref="MaxTrainingBytes"/>, or ¾ of the memory available to this process if less.</summary>
    /// <returns>Bytes.</returns>
    internal static long TrainingLimit()
    {
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        return available > 0 ? Math.Min(MaxTrainingBytes, available / 4 * 3) : MaxTrainingBytes;
    }

    private static Vocabulary BuildCorpus(string? textPath, int seed, out int[] stream, out ReberGrammar.Corpus? evaluation)
    {
        if (textPath is null)
        {
            stream = ReberGrammar.Generate(strings: 3000, (ulong)seed).Tokens;
            evaluation = ReberGrammar.Generate(strings: 600, (ulong)seed + 1000);
            return Vocabulary.Of(ReberGrammar.Symbols.EnumerateRunes());
        }

        TextCorpus corpus = InputFiles.ReadText(textPath);
        stream = corpus.Tokens;
        evaluation = null;
        return corpus.Vocabulary;
    }

    /// <summary>Refuses, before anything is allocated, a model the library cannot hold or this machine should not train.</summary>
    private static void CheckSize(RnnShape shape, int chunk, int stateBlocks, int steps, string? textPath)
    {
        string what = $"--hidden {shape.HiddenSize} with {(textPath is null ? "the grammar's" : "the text's")} {shape.InputSize} symbols";
        try
        {
            shape.Validate("--hidden");
        }
        catch (ArgumentOutOfRangeException)
        {
            throw new UsageException(string.Create(Inv, $"{what} needs more than {RnnShape.MaxParameterCount:N0} parameters, the library's limit; use a smaller --hidden or a text with fewer distinct symbols"));
        }

        long bytes = TrainingBytes(shape, chunk, stateBlocks, steps), limit = TrainingLimit();
        if (bytes > limit)
        {
            throw new UsageException(string.Create(Inv, $"{what} and --chunk {chunk} ({shape.ParameterCount:N0} parameters) needs about {InputFiles.Size(bytes)} to train; the limit here is {InputFiles.Size(limit)}; use a smaller --hidden or --chunk"));
        }
    }

    /// <summary>
    /// With <c>--resume</c>: the checkpoint matches the requested model, is behind <c>--steps</c>, was trained on the
    /// same vocabulary (unless <c>--force</c>), and its loss log holds its steps. Returns the logged losses.
    /// </summary>
    private static List<float> CheckResume(CheckpointInfo saved, OutputFiles outputs, RnnShape shape, string optimizerName, int steps, bool force, string? textPath)
    {
        string checkpoint = outputs.CheckpointPath;
        if (saved.Shape.InputSize != shape.InputSize || saved.Shape.OutputSize != shape.OutputSize)
        {
            throw new UsageException($"--resume: '{checkpoint}' is a model of {saved.Shape.InputSize} inputs and {saved.Shape.OutputSize} outputs; {(textPath is null ? "the grammar" : $"--text '{textPath}'")} has {shape.InputSize} symbols");
        }

        if (saved.Shape.HiddenSize != shape.HiddenSize)
        {
            throw new UsageException($"--resume: '{checkpoint}' has {saved.Shape.HiddenSize} hidden units; --hidden is {shape.HiddenSize}");
        }

        string typeName = OptimizerNames.First(n => n.Option == optimizerName).TypeName;
        if (saved.OptimizerName != typeName)
        {
            throw new UsageException($"--resume: '{checkpoint}' holds {(saved.OptimizerName.Length == 0 ? "no optimizer" : saved.OptimizerName)} state; --optimizer {optimizerName} needs {typeName} state");
        }

        if (saved.CarriedStateLength != 0 && saved.CarriedStateLength != shape.HiddenSize)
        {
            throw new InvalidDataException($"--resume: '{checkpoint}' carries {saved.CarriedStateLength} floats of hidden state; the model has {shape.HiddenSize} hidden units");
        }

        if (saved.StepCount >= steps)
        {
            throw new UsageException($"--resume: '{checkpoint}' is already at step {saved.StepCount}; --steps {steps} leaves nothing to train");
        }

        if (!force)
        {
            Vocabulary before;
            try
            {
                before = InputFiles.ReadVocabulary(outputs.VocabularyPath, "--resume");
            }
            catch (InvalidDataException e)
            {
                throw new InvalidDataException($"{e.Message}; pass --force to resume without checking the vocabulary");
            }

            if (!before.SameAs(outputs.Vocabulary))
            {
                throw new UsageException($"--resume: {(textPath is null ? "the grammar's" : $"--text '{textPath}' has a")} vocabulary different from '{outputs.VocabularyPath}' (symbol ids would change meaning); pass --force to resume anyway");
            }
        }

        return InputFiles.ReadLosses(outputs.LossLogPath, (int)saved.StepCount);
    }

    private static string OptimizerOption(CheckpointInfo saved, string checkpoint)
    {
        foreach ((string option, string typeName) in OptimizerNames)
        {
            if (saved.OptimizerName == typeName)
            {
                return option;
            }
        }

        throw new UsageException($"--resume: '{checkpoint}' holds {(saved.OptimizerName.Length == 0 ? "no optimizer" : saved.OptimizerName)} state, which bptt train cannot continue");
    }

    private static Optimizer CreateOptimizer(string name, RnnShape shape, float lr) => name switch
    {
        "adam" => new Adam(shape, lr),
        "adamw" => new AdamW(shape, lr),
        "adagrad" => new Adagrad(shape, lr),
        "momentum" => new Momentum(shape, lr, 0.9f, nesterov: true),
        _ => new GradientDescent(shape, lr),
    };

    /// <summary>The θ-shaped state blocks of the named optimizer, read from a one-parameter instance.</summary>
    private static int StateBlocks(string name, float lr) => CreateOptimizer(name, new RnnShape(1, 1, 1), lr).State.Count;

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
            legal += ((corpus.Legal[t] >> RnnModel.Greedy(probs)) & 1) != 0 ? 1 : 0;
        }

        double model_ = loss / n, optimal = corpus.OptimalNatsPerSymbol;
        output.WriteLine(string.Create(Inv, $"held-out loss: {model_:F4} nats/symbol; grammar optimum: {optimal:F4} nats/symbol; ratio {model_ / optimal:F2}x (gap {model_ - optimal:F4})"));
        output.WriteLine(string.Create(Inv, $"top prediction legal: {100.0 * legal / n:F2}% of {n} steps"));
    }
}
