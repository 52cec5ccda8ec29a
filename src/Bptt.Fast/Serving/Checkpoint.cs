using System.Buffers;
using System.Buffers.Binary;
using System.ComponentModel;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using System.Text;
using Bptt.Fast.Internals;
using Bptt.Fast.Model;
using Bptt.Fast.Training;

namespace Bptt.Fast.Serving;

/// <summary>What a checkpoint holds besides the numbers.</summary>
/// <param name="Shape">The network sizes, with the layers and directions (1 and 1 for a version-1 file).</param>
/// <param name="Activation">f.</param>
/// <param name="StepCount">Optimizer steps taken when it was saved.</param>
/// <param name="RandomState">The caller's random-generator state (0 when none was saved).</param>
/// <param name="OptimizerName">The optimizer's type name, or empty when no optimizer state was saved.</param>
/// <param name="StateBlocks">θ-shaped optimizer state blocks saved.</param>
/// <param name="CarriedStateLength">Floats of carried stream state saved (e.g. a truncated-BPTT hidden state), 0 for none.</param>
/// <param name="Dropout">The dropout probability between layers that training used, in [0, 1) (0 for a version-1 file).</param>
public sealed record CheckpointInfo(RnnShape Shape, Activation Activation, long StepCount, ulong RandomState, string OptimizerName, int StateBlocks, int CarriedStateLength = 0, float Dropout = 0f);

/// <summary>
/// Saves and loads θ, optionally with the optimizer state, the step count, a random-generator state and carried stream
/// state, together with the network's configuration (layers, directions, the dropout rate of training).
/// <para>Format, version 2 (the one written). Every integer and float is little-endian; N is the byte length of the
/// optimizer's name, P the parameter count, S the number of state blocks and C the number of carried floats:</para>
/// <list type="table">
/// <listheader><term>offset</term><description>content</description></listheader>
/// <item><term>0</term><description>8 bytes, the ASCII magic <c>BPTTCKPT</c></description></item>
/// <item><term>8</term><description>u32 version, 2</description></item>
/// <item><term>12, 16, 20</term><description>u32 I, H, O: with L and D below a valid <see cref="RnnShape"/> (each ≥ 1, at most <see cref="RnnShape.MaxParameterCount"/> parameters)</description></item>
/// <item><term>24</term><description>u32 activation: 0 Tanh, 1 Relu, 2 Sigmoid</description></item>
/// <item><term>28</term><description>i64 optimizer step count, in [0, <see cref="MaxStepCount"/>]; 0 when N = 0</description></item>
/// <item><term>36</term><description>u64 random-generator state</description></item>
/// <item><term>44</term><description>u32 N ≤ <see cref="MaxOptimizerNameLength"/></description></item>
/// <item><term>48</term><description>u32 L, the layers (<see cref="RnnShape.Layers"/>), in [1, <see cref="RnnShape.MaxLayers"/>]</description></item>
/// <item><term>52</term><description>u32 D, the directions (<see cref="RnnShape.Directions"/>): 1, or 2 for a bidirectional network</description></item>
/// <item><term>56</term><description>float32 dropout probability between layers used in training, finite and in [0, 1)</description></item>
/// <item><term>60</term><description>N bytes: the optimizer's type name in UTF-8 (no control characters); N = 0 when no optimizer was saved</description></item>
/// <item><term>60 + N</term><description>u32 S ≤ <see cref="MaxStateBlocks"/>: the optimizer's <see cref="Optimizer.State"/> blocks (0 for <see cref="GradientDescent"/>; 0 when N = 0)</description></item>
/// <item><term>64 + N</term><description>u32 P, equal to the shape's <see cref="RnnShape.ParameterCount"/></description></item>
/// <item><term>68 + N</term><description>P float32: θ in the block layout of <see cref="RnnShape"/> (every layer and direction, then the head)</description></item>
/// <item><term>68 + N + 4P</term><description>S × P float32: the state blocks, in <see cref="Optimizer.State"/> order</description></item>
/// <item><term>A = 68 + N + 4P(1 + S)</term><description>u32 C ≤ <see cref="MaxCarriedStateLength"/></description></item>
/// <item><term>A + 4</term><description>C float32: carried stream state (e.g. <see cref="TruncatedBpttTrainer.State"/>)</description></item>
/// <item><term>A + 4 + 4C</term><description>u32 CRC-32 (IEEE 802.3, as <see cref="Crc32"/>) of every byte before it</description></item>
/// </list>
/// <para>The file is exactly A + 8 + 4C bytes; nothing follows the checksum. Every float is finite.</para>
/// <para>Version 1 (still read) is the same without bytes 48–59: the version field is 1, the name starts at 48 and every
/// later offset is 12 less (S at 48 + N, P at 52 + N, θ at 56 + N, A = 56 + N + 4P(1 + S)). A version-1 file means
/// L = 1, D = 1 and dropout 0.</para>
/// <para>Saving refuses NaN and ±∞ and values beyond these limits before it writes anything. Saving to a path is
/// atomic: a uniquely named temporary file in the same folder is written, flushed to disk and renamed over the target,
/// so a crash mid-save leaves the previous checkpoint intact and concurrent saves to one path all succeed, the last
/// rename winning; temporary files that crashed processes left behind are swept by later saves. Loading reads the
/// fixed header first, checks every field and what it implies (including the shape and optimizer type the caller
/// expects) before it allocates, reads exactly the length the header promises, checks the checksum and that every
/// value is finite, and only then changes the caller's objects; a bad file throws <see cref="InvalidDataException"/>
/// and changes nothing.</para>
/// </summary>
public static class Checkpoint
{
    /// <summary>The format version written; versions 1 and 2 are read.</summary>
    public const int Version = 2;

    /// <summary>
    /// The largest step count a checkpoint holds: 2⁵³, the last integer a double represents exactly. Far beyond any run,
    /// and far enough below <see cref="long.MaxValue"/> that an optimizer restored with it never overflows its counter.
    /// </summary>
    public const long MaxStepCount = 1L << 53;

    /// <summary>The most optimizer state blocks a checkpoint holds (the library's optimizers keep at most 2).</summary>
    public const int MaxStateBlocks = 8;

    /// <summary>The longest optimizer type name a checkpoint holds, in UTF-8 bytes.</summary>
    public const int MaxOptimizerNameLength = 256;

    /// <summary>The most floats of carried stream state a checkpoint holds (2²⁴, 64 MiB).</summary>
    public const int MaxCarriedStateLength = 1 << 24;

    /// <summary>Version 1's fixed header: magic, version, I, H, O, activation, step, random state and the name's length.</summary>
    private const int FixedHeaderLengthV1 = 48;

    /// <summary>Version 2's fixed header: version 1's, then layers, directions and dropout.</summary>
    private const int FixedHeaderLength = FixedHeaderLengthV1 + 12;

    /// <summary>Floats checked (and skipped) per read when a block is not kept.</summary>
    private const int ChunkBytes = 1 << 16;

    /// <summary>Floats a growing θ staging buffer starts with (4 MiB).</summary>
    private const int GrowStart = 1 << 20;

    /// <summary>Block numbers of <see cref="Source.Floats"/> besides the optimizer's 0 … S − 1.</summary>
    private const int ThetaBlock = -1, CarriedBlock = -2;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private static ReadOnlySpan<byte> Magic => "BPTTCKPT"u8;

    /// <summary>Writes a checkpoint to <paramref name="stream"/>.</summary>
    /// <param name="stream">A writable stream.</param>
    /// <param name="parameters">θ.</param>
    /// <param name="activation">f, recorded in the header.</param>
    /// <param name="optimizer">Optional: its state blocks and step count are saved too.</param>
    /// <param name="randomState">Optional: the caller's random-generator state.</param>
    /// <param name="carriedState">Optional: stream state to carry, e.g. <see cref="TruncatedBpttTrainer.State"/>.</param>
    /// <param name="dropout">Optional: the dropout probability between layers that training used (<see cref="BpttEngine.Dropout"/>), recorded in the header.</param>
    /// <exception cref="ArgumentNullException"><paramref name="stream"/> or <paramref name="parameters"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">
    /// <paramref name="activation"/> is not a defined value, or <paramref name="dropout"/> is NaN, ±∞ or outside [0, 1). Nothing is written then.
    /// </exception>
    /// <exception cref="ArgumentException">
    /// The stream cannot write; or (nothing written) θ holds NaN or ±∞ (<c>parameters</c>); the optimizer's shape differs
    /// from θ's, its state holds NaN or ±∞, its step count exceeds <see cref="MaxStepCount"/>, it has more than
    /// <see cref="MaxStateBlocks"/> state blocks or its type name is longer than <see cref="MaxOptimizerNameLength"/> bytes
    /// or holds a control character (<c>optimizer</c>); the carried state holds NaN or ±∞ or more than
    /// <see cref="MaxCarriedStateLength"/> floats (<c>carriedState</c>).
    /// </exception>
    /// <exception cref="IOException">The stream failed while writing (it may then hold part of a checkpoint).</exception>
    public static void Save(Stream stream, RnnParameters parameters, Activation activation, Optimizer? optimizer = null, ulong randomState = 0, ReadOnlySpan<float> carriedState = default, float dropout = 0f)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanWrite)
        {
            throw new ArgumentException("The stream does not support writing.", nameof(stream));
        }

        CheckSavable(parameters, activation, optimizer, carriedState, dropout);
        Write(stream, parameters, activation, optimizer, randomState, carriedState, dropout);
        stream.Flush();
    }

    /// <summary>
    /// The signature of the library's releases before <paramref name="carriedState"/> was followed by a dropout rate,
    /// kept for callers compiled against them: <see cref="Save(Stream, RnnParameters, Activation, Optimizer?, ulong, ReadOnlySpan{float}, float)"/> with dropout 0.
    /// </summary>
    /// <param name="stream">A writable stream.</param>
    /// <param name="parameters">θ.</param>
    /// <param name="activation">f.</param>
    /// <param name="optimizer">Its state blocks and step count are saved too, when not null.</param>
    /// <param name="randomState">The caller's random-generator state.</param>
    /// <param name="carriedState">Stream state to carry.</param>
    [EditorBrowsable(EditorBrowsableState.Never)]
    public static void Save(Stream stream, RnnParameters parameters, Activation activation, Optimizer? optimizer, ulong randomState, ReadOnlySpan<float> carriedState) =>
        Save(stream, parameters, activation, optimizer, randomState, carriedState, 0f);

    /// <summary>
    /// Writes a checkpoint file atomically: a uniquely named temporary file <c>.{name}.{process id}.{random}.tmp</c> in
    /// the same folder is written, flushed to disk and renamed over the target, so readers and concurrent saves (threads
    /// or processes) only ever see a complete checkpoint at <paramref name="path"/>. Temporary files of the same target
    /// left by a crashed process are deleted first: those last written more than 10 minutes ago whose process is not
    /// running, and any last written more than a day ago.
    /// </summary>
    /// <param name="path">The file to create or replace.</param>
    /// <param name="parameters">θ.</param>
    /// <param name="activation">f.</param>
    /// <param name="optimizer">Optional optimizer state.</param>
    /// <param name="randomState">Optional random-generator state.</param>
    /// <param name="carriedState">Optional stream state to carry.</param>
    /// <param name="dropout">Optional: the dropout probability between layers that training used, in [0, 1).</param>
    /// <exception cref="ArgumentNullException"><paramref name="path"/> or <paramref name="parameters"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">
    /// <paramref name="activation"/> is not a defined value, or <paramref name="dropout"/> is NaN, ±∞ or outside [0, 1).
    /// The target is then neither created nor changed.
    /// </exception>
    /// <exception cref="ArgumentException">
    /// <paramref name="path"/> is empty or ends in a folder separator; or any refusal of <see cref="Save(Stream, RnnParameters, Activation, Optimizer?, ulong, ReadOnlySpan{float}, float)"/>.
    /// The target is then neither created nor changed.
    /// </exception>
    /// <exception cref="IOException">The folder is missing or the file system failed; the previous checkpoint, if any, is intact.</exception>
    /// <exception cref="UnauthorizedAccessException">The folder or target cannot be written.</exception>
    public static void Save(string path, RnnParameters parameters, Activation activation, Optimizer? optimizer = null, ulong randomState = 0, ReadOnlySpan<float> carriedState = default, float dropout = 0f) =>
        Save(path, parameters, activation, optimizer, randomState, carriedState, wrap: null, dropout);

    /// <summary>
    /// The signature of the library's releases before <paramref name="carriedState"/> was followed by a dropout rate,
    /// kept for callers compiled against them: <see cref="Save(string, RnnParameters, Activation, Optimizer?, ulong, ReadOnlySpan{float}, float)"/> with dropout 0.
    /// </summary>
    /// <param name="path">The file to create or replace.</param>
    /// <param name="parameters">θ.</param>
    /// <param name="activation">f.</param>
    /// <param name="optimizer">Its state blocks and step count are saved too, when not null.</param>
    /// <param name="randomState">The caller's random-generator state.</param>
    /// <param name="carriedState">Stream state to carry.</param>
    [EditorBrowsable(EditorBrowsableState.Never)]
    public static void Save(string path, RnnParameters parameters, Activation activation, Optimizer? optimizer, ulong randomState, ReadOnlySpan<float> carriedState) =>
        Save(path, parameters, activation, optimizer, randomState, carriedState, wrap: null, 0f);

    internal static void Save(string path, RnnParameters parameters, Activation activation, Optimizer? optimizer, ulong randomState, ReadOnlySpan<float> carriedState, Func<Stream, Stream>? wrap, float dropout = 0f)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = Path.GetFullPath(path);
        if (Path.GetFileName(full).Length == 0)
        {
            throw new ArgumentException($"'{path}' names a folder, not a file.", nameof(path));
        }

        CheckSavable(parameters, activation, optimizer, carriedState, dropout);
        string temp = AtomicFile.TemporaryPathFor(full);
        bool created = false;
        try
        {
            using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 0))
            {
                created = true;
                Stream target = wrap is null ? file : wrap(file);
                Write(target, parameters, activation, optimizer, randomState, carriedState, dropout);
                target.Flush();
                file.Flush(flushToDisk: true);
            }

            // rename(2) on Unix, MoveFileEx(REPLACE_EXISTING) on Windows: readers see the old file or the new one, never a mix.
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            if (created)
            {
                AtomicFile.TryDelete(temp);
            }

            throw;
        }
    }

    /// <summary>Reads a checkpoint into <paramref name="parameters"/> (and <paramref name="optimizer"/>, if given and saved).</summary>
    /// <param name="stream">A readable stream positioned at the checkpoint; the checkpoint must be the rest of the stream.</param>
    /// <param name="parameters">Receives θ; its shape (sizes, layers and directions) must match the file's.</param>
    /// <param name="optimizer">Optional: receives the saved state and step count; its type must match.</param>
    /// <param name="carriedState">Optional: receives the carried stream state; its length must match the saved one.</param>
    /// <returns>The header.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="stream"/> or <paramref name="parameters"/> is null.</exception>
    /// <exception cref="ArgumentException">The stream cannot read, or <paramref name="optimizer"/>'s shape differs from <paramref name="parameters"/>'.</exception>
    /// <exception cref="InvalidDataException">
    /// The data is not a valid checkpoint (magic, version, a header field out of its range, length, checksum, a non-finite
    /// value), or it does not fit the destination (shape, optimizer type, carried length). Nothing was changed.
    /// </exception>
    /// <exception cref="IOException">The stream failed while reading. Nothing was changed.</exception>
    public static CheckpointInfo Load(Stream stream, RnnParameters parameters, Optimizer? optimizer = null, Span<float> carriedState = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        CheckLoadable(parameters, optimizer);
        if (!stream.CanRead)
        {
            throw new ArgumentException("The stream does not support reading.", nameof(stream));
        }

        return Read(stream, Available(stream), parameters, optimizer, carriedState);
    }

    /// <summary>Reads a checkpoint file.</summary>
    /// <param name="path">The file.</param>
    /// <param name="parameters">Receives θ.</param>
    /// <param name="optimizer">Optional: receives the optimizer state.</param>
    /// <param name="carriedState">Optional: receives the carried stream state.</param>
    /// <returns>The header.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="path"/> or <paramref name="parameters"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="path"/> is empty, or <paramref name="optimizer"/>'s shape differs from <paramref name="parameters"/>'.</exception>
    /// <exception cref="InvalidDataException">As for the stream overload; also when the file is longer than the checkpoint. Nothing was changed.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="IOException">The file cannot be read. Nothing was changed.</exception>
    /// <exception cref="UnauthorizedAccessException">The file cannot be opened for reading.</exception>
    public static CheckpointInfo Load(string path, RnnParameters parameters, Optimizer? optimizer = null, Span<float> carriedState = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        CheckLoadable(parameters, optimizer);
        using FileStream file = OpenRead(path);
        return Read(file, Available(file), parameters, optimizer, carriedState);
    }

    /// <summary>Reads only the header of a checkpoint file (after checking the whole file), e.g. to size the parameters.</summary>
    /// <param name="path">The file.</param>
    /// <returns>The header.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="path"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="path"/> is empty.</exception>
    /// <exception cref="InvalidDataException">The file is not a valid checkpoint (see <see cref="Load(string, RnnParameters, Optimizer?, Span{float})"/>).</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    /// <exception cref="UnauthorizedAccessException">The file cannot be opened for reading.</exception>
    public static CheckpointInfo ReadInfo(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using FileStream file = OpenRead(path);
        return Read(file, Available(file), null, null, default);
    }

    /// <summary>Reads only the header of the checkpoint that is the rest of <paramref name="stream"/> (after checking all of it).</summary>
    /// <param name="stream">A readable stream positioned at the checkpoint; it is read to the end.</param>
    /// <returns>The header.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="stream"/> is null.</exception>
    /// <exception cref="ArgumentException">The stream cannot read.</exception>
    /// <exception cref="InvalidDataException">The data is not a valid checkpoint (see <see cref="Load(Stream, RnnParameters, Optimizer?, Span{float})"/>).</exception>
    /// <exception cref="IOException">The stream failed while reading.</exception>
    public static CheckpointInfo ReadInfo(Stream stream)
    {
        CheckReadable(stream);
        return Read(stream, Available(stream), null, null, default);
    }

    /// <summary>θ and the header of a checkpoint file, θ sized from the file's own header (for <see cref="RnnModel.Load(string)"/>).</summary>
    internal static (RnnParameters Parameters, CheckpointInfo Info) LoadParameters(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using FileStream file = OpenRead(path);
        return LoadParameters(file, Available(file));
    }

    /// <summary>θ and the header of the checkpoint that is the rest of <paramref name="stream"/>.</summary>
    internal static (RnnParameters Parameters, CheckpointInfo Info) LoadParameters(Stream stream)
    {
        CheckReadable(stream);
        return LoadParameters(stream, Available(stream));
    }

    private static (RnnParameters Parameters, CheckpointInfo Info) LoadParameters(Stream stream, long available)
    {
        RnnParameters? theta = null;
        CheckpointInfo info = Read(stream, available, null, null, default, shape => theta = new RnnParameters(shape));
        return (theta!, info);
    }

    private static void CheckReadable(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanRead)
        {
            throw new ArgumentException("The stream does not support reading.", nameof(stream));
        }
    }

    private static FileStream OpenRead(string path) =>
        new(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, bufferSize: 0, FileOptions.SequentialScan);

    /// <summary>The bytes left in a seekable stream, or −1 when its length is unknown.</summary>
    private static long Available(Stream stream)
    {
        try
        {
            return stream.CanSeek ? Math.Max(-1, stream.Length - stream.Position) : -1;
        }
        catch (NotSupportedException)
        {
            return -1;
        }
    }

    /// <summary>Every refusal of a save, before anything is created, truncated or written.</summary>
    private static void CheckSavable(RnnParameters parameters, Activation activation, Optimizer? optimizer, ReadOnlySpan<float> carried, float dropout)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ActivationRule.Check(activation, nameof(activation));

        DropoutMask.CheckRate(dropout, nameof(dropout));

        int bad = Guard.FirstNonFinite<float>(parameters.Values);
        if (bad >= 0)
        {
            throw new ArgumentException($"θ element {bad} is {parameters.Values[bad]}; a checkpoint holds finite values only.", nameof(parameters));
        }

        if (optimizer is not null)
        {
            ModelGuard.SameShape(parameters.Shape, optimizer.Shape, nameof(optimizer));
            string name = optimizer.GetType().Name;
            if (Encoding.UTF8.GetByteCount(name) > MaxOptimizerNameLength || HasControlCharacter(name))
            {
                throw new ArgumentException($"The optimizer's type name must be at most {MaxOptimizerNameLength} UTF-8 bytes without control characters.", nameof(optimizer));
            }

            if (optimizer.State.Count > MaxStateBlocks)
            {
                throw new ArgumentException($"The optimizer has {optimizer.State.Count} state blocks; a checkpoint holds at most {MaxStateBlocks}.", nameof(optimizer));
            }

            for (int b = 0; b < optimizer.State.Count; b++)
            {
                Span<float> block = optimizer.State[b].Values;
                bad = Guard.FirstNonFinite<float>(block);
                if (bad >= 0)
                {
                    throw new ArgumentException($"Optimizer state block {b} element {bad} is {block[bad]}; a checkpoint holds finite values only.", nameof(optimizer));
                }
            }

            bad = FirstNegativeSquare(optimizer, optimizer.State.Count == 0 ? default : optimizer.State[^1].Values);
            if (bad >= 0)
            {
                throw new ArgumentException($"Optimizer state block {optimizer.State.Count - 1} element {bad} is {optimizer.State[^1].Values[bad]}; {optimizer.GetType().Name} keeps sums of squares there, never negative.", nameof(optimizer));
            }

            if (optimizer.StepCount > MaxStepCount)
            {
                throw new ArgumentException($"The optimizer's step count {optimizer.StepCount} exceeds {MaxStepCount}, the most a checkpoint holds.", nameof(optimizer));
            }
        }

        if (carried.Length > MaxCarriedStateLength)
        {
            throw new ArgumentException($"The carried state has {carried.Length} floats; a checkpoint holds at most {MaxCarriedStateLength}.", "carriedState");
        }

        bad = Guard.FirstNonFinite(carried);
        if (bad >= 0)
        {
            throw new ArgumentException($"Carried state element {bad} is {carried[bad]}; a checkpoint holds finite values only.", "carriedState");
        }
    }

    /// <summary>Streams the format out: the header from the stack, θ and the blocks straight from their arrays.</summary>
    private static void Write(Stream stream, RnnParameters parameters, Activation activation, Optimizer? optimizer, ulong randomState, ReadOnlySpan<float> carried, float dropout)
    {
        RnnShape s = parameters.Shape;
        int blocks = optimizer?.State.Count ?? 0;
        Span<byte> header = stackalloc byte[FixedHeaderLength + MaxOptimizerNameLength + 8];
        int nameLength = optimizer is null ? 0 : Encoding.UTF8.GetBytes(optimizer.GetType().Name, header[FixedHeaderLength..]);
        Magic.CopyTo(header);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], Version);
        BinaryPrimitives.WriteUInt32LittleEndian(header[12..], (uint)s.InputSize);
        BinaryPrimitives.WriteUInt32LittleEndian(header[16..], (uint)s.HiddenSize);
        BinaryPrimitives.WriteUInt32LittleEndian(header[20..], (uint)s.OutputSize);
        BinaryPrimitives.WriteUInt32LittleEndian(header[24..], (uint)activation);
        BinaryPrimitives.WriteInt64LittleEndian(header[28..], optimizer?.StepCount ?? 0);
        BinaryPrimitives.WriteUInt64LittleEndian(header[36..], randomState);
        BinaryPrimitives.WriteUInt32LittleEndian(header[44..], (uint)nameLength);
        BinaryPrimitives.WriteUInt32LittleEndian(header[48..], (uint)s.Layers);
        BinaryPrimitives.WriteUInt32LittleEndian(header[52..], (uint)s.Directions);
        BinaryPrimitives.WriteSingleLittleEndian(header[56..], dropout);
        BinaryPrimitives.WriteUInt32LittleEndian(header[(FixedHeaderLength + nameLength)..], (uint)blocks);
        BinaryPrimitives.WriteUInt32LittleEndian(header[(FixedHeaderLength + nameLength + 4)..], (uint)s.ParameterCount);

        var crc = new Crc32();
        Emit(stream, crc, header[..(FixedHeaderLength + nameLength + 8)]);
        LittleEndianFloats.Write(stream, crc, parameters.Values);
        for (int b = 0; b < blocks; b++)
        {
            LittleEndianFloats.Write(stream, crc, optimizer!.State[b].Values);
        }

        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(word, (uint)carried.Length);
        Emit(stream, crc, word);
        LittleEndianFloats.Write(stream, crc, carried);
        BinaryPrimitives.WriteUInt32LittleEndian(word, crc.GetCurrentHashAsUInt32());
        stream.Write(word);
    }

    private static void Emit(Stream stream, Crc32 crc, ReadOnlySpan<byte> bytes)
    {
        crc.Append(bytes);
        stream.Write(bytes);
    }

    /// <summary>Argument checks of a load, before anything is read.</summary>
    private static void CheckLoadable(RnnParameters parameters, Optimizer? optimizer)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        if (optimizer is not null)
        {
            ModelGuard.SameShape(parameters.Shape, optimizer.Shape, nameof(optimizer));
        }
    }

    /// <summary>
    /// Reads and checks one checkpoint. With <paramref name="parameters"/> null (ReadInfo) every block is only checked;
    /// otherwise θ, the optimizer's blocks (when <paramref name="optimizer"/> is given) and the carried state (when
    /// <paramref name="carried"/> is not empty) are staged in pooled arrays, and copied out only once the whole file passed.
    /// </summary>
    /// <param name="stream">The source.</param>
    /// <param name="available">Its remaining length when known (a file or seekable stream), else −1.</param>
    /// <param name="parameters">Receives θ, or null to only check.</param>
    /// <param name="optimizer">Receives the state blocks and step count, or null.</param>
    /// <param name="carried">Receives the carried state, or empty.</param>
    /// <param name="create">
    /// With <paramref name="parameters"/> null: θ is kept all the same, and once the whole checkpoint passed this makes the
    /// θ block of the file's shape that receives it. θ is then staged as it arrives (growing with the bytes actually read),
    /// so a header that promises more than the data holds never allocates the promised size.
    /// </param>
    private static CheckpointInfo Read(Stream stream, long available, RnnParameters? parameters, Optimizer? optimizer, Span<float> carried, Func<RnnShape, RnnParameters>? create = null)
    {
        var source = new Source(stream);

        // The fixed header, field by field: nothing below allocates until every field is in range.
        Span<byte> header = stackalloc byte[FixedHeaderLength];
        int got = source.ReadAtMost(header[..8]);
        if (!header[..got].SequenceEqual(Magic[..got]))
        {
            throw new InvalidDataException("Not a Bptt.Fast checkpoint: the data does not start with BPTTCKPT.");
        }

        if (got < 8)
        {
            throw new InvalidDataException($"Truncated checkpoint: {got} bytes, shorter than any header.");
        }

        source.Read(header[8..FixedHeaderLengthV1]);
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(header[8..]);
        if (version is not (1 or 2))
        {
            throw new InvalidDataException($"Unsupported checkpoint version {version}; this library reads versions 1 and 2.");
        }

        // Version 1 holds no configuration: one layer, one direction, no dropout.
        int fixedLength = version == 1 ? FixedHeaderLengthV1 : FixedHeaderLength;
        uint layers = 1, directions = 1;
        float dropout = 0f;
        if (version == 2)
        {
            source.Read(header[FixedHeaderLengthV1..FixedHeaderLength]);
            layers = BinaryPrimitives.ReadUInt32LittleEndian(header[48..]);
            directions = BinaryPrimitives.ReadUInt32LittleEndian(header[52..]);
            dropout = BinaryPrimitives.ReadSingleLittleEndian(header[56..]);
        }

        uint i = BinaryPrimitives.ReadUInt32LittleEndian(header[12..]);
        uint h = BinaryPrimitives.ReadUInt32LittleEndian(header[16..]);
        uint o = BinaryPrimitives.ReadUInt32LittleEndian(header[20..]);
        uint activation = BinaryPrimitives.ReadUInt32LittleEndian(header[24..]);
        long step = BinaryPrimitives.ReadInt64LittleEndian(header[28..]);
        ulong random = BinaryPrimitives.ReadUInt64LittleEndian(header[36..]);
        uint nameLength = BinaryPrimitives.ReadUInt32LittleEndian(header[44..]);
        RnnShape shape = ValidShape(i, h, o, layers, directions);
        if (!(dropout >= 0f && dropout < 1f))
        {
            throw new InvalidDataException($"Corrupted checkpoint header: dropout {dropout} (bits 0x{BitConverter.SingleToUInt32Bits(dropout):X8}) is not a probability in [0, 1).");
        }
        if (!Enum.IsDefined((Activation)activation))
        {
            throw new InvalidDataException($"Corrupted checkpoint header: activation {activation} is not 0 (Tanh), 1 (Relu) or 2 (Sigmoid).");
        }

        if (step < 0 || step > MaxStepCount)
        {
            throw new InvalidDataException($"Corrupted checkpoint header: step count {step} is outside [0, {MaxStepCount}].");
        }

        if (nameLength > MaxOptimizerNameLength)
        {
            throw new InvalidDataException($"Corrupted checkpoint header: optimizer name length {nameLength} exceeds {MaxOptimizerNameLength} bytes.");
        }

        Span<byte> rest = stackalloc byte[MaxOptimizerNameLength + 8];
        rest = rest[..((int)nameLength + 8)];
        source.Read(rest);
        string name = OptimizerName(rest[..(int)nameLength]);
        uint blocks = BinaryPrimitives.ReadUInt32LittleEndian(rest[(int)nameLength..]);
        uint p = BinaryPrimitives.ReadUInt32LittleEndian(rest[((int)nameLength + 4)..]);
        if (blocks > MaxStateBlocks)
        {
            throw new InvalidDataException($"Corrupted checkpoint header: {blocks} optimizer state blocks; at most {MaxStateBlocks}.");
        }

        if (p != shape.ParameterCount)
        {
            throw new InvalidDataException($"Corrupted checkpoint header: {p} parameters for shape {shape}, which has {shape.ParameterCount}.");
        }

        if (name.Length == 0 && (blocks != 0 || step != 0))
        {
            throw new InvalidDataException($"Corrupted checkpoint header: {blocks} state blocks and step count {step} without an optimizer name.");
        }

        // Lengths in long arithmetic: at most 68 + 256 + 4·2³⁰·9 + 8 + 4·2²⁴, far inside a long.
        long carriedAt = fixedLength + nameLength + 8 + (4L * p * (1 + blocks));
        if (available >= 0 && available < source.Position)
        {
            available = -1; // a device or pseudo-file that reports length 0: trust only what it yields
        }

        if (available >= 0 && available < carriedAt + 8)
        {
            throw new InvalidDataException($"Truncated checkpoint: {available} bytes; the header promises at least {carriedAt + 8}.");
        }

        // Does it fit the destination? Checked before the body, so staging never exceeds what the caller already holds.
        if (parameters is not null)
        {
            if (shape != parameters.Shape)
            {
                throw new InvalidDataException($"Checkpoint shape {shape} does not match the target's shape {parameters.Shape}.");
            }

            if (optimizer is not null)
            {
                if (name.Length == 0)
                {
                    throw new InvalidDataException("The checkpoint holds no optimizer state, but an optimizer was given to restore.");
                }

                if (name != optimizer.GetType().Name || blocks != optimizer.State.Count)
                {
                    throw new InvalidDataException($"The checkpoint holds {name} state ({blocks} blocks), not {optimizer.GetType().Name} ({optimizer.State.Count} blocks).");
                }
            }
        }

        int count = (int)p;
        float[]?[] staged = new float[]?[2 + MaxStateBlocks];
        try
        {
            // θ, then the state blocks: staged when they will be copied out, otherwise checked chunk by chunk.
            for (int b = ThetaBlock; b < (int)blocks; b++)
            {
                bool keep = parameters is not null ? b < 0 || optimizer is not null : create is not null && b < 0;
                staged[b + 1] = source.Floats(count, keep, b, grow: parameters is null && available < 0);
            }

            Span<byte> word = stackalloc byte[4];
            source.Read(word);
            uint c = BinaryPrimitives.ReadUInt32LittleEndian(word);
            if (c > MaxCarriedStateLength)
            {
                throw new InvalidDataException($"Corrupted checkpoint: {c} floats of carried state; at most {MaxCarriedStateLength}.");
            }

            long total = carriedAt + 4 + (4L * c) + 4;
            if (available >= 0 && available != total)
            {
                throw new InvalidDataException($"Checkpoint length {available} bytes; the header promises {total}.");
            }

            bool keepCarried = parameters is not null && !carried.IsEmpty;
            if (keepCarried && carried.Length != c)
            {
                throw new InvalidDataException($"The checkpoint carries {c} floats of stream state; the target holds {carried.Length}.");
            }

            staged[^1] = source.Floats((int)c, keepCarried, CarriedBlock, grow: false);
            uint computed = source.Crc;
            source.Read(word);
            uint stored = BinaryPrimitives.ReadUInt32LittleEndian(word);
            if (stored != computed)
            {
                throw new InvalidDataException($"Checkpoint checksum mismatch (stored {stored:X8}, computed {computed:X8}): the data is truncated or corrupted.");
            }

            source.ThrowIfNonFinite();
            if (parameters is not null && optimizer is not null && blocks > 0)
            {
                int negative = FirstNegativeSquare(optimizer, staged[(int)blocks].AsSpan(0, count));
                if (negative >= 0)
                {
                    throw new InvalidDataException($"Corrupted checkpoint: {name} state block {blocks - 1} element {negative} is {staged[(int)blocks]![negative]}; it holds sums of squares, never negative.");
                }
            }
            if (available < 0 && source.ReadAtMost(word[..1]) != 0)
            {
                throw new InvalidDataException($"The data continues after the {total}-byte checkpoint.");
            }

            var info = new CheckpointInfo(shape, (Activation)activation, step, random, name, (int)blocks, (int)c, dropout);
            if (create is not null && parameters is null)
            {
                staged[0].AsSpan(0, count).CopyTo(create(shape).Values);
            }

            if (parameters is not null)
            {
                // Everything passed: copy out. Nothing below throws.
                staged[0].AsSpan(0, count).CopyTo(parameters.Values);
                if (optimizer is not null)
                {
                    for (int b = 0; b < blocks; b++)
                    {
                        staged[b + 1].AsSpan(0, count).CopyTo(optimizer.State[b].Values);
                    }

                    optimizer.RestoreStepCount(step);
                }

                if (keepCarried)
                {
                    staged[^1].AsSpan(0, (int)c).CopyTo(carried);
                }
            }

            return info;
        }
        finally
        {
            foreach (float[]? array in staged)
            {
                if (array is { Length: > 0 })
                {
                    ArrayPool<float>.Shared.Return(array);
                }
            }

            source.Dispose();
        }
    }

    private static RnnShape ValidShape(uint i, uint h, uint o, uint layers, uint directions)
    {
        if (i > int.MaxValue || h > int.MaxValue || o > int.MaxValue)
        {
            throw new InvalidDataException($"Corrupted checkpoint header: shape I={i}, H={h}, O={o} is out of range.");
        }

        if (layers is < 1 or > RnnShape.MaxLayers)
        {
            throw new InvalidDataException($"Corrupted checkpoint header: layers {layers} is outside [1, {RnnShape.MaxLayers}].");
        }

        if (directions is not (1 or 2))
        {
            throw new InvalidDataException($"Corrupted checkpoint header: directions {directions}; expected 1 or 2.");
        }

        var shape = new RnnShape((int)i, (int)h, (int)o) { Layers = (int)layers, Directions = (int)directions };
        try
        {
            shape.Validate("shape");
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw new InvalidDataException($"Corrupted checkpoint header: {e.Message}", e);
        }

        return shape;
    }

    private static string OptimizerName(ReadOnlySpan<byte> bytes)
    {
        string name;
        try
        {
            name = StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            throw new InvalidDataException("Corrupted checkpoint header: the optimizer name is not valid UTF-8.", e);
        }

        if (HasControlCharacter(name))
        {
            throw new InvalidDataException("Corrupted checkpoint header: the optimizer name holds a control character.");
        }

        return name;
    }

    private static bool HasControlCharacter(ReadOnlySpan<char> text)
    {
        foreach (char ch in text)
        {
            if (char.IsControl(ch))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The first element of <paramref name="block"/> with its sign bit set (−0 included, as the update rules read
    /// it) when <paramref name="optimizer"/> keeps sums of squares in its last state block; otherwise −1.</summary>
    private static int FirstNegativeSquare(Optimizer optimizer, ReadOnlySpan<float> block)
    {
        if (!optimizer.LastStateNonNegative)
        {
            return -1;
        }

        for (int k = 0; k < block.Length; k++)
        {
            if (float.IsNegative(block[k]))
            {
                return k;
            }
        }

        return -1;
    }

    /// <summary>
    /// Exact reads from the source with a running CRC-32 and a note of the first non-finite float. A short read is a
    /// truncated checkpoint; a non-finite float is reported only after the checksum, so corruption is named as such.
    /// </summary>
    private ref struct Source(Stream stream)
    {
        private readonly Crc32 _crc = new();
        private byte[]? _chunk;
        private string? _nonFinite;

        public long Position { get; private set; }

        public readonly uint Crc => _crc.GetCurrentHashAsUInt32();

        /// <summary>Reads until <paramref name="into"/> is full or the data ends; returns the count.</summary>
        public int ReadAtMost(scoped Span<byte> into)
        {
            int done = 0;
            while (done < into.Length)
            {
                int n = stream.Read(into[done..]);
                if (n <= 0)
                {
                    break;
                }

                done += n;
            }

            _crc.Append(into[..done]);
            Position += done;
            return done;
        }

        public void Read(scoped Span<byte> into)
        {
            if (ReadAtMost(into) < into.Length)
            {
                throw new InvalidDataException($"Truncated checkpoint: the data ends after {Position} bytes.");
            }
        }

        /// <summary>
        /// Reads <paramref name="count"/> floats; returns them in a pooled array when kept, otherwise null. With
        /// <paramref name="grow"/>, a kept block starts small and doubles as data arrives, so the memory it takes never
        /// runs ahead of the bytes read by more than the data already there.
        /// </summary>
        public float[]? Floats(int count, bool keep, int block, bool grow)
        {
            if (keep && count == 0)
            {
                return [];
            }

            if (keep && grow && count > GrowStart)
            {
                float[] array = ArrayPool<float>.Shared.Rent(GrowStart);
                try
                {
                    for (int done = 0; done < count;)
                    {
                        if (done == array.Length)
                        {
                            float[] bigger = ArrayPool<float>.Shared.Rent((int)Math.Min(count, 2L * array.Length));
                            array.AsSpan(0, done).CopyTo(bigger);
                            ArrayPool<float>.Shared.Return(array);
                            array = bigger;
                        }

                        int n = Math.Min(count, array.Length) - done;
                        Span<float> values = array.AsSpan(done, n);
                        Read(MemoryMarshal.AsBytes(values));
                        LittleEndianFloats.ToHost(values);
                        Note(values, done, block);
                        done += n;
                    }

                    return array;
                }
                catch
                {
                    ArrayPool<float>.Shared.Return(array);
                    throw;
                }
            }

            if (keep)
            {
                float[] array = ArrayPool<float>.Shared.Rent(count);
                try
                {
                    Span<float> values = array.AsSpan(0, count);
                    Read(MemoryMarshal.AsBytes(values));
                    LittleEndianFloats.ToHost(values);
                    Note(values, 0, block);
                    return array;
                }
                catch
                {
                    ArrayPool<float>.Shared.Return(array);
                    throw;
                }
            }

            _chunk ??= ArrayPool<byte>.Shared.Rent(ChunkBytes);
            for (int done = 0; done < count;)
            {
                int n = Math.Min(count - done, ChunkBytes / 4);
                Span<float> values = MemoryMarshal.Cast<byte, float>(_chunk.AsSpan(0, 4 * n));
                Read(MemoryMarshal.AsBytes(values));
                LittleEndianFloats.ToHost(values);
                Note(values, done, block);
                done += n;
            }

            return null;
        }

        public readonly void ThrowIfNonFinite()
        {
            if (_nonFinite is not null)
            {
                throw new InvalidDataException(_nonFinite);
            }
        }

        public void Dispose()
        {
            if (_chunk is not null)
            {
                ArrayPool<byte>.Shared.Return(_chunk);
                _chunk = null;
            }
        }

        private void Note(ReadOnlySpan<float> values, int offset, int block)
        {
            int bad = _nonFinite is null ? Guard.FirstNonFinite(values) : -1;
            if (bad >= 0)
            {
                string name = block switch
                {
                    ThetaBlock => "θ",
                    CarriedBlock => "carried state",
                    _ => $"optimizer state block {block}",
                };
                _nonFinite = $"The checkpoint's {name} element {offset + bad} is {values[bad]}; a checkpoint holds finite values only.";
            }
        }
    }
}
