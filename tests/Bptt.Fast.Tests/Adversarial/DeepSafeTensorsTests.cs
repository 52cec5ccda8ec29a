using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using Bptt.Fast.Serving;
using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>
/// safetensors of stacked and bidirectional networks under PyTorch's <c>nn.RNN</c> names: a state dict laid out by hand
/// lands in the right θ blocks, export and import round-trip, and a missing, extra or misshapen tensor is refused
/// naming it, θ unchanged.
/// </summary>
public sealed class DeepSafeTensorsTests
{
    /// <summary>A file of <paramref name="tensors"/> in the given order, the data following in the same order.</summary>
    private static byte[] File(IEnumerable<(string Name, int[] Shape, float[] Data)> tensors, string metadata = "")
    {
        var json = new StringBuilder("{");
        var data = new MemoryStream();
        byte[] w = new byte[4];
        foreach ((string name, int[] shape, float[] values) in tensors)
        {
            long begin = data.Length;
            foreach (float v in values)
            {
                BinaryPrimitives.WriteSingleLittleEndian(w, v);
                data.Write(w);
            }

            json.Append($"\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{string.Join(",", shape)}],\"data_offsets\":[{begin},{data.Length}]}},");
        }

        json.Append(metadata);
        if (json[^1] == ',')
        {
            json.Length--;
        }

        json.Append('}');
        byte[] header = Encoding.UTF8.GetBytes(json.ToString());
        byte[] length = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        return [.. length, .. header, .. data.ToArray()];
    }

    /// <summary>A distinct, exactly representable value for element k of tensor t.</summary>
    private static float[] Values(int t, int count) => Enumerable.Range(0, count).Select(k => (t * 100f) + k + 0.5f).ToArray();

    [Fact]
    public void ATwoLayerBidirectionalPyTorchStateDictImportsIntoTheRightBlocks()
    {
        // nn.RNN(3, 2, num_layers=2, bidirectional=True) + nn.Linear(4, 2) as "fc", in state_dict order.
        (string Name, int[] Shape)[] names =
        [
            ("weight_ih_l0", [2, 3]), ("weight_hh_l0", [2, 2]), ("bias_ih_l0", [2]), ("bias_hh_l0", [2]),
            ("weight_ih_l0_reverse", [2, 3]), ("weight_hh_l0_reverse", [2, 2]), ("bias_ih_l0_reverse", [2]), ("bias_hh_l0_reverse", [2]),
            ("weight_ih_l1", [2, 4]), ("weight_hh_l1", [2, 2]), ("bias_ih_l1", [2]), ("bias_hh_l1", [2]),
            ("weight_ih_l1_reverse", [2, 4]), ("weight_hh_l1_reverse", [2, 2]), ("bias_ih_l1_reverse", [2]), ("bias_hh_l1_reverse", [2]),
            ("fc.weight", [2, 4]), ("fc.bias", [2]),
        ];
        var tensors = names.Select((n, t) => (n.Name, n.Shape, Data: Values(t, n.Shape.Aggregate(1, (a, b) => a * b)))).ToArray();
        var d = tensors.ToDictionary(x => x.Name, x => x.Data);

        // The keys in another order than the data (as any writer may), with PyTorch's metadata.
        byte[] file = File(tensors.Reverse(), "\"__metadata__\":{\"format\":\"pt\"}");
        var shape = new RnnShape(3, 2, 2) { Layers = 2, Directions = 2 };
        var theta = new RnnParameters(shape);
        SafeTensors.Import(new MemoryStream(file), theta);

        // θ by hand: block (0, 0) at 0 and (0, 1) at 12 (6 + 4 + 2 each); (1, 0) at 24 and (1, 1) at 38 (8 + 4 + 2 each);
        // W_hy at 52 (2×4), b_y at 60; 62 in all.
        float[] v = theta.Values.ToArray();
        Assert.Equal(62, v.Length);
        (string Suffix, int At, int Inputs)[] blocks = [("_l0", 0, 3), ("_l0_reverse", 12, 3), ("_l1", 24, 4), ("_l1_reverse", 38, 4)];
        foreach ((string suffix, int at, int inputs) in blocks)
        {
            int wxh = 2 * inputs;
            Assert.Equal(d["weight_ih" + suffix], v[at..(at + wxh)]);
            Assert.Equal(d["weight_hh" + suffix], v[(at + wxh)..(at + wxh + 4)]);
            Assert.Equal(d["bias_ih" + suffix].Zip(d["bias_hh" + suffix], (x, y) => x + y).ToArray(), v[(at + wxh + 4)..(at + wxh + 6)]);
        }

        Assert.Equal(d["fc.weight"], v[52..60]);
        Assert.Equal(d["fc.bias"], v[60..62]);

        // The accessors agree with the layout the test assumes.
        Assert.Equal(d["weight_ih_l1_reverse"], theta.LayerWxh(1, 1).ToArray());
        Assert.Equal(d["fc.weight"], theta.Why.ToArray());
    }

    public static TheoryData<int, int> Configurations() => new() { { 1, 1 }, { 1, 2 }, { 2, 1 }, { 2, 2 }, { 3, 1 }, { 3, 2 } };

    [Theory]
    [MemberData(nameof(Configurations))]
    public void ExportThenImportIsBitExactUnderPyTorchNames(int layers, int directions)
    {
        var shape = new RnnShape(4, 3, 5) { Layers = layers, Directions = directions };
        var theta = new RnnParameters(shape);
        for (int k = 0; k < theta.Values.Length; k++)
        {
            theta.Values[k] = MathF.Sin((1.3f * k) + 0.2f);
        }

        using var stream = new MemoryStream();
        SafeTensors.Export(stream, theta, head: "out");
        byte[] file = stream.ToArray();

        // The header names and shapes, written out from PyTorch's conventions.
        JsonObject header = Header(file);
        var expected = new Dictionary<string, int[]>
        {
            ["out.weight"] = [5, 3 * directions],
            ["out.bias"] = [5],
        };
        for (int l = 0; l < layers; l++)
        {
            foreach (string suffix in directions == 1 ? new[] { $"_l{l}" } : [$"_l{l}", $"_l{l}_reverse"])
            {
                expected["weight_ih" + suffix] = [3, l == 0 ? 4 : 3 * directions];
                expected["weight_hh" + suffix] = [3, 3];
                expected["bias_ih" + suffix] = [3];
                expected["bias_hh" + suffix] = [3];
            }
        }

        Assert.Equal(expected.Keys.Order(), header.Select(p => p.Key).Where(k => k != "__metadata__").Order());
        foreach ((string name, int[] dims) in expected)
        {
            Assert.Equal(dims, header[name]!["shape"]!.AsArray().Select(x => (int)x!));
        }

        var loaded = new RnnParameters(shape);
        loaded.Values.Fill(42f);
        SafeTensors.Import(new MemoryStream(file), loaded, head: "out");
        Assert.Equal(Fixtures.Bits(theta.Values), Fixtures.Bits(loaded.Values));
        var streamed = new RnnParameters(shape);
        SafeTensors.Import(new NonSeekableStream(file), streamed, head: "out");
        Assert.Equal(Fixtures.Bits(theta.Values), Fixtures.Bits(streamed.Values));
    }

    private static JsonObject Header(byte[] file) =>
        JsonNode.Parse(Encoding.UTF8.GetString(file, 8, (int)BinaryPrimitives.ReadUInt64LittleEndian(file)))!.AsObject();

    /// <summary>Rewrites the header of <paramref name="file"/> with <paramref name="edit"/>; the data is kept, <paramref name="extraData"/> appended.</summary>
    private static byte[] Rewrite(byte[] file, Action<JsonObject> edit, int extraData = 0)
    {
        int length = (int)BinaryPrimitives.ReadUInt64LittleEndian(file);
        JsonObject header = Header(file);
        edit(header);
        byte[] json = Encoding.UTF8.GetBytes(header.ToJsonString());
        byte[] prefix = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)json.Length);
        return [.. prefix, .. json, .. file[(8 + length)..], .. new byte[extraData]];
    }

    private static readonly RnnShape Deep = new(3, 2, 2) { Layers = 2, Directions = 2 };

    private static byte[] ExportedDeep()
    {
        RnnParameters theta = Fixtures.Theta(Deep, 12);
        using var stream = new MemoryStream();
        SafeTensors.Export(stream, theta);
        return stream.ToArray();
    }

    /// <summary>The data section's length in bytes: θ plus one zero bias_hh per block.</summary>
    private static long DataLength => 4L * (Deep.ParameterCount + (Deep.BlockCount * Deep.HiddenSize));

    public static TheoryData<string, string> Refusals() => new()
    {
        { "missing weight_hh_l1_reverse", "'weight_hh_l1_reverse' is missing" },
        { "missing bias_hh_l0_reverse", "'bias_hh_l0_reverse' is missing" },
        { "extra weight_ih_l2", "Unexpected tensor 'weight_ih_l2'" },
        { "extra rnn.weight_ih_l0", "Unexpected tensor 'rnn.weight_ih_l0'" },
        { "wrong shape weight_ih_l1", "Tensor 'weight_ih_l1' has shape [2, 2]; expected [2, 4]" },
        { "wrong shape weight_ih_l0_reverse", "Tensor 'weight_ih_l0_reverse' has shape [3, 2]; expected [2, 3]" },
        { "wrong shape fc.weight", "Tensor 'fc.weight' has shape [2, 2]; expected [2, 4]" },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public void AMissingExtraOrMisshapenTensorIsRefusedNamingItAndThetaIsUnchanged(string change, string fragment)
    {
        byte[] file = ExportedDeep();
        string[] words = change.Split(' ');
        string name = words[^1];
        byte[] bad = words[0] switch
        {
            "missing" => Rewrite(file, h => h.Remove(name)),
            "extra" => Rewrite(file, h => h[name] = JsonNode.Parse($"{{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[{DataLength},{DataLength + 24}]}}"), extraData: 24),
            _ => Rewrite(file, h =>
            {
                JsonArray dims = h[name]!["shape"]!.AsArray();
                int[] swapped = name == "weight_ih_l0_reverse" ? [3, 2] : [2, 2];
                h[name]!["shape"] = new JsonArray(swapped.Select(x => (JsonNode)x).ToArray());
                Assert.NotEqual(swapped, dims.Select(x => (int)x!));
            }),
        };

        foreach (bool seekable in new[] { true, false })
        {
            var target = new RnnParameters(Deep);
            target.Values.Fill(42f);
            byte[] before = Fixtures.Bits(target.Values);
            Stream stream = seekable ? new MemoryStream(bad) : new NonSeekableStream(bad);
            var e = Assert.Throws<InvalidDataException>(() => SafeTensors.Import(stream, target));
            Assert.True(e.Message.Contains(fragment, StringComparison.Ordinal), $"{change}: {e.Message}");
            Assert.Equal(before, Fixtures.Bits(target.Values));
        }
    }

    [Fact]
    public void AFileOfAnotherConfigurationIsRefusedAndThetaIsUnchanged()
    {
        byte[] deep = ExportedDeep();
        foreach (RnnShape other in new[] { new RnnShape(3, 2, 2), new RnnShape(3, 2, 2) { Layers = 2 }, new RnnShape(3, 2, 2) { Directions = 2 }, new RnnShape(3, 2, 2) { Layers = 3, Directions = 2 } })
        {
            var target = new RnnParameters(other);
            target.Values.Fill(42f);
            var e = Assert.Throws<InvalidDataException>(() => SafeTensors.Import(new MemoryStream(deep), target));
            Assert.Contains("tensor", e.Message, StringComparison.OrdinalIgnoreCase);
            Assert.All(target.Values.ToArray(), x => Assert.Equal(42f, x));
        }

        // A one-layer file into the deep destination: its head reads one direction, which the header check names first.
        using var stream = new MemoryStream();
        SafeTensors.Export(stream, Fixtures.Theta(new RnnShape(3, 2, 2), 13));
        var deepTarget = new RnnParameters(Deep);
        deepTarget.Values.Fill(42f);
        var missing = Assert.Throws<InvalidDataException>(() => SafeTensors.Import(new MemoryStream(stream.ToArray()), deepTarget));
        Assert.Contains("Tensor 'fc.weight' has shape [2, 2]; expected [2, 4]", missing.Message, StringComparison.Ordinal);
        Assert.All(deepTarget.Values.ToArray(), x => Assert.Equal(42f, x));
    }

    [Fact]
    public void AnOverflowingBiasSumOfAnUpperReverseBlockIsRefusedNamingBothTensors()
    {
        byte[] file = ExportedDeep();
        JsonObject header = Header(file);
        int dataAt = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(file);
        long ih = (long)header["bias_ih_l1_reverse"]!["data_offsets"]![0]!, hh = (long)header["bias_hh_l1_reverse"]!["data_offsets"]![0]!;
        BinaryPrimitives.WriteSingleLittleEndian(file.AsSpan(dataAt + (int)ih + 4), 3e38f);
        BinaryPrimitives.WriteSingleLittleEndian(file.AsSpan(dataAt + (int)hh + 4), 3e38f);
        var target = new RnnParameters(Deep);
        target.Values.Fill(42f);
        var e = Assert.Throws<InvalidDataException>(() => SafeTensors.Import(new MemoryStream(file), target));
        Assert.Contains("bias_ih_l1_reverse + bias_hh_l1_reverse overflows at element 1", e.Message, StringComparison.Ordinal);
        Assert.All(target.Values.ToArray(), x => Assert.Equal(42f, x));
    }

    [Fact]
    public void ManyLayersNameTheExpectedTensorsByTheirPattern()
    {
        var shape = new RnnShape(2, 2, 2) { Layers = 8, Directions = 2 };
        var theta = new RnnParameters(shape);
        using var stream = new MemoryStream();
        SafeTensors.Export(stream, theta);
        byte[] bad = Rewrite(stream.ToArray(), h => h.Remove("weight_ih_l7_reverse"));
        var target = new RnnParameters(shape);
        SafeTensors.Import(new MemoryStream(stream.ToArray()), target);
        Assert.Contains("'weight_ih_l7_reverse' is missing", Assert.Throws<InvalidDataException>(() => SafeTensors.Import(new MemoryStream(bad), target)).Message, StringComparison.Ordinal);
        byte[] extra = Rewrite(stream.ToArray(), h => h["weight_ih_l8"] = JsonNode.Parse("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}"));
        string message = Assert.Throws<InvalidDataException>(() => SafeTensors.Import(new MemoryStream(extra), target)).Message;
        Assert.Contains("'weight_ih_l8'", message, StringComparison.Ordinal);
        Assert.Contains("for k = 0..7", message, StringComparison.Ordinal);
        Assert.True(message.Length < 1000, message);
    }
}
