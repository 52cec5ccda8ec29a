using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using Bptt.Fast.Internals;
using Bptt.Fast.Training;

namespace Bptt.Fast.Serving;

/// <summary>What a checkpoint holds besides the numbers.</summary>
/// <param name="Shape">The network sizes.</param>
/// <param name="Activation">f.</param>
/// <param name="StepCount">Optimizer steps taken when it was saved.</param>
/// <param name="RandomState">The caller's random-generator state (0 when none was saved).</param>
/// <param name="OptimizerName">The optimizer's type name, or empty when no optimizer state was saved.</param>
/// <param name="StateBlocks">θ-shaped optimizer state blocks saved.</param>
/// <param name="CarriedStateLength">Floats of carried stream state saved (e.g. a truncated-BPTT hidden state), 0 for none.</param>
public sealed record CheckpointInfo(RnnShape Shape, Activation Activation, long StepCount, ulong RandomState, string OptimizerName, int StateBlocks, int CarriedStateLength = 0);

/// <summary>
/// Saves and loads θ, optionally with the optimizer state, the step count and a random-generator state.
/// <para>Format (version 1, little-endian): the 8 ASCII bytes <c>BPTTCKPT</c>; u32 version; u32 I, H, O; u32 activation;
/// i64 step count; u64 random state; u32 byte length and UTF-8 bytes of the optimizer's type name (0 for none); u32 number
/// of state blocks S; u32 parameter count P; P float32 of θ (the block layout of <see cref="RnnShape"/>); S × P float32 of
/// optimizer state; u32 CRC-32 (IEEE) of every byte before it.</para>
/// Saving to a path is atomic: a temporary file in the same folder is written, flushed to disk and renamed over the
/// target, so a crash mid-save leaves the previous checkpoint intact. Loading reads and checks the whole file (length,
/// magic, version, checksum, shape, optimizer) before it changes anything; a bad file throws <see cref="InvalidDataException"/>.
/// </summary>
public static class Checkpoint
{
    /// <summary>The current format version.</summary>
    public const int Version = 1;

    /// <summary>
    /// The largest step count a checkpoint holds: 2⁵³, the last integer a double represents exactly. Far beyond any run,
    /// and far enough below <see cref="long.MaxValue"/> that an optimizer restored with it never overflows its counter.
    /// </summary>
    public const long MaxStepCount = 1L << 53;

    private static ReadOnlySpan<byte> Magic => "BPTTCKPT"u8;

    /// <summary>Writes a checkpoint to <paramref name="stream"/>.</summary>
    /// <param name="stream">A writable stream.</param>
    /// <param name="parameters">θ.</param>
    /// <param name="activation">f, recorded in the header.</param>
    /// <param name="optimizer">Optional: its state blocks and step count are saved too.</param>
    /// <param name="randomState">Optional: the caller's random-generator state.</param>
    /// <param name="carriedState">Optional: stream state to carry, e.g. <see cref="TruncatedBpttTrainer.State"/>.</param>
    public static void Save(Stream stream, RnnParameters parameters, Activation activation, Optimizer? optimizer = null, ulong randomState = 0, ReadOnlySpan<float> carriedState = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        byte[] bytes = Serialize(parameters, activation, optimizer, randomState, carriedState);
        stream.Write(bytes);
        stream.Flush();
    }

    /// <summary>Writes a checkpoint file atomically (temporary file, flush to disk, rename).</summary>
    /// <param name="path">The file to create or replace.</param>
    /// <param name="parameters">θ.</param>
    /// <param name="activation">f.</param>
    /// <param name="optimizer">Optional optimizer state.</param>
    /// <param name="randomState">Optional random-generator state.</param>
    /// <param name="carriedState">Optional stream state to carry.</param>
    public static void Save(string path, RnnParameters parameters, Activation activation, Optimizer? optimizer = null, ulong randomState = 0, ReadOnlySpan<float> carriedState = default) =>
        Save(path, parameters, activation, optimizer, randomState, carriedState, wrap: null);

    internal static void Save(string path, RnnParameters parameters, Activation activation, Optimizer? optimizer, ulong randomState, ReadOnlySpan<float> carriedState, Func<Stream, Stream>? wrap)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        byte[] bytes = Serialize(parameters, activation, optimizer, randomState, carriedState);
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full) ?? ".";
        string temp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Environment.TickCount64}.tmp");
        try
        {
            using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                Stream target = wrap is null ? file : wrap(file);
                target.Write(bytes);
                target.Flush();
                file.Flush(flushToDisk: true);
            }

            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }

    /// <summary>Reads a checkpoint into <paramref name="parameters"/> (and <paramref name="optimizer"/>, if given and saved).</summary>
    /// <param name="stream">A readable stream positioned at the checkpoint.</param>
    /// <param name="parameters">Receives θ; its shape must match the file's.</param>
    /// <param name="optimizer">Optional: receives the saved state and step count; its type must match.</param>
    /// <param name="carriedState">Optional: receives the carried stream state; its length must match the saved one.</param>
    /// <returns>The header.</returns>
    public static CheckpointInfo Load(Stream stream, RnnParameters parameters, Optimizer? optimizer = null, Span<float> carriedState = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        using var buffer = new MemoryStream();
        stream.CopyTo(buffer);
        return Deserialize(buffer.GetBuffer().AsSpan(0, (int)buffer.Length), parameters, optimizer, carriedState);
    }

    /// <summary>Reads a checkpoint file.</summary>
    /// <param name="path">The file.</param>
    /// <param name="parameters">Receives θ.</param>
    /// <param name="optimizer">Optional: receives the optimizer state.</param>
    /// <param name="carriedState">Optional: receives the carried stream state.</param>
    /// <returns>The header.</returns>
    public static CheckpointInfo Load(string path, RnnParameters parameters, Optimizer? optimizer = null, Span<float> carriedState = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return Deserialize(File.ReadAllBytes(path), parameters, optimizer, carriedState);
    }

    /// <summary>Reads only the header of a checkpoint file (after checking the whole file), e.g. to size the parameters.</summary>
    /// <param name="path">The file.</param>
    /// <returns>The header.</returns>
    public static CheckpointInfo ReadInfo(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        byte[] bytes = File.ReadAllBytes(path);
        return Parse(bytes, out _, out _);
    }

    private static byte[] Serialize(RnnParameters parameters, Activation activation, Optimizer? optimizer, ulong randomState, ReadOnlySpan<float> carried)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (!Enum.IsDefined(activation))
        {
            throw new ArgumentOutOfRangeException(nameof(activation), activation, "Expected Tanh, Relu or Sigmoid.");
        }

        if (optimizer is not null)
        {
            Guard.SameShape(parameters.Shape, optimizer.Shape, nameof(optimizer));
        }

        RefuseNonFinite(parameters, optimizer, carried);
        RnnShape s = parameters.Shape;
        int p = s.ParameterCount, blocks = optimizer?.State.Count ?? 0;
        byte[] name = Encoding.UTF8.GetBytes(optimizer?.GetType().Name ?? "");
        int headerLength = 8 + (4 * 5) + 8 + 8 + 4 + name.Length + 4 + 4;
        long total = headerLength + (4L * p * (1 + blocks)) + 4 + (4L * carried.Length) + 4;
        var bytes = new byte[total > Array.MaxLength ? throw new ArgumentException("The checkpoint would exceed 2 GiB.", nameof(parameters)) : (int)total];
        var w = new Writer(bytes);
        w.Bytes(Magic);
        w.U32(Version);
        w.U32((uint)s.InputSize);
        w.U32((uint)s.HiddenSize);
        w.U32((uint)s.OutputSize);
        w.U32((uint)activation);
        w.I64(optimizer?.StepCount ?? 0);
        w.U64(randomState);
        w.U32((uint)name.Length);
        w.Bytes(name);
        w.U32((uint)blocks);
        w.U32((uint)p);
        w.Floats(parameters.Values);
        for (int b = 0; b < blocks; b++)
        {
            w.Floats(optimizer!.State[b].Values);
        }

        w.U32((uint)carried.Length);
        w.Floats(carried);
        w.U32(Crc32.HashToUInt32(bytes.AsSpan(0, w.Position)));
        return bytes;
    }

    /// <summary>Save's rule: no NaN or ±∞ and no step count beyond <see cref="MaxStepCount"/> is ever written.</summary>
    private static void RefuseNonFinite(RnnParameters parameters, Optimizer? optimizer, ReadOnlySpan<float> carried)
    {
        int bad = Guard.FirstNonFinite<float>(parameters.Values);
        if (bad >= 0)
        {
            throw new ArgumentException($"θ element {bad} is {parameters.Values[bad]}; a checkpoint holds finite values only.", nameof(parameters));
        }

        for (int b = 0; b < (optimizer?.State.Count ?? 0); b++)
        {
            Span<float> block = optimizer!.State[b].Values;
            bad = Guard.FirstNonFinite<float>(block);
            if (bad >= 0)
            {
                throw new ArgumentException($"Optimizer state block {b} element {bad} is {block[bad]}; a checkpoint holds finite values only.", nameof(optimizer));
            }
        }

        if (optimizer is not null && optimizer.StepCount > MaxStepCount)
        {
            throw new ArgumentException($"The optimizer's step count {optimizer.StepCount} exceeds {MaxStepCount}, the most a checkpoint holds.", nameof(optimizer));
        }

        bad = Guard.FirstNonFinite(carried);
        if (bad >= 0)
        {
            throw new ArgumentException($"Carried state element {bad} is {carried[bad]}; a checkpoint holds finite values only.", "carriedState");
        }
    }

    private static CheckpointInfo Deserialize(ReadOnlySpan<byte> bytes, RnnParameters parameters, Optimizer? optimizer, Span<float> carried)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        CheckpointInfo info = Parse(bytes, out int thetaOffset, out int p);
        if (!carried.IsEmpty && carried.Length != info.CarriedStateLength)
        {
            throw new InvalidDataException($"The checkpoint carries {info.CarriedStateLength} floats of stream state; the target holds {carried.Length}.");
        }

        if (info.Shape != parameters.Shape)
        {
            throw new InvalidDataException($"Checkpoint shape {info.Shape} does not match the target's shape {parameters.Shape}.");
        }

        if (optimizer is not null)
        {
            if (info.OptimizerName.Length == 0)
            {
                throw new InvalidDataException("The checkpoint holds no optimizer state, but an optimizer was given to restore.");
            }

            if (info.OptimizerName != optimizer.GetType().Name || info.StateBlocks != optimizer.State.Count)
            {
                throw new InvalidDataException($"The checkpoint holds {info.OptimizerName} state ({info.StateBlocks} blocks), not {optimizer.GetType().Name} ({optimizer.State.Count} blocks).");
            }

            Guard.SameShape(parameters.Shape, optimizer.Shape, nameof(optimizer));
        }

        if (!BitConverter.IsLittleEndian)
        {
            throw new InvalidDataException("Big-endian hosts are not supported.");
        }

        ReadOnlySpan<float> theta = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes.Slice(thetaOffset, 4 * p));

        theta.CopyTo(parameters.Values);
        if (optimizer is not null)
        {
            for (int b = 0; b < info.StateBlocks; b++)
            {
                System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes.Slice(thetaOffset + (4 * p * (b + 1)), 4 * p)).CopyTo(optimizer.State[b].Values);
            }

            optimizer.RestoreStepCount(info.StepCount);
        }

        if (!carried.IsEmpty)
        {
            int offset = thetaOffset + (4 * p * (1 + info.StateBlocks)) + 4;
            System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes.Slice(offset, 4 * carried.Length)).CopyTo(carried);
        }

        return info;
    }

    private static void RejectNonFinite(ReadOnlySpan<byte> bytes, string block)
    {
        ReadOnlySpan<float> values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes);
        int bad = Guard.FirstNonFinite(values);
        if (bad >= 0)
        {
            throw new InvalidDataException($"The checkpoint's {block} element {bad} is {values[bad]}; a checkpoint holds finite values only.");
        }
    }

    private static CheckpointInfo Parse(ReadOnlySpan<byte> bytes, out int thetaOffset, out int p)
    {
        const int Fixed = 8 + (4 * 5) + 8 + 8 + 4;
        if (bytes.Length < Fixed + 8 + 4)
        {
            throw new InvalidDataException($"Truncated checkpoint: {bytes.Length} bytes is shorter than any header.");
        }

        if (!bytes[..8].SequenceEqual(Magic))
        {
            throw new InvalidDataException("Not a Bptt.Fast checkpoint: the file does not start with BPTTCKPT.");
        }

        uint version = BinaryPrimitives.ReadUInt32LittleEndian(bytes[8..]);
        if (version != Version)
        {
            throw new InvalidDataException($"Unsupported checkpoint version {version}; this library reads version {Version}.");
        }

        uint stored = BinaryPrimitives.ReadUInt32LittleEndian(bytes[^4..]);
        uint actual = Crc32.HashToUInt32(bytes[..^4]);
        if (stored != actual)
        {
            throw new InvalidDataException($"Checkpoint checksum mismatch (stored {stored:X8}, computed {actual:X8}): the file is truncated or corrupted.");
        }

        var r = new Reader(bytes, 12);
        var shape = new RnnShape((int)r.U32(), (int)r.U32(), (int)r.U32());
        uint activation = r.U32();
        long step = r.I64();
        ulong random = r.U64();
        int nameLength = (int)r.U32();
        if (nameLength < 0 || nameLength > 256 || r.Position + nameLength + 8 > bytes.Length)
        {
            throw new InvalidDataException($"Corrupted checkpoint header: optimizer name length {nameLength}.");
        }

        string name = Encoding.UTF8.GetString(r.Take(nameLength));
        int blocks = (int)r.U32();
        p = (int)r.U32();
        try
        {
            shape.Validate("shape");
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw new InvalidDataException($"Corrupted checkpoint header: {e.Message}", e);
        }

        if (!Enum.IsDefined((Activation)activation) || step < 0 || step > MaxStepCount || (name.Length == 0 && (step != 0 || blocks != 0)) || blocks < 0 || blocks > 8 || p != shape.ParameterCount)
        {
            throw new InvalidDataException($"Corrupted checkpoint header: activation {activation}, step {step}, {blocks} state blocks, {p} parameters for {shape}.");
        }

        thetaOffset = r.Position;
        long carriedAt = thetaOffset + (4L * p * (1 + blocks));
        if (carriedAt + 8 > bytes.Length)
        {
            throw new InvalidDataException($"Checkpoint length {bytes.Length} bytes; the header promises at least {carriedAt + 8}.");
        }

        uint carried = BinaryPrimitives.ReadUInt32LittleEndian(bytes[(int)carriedAt..]);
        long expected = carriedAt + 4 + (4L * carried) + 4;
        if (bytes.Length != expected)
        {
            throw new InvalidDataException($"Checkpoint length {bytes.Length} bytes; the header promises {expected}.");
        }

        RejectNonFinite(bytes.Slice(thetaOffset, 4 * p), "θ");
        for (int b = 0; b < blocks; b++)
        {
            RejectNonFinite(bytes.Slice(thetaOffset + (4 * p * (b + 1)), 4 * p), $"optimizer state block {b}");
        }

        RejectNonFinite(bytes.Slice((int)carriedAt + 4, 4 * (int)carried), "carried state");
        return new CheckpointInfo(shape, (Activation)activation, step, random, name, blocks, (int)carried);
    }

    private ref struct Writer(Span<byte> bytes)
    {
        private readonly Span<byte> _bytes = bytes;

        public int Position { get; private set; }

        public void Bytes(ReadOnlySpan<byte> value)
        {
            value.CopyTo(_bytes[Position..]);
            Position += value.Length;
        }

        public void U32(uint value)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(_bytes[Position..], value);
            Position += 4;
        }

        public void I64(long value)
        {
            BinaryPrimitives.WriteInt64LittleEndian(_bytes[Position..], value);
            Position += 8;
        }

        public void U64(ulong value)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(_bytes[Position..], value);
            Position += 8;
        }

        public void Floats(ReadOnlySpan<float> values)
        {
            foreach (float v in values)
            {
                BinaryPrimitives.WriteSingleLittleEndian(_bytes[Position..], v);
                Position += 4;
            }
        }
    }

    private ref struct Reader(ReadOnlySpan<byte> bytes, int position)
    {
        private readonly ReadOnlySpan<byte> _bytes = bytes;

        public int Position { get; private set; } = position;

        public ReadOnlySpan<byte> Take(int count)
        {
            ReadOnlySpan<byte> slice = _bytes.Slice(Position, count);
            Position += count;
            return slice;
        }

        public uint U32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));

        public long I64() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));

        public ulong U64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8));
    }
}
