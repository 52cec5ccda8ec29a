namespace Bptt.Fast.Bench;

/// <summary>The fixed training workloads of docs/design.md, section 8 (dense input unless Tokens).</summary>
public sealed record Workload(string Name, int T, int B, int I, int H, int O, bool Tokens = false, int Layers = 1, int Directions = 1) : IComparable<Workload>, IComparable
{
    public static readonly Workload S = new("S", 64, 1, 64, 128, 64);
    public static readonly Workload STokens = new("S-tokens", 64, 1, 64, 128, 64, Tokens: true);
    public static readonly Workload M = new("M", 64, 1, 128, 512, 128);
    public static readonly Workload BM = new("BM", 32, 16, 128, 512, 128);
    public static readonly Workload L = new("L", 32, 64, 256, 1024, 256);

    /// <summary>S with two stacked layers (issue #13).</summary>
    public static readonly Workload S2 = new("S-2L", 64, 1, 64, 128, 64, Layers: 2);

    /// <summary>M with two stacked layers.</summary>
    public static readonly Workload M2 = new("M-2L", 64, 1, 128, 512, 128, Layers: 2);

    /// <summary>BM with two stacked bidirectional layers.</summary>
    public static readonly Workload BM2Bi = new("BM-2L-bi", 32, 16, 128, 512, 128, Layers: 2, Directions: 2);

    public static IEnumerable<Workload> All => [S, STokens, S2, M, M2, BM, BM2Bi, L];

    /// <summary>Training FLOPs, counted as 3 × forward with forward = 2·T·B·(Σ over layers and directions of (Iₗ·H + H·H) + D·H·O)
    /// (docs/design.md, section 4); Iₗ = I for the first layer and D·H above it.</summary>
    public double TrainingFlops
    {
        get
        {
            double perRow = (double)Directions * H * O;
            for (int l = 0; l < Layers; l++)
            {
                perRow += Directions * (((double)(l == 0 ? I : Directions * H) * H) + ((double)H * H));
            }

            return 3.0 * 2 * T * B * perRow;
        }
    }

    public override string ToString() => Name;

    /// <summary>The shape of the network this workload trains.</summary>
    public RnnShape Shape => new(I, H, O) { Layers = Layers, Directions = Directions };

    /// <summary>Deterministic inputs (dense, or tokens for a token workload) and targets, time-major.</summary>
    public (float[] Inputs, int[] Tokens, int[] Targets) Data()
    {
        var random = new Random(1);
        float[] inputs = Tokens ? [] : Enumerable.Range(0, T * B * I).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        int[] tokens = Tokens ? Enumerable.Range(0, T * B).Select(_ => random.Next(I)).ToArray() : [];
        int[] targets = Enumerable.Range(0, T * B).Select(_ => random.Next(O)).ToArray();
        return (inputs, tokens, targets);
    }

    /// <summary>Tables list the workloads in the order of <see cref="All"/>, small to large.</summary>
    public int CompareTo(Workload? other) => Index(this).CompareTo(other is null ? -1 : Index(other));

    public int CompareTo(object? obj) => CompareTo(obj as Workload);

    private static int Index(Workload w) => All.ToList().FindIndex(x => x.Name == w.Name);
}
