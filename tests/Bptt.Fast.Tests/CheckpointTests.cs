using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using Bptt.Fast.Serving;
using Bptt.Fast.Training;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>Checkpoints: bit-exact round trips, every corruption caught before anything changes, atomic file writes.</summary>
public sealed class CheckpointTests : IDisposable
{
    private static readonly RnnShape Shape = new(5, 7, 3);
    private readonly string _dir = Directory.CreateTempSubdirectory("bptt-ckpt-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (RnnParameters Theta, Adam Optimizer) Trained()
    {
        var theta = new RnnParameters(Shape);
        theta.InitializeGlorot(1);
        var adam = new Adam(Shape, 0.01f);
        var grad = new RnnParameters(Shape);
        for (int step = 0; step < 3; step++)
        {
            for (int k = 0; k < grad.Values.Length; k++)
            {
                grad.Values[k] = MathF.Sin(k + step);
            }

            adam.Step(theta, grad);
        }

        return (theta, adam);
    }

    private static byte[] Bits(Span<float> v) => MemoryMarshal.AsBytes(v).ToArray();

    [Fact]
    public void RoundTripIsBitExactWithOptimizerStateStepCountAndRandomState()
    {
        (RnnParameters theta, Adam adam) = Trained();
        string path = Path.Combine(_dir, "model.ckpt");
        float[] carried = [0.25f, -0.5f, 0.75f];
        Checkpoint.Save(path, theta, Activation.Sigmoid, adam, randomState: 0xDEADBEEFCAFEUL, carriedState: carried);

        var loaded = new RnnParameters(Shape);
        var adam2 = new Adam(Shape, 0.01f);
        var carried2 = new float[3];
        CheckpointInfo info = Checkpoint.Load(path, loaded, adam2, carried2);
        Assert.Equal(carried, carried2);
        Assert.Equal(Bits(theta.Values), Bits(loaded.Values));
        Assert.Equal(Bits(adam.State[0].Values), Bits(adam2.State[0].Values));
        Assert.Equal(Bits(adam.State[1].Values), Bits(adam2.State[1].Values));
        Assert.Equal(3, adam2.StepCount);
        Assert.Equal(new CheckpointInfo(Shape, Activation.Sigmoid, 3, 0xDEADBEEFCAFEUL, "Adam", 2, 3), info);
        Assert.Equal(info, Checkpoint.ReadInfo(path));

        // The restored optimizer continues exactly like the original.
        var grad = new RnnParameters(Shape);
        grad.Values.Fill(0.5f);
        adam.Step(theta, grad);
        adam2.Step(loaded, grad);
        Assert.Equal(Bits(theta.Values), Bits(loaded.Values));
    }

    [Fact]
    public void TheFormatIsTheDocumentedLittleEndianLayout()
    {
        (RnnParameters theta, _) = Trained();
        using var stream = new MemoryStream();
        Checkpoint.Save(stream, theta, Activation.Tanh);
        byte[] b = stream.ToArray();
        Assert.Equal("BPTTCKPT", Encoding.ASCII.GetString(b, 0, 8));
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(8)));
        Assert.Equal([5u, 7u, 3u], new[] { 12, 16, 20 }.Select(o => BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(o))));
        Assert.Equal([1u, 1u, 0u], new[] { 48, 52, 56 }.Select(o => BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(o)))); // L, D, dropout 0f
        int thetaOffset = 8 + 20 + 8 + 8 + 4 + 12 + 0 + 4 + 4;
        Assert.Equal((uint)Shape.ParameterCount, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(thetaOffset - 4)));
        Assert.Equal(theta.Values[0], BinaryPrimitives.ReadSingleLittleEndian(b.AsSpan(thetaOffset)));
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(thetaOffset + (4 * Shape.ParameterCount)))); // no carried state
        Assert.Equal(thetaOffset + (4 * Shape.ParameterCount) + 4 + 4, b.Length);
        Assert.Equal(System.IO.Hashing.Crc32.HashToUInt32(b.AsSpan(0, b.Length - 4)), BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(b.Length - 4)));
    }

    [Fact]
    public void TheFormatWithOptimizerStateAndCarriedStateIsTheDocumentedLayout()
    {
        (RnnParameters theta, Adam adam) = Trained();
        float[] carried = [1.5f, -2.25f];
        using var stream = new MemoryStream();
        Checkpoint.Save(stream, theta, Activation.Relu, adam, randomState: 0x1122334455667788UL, carriedState: carried, dropout: 0.375f);
        byte[] b = stream.ToArray();
        int p = Shape.ParameterCount, n = "Adam".Length;
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(24))); // Relu
        Assert.Equal(3L, BinaryPrimitives.ReadInt64LittleEndian(b.AsSpan(28)));
        Assert.Equal(0x1122334455667788UL, BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(36)));
        Assert.Equal((uint)n, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(44)));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(48)));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(52)));
        Assert.Equal(0x3EC00000u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(56))); // 0.375f
        Assert.Equal("Adam", Encoding.UTF8.GetString(b, 60, n));
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(60 + n)));
        Assert.Equal((uint)p, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(64 + n)));
        Assert.Equal(Bits(theta.Values), b[(68 + n)..(68 + n + (4 * p))]);
        Assert.Equal(Bits(adam.State[0].Values), b[(68 + n + (4 * p))..(68 + n + (8 * p))]);
        Assert.Equal(Bits(adam.State[1].Values), b[(68 + n + (8 * p))..(68 + n + (12 * p))]);
        int a = 68 + n + (12 * p);
        Assert.Equal((uint)carried.Length, BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(a)));
        Assert.Equal(Bits(carried), b[(a + 4)..(a + 4 + (4 * carried.Length))]);
        Assert.Equal(a + 8 + (4 * carried.Length), b.Length);
        Assert.Equal(System.IO.Hashing.Crc32.HashToUInt32(b.AsSpan(0, b.Length - 4)), BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(b.Length - 4)));
    }

    public static TheoryData<string> Corruptions() => ["truncated", "empty", "flipped bit", "wrong magic", "version 0", "version 3", "wrong shape", "wrong optimizer", "no optimizer state"];

    [Theory]
    [MemberData(nameof(Corruptions))]
    public void ABadFileThrowsInvalidDataAndLeavesTheTargetUnchanged(string corruption)
    {
        (RnnParameters theta, Adam adam) = Trained();
        using var stream = new MemoryStream();
        Checkpoint.Save(stream, theta, Activation.Tanh, corruption == "no optimizer state" ? null : adam);
        byte[] b = stream.ToArray();
        RnnShape targetShape = Shape;
        Optimizer? targetOptimizer = new Adam(Shape);
        switch (corruption)
        {
            case "truncated": b = b[..(b.Length - 9)]; break;
            case "empty": b = []; break;
            case "flipped bit": b[b.Length / 2] ^= 0x10; break;
            case "wrong magic": b[0] = (byte)'X'; break;
            case "version 0": BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), 0); break;
            case "version 3": BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(8), 3); break;
            case "wrong shape": targetShape = new RnnShape(5, 7, 4); targetOptimizer = null; break;
            case "wrong optimizer": targetOptimizer = new Momentum(Shape, 0.1f); break;
            default: break;
        }

        var target = new RnnParameters(targetShape);
        target.Values.Fill(42f);
        byte[] before = Bits(target.Values);
        byte[][] stateBefore = targetOptimizer?.State.Select(s => Bits(s.Values)).ToArray() ?? [];
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(new MemoryStream(b), target, targetOptimizer));
        Assert.False(string.IsNullOrWhiteSpace(e.Message));
        Assert.Equal(before, Bits(target.Values));
        Assert.Equal(stateBefore, targetOptimizer?.State.Select(s => Bits(s.Values)).ToArray() ?? []);
    }

    [Fact]
    public void ASaveThatFailsPartwayLeavesThePreviousCheckpointIntact()
    {
        (RnnParameters theta, Adam adam) = Trained();
        string path = Path.Combine(_dir, "live.ckpt");
        Checkpoint.Save(path, theta, Activation.Tanh, adam);
        byte[] good = File.ReadAllBytes(path);

        var changed = theta.Clone();
        changed.Values.Fill(1f);
        Assert.Throws<IOException>(() => Checkpoint.Save(path, changed, Activation.Tanh, adam, 0, default, stream => new FailingStream(stream, failAfter: 100)));
        Assert.Equal(good, File.ReadAllBytes(path));
        Assert.Single(Directory.GetFiles(_dir)); // no temporary file left behind
        var loaded = new RnnParameters(Shape);
        Checkpoint.Load(path, loaded);
        Assert.Equal(Bits(theta.Values), Bits(loaded.Values));
    }

    [Fact]
    public void SafetensorsRoundTripIsBitExactAndUsesThePyTorchNames()
    {
        (RnnParameters theta, _) = Trained();
        using var stream = new MemoryStream();
        SafeTensors.Export(stream, theta);
        byte[] b = stream.ToArray();
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(b);
        string header = Encoding.UTF8.GetString(b, 8, (int)headerLength);
        foreach (string name in new[] { "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "fc.weight", "fc.bias" })
        {
            Assert.Contains($"\"{name}\"", header, StringComparison.Ordinal);
        }

        Assert.Contains("\"weight_ih_l0\":{\"dtype\":\"F32\",\"shape\":[7,5]", header, StringComparison.Ordinal);
        var loaded = new RnnParameters(Shape);
        SafeTensors.Import(new MemoryStream(b), loaded);
        Assert.Equal(Bits(theta.Values), Bits(loaded.Values));
    }

    [Fact]
    public void SafetensorsImportSumsThePyTorchBiases()
    {
        // Build a file by hand as PyTorch would lay out nn.RNN(5, 7) + nn.Linear(7, 3) under the head name "out".
        int i = 5, h = 7, o = 3;
        var tensors = new (string Name, int[] Shape, float[] Data)[]
        {
            ("out.bias", [o], [0.1f, 0.2f, 0.3f]),
            ("weight_hh_l0", [h, h], Enumerable.Range(0, h * h).Select(k => k * 0.01f).ToArray()),
            ("bias_hh_l0", [h], Enumerable.Range(0, h).Select(k => 1f + k).ToArray()),
            ("weight_ih_l0", [h, i], Enumerable.Range(0, h * i).Select(k => -k * 0.02f).ToArray()),
            ("bias_ih_l0", [h], Enumerable.Range(0, h).Select(k => 0.5f * k).ToArray()),
            ("out.weight", [o, h], Enumerable.Range(0, o * h).Select(k => k * 0.03f).ToArray()),
        };
        var json = new StringBuilder("{");
        long offset = 0;
        foreach ((string name, int[] shape, float[] data) in tensors)
        {
            json.Append($"\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{string.Join(",", shape)}],\"data_offsets\":[{offset},{offset + (4 * data.Length)}]}},");
            offset += 4 * data.Length;
        }

        json.Length--;
        json.Append('}');
        using var stream = new MemoryStream();
        byte[] header = Encoding.UTF8.GetBytes(json.ToString());
        stream.Write(BitConverter.GetBytes((ulong)header.Length));
        stream.Write(header);
        foreach ((_, _, float[] data) in tensors)
        {
            stream.Write(MemoryMarshal.AsBytes(data.AsSpan()));
        }

        var theta = new RnnParameters(new RnnShape(i, h, o));
        SafeTensors.Import(new MemoryStream(stream.ToArray()), theta, head: "out");
        Assert.Equal(tensors[3].Data, theta.Wxh.ToArray());
        Assert.Equal(tensors[1].Data, theta.Whh.ToArray());
        Assert.Equal(Enumerable.Range(0, h).Select(k => 1f + k + (0.5f * k)).ToArray(), theta.Bh.ToArray());
        Assert.Equal(tensors[5].Data, theta.Why.ToArray());
        Assert.Equal(tensors[0].Data, theta.By.ToArray());

        var wrong = new RnnParameters(new RnnShape(i, h, o + 1));
        wrong.Values.Fill(9f);
        Assert.Throws<InvalidDataException>(() => SafeTensors.Import(new MemoryStream(stream.ToArray()), wrong, head: "out"));
        Assert.All(wrong.Values.ToArray(), v => Assert.Equal(9f, v));
        Assert.Throws<InvalidDataException>(() => SafeTensors.Import(new MemoryStream(stream.ToArray()), theta)); // no "fc.*" tensors
    }

    /// <summary>A stream that fails after <c>failAfter</c> bytes, as a process killed mid-write would.</summary>
    private sealed class FailingStream(Stream inner, int failAfter) : Stream
    {
        private int _written;

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => inner.Length;

        public override long Position { get => inner.Position; set => throw new NotSupportedException(); }

        public override void Flush() => inner.Flush();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            int allowed = Math.Max(0, Math.Min(buffer.Length, failAfter - _written));
            inner.Write(buffer[..allowed]);
            _written += allowed;
            if (allowed < buffer.Length)
            {
                throw new IOException("simulated failure partway through the save");
            }
        }
    }
}
