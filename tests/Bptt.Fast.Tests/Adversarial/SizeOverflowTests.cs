using System.Numerics;
using Bptt.Fast.Internals;
using Bptt.Fast.Kernels;
using Bptt.Fast.Model;
using Bptt.Fast.Kernels.Bodies;
using Bptt.Fast.Reference;
using Bptt.Fast.Serving;
using FsCheck.Fluent;
using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>Sizes whose products wrap a 32-bit int: refused with the parameter named, never turned into a short buffer.</summary>
public sealed class SizeOverflowTests
{
    /// <summary>Sizes at and around every power-of-two and square-root boundary where an int product wraps.</summary>
    private static readonly int[] EdgeSizes =
        [1, 2, 46340, 46341, 65535, 65536, 65537, (1 << 15) - 1, 1 << 15, (1 << 30) - 1, 1 << 30, (1 << 30) + 1, int.MaxValue / 2, int.MaxValue - 1, int.MaxValue];

    [Fact]
    public void LargestShapeIsRefusedNotWrappedIntoOneFloat()
    {
        var shape = new RnnShape(int.MaxValue, int.MaxValue, int.MaxValue);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => shape.Validate("shape"));
        Assert.Equal("shape", e.ParamName);
        Assert.Contains("InputSize = 2147483647", e.Message, StringComparison.Ordinal);
        Assert.Equal("shape", Assert.Throws<ArgumentOutOfRangeException>(() => new RnnParameters(shape)).ParamName);
        Assert.Equal("shape", Assert.Throws<ArgumentOutOfRangeException>(() => new BpttEngine(shape, 1)).ParamName);
        Assert.Throws<OverflowException>(() => shape.ParameterCount);
    }

    [Fact]
    public void ShapeValidationAgreesWithExactArithmeticAtEveryEdge() =>
        Generators.Check(
            from i in Gen.Elements(EdgeSizes)
            from h in Gen.Elements(EdgeSizes)
            from o in Gen.Elements(EdgeSizes)
            select new RnnShape(i, h, o),
            shape =>
            {
                BigInteger count = ((BigInteger)shape.HiddenSize * shape.InputSize) + ((BigInteger)shape.HiddenSize * shape.HiddenSize)
                    + shape.HiddenSize + ((BigInteger)shape.OutputSize * shape.HiddenSize) + shape.OutputSize;
                bool fits = count <= RnnShape.MaxParameterCount;
                Exception? error = Record.Exception(() => shape.Validate("s"));
                Assert.Equal(fits, error is null);
                if (error is not null)
                {
                    Assert.Equal("s", Assert.IsType<ArgumentOutOfRangeException>(error).ParamName);
                }
                else
                {
                    Assert.Equal(count, (BigInteger)shape.ParameterCount);
                }
            },
            count: 400);

    [Fact]
    public void WorkspaceThatWouldOverflowThePackingBufferIsRefusedBeforeAllocating()
    {
        // The attacker's case: a valid tiny shape with maxSteps 2^20 and maxBatch 128 once wrapped the packed-panel size.
        var shape = new RnnShape(1, 1, 2);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new BpttEngine(shape, 1 << 20, 128));
        Assert.Equal("maxSteps", e.ParamName);
        Assert.Contains("maxWorkspaceBytes", e.Message, StringComparison.Ordinal);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "the refused engine allocated its workspace");
        Assert.Equal("maxSteps", Assert.Throws<ArgumentOutOfRangeException>(() => new ParallelBpttEngine(shape, 1 << 20, 128, workers: 2)).ParamName);
        Assert.Equal("maxSteps", Assert.Throws<ArgumentOutOfRangeException>(() => new BpttEngine(shape, 1 << 20, 128, path: KernelPath.Reference)).ParamName);
        Assert.Equal("maxSteps", Assert.Throws<ArgumentOutOfRangeException>(() => new BpttEngine(new RnnShape(8, 8, 8), 1 << 20, 1 << 16, maxWorkspaceBytes: long.MaxValue)).ParamName);
    }

    [Fact]
    public void WorkspaceLimitIsConfigurable()
    {
        var shape = new RnnShape(3, 5, 4);
        Assert.Equal("maxSteps", Assert.Throws<ArgumentOutOfRangeException>(() => new BpttEngine(shape, 64, 4, maxWorkspaceBytes: 4096)).ParamName);
        Assert.Equal("maxWorkspaceBytes", Assert.Throws<ArgumentOutOfRangeException>(() => new BpttEngine(shape, 64, 4, maxWorkspaceBytes: 0)).ParamName);
        Assert.Equal(64, new BpttEngine(shape, 64, 4, maxWorkspaceBytes: 1 << 20).MaxSteps);
    }

    [Theory]
    [InlineData(KernelPath.Fast)]
    [InlineData(KernelPath.Reference)]
    public void LongTinySequenceThatOnceOverranTheHeapMatchesTheDoubleOracle(KernelPath path)
    {
        // T·B = 4096·16 rows of a (1, 1, 2) network: the weight-gradient GEMMs sum over 65536 rows, far past one KC block.
        var spec = new ProblemSpec(new RnnShape(1, 1, 2), 4096, 16, Activation.Tanh, Tokens: false, WithH0: true, Ragged: true, Seed: 7);
        var p = new Problem<float>(spec);
        var engine = new BpttEngine(spec.Shape, spec.Steps, spec.Batch, path: path);
        var theta = new RnnParameters(spec.Shape);
        p.Theta.CopyTo(theta.Values);
        var gradients = new RnnParameters(spec.Shape);
        float loss = engine.ComputeGradients(theta, p.Batch(), gradients);

        Problem<double> pd = p.As<double>();
        var oracle = new ReferenceBptt<double>(spec.Shape, spec.Steps, spec.Batch, Activation.Tanh);
        var expected = new double[spec.Shape.ParameterCount];
        double expectedLoss = oracle.ComputeGradients(pd.Theta, pd.Batch(), expected);
        Assert.True(Math.Abs(loss - expectedLoss) <= 1e-4 * Math.Abs(expectedLoss), $"loss {loss} vs {expectedLoss}");
        Assert.True(Tolerance.MaxRelative(gradients.Values, expected) < 1e-3, "gradient");
    }

    public static TheoryData<string, bool> WrappingKernelCalls()
    {
        var data = new TheoryData<string, bool>();
        foreach (string kernel in new[] { "Gemv", "GemvTransposed", "RnnStep", "RnnStepBackward", "Gemm", "Ger", "ColumnSums" })
        {
            data.Add(kernel, false);
            data.Add(kernel, true);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(WrappingKernelCalls))]
    public void PublicKernelsRefuseSizesWhoseProductWraps(string kernel, bool reference)
    {
        // m = n = 65536: m·n = 2^32 wraps to 0 in int, which once matched an empty span. The scalar reference kernels
        // once computed these products in int too: their loops then threw IndexOutOfRangeException, Ger after writing.
        const int N = 65536;
        float[] x = new float[N], y = new float[N], sentinel = [1f, 2f, 3f];
        x.AsSpan().Fill(1f); // so that a kernel that ran anyway would change y (A·0 = 0 and tanh(0) = 0 would not)
        y.AsSpan().Fill(3f);
        float[] yBefore = (float[])y.Clone();
        ArgumentException e = (kernel, reference) switch
        {
            ("Gemv", false) => Assert.Throws<ArgumentException>(() => FastKernels.Gemv([], N, N, x, y)),
            ("Gemv", true) => Assert.Throws<ArgumentException>(() => ReferenceKernels.Gemv<float>([], N, N, x, y)),
            ("GemvTransposed", false) => Assert.Throws<ArgumentException>(() => FastKernels.GemvTransposed([], N, N, x, y)),
            ("GemvTransposed", true) => Assert.Throws<ArgumentException>(() => ReferenceKernels.GemvTransposed<float>([], N, N, x, y)),
            ("RnnStep", false) => Assert.Throws<ArgumentException>(() => FastKernels.RnnStep([], x, x, y, Activation.Tanh)),
            ("RnnStep", true) => Assert.Throws<ArgumentException>(() => ReferenceKernels.RnnStep<float>([], x, x, y, Activation.Tanh)),
            ("RnnStepBackward", false) => Assert.Throws<ArgumentException>(() => FastKernels.RnnStepBackward([], x, x, x, y, Activation.Tanh)),
            ("RnnStepBackward", true) => Assert.Throws<ArgumentException>(() => ReferenceKernels.RnnStepBackward<float>([], x, x, x, y, Activation.Tanh)),
            ("Gemm", false) => Assert.Throws<ArgumentException>(() => FastKernels.Gemm(false, false, N, N, N, [], N, [], N, 0f, sentinel, N)),
            ("Gemm", true) => Assert.Throws<ArgumentException>(() => ReferenceKernels.Gemm<float>(false, false, N, N, N, [], N, [], N, 0f, sentinel, N)),
            ("Ger", false) => Assert.Throws<ArgumentException>(() => FastKernels.Ger(1f, x, y, sentinel)),
            ("Ger", true) => Assert.Throws<ArgumentException>(() => ReferenceKernels.Ger(1f, x, y, sentinel)),
            (_, false) => Assert.Throws<ArgumentException>(() => FastKernels.ColumnSums([], N, N, y, accumulate: false)),
            (_, true) => Assert.Throws<ArgumentException>(() => ReferenceKernels.ColumnSums<float>([], N, N, y, accumulate: false)),
        };
        string expectedName = kernel switch
        {
            "RnnStep" => "whhTransposed",
            "RnnStepBackward" => "whh",
            "Ger" or "ColumnSums" or "Gemv" or "GemvTransposed" or "Gemm" => "a",
            _ => "?",
        };
        Assert.Equal(expectedName, e.ParamName);
        Assert.Contains("4294967296", e.Message.Replace(",", "", StringComparison.Ordinal), StringComparison.Ordinal);
        Assert.Equal(yBefore, y);
        Assert.Equal([1f, 2f, 3f], sentinel);
    }

    [Fact]
    public void GerWhoseProductWrapsToTheMatrixLengthIsRefusedBeforeWriting()
    {
        // 65536 × 65537 = 2^32 + 65536 wraps to 65536 in int: a matrix of 65536 once passed the check, and the scalar
        // reference then updated its first row before running off the end.
        float[] x = new float[65536], y = new float[65537], a = new float[65536];
        x.AsSpan().Fill(1f);
        y.AsSpan().Fill(1f);
        foreach (Action call in new Action[] { () => FastKernels.Ger(1f, x, y, a), () => ReferenceKernels.Ger(1f, x, y, a) })
        {
            var e = Assert.Throws<ArgumentException>(call);
            Assert.Equal("a", e.ParamName);
            Assert.Contains("4295032832", e.Message.Replace(",", "", StringComparison.Ordinal), StringComparison.Ordinal);
            Assert.All(a, v => Assert.Equal(0f, v));
        }
    }

    [Fact]
    public void BatchStateLengthsAreCheckedIn64Bits()
    {
        // L·D·B·H = 64·2 × 65536 × 513 = 4,303,355,904 wrapped to 8,388,608 in int. An engine given a large enough
        // maxWorkspaceBytes accepts this shape and batch size, and the parallel engine then scattered each block's final
        // state through a pointer past the end of a FinalState that short. The validation every engine runs must refuse it.
        var shape = new RnnShape(1, 513, 1) { Layers = 64, Directions = 2 };
        shape.Validate("shape");
        int[] ids = new int[65536];
        float[] wrapped = new float[8_388_608];
        foreach (string name in new[] { "batch.FinalState", "batch.InitialStateGradient", "batch.InitialState" })
        {
            var e = Assert.Throws<ArgumentException>(() =>
            {
                var batch = new SequenceBatch<float>(1, 65536, ids, ids);
                batch = name switch
                {
                    "batch.FinalState" => batch with { FinalState = wrapped },
                    "batch.InitialStateGradient" => batch with { InitialStateGradient = wrapped },
                    _ => batch with { InitialState = wrapped },
                };
                BatchValidation.Validate(in batch, shape, maxSteps: 1, maxBatch: 65536);
            });
            Assert.Equal(name, e.ParamName);
            Assert.Contains("4303355904", e.Message.Replace(",", "", StringComparison.Ordinal), StringComparison.Ordinal);
        }
    }

    [Fact]
    public void ParallelWorkerBuffersThatCannotBeArraysAreRefusedNamingMaxSteps()
    {
        // One worker's [T·B, D·H] states: 2^20 × 2048 = 2^31 floats, one past the largest array, while the engine's own
        // [T·B, H] plan fits; the constructor once threw OverflowException from a wrapped int length.
        var shape = new RnnShape(1, 1024, 1) { Directions = 2 };
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new ParallelBpttEngine(shape, 1 << 20, 1, workers: 1, maxWorkspaceBytes: long.MaxValue));
        Assert.Equal("maxSteps", e.ParamName);
    }

    [Fact]
    public void StepBatchWhoseOutputSizeWrapsIsRefusedBeforeTheStatesChange()
    {
        // B = 65536 streams of O = 65537 outputs: B·O = 2^32 + 65536 wrapped to 65536 in int, so an output of 65536
        // floats passed the length check, the recurrence overwrote the states, and the head's slice then threw
        // ArgumentOutOfRangeException: a refused call that had changed the states.
        var theta = new RnnParameters(new RnnShape(1, 1, 65537));
        theta.InitializeGlorot(5);
        theta.Whh[0] = 0.5f;
        var model = new RnnModel(theta, Activation.Tanh);
        RnnStateBatch states = model.CreateStateBatch(65536);
        states.Hidden.Fill(0.25f);
        var e = Assert.Throws<ArgumentException>(() => model.StepBatch(new int[65536], states, new float[65536]));
        Assert.Equal("outputs", e.ParamName);
        Assert.Contains("4295032832", e.Message.Replace(",", "", StringComparison.Ordinal), StringComparison.Ordinal);
        foreach (float v in states.Hidden)
        {
            Assert.Equal(0.25f, v);
        }
    }

    [Fact]
    public void PublicGemmWithAManyRowReductionAndWideOutputMatchesTheReference()
    {
        // k = 70000 rows (many KC blocks) and n = 4100 columns (past one NC block), with tiny m so the test stays quick.
        var random = new SplitMix64(11);
        foreach ((int m, int n, int k) in new[] { (3, 2, 70000), (2, Bptt.Fast.Kernels.Bodies.GemmBlocking.NC + 4, 5) })
        {
            float[] a = Enumerable.Range(0, m * k).Select(_ => (2 * random.NextSingle()) - 1).ToArray();
            float[] b = Enumerable.Range(0, k * n).Select(_ => (2 * random.NextSingle()) - 1).ToArray();
            float[] c = new float[m * n];
            FastKernels.Gemm(transposeA: false, transposeB: false, m, n, k, a, k, b, n, 0f, c, n);
            for (int i = 0; i < m; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    double expected = 0, magnitude = 0;
                    for (int p = 0; p < k; p++)
                    {
                        expected += (double)a[(i * k) + p] * b[(p * n) + j];
                        magnitude += Math.Abs((double)a[(i * k) + p] * b[(p * n) + j]);
                    }

                    Assert.True(Math.Abs(c[(i * n) + j] - expected) <= (1e-6 * magnitude) + 1e-6, $"({m},{n},{k}) C[{i},{j}] = {c[(i * n) + j]}, expected {expected}");
                }
            }
        }
    }

    [Fact]
    public void BoundsLayerCatchesAShortPackingBufferBeforeWritingPastIt()
    {
        // The internal GEMM given a B-packing buffer one block too short: the bounds layer throws before packing.
        KernelIsa isa = KernelInfo.Isa;
        const int M = 7, N = 33, K = 300;
        float[] a = new float[M * K], b = new float[K * N], c = new float[M * N];
        int need = (int)KernelSets.For(isa, Activation.Tanh).PackBBlockLength(N);
        float[] packB = new float[need + 64];
        packB.AsSpan().Fill(-1f);
        Span<float> tooShort = packB.AsSpan(0, need - 1);
        float[] packA = new float[Bptt.Fast.Kernels.Bodies.GemmBlocking.PackALength];
        var e = Assert.Throws<InvalidOperationException>(() => KernelSets.For(isa, Activation.Tanh).Gemm(false, false, M, N, K, a, K, b, N, 0f, c, N, packA, packB.AsSpan(0, need - 1)));
        Assert.Contains("packB.Length", e.Message, StringComparison.Ordinal);
        Assert.All(packB, v => Assert.Equal(-1f, v));
        Assert.True(tooShort.Length < need);

        // The same for the whole-B packing and the multiply over it.
        float[] packed = new float[(int)KernelSets.For(isa, Activation.Tanh).PackedBLength(K, N) - 1];
        Assert.Throws<InvalidOperationException>(() => KernelSets.For(isa, Activation.Tanh).PackB(false, K, N, b, N, packed));
        Assert.Throws<InvalidOperationException>(() => KernelSets.For(isa, Activation.Tanh).Multiply(false, M, N, K, a, K, packed, 0f, c, N, packA));
        Assert.Throws<InvalidOperationException>(() => KernelSets.For(isa, Activation.Tanh).Multiply(false, M, N, K, a, K, new float[(int)KernelSets.For(isa, Activation.Tanh).PackedBLength(K, N)], 0f, c, N, packA.AsSpan(1)));
    }

    [Fact]
    public void AProductWithNoColumnsTouchesNeitherANorThePackingBuffer()
    {
        // n = 0 with m, k > 0: the bounds check skips A and packA (C is empty), so the macro-kernel must not pack A either;
        // it once packed 65 rows (66 floats) into a one-float buffer on 256-bit ISAs, and six floats on AVX-512.
        foreach (KernelIsa isa in KernelCases.SupportedIsas())
        {
            KernelSet k = KernelSets.For(isa, Activation.Tanh);
            foreach (int m in new[] { 1, 5, 65 })
            {
                float[] packA = [-7f], a = new float[2];
                k.Multiply(false, m, 0, 1, a.AsSpan(0, 0), 1, [], 0f, [], 0, packA);
                k.MultiplyUnpackedB(false, m, 0, 1, a.AsSpan(0, 0), 1, [], 1, 0f, [], 0, packA);
                Assert.Equal(-7f, packA[0]);
            }
        }
    }

    [Fact]
    public void TokenGatherAndScatterCheckEveryColumnAndOffsetBeforeTouchingMemory()
    {
        // The short-call gather and scatter of (1) and (14) read and write through unchecked references: every listed
        // column must lie in [0, cols) and every offset leave room for a whole row, or nothing is read or written.
        const int Rows = 5, Cols = 7;
        float[] a = new float[Rows * Cols];
        for (int k = 0; k < a.Length; k++)
        {
            a[k] = k + 1;
        }

        int[] columns = [3, 0, 6, 3], offsets = [0, Rows, 2 * Rows, 3 * Rows];
        float[] y = new float[4 * Rows];
        Layout.AddColumns(a, Rows, Cols, columns, offsets, y);
        for (int q = 0; q < columns.Length; q++)
        {
            for (int i = 0; i < Rows; i++)
            {
                Assert.Equal(a[(i * Cols) + columns[q]], y[offsets[q] + i]);
            }
        }

        float[] g = new float[Rows * Cols];
        Layout.AddToColumns(g, Rows, Cols, columns, offsets, y);
        for (int i = 0; i < Rows; i++)
        {
            Assert.Equal(2 * a[(i * Cols) + 3], g[(i * Cols) + 3]); // column 3 is listed twice: both rows summed
            Assert.Equal(a[i * Cols], g[i * Cols]);
            Assert.Equal(0f, g[(i * Cols) + 1]);
        }

        (int[] Columns, int[] Offsets, int Length)[] bad =
        [
            ([Cols], [0], Rows),                   // a column one past the last
            ([-1], [0], Rows),                     // a negative column
            ([int.MinValue], [0], Rows),           // a column that wraps negative offsets
            ([0], [-1], Rows),                     // a negative offset
            ([0], [1], Rows),                      // a row that runs one past the vector
            ([0], [int.MaxValue], Rows),           // an offset whose end wraps past int.MaxValue
            ([0, 1], [0], Rows),                   // lists of different lengths
        ];
        foreach ((int[] cols, int[] offs, int length) in bad)
        {
            float[] target = new float[length + 8], matrix = new float[Rows * Cols];
            target.AsSpan().Fill(-3f);
            matrix.AsSpan().Fill(-3f);
            Assert.Throws<InvalidOperationException>(() => Layout.AddColumns(a, Rows, Cols, cols, offs, target.AsSpan(0, length)));
            Assert.Throws<InvalidOperationException>(() => Layout.AddToColumns(matrix, Rows, Cols, cols, offs, target.AsSpan(0, length)));
            Assert.All(target, v => Assert.Equal(-3f, v));
            Assert.All(matrix, v => Assert.Equal(-3f, v));
        }

        // A matrix shorter than rows × cols.
        Assert.Throws<InvalidOperationException>(() => Layout.AddColumns(a.AsSpan(0, a.Length - 1), Rows, Cols, [0], [0], new float[Rows]));
    }

    [Fact]
    public void CheckedSizeArithmeticSaturatesInsteadOfWrapping()
    {
        Assert.Equal(long.MaxValue, Sizes.Product(int.MaxValue, int.MaxValue, int.MaxValue));
        Assert.Equal(1L << 32, Sizes.Product(65536, 65536));
        Assert.Equal(long.MaxValue, Sizes.Sum(long.MaxValue - 1, 2));
        Assert.Equal("n", Assert.Throws<ArgumentOutOfRangeException>(() => Sizes.ArrayLength(1L << 31, "n", "x")).ParamName);
    }
}
