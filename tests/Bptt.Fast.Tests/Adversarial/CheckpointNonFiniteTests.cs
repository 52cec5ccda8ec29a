using System.Buffers.Binary;
using Bptt.Fast.Serving;
using Bptt.Fast.Training;
using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>NaN and ±∞ never reach θ, optimizer state or a file: saves refuse them, loads reject them.</summary>
public sealed class CheckpointNonFiniteTests : IDisposable
{
    private static readonly RnnShape Shape = new(3, 4, 2);
    private static readonly float[] Poisons = [float.NaN, float.PositiveInfinity, float.NegativeInfinity, BitConverter.Int32BitsToSingle(unchecked((int)0xFFC00001))];
    private readonly string _dir = Directory.CreateTempSubdirectory("bptt-nan-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<int, int> PoisonAndPosition()
    {
        var data = new TheoryData<int, int>();
        for (int poison = 0; poison < Poisons.Length; poison++)
        {
            foreach (int position in new[] { 0, 17, Shape.ParameterCount - 1 })
            {
                data.Add(poison, position);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(PoisonAndPosition))]
    public void SaveRefusesNonFiniteParametersBeforeWritingAnything(int poison, int position)
    {
        RnnParameters theta = Fixtures.Theta(Shape, 1);
        theta.Values[position] = Poisons[poison];
        var e = AssertRefused(theta, null, default);
        Assert.Equal("parameters", e.ParamName);
        Assert.Contains($"element {position}", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(PoisonAndPosition))]
    public void SaveRefusesNonFiniteOptimizerStateBeforeWritingAnything(int poison, int position)
    {
        RnnParameters theta = Fixtures.Theta(Shape, 2);
        var adam = new Adam(Shape, 0.01f);
        Fixtures.Train(adam, theta, 2);
        adam.State[1].Values[position] = Poisons[poison];
        var e = AssertRefused(theta, adam, default);
        Assert.Equal("optimizer", e.ParamName);
        Assert.Contains($"block 1 element {position}", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(PoisonAndPosition))]
    public void SaveRefusesNonFiniteCarriedStateBeforeWritingAnything(int poison, int position)
    {
        RnnParameters theta = Fixtures.Theta(Shape, 3);
        float[] carried = new float[Shape.ParameterCount];
        carried[position] = Poisons[poison];
        var e = AssertRefused(theta, new Momentum(Shape, 0.1f), carried);
        Assert.Equal("carriedState", e.ParamName);
        Assert.Contains($"element {position}", e.Message, StringComparison.Ordinal);
    }

    public static TheoryData<string, int> LoadCases()
    {
        var data = new TheoryData<string, int>();
        foreach (string block in new[] { "θ", "optimizer state block 0", "optimizer state block 1", "carried state" })
        {
            data.Add(block, 0);
            data.Add(block, 3);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(LoadCases))]
    public void LoadRejectsNonFiniteValuesNamingTheBlockAndIndexAndChangesNothing(string block, int index)
    {
        RnnParameters theta = Fixtures.Theta(Shape, 4);
        var adam = new Adam(Shape, 0.01f);
        Fixtures.Train(adam, theta, 3);
        float[] carried = [0.1f, 0.2f, 0.3f, 0.4f];
        int p = Shape.ParameterCount, at = Fixtures.ThetaAt("Adam".Length);
        int offset = block switch
        {
            "θ" => at,
            "optimizer state block 0" => at + (4 * p),
            "optimizer state block 1" => at + (8 * p),
            _ => at + (12 * p) + 4,
        };

        foreach (float poison in Poisons)
        {
            byte[] bytes = Fixtures.Save(theta, adam, carried);
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(offset + (4 * index)), poison);
            Fixtures.RecomputeCrc(bytes);
            foreach (bool withOptimizer in new[] { true, false })
            {
                var destination = new Destination(Shape, withOptimizer ? new Adam(Shape, 0.01f) : null, withOptimizer ? carried.Length : 0);
                var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(new MemoryStream(bytes), destination.Parameters, destination.Optimizer, destination.Carried));
                Assert.Contains($"{block} element {index}", e.Message, StringComparison.Ordinal);
                destination.AssertUnchanged();
            }

            string path = Path.Combine(_dir, "poisoned.ckpt");
            File.WriteAllBytes(path, bytes);
            Assert.Throws<InvalidDataException>(() => Checkpoint.ReadInfo(path));
            var fromFile = new Destination(Shape, new Adam(Shape, 0.01f), carried.Length);
            Assert.Throws<InvalidDataException>(() => Checkpoint.Load(path, fromFile.Parameters, fromFile.Optimizer, fromFile.Carried));
            fromFile.AssertUnchanged();
        }
    }

    /// <summary>
    /// Saves through every entry point and asserts the same refusal each time: the exact type, an existing target
    /// bit-identical, a missing target still missing, no temporary file, an empty stream.
    /// </summary>
    private ArgumentException AssertRefused(RnnParameters theta, Optimizer? optimizer, float[]? carried)
    {
        byte[] thetaBefore = Fixtures.Bits(theta.Values);
        byte[][] stateBefore = optimizer?.State.Select(s => Fixtures.Bits(s.Values)).ToArray() ?? [];
        string existing = Path.Combine(_dir, "existing.ckpt");
        Checkpoint.Save(existing, Fixtures.Theta(Shape, 99), Activation.Tanh);
        byte[] existingBefore = File.ReadAllBytes(existing);
        string missing = Path.Combine(_dir, "missing.ckpt");

        var e = Assert.Throws<ArgumentException>(() => Checkpoint.Save(existing, theta, Activation.Tanh, optimizer, 0, carried));
        Assert.Equal(e.ParamName, Assert.Throws<ArgumentException>(() => Checkpoint.Save(missing, theta, Activation.Tanh, optimizer, 0, carried)).ParamName);
        using var stream = new MemoryStream();
        Assert.Equal(e.ParamName, Assert.Throws<ArgumentException>(() => Checkpoint.Save(stream, theta, Activation.Tanh, optimizer, 0, carried)).ParamName);

        Assert.Equal(existingBefore, File.ReadAllBytes(existing));
        Assert.False(File.Exists(missing));
        Assert.Equal([existing], Directory.GetFiles(_dir));
        Assert.Equal(0, stream.Length);
        Assert.Equal(thetaBefore, Fixtures.Bits(theta.Values));
        Assert.Equal(stateBefore, optimizer?.State.Select(s => Fixtures.Bits(s.Values)).ToArray() ?? []);
        return e;
    }
}
