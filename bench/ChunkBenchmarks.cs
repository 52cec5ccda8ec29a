using BenchmarkDotNet.Attributes;
using Bptt.Fast.Training;

namespace Bptt.Fast.Bench;

/// <summary>
/// Truncated BPTT as a character model trains: token input (vocabulary 112), H = 128, Adam with clipping at 5, one
/// <see cref="TruncatedBpttTrainer.Train(RnnParameters, ReadOnlySpan{int}, ReadOnlySpan{int})"/> call of one chunk per
/// invocation, walking a fixed random stream. Short chunks pay the fixed costs of a step (validation, packing, the
/// optimizer and the norm) more often; compare GFLOP/s (proportional to tokens/s) between Chunk = 20 and Chunk = 100.
/// </summary>
public class TruncatedChunk : IHasWork
{
    private const int Vocabulary = 112, Hidden = 128, StreamLength = 1 << 16;
    private TruncatedBpttTrainer _trainer = null!;
    private RnnParameters _theta = null!;
    private int[] _stream = null!, _targets = null!;
    private int _at;

    [Params(20, 100)]
    public int Chunk { get; set; } = 20;

    public double Flops => new Workload("chunk", Chunk, 1, Vocabulary, Hidden, Vocabulary).TrainingFlops;

    public string Group => "chunk " + Chunk;

    public bool IsReference => false;

    [GlobalSetup]
    public void Setup()
    {
        var shape = new RnnShape(Vocabulary, Hidden, Vocabulary);
        _theta = new RnnParameters(shape);
        _theta.InitializeGlorot(3);
        _trainer = new TruncatedBpttTrainer(new BpttEngine(shape, Chunk), new Adam(shape, 1e-3f), Chunk, Chunk, clipNorm: 5f);
        var random = new Random(4);
        _stream = Enumerable.Range(0, StreamLength + 1).Select(_ => random.Next(Vocabulary)).ToArray();
        _targets = _stream[1..];
        Paths.WarmUp(() => Step());
    }

    [Benchmark]
    public double Step()
    {
        if (_at + Chunk > StreamLength)
        {
            _at = 0;
        }

        TrainingReport report = _trainer.Train(_theta, _stream.AsSpan(_at, Chunk), _targets.AsSpan(_at, Chunk));
        _at += Chunk;
        return report.Loss;
    }
}
