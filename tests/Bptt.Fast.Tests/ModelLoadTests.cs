using System.Buffers.Binary;
using Bptt.Fast.Serving;
using Bptt.Fast.Tests.Adversarial;
using Bptt.Fast.Training;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>RnnModel.Load takes θ, the shape and the activation from the checkpoint: a ReLU network never runs as tanh.</summary>
public sealed class ModelLoadTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"bptt-load-{Environment.ProcessId}-{Guid.NewGuid():N}");

    public ModelLoadTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(Activation.Tanh)]
    [InlineData(Activation.Relu)]
    [InlineData(Activation.Sigmoid)]
    public void LoadReadsShapeAndActivationFromTheFileAndTheStream(Activation f)
    {
        var shape = new RnnShape(6, 10, 5);
        RnnParameters theta = SequenceServingTests.Theta(shape, 50);
        var adam = new Adam(shape);
        string path = Path.Combine(_dir, $"{f}.ckpt");
        Checkpoint.Save(path, theta, f, adam, carriedState: new float[] { 1f, 2f });
        byte[] bytes = File.ReadAllBytes(path);
        var expected = new RnnModel(theta, f);
        foreach (RnnModel loaded in new[] { RnnModel.Load(path), RnnModel.Load(new MemoryStream(bytes)), RnnModel.Load(new NonSeekableStream(bytes)) })
        {
            Assert.Equal(shape, loaded.Shape);
            Assert.Equal(f, loaded.Activation);
            Assert.Equal(theta.Values.ToArray(), loaded.Parameters.Values.ToArray());
            RnnState a = expected.CreateState(), b = loaded.CreateState();
            var ya = new float[shape.OutputSize];
            var yb = new float[shape.OutputSize];
            foreach (int token in new[] { 1, 4, 0, 5, 2 })
            {
                expected.Step(token, a, ya);
                loaded.Step(token, b, yb);
                Assert.Equal(ya, yb);
            }
        }

        CheckpointInfo info = Checkpoint.ReadInfo(new NonSeekableStream(bytes));
        Assert.Equal(f, info.Activation);
        Assert.Equal(2, info.CarriedStateLength);
        Assert.Equal(Checkpoint.ReadInfo(path), info);
    }

    [Fact]
    public void ALargeThetaArrivesThroughAPipeInPieces()
    {
        // More than the 4 MiB a streamed θ starts with, so the staging buffer grows while the data arrives.
        var shape = new RnnShape(64, 1100, 64);
        RnnParameters theta = SequenceServingTests.Theta(shape, 51);
        using var stream = new MemoryStream();
        Checkpoint.Save(stream, theta, Activation.Relu);
        RnnModel loaded = RnnModel.Load(new NonSeekableStream(stream.ToArray(), chunk: 1 << 16));
        Assert.Equal(Activation.Relu, loaded.Activation);
        Assert.Equal(theta.Values.ToArray(), loaded.Parameters.Values.ToArray());
    }

    [Fact]
    public void BadSourcesAreRefused()
    {
        Assert.Equal("path", Assert.Throws<ArgumentNullException>(() => RnnModel.Load((string)null!)).ParamName);
        Assert.Equal("path", Assert.Throws<ArgumentException>(() => RnnModel.Load("")).ParamName);
        Assert.Equal("stream", Assert.Throws<ArgumentNullException>(() => RnnModel.Load((Stream)null!)).ParamName);
        Assert.Equal("stream", Assert.Throws<ArgumentNullException>(() => Checkpoint.ReadInfo((Stream)null!)).ParamName);
        using var writeOnly = new FileStream(Path.Combine(_dir, "w"), FileMode.Create, FileAccess.Write);
        Assert.Equal("stream", Assert.Throws<ArgumentException>(() => RnnModel.Load(writeOnly)).ParamName);
        Assert.Throws<FileNotFoundException>(() => RnnModel.Load(Path.Combine(_dir, "missing.ckpt")));

        var shape = new RnnShape(3, 4, 2);
        using var stream = new MemoryStream();
        Checkpoint.Save(stream, SequenceServingTests.Theta(shape, 52), Activation.Sigmoid);
        byte[] bytes = stream.ToArray();
        Assert.Throws<InvalidDataException>(() => RnnModel.Load(new MemoryStream(bytes[..^1])));
        Assert.Throws<InvalidDataException>(() => RnnModel.Load(new NonSeekableStream(bytes[..^5])));
        byte[] corrupt = bytes.ToArray();
        corrupt[60] ^= 1;
        Assert.Throws<InvalidDataException>(() => RnnModel.Load(new MemoryStream(corrupt)));
        byte[] relu = bytes.ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(relu.AsSpan(Fixtures.ActivationAt), 9);
        Assert.Throws<InvalidDataException>(() => RnnModel.Load(new MemoryStream(relu)));
    }

    [Fact]
    public void AHeaderThatPromisesAHugeThetaAllocatesOnlyWhatArrives()
    {
        // A header for 2³⁰ − ε parameters, then 1 MiB of zeros and the end of the pipe: the load fails on the
        // truncation having staged about what arrived, not the 4 GiB the header promises.
        using var stream = new MemoryStream();
        Checkpoint.Save(stream, SequenceServingTests.Theta(new RnnShape(1, 1, 1), 53), Activation.Tanh);
        byte[] header = stream.ToArray()[..Fixtures.ThetaAt(0)];
        var big = new RnnShape(1, 32000, 1);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(Fixtures.HiddenAt), (uint)big.HiddenSize);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(Fixtures.ThetaAt(0) - 4), (uint)big.ParameterCount);
        byte[] data = [.. header, .. new byte[1 << 20]];
        long before = GC.GetAllocatedBytesForCurrentThread();
        Assert.Throws<InvalidDataException>(() => RnnModel.Load(new NonSeekableStream(data, chunk: 1 << 16)));
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 64L << 20);
    }
}
