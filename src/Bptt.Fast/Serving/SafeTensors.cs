using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Bptt.Fast.Internals;

namespace Bptt.Fast.Serving;

/// <summary>
/// Export and import of θ as named float32 tensors in the safetensors format (an 8-byte little-endian header length,
/// a JSON header of <c>{"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}}</c>, then the raw
/// little-endian data), with the names of a PyTorch <c>nn.RNN</c> (one layer, batch_first irrelevant) followed by an
/// <c>nn.Linear</c> head:
/// <list type="bullet">
/// <item><c>weight_ih_l0</c> [H, I] = W_xh; <c>weight_hh_l0</c> [H, H] = W_hh;</item>
/// <item><c>bias_ih_l0</c> [H] and <c>bias_hh_l0</c> [H], whose sum is b_h (export writes b_h and zeros);</item>
/// <item><c>{head}.weight</c> [O, H] = W_hy and <c>{head}.bias</c> [O] = b_y, with head = <c>fc</c> by default.</item>
/// </list>
/// PyTorch's <c>nn.RNN</c> computes hₜ = tanh(W_ih xₜ + b_ih + W_hh hₜ₋₁ + b_hh), which is equation (1)–(2) with b_h = b_ih + b_hh.
/// </summary>
public static class SafeTensors
{
    /// <summary>Writes θ as safetensors.</summary>
    /// <param name="stream">A writable stream.</param>
    /// <param name="parameters">θ.</param>
    /// <param name="head">The name of the output layer's module.</param>
    public static void Export(Stream stream, RnnParameters parameters, string head = "fc")
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentException.ThrowIfNullOrEmpty(head);
        RnnShape s = parameters.Shape;
        int i = s.InputSize, h = s.HiddenSize, o = s.OutputSize;
        float[] zeros = new float[h];
        var tensors = new (string Name, int[] Shape, float[] Data)[]
        {
            ("weight_ih_l0", [h, i], parameters.Wxh.ToArray()),
            ("weight_hh_l0", [h, h], parameters.Whh.ToArray()),
            ("bias_ih_l0", [h], parameters.Bh.ToArray()),
            ("bias_hh_l0", [h], zeros),
            (head + ".weight", [o, h], parameters.Why.ToArray()),
            (head + ".bias", [o], parameters.By.ToArray()),
        };
        var json = new StringBuilder("{");
        long offset = 0;
        foreach ((string name, int[] shape, float[] data) in tensors)
        {
            long end = offset + (4L * data.Length);
            json.Append(CultureInfo.InvariantCulture, $"\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{string.Join(',', shape)}],\"data_offsets\":[{offset},{end}]}},");
            offset = end;
        }

        json.Append("\"__metadata__\":{\"format\":\"pt\",\"producer\":\"Bptt.Fast\"}}");
        byte[] header = Encoding.UTF8.GetBytes(json.ToString());
        int padded = (header.Length + 7) / 8 * 8; // the format allows trailing spaces; 8-byte alignment of the data
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)padded);
        stream.Write(length);
        stream.Write(header);
        for (int k = header.Length; k < padded; k++)
        {
            stream.WriteByte((byte)' ');
        }

        foreach ((_, _, float[] data) in tensors)
        {
            stream.Write(MemoryMarshal.AsBytes(data.AsSpan()));
        }

        stream.Flush();
    }

    /// <summary>
    /// Reads safetensors with the names above into <paramref name="parameters"/>, summing the two biases. Every tensor is
    /// checked (present, F32, shape, offsets, finite) before <paramref name="parameters"/> changes.
    /// </summary>
    /// <param name="stream">A readable stream.</param>
    /// <param name="parameters">Receives θ; its shape fixes the expected tensor shapes.</param>
    /// <param name="head">The name of the output layer's module.</param>
    public static void Import(Stream stream, RnnParameters parameters, string head = "fc")
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentException.ThrowIfNullOrEmpty(head);
        using var buffer = new MemoryStream();
        stream.CopyTo(buffer);
        ReadOnlySpan<byte> bytes = buffer.GetBuffer().AsSpan(0, (int)buffer.Length);
        if (bytes.Length < 8)
        {
            throw new InvalidDataException("Truncated safetensors file: no header length.");
        }

        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLength > (ulong)(bytes.Length - 8))
        {
            throw new InvalidDataException($"Truncated safetensors file: header of {headerLength} bytes, {bytes.Length - 8} available.");
        }

        ReadOnlySpan<byte> data = bytes[(8 + (int)headerLength)..];
        RnnShape s = parameters.Shape;
        int i = s.InputSize, h = s.HiddenSize, o = s.OutputSize;
        var staged = new RnnParameters(s);
        float[] biasHh = new float[h];
        try
        {
            using JsonDocument doc = JsonDocument.Parse(bytes.Slice(8, (int)headerLength).ToArray());
            Read(doc.RootElement, data, "weight_ih_l0", [h, i], staged.Wxh);
            Read(doc.RootElement, data, "weight_hh_l0", [h, h], staged.Whh);
            Read(doc.RootElement, data, "bias_ih_l0", [h], staged.Bh);
            Read(doc.RootElement, data, "bias_hh_l0", [h], biasHh);
            Read(doc.RootElement, data, head + ".weight", [o, h], staged.Why);
            Read(doc.RootElement, data, head + ".bias", [o], staged.By);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"The safetensors header is not valid JSON: {e.Message}", e);
        }

        for (int k = 0; k < h; k++)
        {
            staged.Bh[k] += biasHh[k]; // b_h = b_ih + b_hh
        }

        int bad = Guard.FirstNonFinite<float>(staged.Values);
        if (bad >= 0)
        {
            throw new InvalidDataException($"Parameter {bad} is {staged.Values[bad]}; imported tensors must be finite.");
        }

        parameters.CopyFrom(staged);
    }

    private static void Read(JsonElement root, ReadOnlySpan<byte> data, string name, int[] shape, Span<float> destination)
    {
        if (!root.TryGetProperty(name, out JsonElement t))
        {
            throw new InvalidDataException($"Tensor '{name}' is missing.");
        }

        string? dtype = t.GetProperty("dtype").GetString();
        if (dtype != "F32")
        {
            throw new InvalidDataException($"Tensor '{name}' is {dtype}; expected F32.");
        }

        int[] actual = t.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        if (!actual.AsSpan().SequenceEqual(shape))
        {
            throw new InvalidDataException($"Tensor '{name}' has shape [{string.Join(", ", actual)}]; expected [{string.Join(", ", shape)}].");
        }

        long[] offsets = t.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] - offsets[0] != 4L * destination.Length || offsets[1] > data.Length)
        {
            throw new InvalidDataException($"Tensor '{name}' has data offsets [{string.Join(", ", offsets)}]; expected {4 * destination.Length} bytes within {data.Length}.");
        }

        ReadOnlySpan<byte> raw = data.Slice((int)offsets[0], 4 * destination.Length);
        for (int k = 0; k < destination.Length; k++)
        {
            destination[k] = BinaryPrimitives.ReadSingleLittleEndian(raw[(4 * k)..]);
        }
    }
}
