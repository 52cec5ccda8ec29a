using System.Buffers;
using System.Buffers.Binary;
using System.Buffers.Text;
using System.Runtime.InteropServices;
using System.Text.Json;
using Bptt.Fast.Internals;

namespace Bptt.Fast.Serving;

/// <summary>
/// Export and import of θ as named float32 tensors in the safetensors format (an 8-byte little-endian header length,
/// a JSON header of <c>{"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}}</c>, then the raw
/// little-endian data), with the names of the state dict of a PyTorch <c>nn.RNN(I, H, num_layers=L,
/// bidirectional=D == 2)</c> (batch_first irrelevant) followed by an <c>nn.Linear(D·H, O)</c> head. For each layer
/// k = 0..L−1 and direction (the reverse one's names end in <c>_reverse</c>, e.g. <c>weight_hh_l0_reverse</c>):
/// <list type="bullet">
/// <item><c>weight_ih_l{k}</c> [H, Iₖ] = W_xh⁽ᵏ⁾, with I₀ = I and Iₖ = D·H above the first layer (columns: the forward,
/// then the reverse outputs of the layer below, as in θ); <c>weight_hh_l{k}</c> [H, H] = W_hh⁽ᵏ⁾;</item>
/// <item><c>bias_ih_l{k}</c> [H] and <c>bias_hh_l{k}</c> [H], whose sum is b_h⁽ᵏ⁾ (export writes b_h⁽ᵏ⁾ and zeros);</item>
/// </list>
/// then <c>{head}.weight</c> [O, D·H] = W_hy and <c>{head}.bias</c> [O] = b_y, with head = <c>fc</c> by default. Export
/// writes them in PyTorch's order (layer by layer, forward before reverse, each as weight_ih, weight_hh, bias_ih,
/// bias_hh; then the head), so a one-layer network's file is exactly the six tensors <c>weight_ih_l0</c>,
/// <c>weight_hh_l0</c>, <c>bias_ih_l0</c>, <c>bias_hh_l0</c>, <c>{head}.weight</c>, <c>{head}.bias</c>.
/// PyTorch's <c>nn.RNN</c> computes hₜ = tanh(W_ih xₜ + b_ih + W_hh hₜ₋₁ + b_hh), which is equation (1)–(2) with b_h = b_ih + b_hh.
/// <para>Import is strict: the header is at most <see cref="MaxHeaderLength"/> bytes of UTF-8 JSON, one object whose keys
/// are exactly the 4·L·D + 2 tensors of the destination's shape and optionally <c>__metadata__</c> (an object of string
/// values), each key once; each tensor is an object with exactly <c>dtype</c> (<c>"F32"</c>), <c>shape</c> (non-negative integers, equal to the
/// expected shape) and <c>data_offsets</c> (two non-negative integers, end − begin = 4 × the element count); the
/// tensors cover the data section without gaps or overlaps, as the format requires; only spaces or other JSON
/// whitespace may follow the object; the data section is exactly as long as the header says and nothing follows it;
/// every value, and every b_ih + b_hh, is finite. Anything else throws <see cref="InvalidDataException"/> naming what
/// is wrong, before <c>parameters</c> changes.</para>
/// </summary>
public static class SafeTensors
{
    /// <summary>The longest JSON header Import reads: 100 MB, the limit of the reference implementation.</summary>
    public const int MaxHeaderLength = 100_000_000;

    /// <summary>The most dimensions a tensor's shape may list.</summary>
    private const int MaxRank = 8;

    private const string Metadata = "__metadata__";

    /// <summary>Writes θ as safetensors.</summary>
    /// <param name="stream">A writable stream.</param>
    /// <param name="parameters">θ.</param>
    /// <param name="head">The name of the output layer's module: any non-empty, well-formed string (JSON-escaped as needed).</param>
    /// <exception cref="ArgumentNullException"><paramref name="stream"/>, <paramref name="parameters"/> or <paramref name="head"/> is null.</exception>
    /// <exception cref="ArgumentException">
    /// The stream cannot write; <paramref name="head"/> is empty, holds an unpaired surrogate or makes the header longer
    /// than <see cref="MaxHeaderLength"/>; or θ holds NaN or ±∞ (<c>parameters</c>). Nothing is written then.
    /// </exception>
    /// <exception cref="IOException">The stream failed while writing.</exception>
    public static void Export(Stream stream, RnnParameters parameters, string head = "fc")
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(parameters);
        CheckHead(head);
        if (!stream.CanWrite)
        {
            throw new ArgumentException("The stream does not support writing.", nameof(stream));
        }

        int bad = Guard.FirstNonFinite<float>(parameters.Values);
        if (bad >= 0)
        {
            throw new ArgumentException($"θ element {bad} is {parameters.Values[bad]}; only finite values are exported.", nameof(parameters));
        }

        RnnShape s = parameters.Shape;
        Tensor[] tensors = Tensors(s, head);
        var json = new ArrayBufferWriter<byte>((int)Math.Min(512L + (128L * s.BlockCount) + (2L * head.Length), 1 << 20)); // grows past 1 MiB only as written
        using (var writer = new Utf8JsonWriter(json))
        {
            writer.WriteStartObject();
            long offset = 0;
            foreach (Tensor t in tensors)
            {
                long end = offset + (4L * t.Count);
                writer.WriteStartObject(t.Name);
                writer.WriteString("dtype", "F32");
                writer.WriteStartArray("shape");
                foreach (int dim in t.Shape)
                {
                    writer.WriteNumberValue(dim);
                }

                writer.WriteEndArray();
                writer.WriteStartArray("data_offsets");
                writer.WriteNumberValue(offset);
                writer.WriteNumberValue(end);
                writer.WriteEndArray();
                writer.WriteEndObject();
                offset = end;
            }

            writer.WriteStartObject(Metadata);
            writer.WriteString("format", "pt");
            writer.WriteString("producer", "Bptt.Fast");
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        long padded = (json.WrittenCount + 7L) / 8 * 8; // the format allows trailing spaces; 8-byte alignment of the data
        if (padded > MaxHeaderLength)
        {
            throw new ArgumentException($"The head name makes the header {padded} bytes; at most {MaxHeaderLength} are allowed.", nameof(head));
        }

        Span<byte> word = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(word, (ulong)padded);
        stream.Write(word);
        stream.Write(json.WrittenSpan);
        word.Fill((byte)' ');
        stream.Write(word[..(int)(padded - json.WrittenCount)]);
        Span<byte> zeros = stackalloc byte[1024];
        zeros.Clear();
        for (int l = 0; l < s.Layers; l++)
        {
            for (int d = 0; d < s.Directions; d++)
            {
                LittleEndianFloats.Write(stream, null, parameters.LayerWxh(l, d));
                LittleEndianFloats.Write(stream, null, parameters.LayerWhh(l, d));
                LittleEndianFloats.Write(stream, null, parameters.LayerBh(l, d));
                for (long left = 4L * s.HiddenSize; left > 0; left -= zeros.Length)
                {
                    stream.Write(zeros[..(int)Math.Min(left, zeros.Length)]);
                }
            }
        }

        LittleEndianFloats.Write(stream, null, parameters.Why);
        LittleEndianFloats.Write(stream, null, parameters.By);
        stream.Flush();
    }

    /// <summary>
    /// Reads safetensors with the names above into <paramref name="parameters"/>, summing each pair of biases. The whole
    /// file is checked (see the class remarks) before <paramref name="parameters"/> changes. Reads are bounded by the
    /// header: at most 8 + <see cref="MaxHeaderLength"/> bytes before the data section, then exactly the 4·(P + L·D·H)
    /// bytes the tensors need, compared with the stream's length when it can seek.
    /// </summary>
    /// <param name="stream">A readable stream positioned at the file; the file must be the rest of the stream.</param>
    /// <param name="parameters">Receives θ; its shape (sizes, layers and directions) fixes the expected tensor names and shapes.</param>
    /// <param name="head">The name of the output layer's module.</param>
    /// <exception cref="ArgumentNullException"><paramref name="stream"/>, <paramref name="parameters"/> or <paramref name="head"/> is null.</exception>
    /// <exception cref="ArgumentException">The stream cannot read, or <paramref name="head"/> is empty or holds an unpaired surrogate.</exception>
    /// <exception cref="InvalidDataException">The data is not a safetensors file of this shape and head (see the class remarks). Nothing was changed.</exception>
    /// <exception cref="IOException">The stream failed while reading. Nothing was changed.</exception>
    public static void Import(Stream stream, RnnParameters parameters, string head = "fc")
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(parameters);
        CheckHead(head);
        if (!stream.CanRead)
        {
            throw new ArgumentException("The stream does not support reading.", nameof(stream));
        }

        long available = -1;
        try
        {
            available = stream.CanSeek ? stream.Length - stream.Position : -1;
        }
        catch (NotSupportedException)
        {
        }

        Span<byte> word = stackalloc byte[8];
        if (ReadAtMost(stream, word) < 8)
        {
            throw new InvalidDataException("Truncated safetensors file: fewer than the 8 bytes of the header length.");
        }

        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(word);
        if (headerLength is < 2 or > MaxHeaderLength)
        {
            throw new InvalidDataException($"The safetensors header length {headerLength} is outside [2, {MaxHeaderLength}].");
        }

        if (available is >= 0 and < 8)
        {
            available = -1; // a device or pseudo-file that reports length 0: trust only what it yields
        }

        if (available >= 0 && available < 8 + (long)headerLength)
        {
            throw new InvalidDataException($"Truncated safetensors file: a header of {headerLength} bytes, {available - 8} available.");
        }

        byte[] header = ReadHeader(stream, (int)headerLength, known: available >= 0);
        RnnShape s = parameters.Shape;
        Tensor[] tensors = ParseHeader(header, s, head);

        // The tensors cover [0, 4F) without gaps or overlaps, F = P + L·D·H (θ and the bias_hh tensors), so each lies
        // inside the data section. P ≤ 2³⁰ and every block holds at least 3H parameters, so F < 2³¹ and 4F fits a long.
        long floatCount = s.ParameterCount + ((long)s.BlockCount * s.HiddenSize);
        long dataLength = 4L * floatCount;
        if (available >= 0 && available != 8 + (long)headerLength + dataLength)
        {
            throw new InvalidDataException($"The safetensors file has {available - 8 - (long)headerLength} bytes of data; the header describes {dataLength}.");
        }

        int floats = checked((int)floatCount);
        float[] data = ArrayPool<float>.Shared.Rent(floats);
        try
        {
            Span<float> values = data.AsSpan(0, floats);
            if (ReadAtMost(stream, MemoryMarshal.AsBytes(values)) < 4 * floats)
            {
                throw new InvalidDataException($"Truncated safetensors file: the header describes {dataLength} bytes of data.");
            }

            if (available < 0 && ReadAtMost(stream, word[..1]) != 0)
            {
                throw new InvalidDataException($"The data continues after the {dataLength} bytes the header describes.");
            }

            LittleEndianFloats.ToHost(values);
            foreach (Tensor t in tensors)
            {
                int bad = Guard.FirstNonFinite<float>(values.Slice(t.Start, t.Count));
                if (bad >= 0)
                {
                    throw new InvalidDataException($"Tensor '{t.Name}' element {bad} is {values[t.Start + bad]}; imported tensors must be finite.");
                }
            }

            // b_h = b_ih + b_hh, summed in place of b_ih (the staged copy): finite summands can still overflow.
            for (int b = 0; b < s.BlockCount; b++)
            {
                Tensor ih = tensors[(4 * b) + 2], hh = tensors[(4 * b) + 3];
                Span<float> bih = values.Slice(ih.Start, s.HiddenSize);
                ReadOnlySpan<float> bhh = values.Slice(hh.Start, s.HiddenSize);
                for (int k = 0; k < bih.Length; k++)
                {
                    float sum = bih[k] + bhh[k];
                    if (!float.IsFinite(sum))
                    {
                        throw new InvalidDataException($"{ih.Name} + {hh.Name} overflows at element {k} ({bih[k]} + {bhh[k]}).");
                    }

                    bih[k] = sum;
                }
            }

            // Everything passed: copy out. Nothing below throws.
            for (int l = 0, b = 0; l < s.Layers; l++)
            {
                for (int d = 0; d < s.Directions; d++, b++)
                {
                    Tensor wih = tensors[4 * b], whh = tensors[(4 * b) + 1], bih = tensors[(4 * b) + 2];
                    values.Slice(wih.Start, wih.Count).CopyTo(parameters.LayerWxh(l, d));
                    values.Slice(whh.Start, whh.Count).CopyTo(parameters.LayerWhh(l, d));
                    values.Slice(bih.Start, bih.Count).CopyTo(parameters.LayerBh(l, d));
                }
            }

            Tensor why = tensors[^2], by = tensors[^1];
            values.Slice(why.Start, why.Count).CopyTo(parameters.Why);
            values.Slice(by.Start, by.Count).CopyTo(parameters.By);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(data);
        }
    }

    private static void CheckHead(string head)
    {
        ArgumentException.ThrowIfNullOrEmpty(head);
        for (int k = 0; k < head.Length; k++)
        {
            if (char.IsHighSurrogate(head[k]) && k + 1 < head.Length && char.IsLowSurrogate(head[k + 1]))
            {
                k++;
            }
            else if (char.IsSurrogate(head[k]))
            {
                throw new ArgumentException($"The head name holds an unpaired surrogate at index {k}.", nameof(head));
            }
        }

        // A name longer than the whole header may be is refused before any JSON is built (its bytes alone exceed it).
        long bytes = System.Text.Encoding.UTF8.GetByteCount(head);
        if (bytes > MaxHeaderLength)
        {
            throw new ArgumentException($"The head name is {bytes} bytes of UTF-8; the header that holds it may have at most {MaxHeaderLength}.", nameof(head));
        }
    }

    private static int ReadAtMost(Stream stream, Span<byte> into)
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

        return done;
    }

    /// <summary>
    /// Reads the header. With the length known to be there it is read at once; otherwise the buffer grows with what
    /// actually arrives, so a stream that promises 100 MB and ends early never costs 100 MB.
    /// </summary>
    private static byte[] ReadHeader(Stream stream, int length, bool known)
    {
        byte[] buffer = new byte[known ? length : Math.Min(length, 1 << 16)];
        int done = 0;
        while (true)
        {
            done += ReadAtMost(stream, buffer.AsSpan(done));
            if (done == length)
            {
                return buffer;
            }

            if (done < buffer.Length)
            {
                throw new InvalidDataException($"Truncated safetensors file: a header of {length} bytes, {done} available.");
            }

            Array.Resize(ref buffer, (int)Math.Min(length, 2L * buffer.Length));
        }
    }

    /// <summary>
    /// The tensors of <paramref name="s"/> in PyTorch's order: for each layer and direction weight_ih, weight_hh,
    /// bias_ih, bias_hh (block b = l·D + d at indices 4b … 4b + 3), then the head's weight and bias.
    /// </summary>
    private static Tensor[] Tensors(RnnShape s, string head)
    {
        int h = s.HiddenSize;
        var tensors = new Tensor[(4 * s.BlockCount) + 2];
        for (int l = 0, b = 0; l < s.Layers; l++)
        {
            for (int d = 0; d < s.Directions; d++, b++)
            {
                string suffix = d == 0 ? $"_l{l}" : $"_l{l}_reverse";
                tensors[4 * b] = new("weight_ih" + suffix, [h, s.LayerInputSize(l)]);
                tensors[(4 * b) + 1] = new("weight_hh" + suffix, [h, h]);
                tensors[(4 * b) + 2] = new("bias_ih" + suffix, [h]);
                tensors[(4 * b) + 3] = new("bias_hh" + suffix, [h]);
            }
        }

        tensors[^2] = new(head + ".weight", [s.OutputSize, s.LayerOutputSize]);
        tensors[^1] = new(head + ".bias", [s.OutputSize]);
        return tensors;
    }

    /// <summary>The expected names, for a message: all of them when few, else their pattern.</summary>
    private static string Expected(Tensor[] tensors, RnnShape s, string head) =>
        tensors.Length <= 18
            ? string.Join(", ", tensors.Select(x => $"'{x.Name}'"))
            : $"'weight_ih_l{{k}}', 'weight_hh_l{{k}}', 'bias_ih_l{{k}}', 'bias_hh_l{{k}}'{(s.IsBidirectional ? " and their '_reverse' twins" : "")} for k = 0..{s.Layers - 1}, '{head}.weight', '{head}.bias'";

    /// <summary>One expected tensor, once found: its position in the data section, in floats.</summary>
    private sealed class Tensor(string name, int[] shape)
    {
        public string Name { get; } = name;

        public int[] Shape { get; } = shape;

        public int Count { get; } = shape.Aggregate(1, (a, b) => a * b);

        public bool Found { get; set; }

        public long Begin { get; set; }

        public long End { get; set; }

        public int Start => (int)(Begin / 4);
    }

    /// <summary>Parses and checks the header against the strict schema of the class remarks.</summary>
    private static Tensor[] ParseHeader(byte[] header, RnnShape s, string head)
    {
        if (!System.Text.Unicode.Utf8.IsValid(header))
        {
            throw new InvalidDataException("The safetensors header is not valid UTF-8.");
        }

        Tensor[] tensors = Tensors(s, head);
        var byName = new Dictionary<string, Tensor>(tensors.Length, StringComparer.Ordinal);
        foreach (Tensor t in tensors)
        {
            byName.Add(t.Name, t); // the head's names end in .weight or .bias, never clashing with the recurrent ones
        }

        try
        {
            var reader = new Utf8JsonReader(header, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow, AllowTrailingCommas = false });
            Next(ref reader);
            Expect(ref reader, JsonTokenType.StartObject, "The safetensors header");
            bool metadata = false;
            while (Next(ref reader) != JsonTokenType.EndObject)
            {
                string key = reader.GetString()!;
                if (key == Metadata)
                {
                    if (metadata)
                    {
                        throw Duplicate(key);
                    }

                    metadata = true;
                    ReadMetadata(ref reader);
                    continue;
                }

                Tensor t = byName.GetValueOrDefault(key)
                    ?? throw new InvalidDataException($"Unexpected tensor '{key}': the header must hold exactly {Expected(tensors, s, head)} and optionally {Metadata}.");
                if (t.Found)
                {
                    throw Duplicate(key);
                }

                t.Found = true;
                ReadTensor(ref reader, t);
            }

            if (reader.Read())
            {
                throw new InvalidDataException($"The safetensors header continues after its JSON object ({reader.TokenType}).");
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            // The reader accepts an escaped lone surrogate ("\udc00") and fails only when the string is decoded, with
            // InvalidOperationException: a malformed file all the same.
            throw new InvalidDataException($"The safetensors header is not valid JSON: {e.Message}", e);
        }

        Tensor? missing = Array.Find(tensors, t => !t.Found);
        if (missing is not null)
        {
            throw new InvalidDataException($"Tensor '{missing.Name}' is missing.");
        }

        Tensor[] byOffset = tensors.OrderBy(t => t.Begin).ThenBy(t => t.End).ToArray();
        long covered = 0;
        Tensor? previous = null;
        foreach (Tensor t in byOffset)
        {
            if (t.Begin < covered)
            {
                throw new InvalidDataException($"Tensors '{previous!.Name}' [{previous.Begin}, {previous.End}) and '{t.Name}' [{t.Begin}, {t.End}) overlap.");
            }

            if (t.Begin > covered)
            {
                throw new InvalidDataException($"Data bytes [{covered}, {t.Begin}) belong to no tensor; the tensors must cover the data section without gaps.");
            }

            covered = t.End;
            previous = t;
        }

        return tensors;
    }

    private static InvalidDataException Duplicate(string key) => new($"The safetensors header lists '{key}' more than once.");

    /// <summary>Advances to the next token; the header must not end before its object does.</summary>
    private static JsonTokenType Next(ref Utf8JsonReader reader) =>
        reader.Read() ? reader.TokenType : throw new InvalidDataException("The safetensors header ends inside its JSON object.");

    private static void Expect(ref Utf8JsonReader reader, JsonTokenType kind, string what)
    {
        if (reader.TokenType != kind)
        {
            throw new InvalidDataException($"{what} must be {Describe(kind)}, not {Describe(reader.TokenType)}.");
        }
    }

    private static string Describe(JsonTokenType kind) => kind switch
    {
        JsonTokenType.StartObject => "a JSON object",
        JsonTokenType.StartArray => "a JSON array",
        JsonTokenType.String => "a string",
        JsonTokenType.Number => "a number",
        JsonTokenType.True or JsonTokenType.False => "a boolean",
        JsonTokenType.Null => "null",
        _ => kind.ToString(),
    };

    private static void ReadMetadata(ref Utf8JsonReader reader)
    {
        Next(ref reader);
        Expect(ref reader, JsonTokenType.StartObject, Metadata);
        var keys = new HashSet<string>(StringComparer.Ordinal);
        while (Next(ref reader) != JsonTokenType.EndObject)
        {
            string key = reader.GetString()!;
            if (!keys.Add(key))
            {
                throw Duplicate($"{Metadata}.{key}");
            }

            Next(ref reader);
            Expect(ref reader, JsonTokenType.String, $"{Metadata} value '{key}'");
        }
    }

    private static void ReadTensor(ref Utf8JsonReader reader, Tensor t)
    {
        Next(ref reader);
        Expect(ref reader, JsonTokenType.StartObject, $"Tensor '{t.Name}'");
        string? dtype = null;
        long[]? shape = null, offsets = null;
        while (Next(ref reader) != JsonTokenType.EndObject)
        {
            if (reader.ValueTextEquals("dtype"u8))
            {
                if (dtype is not null)
                {
                    throw Duplicate($"{t.Name}.dtype");
                }

                Next(ref reader);
                Expect(ref reader, JsonTokenType.String, $"Tensor '{t.Name}' dtype");
                dtype = reader.GetString()!;
            }
            else if (reader.ValueTextEquals("shape"u8))
            {
                if (shape is not null)
                {
                    throw Duplicate($"{t.Name}.shape");
                }

                shape = ReadIntegers(ref reader, $"Tensor '{t.Name}' shape", MaxRank);
            }
            else if (reader.ValueTextEquals("data_offsets"u8))
            {
                if (offsets is not null)
                {
                    throw Duplicate($"{t.Name}.data_offsets");
                }

                offsets = ReadIntegers(ref reader, $"Tensor '{t.Name}' data_offsets", 2);
            }
            else
            {
                throw new InvalidDataException($"Tensor '{t.Name}' has the unknown field '{reader.GetString()}'; expected dtype, shape and data_offsets only.");
            }
        }

        if (dtype is null || shape is null || offsets is null)
        {
            string absent = dtype is null ? "dtype" : shape is null ? "shape" : "data_offsets";
            throw new InvalidDataException($"Tensor '{t.Name}' has no {absent}.");
        }

        if (dtype != "F32")
        {
            throw new InvalidDataException($"Tensor '{t.Name}' has dtype '{dtype}'; expected F32.");
        }

        long count = 1;
        foreach (long dim in shape)
        {
            count = dim == 0 || count <= long.MaxValue / 4 / dim
                ? count * dim
                : throw new InvalidDataException($"Tensor '{t.Name}' has shape [{string.Join(", ", shape)}], whose size overflows 64 bits.");
        }

        if (!shape.SequenceEqual(t.Shape.Select(d => (long)d)))
        {
            throw new InvalidDataException($"Tensor '{t.Name}' has shape [{string.Join(", ", shape)}]; expected [{string.Join(", ", t.Shape)}].");
        }

        if (offsets.Length != 2 || offsets[0] > offsets[1] || offsets[1] - offsets[0] != 4 * count)
        {
            throw new InvalidDataException($"Tensor '{t.Name}' has data_offsets [{string.Join(", ", offsets)}]; expected [begin, begin + {4 * count}] for F32 × [{string.Join(", ", shape)}].");
        }

        t.Begin = offsets[0];
        t.End = offsets[1];
    }

    /// <summary>A JSON array of at most <paramref name="max"/> integers in [0, 2⁶³ − 1], written without sign, fraction or exponent.</summary>
    private static long[] ReadIntegers(ref Utf8JsonReader reader, string what, int max)
    {
        Next(ref reader);
        Expect(ref reader, JsonTokenType.StartArray, what);
        Span<long> values = stackalloc long[MaxRank];
        int n = 0;
        while (Next(ref reader) != JsonTokenType.EndArray)
        {
            Expect(ref reader, JsonTokenType.Number, $"Each entry of {what}");
            if (n == max)
            {
                throw new InvalidDataException($"{what} has more than {max} entries.");
            }

            ReadOnlySpan<byte> text = reader.ValueSpan;
            foreach (byte c in text)
            {
                if (c is < (byte)'0' or > (byte)'9')
                {
                    throw new InvalidDataException($"{what} holds {System.Text.Encoding.UTF8.GetString(text)}; expected a non-negative integer.");
                }
            }

            if (!Utf8Parser.TryParse(text, out long value, out int used) || used != text.Length)
            {
                throw new InvalidDataException($"{what} holds {System.Text.Encoding.UTF8.GetString(text)}, beyond the 64-bit range.");
            }

            values[n++] = value;
        }

        return values[..n].ToArray();
    }
}
