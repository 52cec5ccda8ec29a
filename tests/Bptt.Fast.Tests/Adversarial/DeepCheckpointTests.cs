using System.Buffers.Binary;
using System.IO.Hashing;
using Bptt.Fast.Serving;
using Bptt.Fast.Training;
using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>
/// Checkpoints of stacked and bidirectional networks (format version 2): bit-exact round trips with the configuration,
/// version-1 files still read, every out-of-range configuration field and every shape mismatch refused without change.
/// </summary>
public sealed class DeepCheckpointTests : IDisposable
{
    /// <summary>Two bidirectional layers of I = 2, H = 3, O = 2: 110 parameters.</summary>
    private static readonly RnnShape Deep = new(2, 3, 2) { Layers = 2, Directions = 2 };

    private readonly string _dir = Directory.CreateTempSubdirectory("bptt-deep-ckpt-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static float[] Ramp(int count, float scale, float shift) => Enumerable.Range(0, count).Select(k => (k * scale) + shift).ToArray();

    private static (RnnParameters Theta, Adam Adam, float[] Carried) Trained(RnnShape shape, ulong seed)
    {
        RnnParameters theta = Fixtures.Theta(shape, seed);
        var adam = new Adam(shape, 0.01f);
        Fixtures.Train(adam, theta, 3);

        // A stacked trainer carries L·H floats.
        return (theta, adam, Ramp(shape.Layers * shape.HiddenSize, -0.125f, 0.5f));
    }

    [Fact]
    public void TheDeepShapeHasTheParameterCountOfTheDocumentedLayout()
    {
        // Layer 0, each direction: W_xh 3×2, W_hh 3×3, b_h 3 = 18; layer 1: W_xh 3×6, W_hh 3×3, b_h 3 = 30; head 2×6 + 2 = 14.
        Assert.Equal((2 * 18) + (2 * 30) + 14, Deep.ParameterCount);
    }

    public static TheoryData<int, int> Configurations() => new() { { 2, 1 }, { 1, 2 }, { 2, 2 }, { 3, 2 } };

    [Theory]
    [MemberData(nameof(Configurations))]
    public void AStackedOrBidirectionalRoundTripIsBitExactWithOptimizerStateCarriedStateAndDropout(int layers, int directions)
    {
        var shape = new RnnShape(4, 5, 3) { Layers = layers, Directions = directions };
        (RnnParameters theta, Adam adam, float[] carried) = Trained(shape, 7);
        string path = Path.Combine(_dir, $"deep-{layers}-{directions}.ckpt");
        Checkpoint.Save(path, theta, Activation.Relu, adam, randomState: 0xFEEDFACE12345678UL, carriedState: carried, dropout: 0.3f);

        // The configuration is where the documented layout puts it.
        byte[] b = File.ReadAllBytes(path);
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(8)));
        Assert.Equal((uint)layers, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(48)));
        Assert.Equal((uint)directions, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(52)));
        Assert.Equal(0.3f, BinaryPrimitives.ReadSingleLittleEndian(b.AsSpan(56)));

        var loaded = new RnnParameters(shape);
        var adam2 = new Adam(shape, 0.01f);
        float[] carried2 = new float[carried.Length];
        CheckpointInfo info = Checkpoint.Load(path, loaded, adam2, carried2);
        Assert.Equal(Fixtures.Bits(theta.Values), Fixtures.Bits(loaded.Values));
        Assert.Equal(Fixtures.Bits(adam.State[0].Values), Fixtures.Bits(adam2.State[0].Values));
        Assert.Equal(Fixtures.Bits(adam.State[1].Values), Fixtures.Bits(adam2.State[1].Values));
        Assert.Equal(3, adam2.StepCount);
        Assert.Equal(Fixtures.Bits(carried), Fixtures.Bits(carried2));
        Assert.Equal(new CheckpointInfo(shape, Activation.Relu, 3, 0xFEEDFACE12345678UL, "Adam", 2, carried.Length, 0.3f), info);
        Assert.Equal(layers, info.Shape.Layers);
        Assert.Equal(directions, info.Shape.Directions);
        Assert.Equal(info, Checkpoint.ReadInfo(path));

        // θ sized from the file's own header (what RnnModel.Load uses) has the deep shape.
        (RnnParameters sized, CheckpointInfo sizedInfo) = Checkpoint.LoadParameters(path);
        Assert.Equal(shape, sized.Shape);
        Assert.Equal(Fixtures.Bits(theta.Values), Fixtures.Bits(sized.Values));
        Assert.Equal(info, sizedInfo);
        (RnnParameters streamed, _) = Checkpoint.LoadParameters(new NonSeekableStream(b));
        Assert.Equal(Fixtures.Bits(theta.Values), Fixtures.Bits(streamed.Values));
    }

    [Theory]
    [InlineData(0f)]
    [InlineData(0.5f)]
    [InlineData(0.99999994f)] // the largest float below 1
    [InlineData(1.4e-45f)] // the smallest subnormal
    public void EveryDropoutProbabilityInTheUnitIntervalRoundTrips(float dropout)
    {
        (RnnParameters theta, _, _) = Trained(Deep, 3);
        using var stream = new MemoryStream();
        Checkpoint.Save(stream, theta, Activation.Tanh, dropout: dropout);
        Assert.Equal(BitConverter.SingleToUInt32Bits(dropout), BinaryPrimitives.ReadUInt32LittleEndian(stream.ToArray().AsSpan(56)));
        Assert.Equal(BitConverter.SingleToUInt32Bits(dropout), BitConverter.SingleToUInt32Bits(Checkpoint.ReadInfo(new MemoryStream(stream.ToArray())).Dropout));
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    [InlineData(1f)]
    [InlineData(1.5f)]
    [InlineData(-0.1f)]
    [InlineData(-1.4e-45f)]
    public void SaveRefusesADropoutOutsideTheUnitIntervalBeforeWritingAnything(float dropout)
    {
        (RnnParameters theta, Adam adam, float[] carried) = Trained(Deep, 4);
        using var stream = new MemoryStream();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Checkpoint.Save(stream, theta, Activation.Tanh, adam, 0, carried, dropout));
        Assert.Equal("dropout", e.ParamName);
        Assert.Equal(0, stream.Length);

        string path = Path.Combine(_dir, "existing.ckpt");
        Checkpoint.Save(path, theta, Activation.Tanh);
        byte[] before = File.ReadAllBytes(path);
        Assert.Equal("dropout", Assert.Throws<ArgumentOutOfRangeException>(() => Checkpoint.Save(path, theta, Activation.Tanh, adam, 0, carried, dropout)).ParamName);
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Single(Directory.GetFiles(_dir)); // no temporary file left behind

        string fresh = Path.Combine(_dir, "fresh.ckpt");
        Assert.Throws<ArgumentOutOfRangeException>(() => Checkpoint.Save(fresh, theta, Activation.Tanh, dropout: dropout));
        Assert.False(File.Exists(fresh));
    }

    /// <summary>
    /// A version-1 checkpoint written byte by byte from the version-1 layout of the format's documentation (magic,
    /// u32 version 1, u32 I, H, O, u32 activation, i64 step, u64 random, u32 N, the name, u32 S, u32 P, θ, S blocks,
    /// u32 C, C floats, CRC-32), not by the code under test.
    /// </summary>
    private static (byte[] File, float[] Theta, float[] Velocity, float[] Carried) VersionOne(RnnShape shape)
    {
        int p = shape.ParameterCount;
        float[] theta = Ramp(p, 0.015625f, -0.25f), velocity = Ramp(p, -0.001953125f, 0.125f), carried = [0.75f, -1.5f];
        var file = new MemoryStream();
        void U32(uint v)
        {
            Span<byte> w = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(w, v);
            file.Write(w);
        }

        void U64(ulong v)
        {
            Span<byte> w = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(w, v);
            file.Write(w);
        }

        void Floats(float[] values)
        {
            foreach (float v in values)
            {
                U32(BitConverter.SingleToUInt32Bits(v));
            }
        }

        file.Write("BPTTCKPT"u8);
        U32(1);
        U32((uint)shape.InputSize);
        U32((uint)shape.HiddenSize);
        U32((uint)shape.OutputSize);
        U32(2); // Sigmoid
        U64(5); // step count
        U64(0x0102030405060708UL);
        U32(8);
        file.Write("Momentum"u8);
        U32(1); // S
        U32((uint)p);
        Floats(theta);
        Floats(velocity);
        U32((uint)carried.Length);
        Floats(carried);
        U32(Crc32.HashToUInt32(file.ToArray()));
        return (file.ToArray(), theta, velocity, carried);
    }

    [Fact]
    public void AVersionOneFileAssembledByHandStillLoadsAsOneLayerOneDirectionWithoutDropout()
    {
        var shape = new RnnShape(3, 4, 2);
        (byte[] bytes, float[] theta, float[] velocity, float[] carried) = VersionOne(shape);
        Assert.Equal(48 + 8 + 8 + (4 * 2 * shape.ParameterCount) + 4 + 8 + 4, bytes.Length);
        string path = Path.Combine(_dir, "v1.ckpt");
        File.WriteAllBytes(path, bytes);

        var expectedInfo = new CheckpointInfo(shape, Activation.Sigmoid, 5, 0x0102030405060708UL, "Momentum", 1, 2, 0f);
        foreach (Stream source in new Stream[] { new MemoryStream(bytes), new NonSeekableStream(bytes), File.OpenRead(path) })
        {
            using (source)
            {
                var loaded = new RnnParameters(shape);
                var momentum = new Momentum(shape, 0.1f);
                float[] carried2 = new float[2];
                CheckpointInfo info = Checkpoint.Load(source, loaded, momentum, carried2);
                Assert.Equal(expectedInfo, info);
                Assert.Equal(1, info.Shape.Layers);
                Assert.Equal(1, info.Shape.Directions);
                Assert.Equal(theta, loaded.Values.ToArray());
                Assert.Equal(velocity, momentum.State[0].Values.ToArray());
                Assert.Equal(5, momentum.StepCount);
                Assert.Equal(carried, carried2);
            }
        }

        Assert.Equal(expectedInfo, Checkpoint.ReadInfo(path));
        (RnnParameters sized, _) = Checkpoint.LoadParameters(path);
        Assert.Equal(shape, sized.Shape);
        Assert.Equal(theta, sized.Values.ToArray());

        // Saved again, it is version 2 and 12 bytes longer, with the same content.
        var again = new RnnParameters(shape);
        Checkpoint.Load(path, again);
        using var resaved = new MemoryStream();
        Checkpoint.Save(resaved, again, Activation.Sigmoid);
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(resaved.ToArray().AsSpan(8)));
        Assert.Equal(48 + 12 + 8 + (4 * shape.ParameterCount) + 4 + 4, resaved.Length);
    }

    [Fact]
    public void AVersionOneFileWithAFlippedBitOrCutShortIsStillRefused()
    {
        var shape = new RnnShape(3, 4, 2);
        (byte[] bytes, _, _, _) = VersionOne(shape);
        for (int length = 0; length < bytes.Length; length += 7)
        {
            AssertRefused(bytes[..length], shape, null, withOptimizer: false);
        }

        byte[] flipped = (byte[])bytes.Clone();
        flipped[70] ^= 0x04;
        AssertRefused(flipped, shape, "checksum", withOptimizer: false);

        // A version-1 header with the version field set to 2 no longer parses as the 12 configuration bytes it lacks.
        byte[] relabelled = (byte[])bytes.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(relabelled.AsSpan(8), 2);
        Fixtures.RecomputeCrc(relabelled);
        AssertRefused(relabelled, shape, "layers", withOptimizer: false);
    }

    /// <summary>A valid deep checkpoint with Adam state and carried state, for the header surgery below.</summary>
    private static byte[] ValidDeep(out float[] carried)
    {
        (RnnParameters theta, Adam adam, float[] c) = Trained(Deep, 9);
        carried = c;
        return Fixtures.Save(theta, adam, c, Activation.Tanh, random: 42, dropout: 0.5f);
    }

    /// <summary>Loads through a seekable stream, a non-seekable stream and a file; each must refuse and change nothing.</summary>
    private InvalidDataException AssertRefused(byte[] bytes, RnnShape shape, string? fragment, bool withOptimizer = true, int carried = 0)
    {
        string path = Path.Combine(_dir, "refused.ckpt");
        File.WriteAllBytes(path, bytes);
        InvalidDataException? first = null;
        foreach (int via in new[] { 0, 1, 2 })
        {
            var destination = new Destination(shape, withOptimizer ? new Adam(shape) : null, carried);
            Func<CheckpointInfo> load = via switch
            {
                0 => () => Checkpoint.Load(new MemoryStream(bytes), destination.Parameters, destination.Optimizer, destination.Carried),
                1 => () => Checkpoint.Load(new NonSeekableStream(bytes), destination.Parameters, destination.Optimizer, destination.Carried),
                _ => () => Checkpoint.Load(path, destination.Parameters, destination.Optimizer, destination.Carried),
            };
            var e = Assert.Throws<InvalidDataException>(load);
            if (fragment is not null)
            {
                Assert.True(e.Message.Contains(fragment, StringComparison.Ordinal), $"expected '{fragment}' in: {e.Message}");
            }

            destination.AssertUnchanged();
            first ??= e;
        }

        return first!;
    }

    public static TheoryData<string, int, uint, string> BadConfigurationFields()
    {
        var data = new TheoryData<string, int, uint, string>();
        foreach (uint layers in new uint[] { 0, 65, 1000, int.MaxValue, 0x80000000, uint.MaxValue })
        {
            data.Add("layers", Fixtures.LayersAt, layers, $"layers {layers} is outside [1, 64]");
        }

        foreach (uint directions in new uint[] { 0, 3, 4, 255, uint.MaxValue })
        {
            data.Add("directions", Fixtures.DirectionsAt, directions, $"directions {directions}; expected 1 or 2");
        }

        // Other in-range configurations are well-formed headers, but their parameter count is not the file's.
        data.Add("layers", Fixtures.LayersAt, 1, "parameters for shape");
        data.Add("layers", Fixtures.LayersAt, 3, "parameters for shape");
        data.Add("layers", Fixtures.LayersAt, 64, "parameters for shape");
        data.Add("directions", Fixtures.DirectionsAt, 1, "parameters for shape");
        foreach (float dropout in new[] { float.NaN, float.PositiveInfinity, float.NegativeInfinity, 1f, 1.0000001f, 2f, -0.25f, -1.4e-45f, float.MaxValue, float.MinValue })
        {
            data.Add("dropout", Fixtures.DropoutAt, BitConverter.SingleToUInt32Bits(dropout), "dropout");
        }

        data.Add("dropout", Fixtures.DropoutAt, 0x7FC00001, "not a probability in [0, 1)"); // a NaN with payload
        data.Add("dropout", Fixtures.DropoutAt, 0xFFFFFFFF, "not a probability in [0, 1)");
        return data;
    }

    [Theory]
    [MemberData(nameof(BadConfigurationFields))]
    public void AVersionTwoConfigurationFieldOutOfRangeIsRefusedAndChangesNothing(string field, int at, uint value, string fragment)
    {
        byte[] bytes = ValidDeep(out float[] carried);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(at), value);
        Fixtures.RecomputeCrc(bytes);
        InvalidDataException e = AssertRefused(bytes, Deep, fragment, carried: carried.Length);
        Assert.True(e.Message.StartsWith("Corrupted checkpoint header", StringComparison.Ordinal), $"{field}: {e.Message}");
        Assert.Throws<InvalidDataException>(() => Checkpoint.ReadInfo(new MemoryStream(bytes)));
        Assert.Throws<InvalidDataException>(() => Checkpoint.LoadParameters(new MemoryStream(bytes)));

        // Without the recomputed checksum the field is refused all the same (as a field or as corruption).
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(bytes.Length - 4), BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(bytes.Length - 4)) ^ 1);
        AssertRefused(bytes, Deep, null, carried: carried.Length);
    }

    [Fact]
    public void AnotherValidDropoutInTheHeaderLoadsAndIsReported()
    {
        byte[] bytes = ValidDeep(out float[] carried);
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(Fixtures.DropoutAt), 0.125f);
        Fixtures.RecomputeCrc(bytes);
        var destination = new Destination(Deep, new Adam(Deep), carried.Length);
        CheckpointInfo info = Checkpoint.Load(new MemoryStream(bytes), destination.Parameters, destination.Optimizer, destination.Carried);
        Assert.Equal(0.125f, info.Dropout);
        Assert.Equal(Deep, info.Shape);
        Assert.Equal(carried, destination.Carried);
    }

    [Fact]
    public void EveryTruncationOfADeepCheckpointIsRefused()
    {
        byte[] bytes = ValidDeep(out float[] carried);
        for (int length = 0; length < bytes.Length; length++)
        {
            var destination = new Destination(Deep, new Adam(Deep), carried.Length);
            Assert.Throws<InvalidDataException>(() => Checkpoint.Load(new NonSeekableStream(bytes[..length]), destination.Parameters, destination.Optimizer, destination.Carried));
            destination.AssertUnchanged();
        }
    }

    public static TheoryData<string, int, int> Mismatches() => new()
    {
        // destination I, H, O are the file's (2, 3, 2); only its layers or directions differ.
        { "single layer", 1, 1 },
        { "one direction", 2, 1 },
        { "one layer, bidirectional", 1, 2 },
        { "three layers", 3, 2 },
    };

    [Theory]
    [MemberData(nameof(Mismatches))]
    public void ADeepCheckpointLoadedIntoAnotherConfigurationIsRefusedAsAShapeMismatch(string label, int layers, int directions)
    {
        byte[] bytes = ValidDeep(out float[] carried);
        var target = new RnnShape(2, 3, 2) { Layers = layers, Directions = directions };
        InvalidDataException e = AssertRefused(bytes, target, "does not match the target's shape", carried: carried.Length);
        Assert.True(e.Message.Contains("Layers = 2, Directions = 2", StringComparison.Ordinal), $"{label}: {e.Message}");

        // θ alone, without optimizer or carried state, is refused the same way.
        AssertRefused(bytes, target, "does not match", withOptimizer: false);
    }

    [Fact]
    public void TwoConfigurationsWithTheSameParameterCountAreStillTold()
    {
        // I = 1, O = 1, H = 2: two stacked layers and one bidirectional layer both have 21 parameters.
        var stacked = new RnnShape(1, 2, 1) { Layers = 2 };
        var bidirectional = new RnnShape(1, 2, 1) { Directions = 2 };
        Assert.Equal(21, stacked.ParameterCount);
        Assert.Equal(21, bidirectional.ParameterCount);
        byte[] bytes = Fixtures.Save(Fixtures.Theta(stacked, 5));
        AssertRefused(bytes, bidirectional, "does not match the target's shape", withOptimizer: false);

        // And a file whose L and D were swapped in the header (checksum recomputed) no longer fits the stacked destination.
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(Fixtures.LayersAt), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(Fixtures.DirectionsAt), 2);
        Fixtures.RecomputeCrc(bytes);
        AssertRefused(bytes, stacked, "does not match the target's shape", withOptimizer: false);
        Assert.Equal(bidirectional, Checkpoint.ReadInfo(new MemoryStream(bytes)).Shape);
    }

    [Fact]
    public void ASingleLayerCheckpointIsRefusedByADeepDestination()
    {
        var single = new RnnShape(2, 3, 2);
        byte[] bytes = Fixtures.Save(Fixtures.Theta(single, 6));
        InvalidDataException e = AssertRefused(bytes, Deep, "does not match the target's shape", withOptimizer: false);
        Assert.Contains("Layers = 2, Directions = 2", e.Message, StringComparison.Ordinal);
    }
}
