using System.Diagnostics;
using System.Globalization;
using System.Text;
using Bptt.Fast.Kernels;
using Bptt.Fast.Serving;
using Bptt.Fast.Training;
using Spectre.Console;
using Spectre.Console.Cli;

namespace Bptt.Fast.Cli;

/// <summary>
/// <c>bptt train</c>. Every option, the text, the model's size, every output path and, with <c>--resume</c>, the
/// checkpoint, its vocabulary and its loss log are checked before anything is allocated for training or written.
/// </summary>
internal sealed class TrainCommand : Command<TrainSettings>
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

    /// <summary>The default peak learning rate for a text at <see cref="TextHidden"/> units with the cosine schedule; see <see cref="TextLearningRateFor"/>.</summary>
    public const float TextLearningRate = 0.002f;

    /// <summary>The largest default learning rate for a text (small models).</summary>
    public const float MaxTextLearningRate = 0.002f;

    /// <summary>The default learning rate for the grammar corpus.</summary>
    public const float GrammarLearningRate = 0.005f;

    /// <summary>The default hidden size for a text; the grammar keeps <see cref="GrammarHidden"/>.</summary>
    public const int TextHidden = 128;

    /// <summary>The default hidden size for the grammar corpus.</summary>
    public const int GrammarHidden = 64;

    /// <summary>
    /// The default learning-rate schedule, for a text and for the grammar. On the grammar at a constant 0.005 the last
    /// updates undid part of the run (held-out 0.430 nats/symbol at update 7,200, 0.522 at 8,000, 1.31× the optimum);
    /// decaying to a tenth it ends at 0.403, 1.01× the optimum.
    /// </summary>
    public const string DefaultSchedule = "cosine";

    /// <summary>The default held-out fraction of a text.</summary>
    public const float DefaultValidation = 0.1f;

    /// <summary>
    /// The default learning rate for a text: <see cref="TextLearningRate"/> × 128 / H with the cosine schedule, half of
    /// that at a constant rate, at most <see cref="MaxTextLearningRate"/> (cosine: 0.002 up to 128 units, 0.001 at 256,
    /// 0.0005 at 512). With one stream per update and Adam the step that still converges shrinks about as 1/H, and a
    /// decaying rate tolerates a twice larger start; measured on a 2.6 MB English text (README).
    /// </summary>
    /// <param name="hidden">H.</param>
    /// <param name="schedule">"cosine" or "constant".</param>
    /// <returns>The rate.</returns>
    public static float TextLearningRateFor(int hidden, string schedule) =>
        Math.Min(MaxTextLearningRate, TextLearningRate * TextHidden / hidden / (schedule == "cosine" ? 1 : 2));

    /// <summary>For tests: when positive, a run stops before this update as if killed (it saves nothing more).</summary>
    internal static AsyncLocal<int> KillBeforeUpdate { get; } = new();

    public override int Execute(CommandContext context, TrainSettings settings, CancellationToken cancellationToken) =>
        Run(settings, RunContext.Of(context));

    private static int Run(TrainSettings s, RunContext run)
    {
        TextWriter output = run.Output;
        string? textPath = s.Text;
        int chunk = s.Chunk;
        var outputs = new OutputFiles(Path.GetFullPath(s.Checkpoint), BuildCorpus(s, out Corpus corpus)) { Continues = s.Resume };
        Vocabulary vocabulary = outputs.Vocabulary;
        int[] stream = corpus.Train;
        int perPass = (stream.Length - 1) / chunk;
        long plannedSteps = s.Steps ?? (textPath is null ? 8000 : (long)(s.Epochs ?? 1) * perPass);
        if (plannedSteps > MaxSteps)
        {
            throw new UsageException(string.Create(Inv, $"--epochs {s.Epochs ?? 1} over {perPass:N0} updates per pass is {plannedSteps:N0} updates; at most {MaxSteps:N0} are trained; use --steps or a larger --chunk"));
        }

        int steps = (int)plannedSteps;
        int every = s.Every ?? Math.Max(1, (steps + 9) / 10);

        // With --resume, the checkpoint's header supplies --hidden and --optimizer when they are not given.
        string checkpoint = outputs.CheckpointPath;
        CheckpointInfo? saved = s.Resume ? InputFiles.ReadCheckpointInfo(checkpoint, "--resume") : null;
        int hidden = s.Hidden ?? saved?.Shape.HiddenSize ?? (textPath is null ? GrammarHidden : TextHidden);
        string schedule = s.Schedule ?? DefaultSchedule;
        float lr = s.Lr ?? (textPath is null ? GrammarLearningRate : TextLearningRateFor(hidden, schedule));
        string optimizerName = s.Optimizer ?? (saved is null ? "adam" : OptimizerOption(saved, checkpoint));
        Activation activation = saved?.Activation ?? Activation.Tanh;
        int layers = s.Layers ?? saved?.Shape.Layers ?? 1;
        float dropout = s.Dropout ?? saved?.Dropout ?? 0f;
        if (dropout > 0f && layers < 2)
        {
            throw new UsageException(string.Create(Inv, $"--dropout {dropout} applies between stacked layers; the model has {layers} layer (use --layers 2 or more, or --dropout 0)"));
        }

        var shape = new RnnShape(vocabulary.Count, hidden, vocabulary.Count) { Layers = layers };
        CheckSize(shape, chunk, StateBlocks(optimizerName, lr), steps, textPath);
        List<float> losses = saved is null ? [] : CheckResume(saved, outputs, shape, optimizerName, steps, s.Force, textPath, dropout);
        outputs.Check(mayReplace: s.Resume || s.Force);

        BpttEngine engine = CreateEngine(shape, chunk, activation, dropout); // before θ: it may still refuse the size
        var theta = new RnnParameters(shape);
        theta.InitializeGlorot((ulong)s.Seed);
        float RateAt(int u) => LearningRateAt(schedule, lr, u, steps);
        Optimizer optimizer = CreateOptimizer(optimizerName, shape, RateAt(saved is null ? 0 : (int)saved.StepCount));
        var trainer = new TruncatedBpttTrainer(engine, optimizer, chunk, chunk, s.Clip, dropoutSeed: (ulong)s.Seed);
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

        foreach (string line in corpus.Notes)
        {
            output.WriteLine(line);
        }

        output.WriteLine(string.Create(Inv, $"model: {(layers > 1 ? $"{layers} layers of " : "")}{hidden} hidden units{(dropout > 0f ? $" with dropout {dropout} between layers" : "")}, {shape.ParameterCount:N0} parameters; {optimizerName} at learning rate {lr}{(schedule == "cosine" ? " decaying to a tenth (cosine)" : "")}, chunks of {chunk}, clipping at {s.Clip}"));
        output.WriteLine(string.Create(Inv, $"plan: {steps:N0} updates of {chunk} {corpus.Unit}s = {(double)steps / Math.Max(perPass, 1):F2} passes over the training {(textPath is null ? "corpus" : "part")}; {(corpus.HeldOut.Length > 1 ? "held-out evaluation and" : "no held-out part (--validation 0);")} checkpoint every {every:N0} updates"));

        // The targets are the stream shifted by one: step t reads stream[t] and predicts stream[t + 1]. Each pass walks
        // the training part in order from its start, from h = 0, carrying the state from chunk to chunk.
        int span = perPass * chunk;
        var heldOut = new List<(int Step, double Loss)>();
        var clock = new Stopwatch(); // training time only: saves and evaluations are not counted in the rate
        var recent = new Queue<(double Seconds, long Tokens)>();
        double smoothed = losses.Count > 0 ? Smooth(losses) : double.NaN, evaluationSeconds = 0;
        int evaluations = 0;
        void Log(string line)
        {
            if (run.Interactive)
            {
                AnsiConsole.WriteLine(line);
            }
            else
            {
                output.WriteLine(line);
            }
        }

        void Update(int u)
        {
            clock.Start();
            optimizer.LearningRate = RateAt(u); // the schedule: the state and the step count carry over

            int at = (int)((long)u * chunk % span);
            if (at == 0)
            {
                trainer.Reset(); // each pass over the corpus starts from h = 0
            }

            TrainingReport report = trainer.Train(theta, stream.AsSpan(at, chunk), stream.AsSpan(at + 1, chunk));
            clock.Stop();
            if (report.Refused > 0)
            {
                throw new InvalidDataException($"step {u + 1}: the loss or gradient became non-finite; try a smaller --lr");
            }

            float perSymbol = (float)(report.Loss / chunk);
            losses.Add(perSymbol);
            smoothed = double.IsNaN(smoothed) ? perSymbol : (0.98 * smoothed) + (0.02 * perSymbol);
            if ((u + 1) % every == 0 || u + 1 == steps)
            {
                outputs.Save(theta, activation, optimizer, trainer.State, losses, dropout);
                if (corpus.HeldOut.Length > 1)
                {
                    long before = Stopwatch.GetTimestamp();
                    double loss = HeldOutLoss(theta, activation, corpus.HeldOut);
                    evaluationSeconds += Stopwatch.GetElapsedTime(before).TotalSeconds;
                    evaluations++;
                    heldOut.Add((u + 1, loss));
                    Log(string.Create(Inv, $"step {u + 1}/{steps}  held-out {loss:F4} nats/{corpus.Unit} ({loss / Math.Log(2):F3} bits/{corpus.Unit})  training {smoothed:F4}"));
                }
            }
        }

        string Status(int u, bool compact)
        {
            long tokens = (long)(u + 1 - start) * chunk;
            double now = clock.Elapsed.TotalSeconds;
            recent.Enqueue((now, tokens));
            // The rate over the last 10 s of training, or over the last few reports if they span less (a short run),
            // so that the JIT's warm-up at the start stops counting.
            while (recent.Count > 2 && (now - recent.Peek().Seconds > 10 || recent.Count > (compact ? 33 : 3)))
            {
                _ = recent.Dequeue();
            }

            (double then, long tokensThen) = recent.Peek();
            double rate = now - then > 1e-3 ? (tokens - tokensThen) / (now - then) : tokens / Math.Max(now, 1e-9);
            if (compact)
            {
                return string.Create(Inv, $"step {u + 1:N0}/{steps:N0}  loss {smoothed:F3}  {Rate(rate)} tok/s");
            }

            int evaluationsLeft = (steps / every) - ((u + 1) / every) + ((steps % every) != 0 ? 1 : 0);
            double eta = ((double)(steps - u - 1) * chunk / Math.Max(rate, 1e-9)) + (evaluations > 0 ? evaluationSeconds / evaluations * evaluationsLeft : 0);
            return string.Create(Inv, $"step {u + 1}/{steps}  loss {smoothed:F3} nats/{corpus.Unit}  {rate:F0} tokens/s  ETA {eta:F0}s");
        }

        if (run.Interactive)
        {
            AnsiConsole.Progress().AutoClear(false).HideCompleted(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn { Width = 20 }, new PercentageColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    ProgressTask task = ctx.AddTask(Markup.Escape(Status(start, compact: true)), maxValue: steps);
                    task.Value = start;
                    for (int u = start; u < steps && !Killed(u); u++)
                    {
                        Update(u);
                        task.Increment(1);
                        if ((u & 31) == 0 || u + 1 == steps)
                        {
                            task.Description = Markup.Escape(Status(u, compact: true));
                        }
                    }
                });
        }
        else
        {
            int report = Math.Max(1, steps / 20);
            for (int u = start; u < steps && !Killed(u); u++)
            {
                Update(u);
                if ((u + 1) % report == 0 || u + 1 == steps)
                {
                    output.WriteLine(Status(u, compact: false));
                }
            }
        }

        if (Killed(steps - 1))
        {
            return 0; // a test's simulated kill: nothing more is written
        }

        LossPlot.Save(losses, heldOut, outputs.PlotPath, textPath is null ? "embedded Reber grammar" : Path.GetFileName(textPath), corpus.Unit);
        output.WriteLine($"checkpoint: {checkpoint}");
        output.WriteLine($"loss curve: {outputs.PlotPath}");
        output.WriteLine(string.Create(Inv, $"final smoothed training loss: {smoothed:F4} nats/{corpus.Unit} over {losses.Count} steps"));
        if (textPath is not null)
        {
            double passes = (double)steps / perPass;
            long seen = Math.Min((long)steps, perPass) * chunk;
            output.WriteLine(passes >= 1
                ? string.Create(Inv, $"text seen: {passes:F2} passes over the training part ({seen:N0} of its {stream.Length:N0} chars in each)")
                : string.Create(Inv, $"text seen: {100.0 * seen / stream.Length:F1}% of the training part ({seen:N0} of {stream.Length:N0} chars, in order from its start)"));
            if (heldOut.Count > 0)
            {
                double loss = heldOut[^1].Loss;
                output.WriteLine(string.Create(Inv, $"held-out loss: {loss:F4} nats/char = {loss / Math.Log(2):F4} bits/char on the last {corpus.HeldOutShare * 100:0.#}% of the text ({corpus.HeldOut.Length:N0} chars)"));
            }
            else
            {
                output.WriteLine("held-out loss: none (--validation 0)");
            }
        }

        if (corpus.Grammar is not null)
        {
            Score(new RnnModel(theta, activation), corpus.Grammar, output);
        }

        return 0;
    }

    private static bool Killed(int u) => KillBeforeUpdate.Value > 0 && u >= KillBeforeUpdate.Value;

    /// <summary>The exponential moving average of the losses (weight 0.02 on each new one), as the progress shows it.</summary>
    private static double Smooth(List<float> losses)
    {
        double s = losses[0];
        foreach (float l in losses)
        {
            s = (0.98 * s) + (0.02 * l);
        }

        return s;
    }

    private static string Rate(double tokensPerSecond) => tokensPerSecond >= 10_000
        ? string.Create(Inv, $"{tokensPerSecond / 1000:F0}k")
        : string.Create(Inv, $"{tokensPerSecond:F0}");

    /// <summary>
    /// The mean cross-entropy, in nats, of predicting <c>tokens[t + 1]</c> from <c>tokens[..t]</c> over the held-out
    /// tokens. A long held-out part is cut into up to 64 segments of at least 4096 predictions, each run from h = 0, and
    /// stepped together (GEMMs over the segments); the few symbols at each segment's start see less context, which
    /// raises the loss slightly (by well under 1% here).
    /// </summary>
    /// <param name="theta">θ.</param>
    /// <param name="activation">f.</param>
    /// <param name="tokens">At least 2 held-out symbols.</param>
    /// <returns>Nats per predicted symbol.</returns>
    internal static double HeldOutLoss(RnnParameters theta, Activation activation, int[] tokens)
    {
        var model = new RnnModel(theta, activation);
        int predictions = tokens.Length - 1, o = model.Shape.OutputSize;
        int segments = Math.Clamp(predictions / 4096, 1, 64), length = predictions / segments;
        RnnStateBatch states = model.CreateStateBatch(segments);
        var inputs = new int[segments];
        var logits = new float[segments * o];
        double total = 0;
        for (int t = 0; t < length; t++)
        {
            for (int r = 0; r < segments; r++)
            {
                inputs[r] = tokens[(r * length) + t];
            }

            model.StepBatch(inputs, states, logits, StepOutput.Logits);
            for (int r = 0; r < segments; r++)
            {
                total += NegativeLogLikelihood(logits.AsSpan(r * o, o), tokens[(r * length) + t + 1]);
            }
        }

        // The predictions after the last full segment continue its state (every layer's) one stream at a time.
        RnnState state = model.CreateState();
        for (int l = 0; l < model.Shape.Layers; l++)
        {
            states.Layer(l, 0).Slice((segments - 1) * model.Shape.HiddenSize, model.Shape.HiddenSize).CopyTo(state.Layer(l, 0));
        }

        Span<float> one = logits.AsSpan(0, o);
        for (int t = segments * length; t < predictions; t++)
        {
            model.Step(tokens[t], state, one, StepOutput.Logits);
            total += NegativeLogLikelihood(one, tokens[t + 1]);
        }

        return total / predictions;
    }

    /// <summary>
    /// −ln softmax(v)[target] = ln Σ e^(v−max) − (v_target − max), from the logits, on the library's vectorised softmax (its
    /// float terms are summed in double by the caller). The row is overwritten with softmax(v) − onehot.
    /// </summary>
    private static double NegativeLogLikelihood(Span<float> logits, int target) => FastKernels.SoftmaxCrossEntropy(logits, target, logits);

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
        long i = shape.InputSize, h = shape.HiddenSize, o = shape.OutputSize, k = chunk, layers = shape.BlockCount;
        long p = shape.ParameterCount;
        long blocks = p * (5 + (2L * stateBlocks));
        long engine = (3 * h * h) + (2 * i * h) + (layers * ((4 * k) + 2) * h) + (k * o) + (2 * k * i) + Math.Max(Math.Max(i, o) * h, k * Math.Max(i, h));
        long trainer = (k * i) + (2 * k * h) + (3 * layers * h);
        return 4 * (blocks + engine + trainer + steps);
    }

    /// <summary>The training memory limit here: <see cref="MaxTrainingBytes"/>, or ¾ of the memory available to this process if less.</summary>
    /// <returns>Bytes.</returns>
    internal static long TrainingLimit()
    {
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        return available > 0 ? Math.Min(MaxTrainingBytes, available / 4 * 3) : MaxTrainingBytes;
    }

    /// <summary>What a run trains on and is scored on.</summary>
    /// <param name="Train">The training stream.</param>
    /// <param name="HeldOut">The held-out stream (empty when off).</param>
    /// <param name="HeldOutShare">The held-out fraction of a text.</param>
    /// <param name="Grammar">The grammar's held-out corpus with its exact probabilities, or null for a text.</param>
    /// <param name="Unit">"char" for a text, "symbol" for the grammar.</param>
    /// <param name="Notes">Lines to print before training.</param>
    private sealed record Corpus(int[] Train, int[] HeldOut, double HeldOutShare, ReberGrammar.Corpus? Grammar, string Unit, List<string> Notes);

    private static Vocabulary BuildCorpus(TrainSettings s, out Corpus corpus)
    {
        string? textPath = s.Text;
        int chunk = s.Chunk;
        if (textPath is null)
        {
            ReberGrammar.Corpus evaluation = ReberGrammar.Generate(strings: 600, (ulong)s.Seed + 1000);
            corpus = new Corpus(ReberGrammar.Generate(strings: 3000, (ulong)s.Seed).Tokens, evaluation.Tokens, 0, evaluation, "symbol", []);
            return Vocabulary.Of(ReberGrammar.Symbols.EnumerateRunes());
        }

        TextCorpus text = InputFiles.ReadText(textPath);
        Vocabulary vocabulary = text.Vocabulary;
        int[] tokens = text.Tokens;
        if (vocabulary.Count < 2)
        {
            throw new UsageException($"--text: '{textPath}' has only one distinct symbol, {Vocabulary.Describe(vocabulary[0])}; there is nothing to predict");
        }

        float validation = s.Validation ?? DefaultValidation;
        int held = (int)(tokens.Length * (double)validation);
        if (validation > 0 && held < 2)
        {
            throw new UsageException(string.Create(Inv, $"--text: '{textPath}' has {tokens.Length} symbols; --validation {validation} holds out fewer than 2 of them; use a larger --validation, or --validation 0 to hold out nothing"));
        }

        int training = tokens.Length - held;
        if (training < chunk + 1)
        {
            throw new UsageException(held == 0
                ? $"--text: '{textPath}' has {tokens.Length} symbols; --chunk {chunk} needs at least {chunk + 1}"
                : $"--text: '{textPath}' has {tokens.Length} symbols, {training} of them for training after holding out {held}; --chunk {chunk} needs at least {chunk + 1}");
        }

        var notes = new List<string>
        {
            string.Create(Inv, $"text: {Path.GetFileName(textPath)}, {tokens.Length:N0} chars, {vocabulary.Count} distinct; training on the first {training:N0}, holding out the last {held:N0} ({validation * 100:0.#}%)"),
        };
        if (UnusualSymbols(vocabulary, tokens) is { } unusual)
        {
            notes.Add(unusual);
        }

        corpus = new Corpus(tokens[..training], tokens[training..], validation, null, "char", notes);
        return vocabulary;
    }

    /// <summary>A note listing the control characters other than line breaks and tabs, with their counts, or null.</summary>
    private static string? UnusualSymbols(Vocabulary vocabulary, int[] tokens)
    {
        var counts = new long[vocabulary.Count];
        foreach (int t in tokens)
        {
            counts[t]++;
        }

        var unusual = new List<string>();
        for (int id = 0; id < vocabulary.Count; id++)
        {
            Rune r = vocabulary[id];
            if (Rune.IsControl(r) && r.Value is not ('\n' or '\r' or '\t'))
            {
                unusual.Add(string.Create(Inv, $"U+{r.Value:X4} ({counts[id]:N0}x)"));
            }
        }

        return unusual.Count == 0 ? null
            : $"note: the text holds {unusual.Count} kind{(unusual.Count == 1 ? "" : "s")} of control character, learned and sampled like any other symbol: {string.Join(", ", unusual.Take(12))}{(unusual.Count > 12 ? ", ..." : "")}";
    }

    /// <summary>
    /// The engine, under this machine's training limit rather than the library's default workspace budget; a workspace
    /// beyond it (the estimate of <see cref="TrainingBytes"/> leaves out, e.g., dropout's masks) is a usage error.
    /// </summary>
    private static BpttEngine CreateEngine(RnnShape shape, int chunk, Activation activation, float dropout)
    {
        try
        {
            return new BpttEngine(shape, chunk, 1, activation, maxWorkspaceBytes: TrainingLimit(), dropout: dropout);
        }
        catch (ArgumentOutOfRangeException e) when (e.ParamName == "maxSteps")
        {
            throw new UsageException(string.Create(Inv, $"--hidden {shape.HiddenSize}, --layers {shape.Layers} and --chunk {chunk} need a training workspace beyond this machine's limit of {InputFiles.Size(TrainingLimit())}; use a smaller --hidden, --layers or --chunk"));
        }
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
    private static List<float> CheckResume(CheckpointInfo saved, OutputFiles outputs, RnnShape shape, string optimizerName, int steps, bool force, string? textPath, float dropout)
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

        if (saved.Shape.Layers != shape.Layers || saved.Shape.Directions != 1)
        {
            throw new UsageException($"--resume: '{checkpoint}' has {saved.Shape.Layers} layer(s) and {saved.Shape.Directions} direction(s); --layers is {shape.Layers} (one direction)");
        }

        if (saved.Dropout != dropout)
        {
            throw new UsageException(string.Create(Inv, $"--resume: '{checkpoint}' was trained with dropout {saved.Dropout}; --dropout is {dropout}"));
        }

        string typeName = OptimizerNames.First(n => n.Option == optimizerName).TypeName;
        if (saved.OptimizerName != typeName)
        {
            throw new UsageException($"--resume: '{checkpoint}' holds {(saved.OptimizerName.Length == 0 ? "no optimizer" : saved.OptimizerName)} state; --optimizer {optimizerName} needs {typeName} state");
        }

        if (saved.CarriedStateLength != 0 && saved.CarriedStateLength != shape.Layers * shape.HiddenSize)
        {
            throw new InvalidDataException($"--resume: '{checkpoint}' carries {saved.CarriedStateLength} floats of hidden state; the model has {shape.Layers}×{shape.HiddenSize} hidden units");
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

    /// <summary>
    /// The learning rate of update <paramref name="u"/> (0-based) of <paramref name="steps"/>: constant, or a cosine from
    /// <paramref name="lr"/> down to a tenth of it at the end, changed in 100 steps (every 1% of the run). A function of
    /// the update and the run's length only, so a resumed run follows the same schedule.
    /// </summary>
    /// <param name="schedule">"constant" or "cosine".</param>
    /// <param name="lr">--lr.</param>
    /// <param name="u">The update.</param>
    /// <param name="steps">The run's length.</param>
    /// <returns>The rate.</returns>
    internal static float LearningRateAt(string schedule, float lr, int u, int steps)
    {
        if (schedule != "cosine")
        {
            return lr;
        }

        double piece = Math.Floor(100.0 * u / steps) / 100;
        return (float)(lr * (0.1 + (0.45 * (1 + Math.Cos(Math.PI * piece)))));
    }

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
