using System.Buffers.Binary;
using Bptt.Fast.Serving;
using Bptt.Fast.Training;
using FsCheck;
using FsCheck.Fluent;
using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>
/// Malformed checkpoints: every one either loads to a valid, finite state or throws <see cref="InvalidDataException"/>,
/// never another exception, never an unbounded read or allocation, and a refused load changes nothing.
/// </summary>
public sealed class CheckpointFuzzTests : IDisposable
{
    /// <summary>Small enough that every truncation length is cheap: 26 parameters.</summary>
    private static readonly RnnShape Shape = new(2, 3, 2);
    private static readonly float[] Carried = [0.125f, -0.5f, 2f];
    private static readonly byte[] Valid = MakeValid();
    private readonly string _dir = Directory.CreateTempSubdirectory("bptt-fuzz-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static byte[] MakeValid()
    {
        RnnParameters theta = Fixtures.Theta(Shape, 11);
        var adam = new Adam(Shape, 0.01f);
        Fixtures.Train(adam, theta, 3);
        return Fixtures.Save(theta, adam, Carried, Activation.Tanh, random: 0x0123456789ABCDEF, dropout: 0.25f);
    }

    private enum Via
    {
        Seekable,
        NonSeekable,
        File,
    }

    /// <summary>Loads <paramref name="bytes"/> into a fresh destination; returns whether it loaded. A throw must be InvalidDataException and change nothing.</summary>
    private bool TryLoad(byte[] bytes, Via via, bool withOptimizer = true, bool withCarried = true)
    {
        var destination = new Destination(Shape, withOptimizer ? new Adam(Shape, 0.01f) : null, withCarried ? Carried.Length : 0);
        string path = Path.Combine(_dir, "fuzz.ckpt");
        if (via == Via.File)
        {
            File.WriteAllBytes(path, bytes);
        }

        try
        {
            _ = via switch
            {
                Via.Seekable => Checkpoint.Load(new MemoryStream(bytes), destination.Parameters, destination.Optimizer, destination.Carried),
                Via.NonSeekable => Checkpoint.Load(new NonSeekableStream(bytes), destination.Parameters, destination.Optimizer, destination.Carried),
                _ => Checkpoint.Load(path, destination.Parameters, destination.Optimizer, destination.Carried),
            };
        }
        catch (Exception e)
        {
            Assert.IsType<InvalidDataException>(e);
            Assert.False(string.IsNullOrWhiteSpace(e.Message));
            destination.AssertUnchanged();
            if (via == Via.File)
            {
                // The file itself may be valid and only unfit for this destination (another optimizer, another shape).
                Exception? info = Record.Exception(() => Checkpoint.ReadInfo(path));
                Assert.True(info is null or InvalidDataException, info?.ToString());
            }

            return false;
        }

        destination.AssertFinite();
        if (via == Via.File)
        {
            Checkpoint.ReadInfo(path);
        }

        return true;
    }

    [Fact]
    public void TheValidCheckpointLoadsThroughEveryRoute()
    {
        Assert.True(TryLoad(Valid, Via.Seekable));
        Assert.True(TryLoad(Valid, Via.NonSeekable));
        Assert.True(TryLoad(Valid, Via.File));
        Assert.True(TryLoad(Valid, Via.NonSeekable, withOptimizer: false, withCarried: false));
    }

    [Fact]
    public void TruncationAtEveryLengthIsRefused()
    {
        for (int length = 0; length < Valid.Length; length++)
        {
            byte[] cut = Valid[..length];
            foreach (Via via in Enum.GetValues<Via>())
            {
                Assert.False(TryLoad(cut, via), $"{length} bytes via {via}");
            }

            Assert.False(TryLoad(cut, Via.NonSeekable, withOptimizer: false, withCarried: false), $"{length} bytes, θ only");
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(100)]
    public void TrailingBytesAreRefused(int extra)
    {
        byte[] longer = [.. Valid, .. new byte[extra]];
        foreach (Via via in Enum.GetValues<Via>())
        {
            Assert.False(TryLoad(longer, via));
        }
    }

    [Fact]
    public void FlippedBitsWithTheOriginalChecksumAreAlwaysRefused() =>
        Generators.Check(BitFlips(), flips =>
        {
            byte[] bytes = Flip(flips.Bits);
            Assert.False(TryLoad(bytes, flips.Via), $"bits {string.Join(",", flips.Bits)}");
        }, count: 400);

    [Fact]
    public void FlippedBitsWithARecomputedChecksumLoadFiniteOrAreRefused() =>
        Generators.Check(BitFlips(), flips =>
        {
            byte[] bytes = Flip(flips.Bits);
            Fixtures.RecomputeCrc(bytes);
            TryLoad(bytes, flips.Via, flips.WithOptimizer, flips.WithCarried);
        }, count: 600);

    [Fact]
    public void OverwrittenBytesWithARecomputedChecksumLoadFiniteOrAreRefused() =>
        Generators.Check(
            from count in Gen.Choose(1, 6)
            from positions in Gen.ListOf(Gen.Choose(0, Valid.Length - 5), count)
            from values in Gen.ListOf(Gen.Elements<byte>(0x00, 0x01, 0x7F, 0x80, 0xFF, 0xC0), count)
            from via in Gen.Elements(Enum.GetValues<Via>())
            select (Positions: positions.ToArray(), Values: values.ToArray(), Via: via),
            c =>
            {
                byte[] bytes = (byte[])Valid.Clone();
                for (int k = 0; k < c.Positions.Length; k++)
                {
                    bytes[c.Positions[k]] = c.Values[k];
                }

                Fixtures.RecomputeCrc(bytes);
                TryLoad(bytes, c.Via);
            }, count: 400);

    private sealed record FlipCase(int[] Bits, Via Via, bool WithOptimizer, bool WithCarried);

    private static Gen<FlipCase> BitFlips() =>
        from count in Gen.Choose(1, 3)
        from bits in Gen.ListOf(Gen.Choose(0, (8 * Valid.Length) - 1), count)
        from via in Gen.Elements(Enum.GetValues<Via>())
        from withOptimizer in Gen.Elements(true, false)
        from withCarried in Gen.Elements(true, false)
        select new FlipCase(bits.Distinct().ToArray(), via, withOptimizer, withCarried);

    private static byte[] Flip(int[] bits)
    {
        byte[] bytes = (byte[])Valid.Clone();
        foreach (int bit in bits)
        {
            bytes[bit / 8] ^= (byte)(1 << (bit % 8));
        }

        return bytes;
    }

    private static int StateBlocksAt => Fixtures.NameAt + "Adam".Length;

    private static int CarriedLengthAt => Fixtures.ThetaAt("Adam".Length) + (3 * 4 * Shape.ParameterCount);

    /// <summary>Each u32 header field (by offset) with values at and around its edges.</summary>
    public static TheoryData<string, int, uint> U32Fields()
    {
        var data = new TheoryData<string, int, uint>();
        (string Name, int At)[] fields =
        [
            ("version", Fixtures.VersionAt), ("I", Fixtures.InputAt), ("H", Fixtures.HiddenAt), ("O", Fixtures.OutputAt),
            ("activation", Fixtures.ActivationAt), ("name length", Fixtures.NameLengthAt), ("layers", Fixtures.LayersAt),
            ("directions", Fixtures.DirectionsAt), ("dropout", Fixtures.DropoutAt), ("state blocks", StateBlocksAt),
            ("parameter count", StateBlocksAt + 4), ("carried length", CarriedLengthAt),
        ];
        foreach ((string name, int at) in fields)
        {
            uint original = BinaryPrimitives.ReadUInt32LittleEndian(Valid.AsSpan(at));
            foreach (uint value in new uint[] { 0, 1, 2, 3, 8, 9, 256, 257, 1 << 24, (1 << 24) + 1, int.MaxValue, 0x80000000, uint.MaxValue, original - 1, original + 1 })
            {
                if (value != original)
                {
                    data.Add(name, at, value);
                }
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(U32Fields))]
    public void AU32HeaderFieldAtItsEdgesLoadsOnlyWhenValid(string field, int at, uint value)
    {
        foreach (bool recompute in new[] { true, false })
        {
            byte[] bytes = (byte[])Valid.Clone();
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(at), value);
            if (recompute)
            {
                Fixtures.RecomputeCrc(bytes);
            }

            // Only another defined activation or another dropout probability in [0, 1) (the field's bits read as a float32)
            // is a valid file; every other change is refused (another L or D no longer matches the parameter count).
            float rate = BitConverter.UInt32BitsToSingle(value);
            bool valid = recompute && ((field == "activation" && value <= 2) || (field == "dropout" && rate >= 0f && rate < 1f));
            foreach (Via via in Enum.GetValues<Via>())
            {
                long before = GC.GetAllocatedBytesForCurrentThread();
                Assert.Equal(valid, TryLoad(bytes, via));
                Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 1 << 20);
            }
        }
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(1L)]
    [InlineData(Checkpoint.MaxStepCount)]
    [InlineData(Checkpoint.MaxStepCount + 1)]
    [InlineData(long.MaxValue)]
    [InlineData(-1L)]
    [InlineData(long.MinValue)]
    [InlineData(int.MinValue)]
    public void TheStepCountFieldLoadsOnlyWithinTheBound(long step)
    {
        byte[] bytes = (byte[])Valid.Clone();
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(Fixtures.StepAt), step);
        Fixtures.RecomputeCrc(bytes);
        foreach (Via via in Enum.GetValues<Via>())
        {
            Assert.Equal(step is >= 0 and <= Checkpoint.MaxStepCount, TryLoad(bytes, via));
        }
    }

    [Fact]
    public void ANegativeSecondMomentIsRefusedOnLoadAndOnSave()
    {
        // Adam's v is a moving average of squares. A file with a negative v (valid checksum, finite values) once loaded,
        // and the optimizer then refused every later step.
        RnnParameters theta = Fixtures.Theta(Shape, 11);
        var adam = new Adam(Shape, 0.01f);
        Fixtures.Train(adam, theta, 3);
        byte[] bytes = Fixtures.Save(theta, adam, Carried, Activation.Tanh, random: 0, dropout: 0.25f);
        Span<float> v = adam.State[1].Values;
        int k = 0;
        for (int i = 1; i < v.Length; i++)
        {
            k = v[i] > v[k] ? i : k;
        }

        float value = v[k];
        Assert.True(value > 0f);
        int at = bytes.AsSpan().IndexOf(System.Runtime.InteropServices.MemoryMarshal.AsBytes(v));
        Assert.True(at > 0, "v's bytes are in the file");
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(at + (4 * k)), -value);
        Fixtures.RecomputeCrc(bytes);
        foreach (Via via in Enum.GetValues<Via>())
        {
            Assert.False(TryLoad(bytes, via));
        }

        Assert.True(TryLoad(bytes, Via.Seekable, withOptimizer: false, withCarried: false)); // θ alone does not read v

        v[k] = -value;
        var e = Assert.Throws<ArgumentException>(() => Fixtures.Save(theta, adam, Carried, Activation.Tanh, random: 0, dropout: 0.25f));
        Assert.Equal("optimizer", e.ParamName);
    }

    [Fact]
    public void AnOptimizerNameThatIsNotUtf8OrHoldsAControlCharacterIsRefused()
    {
        foreach (byte[] name in new byte[][] { [0x41, 0x64, 0xFF, 0x6D], [0x41, 0x64, 0x0A, 0x6D], [0xC3, 0x28, 0x61, 0x6D], [0x41, 0x64, 0x00, 0x6D] })
        {
            byte[] bytes = (byte[])Valid.Clone();
            name.CopyTo(bytes, Fixtures.NameAt);
            Fixtures.RecomputeCrc(bytes);
            Assert.False(TryLoad(bytes, Via.Seekable, withOptimizer: false, withCarried: false));
        }
    }

    [Fact]
    public void DevZeroFailsFastOnTheMagic()
    {
        if (!File.Exists("/dev/zero"))
        {
            Assert.Skip("/dev/zero does not exist on this system (not Unix-like).");
        }

        var destination = new Destination(Shape, new Adam(Shape), Carried.Length);
        Assert.Throws<InvalidDataException>(() => Checkpoint.Load("/dev/zero", destination.Parameters, destination.Optimizer, destination.Carried));
        Assert.Throws<InvalidDataException>(() => Checkpoint.ReadInfo("/dev/zero"));
        using (FileStream zero = File.OpenRead("/dev/zero"))
        {
            Assert.Throws<InvalidDataException>(() => Checkpoint.Load(zero, destination.Parameters));
        }

        destination.AssertUnchanged();
    }

    [Fact]
    public void AnEndlessStreamOfZerosIsReadOnlyAsFarAsTheMagic()
    {
        var endless = new EndlessStream([]);
        var destination = new Destination(Shape, null, 0);
        Assert.Throws<InvalidDataException>(() => Checkpoint.Load(endless, destination.Parameters));
        Assert.Equal(8, endless.Consumed);
        destination.AssertUnchanged();
    }

    [Fact]
    public void AValidHeaderFollowedByEndlessZerosIsReadExactlyAsFarAsItPromises()
    {
        int thetaAt = Fixtures.ThetaAt("Adam".Length);
        var endless = new EndlessStream(Valid[..thetaAt]);
        var destination = new Destination(Shape, new Adam(Shape), 0);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(endless, destination.Parameters, destination.Optimizer));
        Assert.Contains("checksum", e.Message, StringComparison.Ordinal);
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 1 << 20);
        destination.AssertUnchanged();

        // θ and two state blocks of zeros, C = 0, then a zero checksum: nothing more is read.
        Assert.Equal(thetaAt + (12 * Shape.ParameterCount) + 8, endless.Consumed);
    }

    [Fact]
    public void TheLargestCarriedLengthOverEndlessZerosIsStreamedWithoutAllocatingIt()
    {
        byte[] prefix = Valid[..(CarriedLengthAt + 4)];
        BinaryPrimitives.WriteUInt32LittleEndian(prefix.AsSpan(CarriedLengthAt), Checkpoint.MaxCarriedStateLength);
        var endless = new EndlessStream(prefix);
        var destination = new Destination(Shape, new Adam(Shape), 0);
        long before = GC.GetAllocatedBytesForCurrentThread();
        Assert.Throws<InvalidDataException>(() => Checkpoint.Load(endless, destination.Parameters, destination.Optimizer));
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 1 << 20);
        destination.AssertUnchanged();

        // One above the bound is refused as soon as the field is read.
        BinaryPrimitives.WriteUInt32LittleEndian(prefix.AsSpan(CarriedLengthAt), Checkpoint.MaxCarriedStateLength + 1);
        endless = new EndlessStream(prefix);
        Assert.Throws<InvalidDataException>(() => Checkpoint.Load(endless, destination.Parameters, destination.Optimizer));
        Assert.Equal(prefix.Length, endless.Consumed);
        destination.AssertUnchanged();
    }

    [Fact]
    public void AHeaderPromisingAHugeShapeIsRefusedBeforeTheBodyIsRead()
    {
        // 16384 hidden units: a valid shape of about 2.7·10⁸ parameters (1 GiB per block) that the destination does not have.
        byte[] prefix = Valid[..Fixtures.ThetaAt("Adam".Length)];
        BinaryPrimitives.WriteUInt32LittleEndian(prefix.AsSpan(Fixtures.HiddenAt), 16384);
        var big = new RnnShape(Shape.InputSize, 16384, Shape.OutputSize);
        BinaryPrimitives.WriteUInt32LittleEndian(prefix.AsSpan(StateBlocksAt + 4), (uint)big.ParameterCount);
        var endless = new EndlessStream(prefix);
        var destination = new Destination(Shape, new Adam(Shape), 0);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(endless, destination.Parameters, destination.Optimizer));
        Assert.Contains("shape", e.Message, StringComparison.Ordinal);
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 1 << 20);
        Assert.Equal(prefix.Length, endless.Consumed);

        // From a file, the length check refuses it before anything past the header is read.
        string path = Path.Combine(_dir, "huge-header.ckpt");
        File.WriteAllBytes(path, prefix);
        Assert.Contains("Truncated", Assert.Throws<InvalidDataException>(() => Checkpoint.ReadInfo(path)).Message, StringComparison.Ordinal);
        destination.AssertUnchanged();
    }
}
