using System.Buffers.Binary;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using Bptt.Fast.Serving;
using Bptt.Fast.Training;
using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>Deterministic models, checkpoint byte surgery and snapshots of a load's destination.</summary>
internal static class Fixtures
{
    /// <summary>Offsets of the fixed header fields of a version-2 checkpoint (version 1 has the same up to the name's length, then the name at 48).</summary>
    public const int VersionAt = 8, InputAt = 12, HiddenAt = 16, OutputAt = 20, ActivationAt = 24, StepAt = 28, RandomAt = 36, NameLengthAt = 44,
        LayersAt = 48, DirectionsAt = 52, DropoutAt = 56, NameAt = 60;

    public static byte[] Bits(ReadOnlySpan<float> values) => MemoryMarshal.AsBytes(values).ToArray();

    /// <summary>Every concrete optimizer of the library, each with non-default settings, in a fixed order.</summary>
    public static IReadOnlyList<(string Label, Func<RnnShape, Optimizer> Create)> Optimizers { get; } =
    [
        ("GradientDescent", s => new GradientDescent(s, 0.05f, weightDecay: 0.01f)),
        ("Momentum", s => new Momentum(s, 0.05f, 0.8f)),
        ("Momentum (Nesterov)", s => new Momentum(s, 0.05f, 0.9f, nesterov: true, weightDecay: 0.001f)),
        ("Adagrad", s => new Adagrad(s, 0.1f, weightDecay: 0.001f)),
        ("Adam", s => new Adam(s, 0.01f)),
        ("AdamW", s => new AdamW(s, 0.01f)),
    ];

    public static RnnParameters Theta(RnnShape shape, ulong seed)
    {
        var theta = new RnnParameters(shape);
        theta.InitializeGlorot(seed);
        return theta;
    }

    /// <summary>A fixed gradient for step <paramref name="step"/>: every element depends on the index and the step.</summary>
    public static RnnParameters Gradient(RnnShape shape, int step)
    {
        var grad = new RnnParameters(shape);
        for (int k = 0; k < grad.Values.Length; k++)
        {
            grad.Values[k] = MathF.Sin((0.7f * k) + step) * 0.5f;
        }

        return grad;
    }

    public static void Train(Optimizer optimizer, RnnParameters theta, int steps)
    {
        for (int step = 0; step < steps; step++)
        {
            Assert.True(optimizer.Step(theta, Gradient(theta.Shape, step)));
        }
    }

    public static byte[] Save(RnnParameters theta, Optimizer? optimizer = null, ReadOnlySpan<float> carried = default, Activation activation = Activation.Tanh, ulong random = 0, float dropout = 0f)
    {
        using var stream = new MemoryStream();
        Checkpoint.Save(stream, theta, activation, optimizer, random, carried, dropout);
        return stream.ToArray();
    }

    /// <summary>Rewrites the trailing CRC-32 so that the corruption reaches the field checks.</summary>
    public static void RecomputeCrc(byte[] bytes)
    {
        if (bytes.Length >= 4)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(bytes.Length - 4), Crc32.HashToUInt32(bytes.AsSpan(0, bytes.Length - 4)));
        }
    }

    /// <summary>Offset of the first θ float in a checkpoint whose optimizer name has <paramref name="nameLength"/> bytes.</summary>
    public static int ThetaAt(int nameLength) => NameAt + nameLength + 8;
}

/// <summary>Everything a refused load must leave as it was: θ, optimizer state and step count, carried state.</summary>
internal sealed class Destination
{
    private readonly byte[] _theta;
    private readonly byte[][] _state;
    private readonly long _step;
    private readonly byte[] _carried;

    public Destination(RnnShape shape, Optimizer? optimizer, int carriedLength)
    {
        Parameters = new RnnParameters(shape);
        Parameters.Values.Fill(42f);
        Optimizer = optimizer;
        if (optimizer is not null)
        {
            foreach (RnnParameters block in optimizer.State)
            {
                block.Values.Fill(-3f);
            }

            optimizer.RestoreStepCount(77);
        }

        Carried = new float[carriedLength];
        Carried.AsSpan().Fill(9f);
        _theta = Fixtures.Bits(Parameters.Values);
        _state = optimizer?.State.Select(s => Fixtures.Bits(s.Values)).ToArray() ?? [];
        _step = optimizer?.StepCount ?? 0;
        _carried = Fixtures.Bits(Carried);
    }

    public RnnParameters Parameters { get; }

    public Optimizer? Optimizer { get; }

    public float[] Carried { get; }

    public void AssertUnchanged()
    {
        Assert.Equal(_theta, Fixtures.Bits(Parameters.Values));
        Assert.Equal(_state, Optimizer?.State.Select(s => Fixtures.Bits(s.Values)).ToArray() ?? []);
        Assert.Equal(_step, Optimizer?.StepCount ?? 0);
        Assert.Equal(_carried, Fixtures.Bits(Carried));
    }

    /// <summary>After a successful load: every value the load could have written is finite.</summary>
    public void AssertFinite()
    {
        Assert.True(Guard(Parameters.Values) && (Optimizer?.State.All(s => Guard(s.Values)) ?? true) && Guard(Carried));
        Assert.InRange(Optimizer?.StepCount ?? 0, 0, 1L << 53);

        static bool Guard(ReadOnlySpan<float> values)
        {
            foreach (float v in values)
            {
                if (!float.IsFinite(v))
                {
                    return false;
                }
            }

            return true;
        }
    }
}

/// <summary>A read-only stream that cannot seek and returns at most <c>chunk</c> bytes per read, as a pipe or socket would.</summary>
internal sealed class NonSeekableStream(byte[] bytes, int chunk = 7) : Stream
{
    private int _position;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        int n = Math.Min(Math.Min(buffer.Length, chunk), bytes.Length - _position);
        bytes.AsSpan(_position, n).CopyTo(buffer);
        _position += n;
        return n;
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>A non-seekable stream: <c>prefix</c>, then zeros forever. Counts what was read.</summary>
internal sealed class EndlessStream(byte[] prefix) : Stream
{
    public long Consumed { get; private set; }

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        buffer.Clear();
        if (Consumed < prefix.Length)
        {
            int n = (int)Math.Min(buffer.Length, prefix.Length - Consumed);
            prefix.AsSpan((int)Consumed, n).CopyTo(buffer);
        }

        Consumed += buffer.Length;
        return buffer.Length;
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
