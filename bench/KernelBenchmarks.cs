using BenchmarkDotNet.Attributes;
using Bptt.Fast.Kernels;
using Bptt.Fast.Reference;

namespace Bptt.Fast.Bench;

/// <summary>GEMM C = A·B (β = 0) on cubes and on the RNN shapes T·B × H × H of the workloads.</summary>
public class Gemm : IHasWork
{
    private float[] _a = null!, _b = null!, _c = null!, _packA = null!, _packB = null!;
    private int _m, _n, _k;

    [ParamsSource(nameof(Shapes))]
    public string Shape { get; set; } = "512³";

    public virtual IEnumerable<string> Shapes => ["256³", "512³", "1024³", "S 64×128×128", "BM 512×512×512", "L 2048×1024×1024"];

    [ParamsSource(nameof(PathValues))]
    public PathParam Path { get; set; } = Paths.Default;

    public static IEnumerable<PathParam> PathValues => Paths.All;

    public double Flops
    {
        get
        {
            (int m, int n, int k) = Dims;
            return 2.0 * m * n * k;
        }
    }

    public string Group => Shape;

    public bool IsReference => Path.IsReference;

    private (int M, int N, int K) Dims
    {
        get
        {
            string d = Shape.Contains(' ', StringComparison.Ordinal) ? Shape[(Shape.IndexOf(' ', StringComparison.Ordinal) + 1)..] : Shape.TrimEnd('³');
            int[] v = d.Split('×').Select(int.Parse).ToArray();
            return v.Length == 1 ? (v[0], v[0], v[0]) : (v[0], v[1], v[2]);
        }
    }

    [GlobalSetup]
    public void Setup()
    {
        (int m, int n, int k) = Dims;
        (_m, _n, _k) = (m, n, k);
        var random = new Random(3);
        _a = Enumerable.Range(0, m * k).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        _b = Enumerable.Range(0, k * n).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        _c = new float[m * n];
        _packA = new float[Bptt.Fast.Kernels.Bodies.GemmBlocking.PackALength];
        _packB = IsReference ? [] : new float[Path.Kernels.PackBBlockLength(n)];
        Paths.WarmUp(Multiply);
    }

    [Benchmark]
    public void Multiply()
    {
        (int m, int n, int k) = (_m, _n, _k);
        if (IsReference)
        {
            ReferenceKernels.Gemm<float>(false, false, m, n, k, _a, k, _b, n, 0f, _c, n);
        }
        else
        {
            Path.Kernels.Gemm(false, false, m, n, k, _a, k, _b, n, 0f, _c, n, _packA, _packB);
        }
    }
}

/// <summary>The matrix-vector kernels at the hidden sizes of the workloads: Gemv (y = A x), GemvTransposed (y = Aᵀ x) and the fused step (1)–(2).</summary>
public class MatVec : IHasWork
{
    private float[] _a = null!, _x = null!, _u = null!, _y = null!;

    [Params("Gemv", "GemvTransposed", "RnnStep")]
    public string Kernel { get; set; } = "Gemv";

    [Params(128, 256, 512, 1024)]
    public int H { get; set; } = 128;

    [ParamsSource(nameof(PathValues))]
    public PathParam Path { get; set; } = Paths.Default;

    public static IEnumerable<PathParam> PathValues => Paths.All;

    public double Flops => 2.0 * H * H;

    public string Group => Kernel + H;

    public bool IsReference => Path.IsReference;

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(4);
        _a = Enumerable.Range(0, H * H).Select(_ => ((float)random.NextDouble() - 0.5f) / 8).ToArray();
        _x = Enumerable.Range(0, H).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        _u = Enumerable.Range(0, H).Select(_ => (float)random.NextDouble() - 0.5f).ToArray();
        _y = new float[H];
        Paths.WarmUp(Run);
    }

    [Benchmark]
    public void Run()
    {
        if (IsReference)
        {
            switch (Kernel)
            {
                case "Gemv": ReferenceKernels.Gemv<float>(_a, H, H, _x, _y); break;
                case "GemvTransposed": ReferenceKernels.GemvTransposed<float>(_a, H, H, _x, _y); break;
                default: ReferenceKernels.RnnStep<float>(_a, _x, _u, _y, Activation.Tanh); break;
            }

            return;
        }

        Bptt.Fast.Kernels.KernelSet k = Path.Kernels;
        switch (Kernel)
        {
            case "Gemv": CheckedKernels.Gemv(k, _a, H, H, _x, _y); break;
            case "GemvTransposed": CheckedKernels.GemvTransposed(k, _a, H, H, _x, _y); break;
            default: CheckedKernels.RnnStep(k, _a, _x, _u, _y); break;
        }
    }
}

/// <summary>Softmax with cross-entropy and error (4), (6), (7) over O logits, and tanh over n values. Work counted as one flop per element.</summary>
public class Elementwise : IHasWork
{
    private float[] _x = null!, _y = null!;

    [Params("SoftmaxCrossEntropy", "Tanh")]
    public string Kernel { get; set; } = "Tanh";

    [Params(64, 256, 1024)]
    public int N { get; set; } = 256;

    [ParamsSource(nameof(PathValues))]
    public PathParam Path { get; set; } = Paths.Default;

    public static IEnumerable<PathParam> PathValues => Paths.All;

    public double Flops => N;

    public string Group => Kernel + N;

    public bool IsReference => Path.IsReference;

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(5);
        _x = Enumerable.Range(0, N).Select(_ => ((float)random.NextDouble() - 0.5f) * 8).ToArray();
        _y = new float[N];
        Paths.WarmUp(() => Run());
    }

    [Benchmark]
    public float Run()
    {
        if (IsReference)
        {
            if (Kernel == "Tanh")
            {
                ReferenceKernels.Activate<float>(Activation.Tanh, _x, _y);
                return _y[0];
            }

            return ReferenceKernels.SoftmaxCrossEntropy<float>(_x, 1, _y);
        }

        Bptt.Fast.Kernels.KernelSet k = Path.Kernels;
        if (Kernel == "Tanh")
        {
            CheckedKernels.Activate(k, _x, _y);
            return _y[0];
        }

        return CheckedKernels.SoftmaxCrossEntropy(k, _x, 1, _y);
    }
}
