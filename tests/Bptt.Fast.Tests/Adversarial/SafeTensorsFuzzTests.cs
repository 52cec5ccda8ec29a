using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Bptt.Fast.Serving;
using FsCheck.Fluent;
using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>
/// Malformed safetensors: every one throws <see cref="InvalidDataException"/> naming what is wrong and leaves θ unchanged;
/// export writes valid JSON for any head name and refuses non-finite θ.
/// </summary>
public sealed class SafeTensorsFuzzTests
{
    /// <summary>I = 2, H = 3, O = 2: 26 parameters, a 116-byte data section.</summary>
    private static readonly RnnShape Shape = new(2, 3, 2);

    private static readonly (string Name, string Shape, long Begin, long End)[] Canonical =
    [
        ("weight_ih_l0", "[3,2]", 0, 24), ("weight_hh_l0", "[3,3]", 24, 60), ("bias_ih_l0", "[3]", 60, 72),
        ("bias_hh_l0", "[3]", 72, 84), ("fc.weight", "[2,3]", 84, 108), ("fc.bias", "[2]", 108, 116),
    ];

    private static readonly RnnParameters Theta = Fixtures.Theta(Shape, 21);
    private static readonly byte[] Exported = Export(Theta);
    private static readonly byte[] Data = Exported[(8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(Exported))..];

    private static byte[] Export(RnnParameters theta, string head = "fc")
    {
        using var stream = new MemoryStream();
        SafeTensors.Export(stream, theta, head);
        return stream.ToArray();
    }

    private static string Entry(string shape, long begin, long end, string dtype = "\"F32\"") =>
        $"{{\"dtype\":{dtype},\"shape\":{shape},\"data_offsets\":[{begin},{end}]}}";

    /// <summary>The canonical header with the entry of <paramref name="tensor"/> replaced by <paramref name="entry"/> (raw JSON), or dropped when null.</summary>
    private static string Json(string? tensor = null, string? entry = null, string extra = "")
    {
        var parts = new List<string>();
        foreach ((string name, string shape, long begin, long end) in Canonical)
        {
            if (name != tensor)
            {
                parts.Add($"\"{name}\":{Entry(shape, begin, end)}");
            }
            else if (entry is not null)
            {
                parts.Add($"\"{name}\":{entry}");
            }
        }

        return "{" + string.Join(",", parts) + extra + "}";
    }

    private static byte[] File(string json, byte[]? data = null) => File(Encoding.UTF8.GetBytes(json), data);

    private static byte[] File(byte[] header, byte[]? data = null)
    {
        byte[] length = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
        return [.. length, .. header, .. data ?? Data];
    }

    /// <summary>Imports through a seekable and a non-seekable stream; both must throw InvalidDataException and leave θ as it was.</summary>
    private static InvalidDataException AssertRefused(byte[] file, string head = "fc")
    {
        InvalidDataException? first = null;
        foreach (bool seekable in new[] { true, false })
        {
            var target = new RnnParameters(Shape);
            target.Values.Fill(42f);
            byte[] before = Fixtures.Bits(target.Values);
            Stream stream = seekable ? new MemoryStream(file) : new NonSeekableStream(file);
            var e = Assert.Throws<InvalidDataException>(() => SafeTensors.Import(stream, target, head));
            Assert.False(string.IsNullOrWhiteSpace(e.Message));
            Assert.Equal(before, Fixtures.Bits(target.Values));
            first ??= e;
        }

        return first!;
    }

    private static bool TryImport(byte[] file, out RnnParameters target)
    {
        target = new RnnParameters(Shape);
        target.Values.Fill(42f);
        byte[] before = Fixtures.Bits(target.Values);
        try
        {
            SafeTensors.Import(new MemoryStream(file), target);
            return true;
        }
        catch (Exception e)
        {
            Assert.IsType<InvalidDataException>(e);
            Assert.Equal(before, Fixtures.Bits(target.Values));
            return false;
        }
    }

    [Fact]
    public void TheHandWrittenCanonicalHeaderImportsLikeTheExport()
    {
        foreach (byte[] file in new[] { Exported, File(Json()), File(Json() + "     "), File(Json(extra: ",\"__metadata__\":{\"a\":\"b\"}")) })
        {
            Assert.True(TryImport(file, out RnnParameters target));
            Assert.Equal(Fixtures.Bits(Theta.Values), Fixtures.Bits(target.Values));
        }
    }

    public static TheoryData<string, string, string> MalformedHeaders()
    {
        const string W = "weight_ih_l0";
        return new TheoryData<string, string, string>
        {
            { "root array", "[]", "JSON object" },
            { "root string", "\"weights\"", "JSON object" },
            { "root number", "42", "JSON object" },
            { "root null", "null", "JSON object" },
            { "only spaces", "    ", "JSON" },
            { "empty object", "{}", "missing" },
            { "tensor is an array", Json(W, "[1,2]"), "JSON object" },
            { "tensor is a string", Json(W, "\"F32\""), "JSON object" },
            { "tensor is null", Json(W, "null"), "JSON object" },
            { "dtype missing", Json(W, "{\"shape\":[3,2],\"data_offsets\":[0,24]}"), "no dtype" },
            { "shape missing", Json(W, "{\"dtype\":\"F32\",\"data_offsets\":[0,24]}"), "no shape" },
            { "data_offsets missing", Json(W, "{\"dtype\":\"F32\",\"shape\":[3,2]}"), "no data_offsets" },
            { "dtype is a number", Json(W, Entry("[3,2]", 0, 24, "32")), "dtype" },
            { "dtype is an array", Json(W, Entry("[3,2]", 0, 24, "[\"F32\"]")), "dtype" },
            { "dtype BF16", Json(W, Entry("[3,2]", 0, 24, "\"BF16\"")), "BF16" },
            { "dtype F64", Json(W, Entry("[3,2]", 0, 24, "\"F64\"")), "F64" },
            { "dtype lower case", Json(W, Entry("[3,2]", 0, 24, "\"f32\"")), "f32" },
            { "shape is a string", Json(W, "{\"dtype\":\"F32\",\"shape\":\"3,2\",\"data_offsets\":[0,24]}"), "shape" },
            { "shape is an object", Json(W, "{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,24]}"), "shape" },
            { "shape nested", Json(W, Entry("[[3],2]", 0, 24)), "shape" },
            { "shape string entry", Json(W, Entry("[\"3\",2]", 0, 24)), "shape" },
            { "shape boolean entry", Json(W, Entry("[true,2]", 0, 24)), "shape" },
            { "shape null entry", Json(W, Entry("[null,2]", 0, 24)), "shape" },
            { "shape fraction", Json(W, Entry("[3.0,2]", 0, 24)), "3.0" },
            { "shape exponent", Json(W, Entry("[3e0,2]", 0, 24)), "3e0" },
            { "shape negative", Json(W, Entry("[-3,2]", 0, 24)), "-3" },
            { "shape negative zero", Json(W, Entry("[-0,2]", 0, 24)), "-0" },
            { "shape beyond long", Json(W, Entry("[99999999999999999999,2]", 0, 24)), "64-bit" },
            { "shape long.MaxValue", Json(W, Entry("[9223372036854775807,2]", 0, 24)), "overflows" },
            { "shape product wraps", Json(W, Entry("[4294967296,4294967296]", 0, 24)), "overflows" },
            { "shape product wraps to 6", Json(W, Entry("[4611686018427387907,2]", 0, 24)), "overflows" },
            { "shape transposed", Json(W, Entry("[2,3]", 0, 24)), "expected [3, 2]" },
            { "shape with an extra dimension", Json(W, Entry("[3,2,1]", 0, 24)), "expected [3, 2]" },
            { "shape with too many dimensions", Json(W, Entry("[1,1,1,1,1,1,1,1,1]", 0, 24)), "more than 8" },
            { "shape empty", Json(W, Entry("[]", 0, 24)), "expected [3, 2]" },
            { "shape with a zero", Json(W, Entry("[0,2]", 0, 0)), "expected [3, 2]" },
            { "data_offsets is a string", Json(W, "{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":\"0,24\"}"), "data_offsets" },
            { "data_offsets with one entry", Json(W, "{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[24]}"), "data_offsets" },
            { "data_offsets with three entries", Json(W, "{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24,48]}"), "more than 2" },
            { "data_offsets negative", Json(W, "{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[-24,0]}"), "-24" },
            { "data_offsets reversed", Json(W, Entry("[3,2]", 24, 0)), "data_offsets" },
            { "data_offsets fraction", Json(W, "{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24.0]}"), "24.0" },
            { "data_offsets beyond long", Json(W, "{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,18446744073709551616]}"), "64-bit" },
            { "data_offsets at long.MaxValue", Json(W, Entry("[3,2]", long.MaxValue - 24, long.MaxValue)), "gap" },
            { "data_offsets length disagrees", Json(W, Entry("[3,2]", 0, 20)), "data_offsets" },
            { "data_offsets beyond the data", Json("fc.bias", Entry("[2]", 200, 208)), "gap" },
            { "data_offsets overlap", Json("weight_hh_l0", Entry("[3,3]", 20, 56)), "overlap" },
            { "data_offsets alias another tensor", Json("bias_hh_l0", Entry("[3]", 60, 72)), "overlap" },
            { "duplicate tensor", Json(extra: $",\"{W}\":{Entry("[3,2]", 0, 24)}"), "more than once" },
            { "duplicate dtype", Json(W, "{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24]}"), "more than once" },
            { "duplicate shape", Json(W, "{\"dtype\":\"F32\",\"shape\":[3,2],\"shape\":[3,2],\"data_offsets\":[0,24]}"), "more than once" },
            { "duplicate escaped key", Json(extra: $",\"weight_ih_l\\u0030\":{Entry("[3,2]", 0, 24)}"), "more than once" },
            { "duplicate metadata", Json(extra: ",\"__metadata__\":{},\"__metadata__\":{}"), "more than once" },
            { "duplicate metadata key", Json(extra: ",\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}"), "more than once" },
            { "metadata value not a string", Json(extra: ",\"__metadata__\":{\"a\":1}"), "string" },
            { "metadata is an array", Json(extra: ",\"__metadata__\":[]"), "JSON object" },
            { "unknown field", Json(W, "{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24],\"extra\":1}"), "unknown field" },
            { "unexpected tensor", Json(extra: $",\"rnn.{W}\":{Entry("[3,2]", 116, 140)}"), "Unexpected tensor" },
            { "missing tensor", Json("fc.bias"), "missing" },
            { "trailing garbage", Json() + "x", "JSON" },
            { "a second object", Json() + "{}", "JSON" },
            { "trailing comma after the object", Json() + ",", "JSON" },
            { "trailing comma inside", Json(extra: ","), "JSON" },
            { "NUL padding", Json() + "\0\0\0", "JSON" },
            { "comment", "/* c */" + Json(), "JSON" },
            { "single quotes", Json().Replace('"', '\''), "JSON" },
            { "unterminated", Json()[..40], "JSON" },
            { "escaped lone low surrogate as a key", "{\"\\udc00\":{}}", "JSON" },
            { "escaped lone high surrogate in a tensor name", Json(extra: ",\"a\\ud800x\":{}"), "JSON" },
            { "escaped lone surrogate as a metadata key", Json(extra: ",\"__metadata__\":{\"\\ud800\":\"1\"}"), "JSON" },
            { "escaped lone surrogate as a dtype", Json(W, Entry("[3,2]", 0, 24, "\"F\\udc0032\"")), "JSON" },
        };
    }

    [Theory]
    [MemberData(nameof(MalformedHeaders))]
    public void AMalformedHeaderThrowsInvalidDataNamingTheProblem(string label, string json, string fragment)
    {
        InvalidDataException e = AssertRefused(File(json));
        Assert.True(e.Message.Contains(fragment, StringComparison.Ordinal), $"{label}: {e.Message}");
    }

    public static TheoryData<string, byte[]> NonUtf8Headers() => new()
    {
        { "invalid byte in a key", [.. "{\"w"u8, 0xFF, .. "\":1}"u8] },
        { "overlong slash", [.. "{\""u8, 0xC0, 0xAF, .. "\":1}"u8] },
        { "encoded surrogate", [.. "{\""u8, 0xED, 0xA0, 0x80, .. "\":1}"u8] },
        { "truncated sequence at the end", [.. Encoding.UTF8.GetBytes(Json()), 0xE2, 0x82] },
        { "Latin-1 in a string", [.. Encoding.UTF8.GetBytes(Json(extra: ",\"__metadata__\":{\"a\":\"")), 0xE9, .. "\"}}"u8] },
    };

    [Theory]
    [MemberData(nameof(NonUtf8Headers))]
    public void AHeaderThatIsNotUtf8ThrowsInvalidData(string label, byte[] header)
    {
        InvalidDataException e = AssertRefused(File(header));
        Assert.True(e.Message.Contains("UTF-8", StringComparison.Ordinal), $"{label}: {e.Message}");
    }

    [Theory]
    [InlineData(0UL)]
    [InlineData(1UL)]
    [InlineData(SafeTensors.MaxHeaderLength + 1UL)]
    [InlineData(1UL << 32)]
    [InlineData(long.MaxValue)]
    [InlineData(ulong.MaxValue)]
    [InlineData(100_000UL)]
    public void AHeaderLengthOutOfRangeOrBeyondTheFileIsRefusedBeforeAllocating(ulong length)
    {
        byte[] file = (byte[])Exported.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(file, length);
        long before = GC.GetAllocatedBytesForCurrentThread();
        AssertRefused(file);
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 1 << 20);
    }

    [Fact]
    public void TruncationAtEveryLengthAndTrailingBytesAreRefused()
    {
        for (int length = 0; length < Exported.Length; length++)
        {
            AssertRefused(Exported[..length]);
        }

        AssertRefused([.. Exported, 0]);
        AssertRefused([.. Exported, .. new byte[8]]);
    }

    [Fact]
    public void NonFiniteDataOrAnOverflowingBiasSumIsRefused()
    {
        foreach ((int at, float value, string name) in new[] { (0, float.NaN, "weight_ih_l0"), (60 + 4, float.PositiveInfinity, "bias_ih_l0"), (112, float.NegativeInfinity, "fc.bias") })
        {
            byte[] data = (byte[])Data.Clone();
            BinaryPrimitives.WriteSingleLittleEndian(data.AsSpan(at), value);
            Assert.Contains($"'{name}'", AssertRefused(File(Json(), data)).Message, StringComparison.Ordinal);
        }

        byte[] big = (byte[])Data.Clone();
        BinaryPrimitives.WriteSingleLittleEndian(big.AsSpan(60 + 8), 3e38f); // bias_ih_l0[2]
        BinaryPrimitives.WriteSingleLittleEndian(big.AsSpan(72 + 8), 3e38f); // bias_hh_l0[2]
        Assert.Contains("element 2", AssertRefused(File(Json(), big)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheHeadNameMustMatch() => Assert.Contains("'out.weight'", AssertRefused(Exported, head: "out").Message, StringComparison.Ordinal);

    [Fact]
    public void AValidFileFollowedByEndlessZerosIsReadOneByteBeyondItsData()
    {
        var endless = new EndlessStream(Exported);
        var target = new RnnParameters(Shape);
        Assert.Throws<InvalidDataException>(() => SafeTensors.Import(endless, target));
        Assert.Equal(Exported.Length + 1, endless.Consumed);
        Assert.All(target.Values.ToArray(), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void AStreamThatPromisesTheLargestHeaderAndEndsEarlyCostsOnlyWhatArrived()
    {
        byte[] file = (byte[])Exported.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(file, SafeTensors.MaxHeaderLength);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<InvalidDataException>(() => SafeTensors.Import(new NonSeekableStream(file, chunk: 4096), new RnnParameters(Shape)));
        Assert.Contains("Truncated", e.Message, StringComparison.Ordinal);
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 1 << 20);
    }

    [Fact]
    public void DevZeroIsRefusedOnItsHeaderLength()
    {
        if (!System.IO.File.Exists("/dev/zero"))
        {
            Assert.Skip("/dev/zero does not exist on this system (not Unix-like).");
        }

        using FileStream zero = System.IO.File.OpenRead("/dev/zero");
        Assert.Throws<InvalidDataException>(() => SafeTensors.Import(zero, new RnnParameters(Shape)));
    }

    [Fact]
    public void RandomEditsOfTheHeaderImportCorrectlyOrThrowInvalidData()
    {
        string json = Json();
        char[] alphabet = "{}[]\":,0123456789-.eE+ \\ntfalsurF32x".ToCharArray();
        Generators.Check(
            from edits in Gen.Choose(1, 4)
            from ops in Gen.ListOf(
                from kind in Gen.Choose(0, 2)
                from at in Gen.Choose(0, json.Length - 1)
                from c in Gen.Elements(alphabet)
                select (Kind: kind, At: at, Char: c), edits)
            select ops.ToArray(),
            ops =>
            {
                var text = new StringBuilder(json);
                foreach ((int kind, int at, char c) in ops)
                {
                    int i = Math.Min(at, text.Length - 1);
                    _ = kind switch
                    {
                        0 => text.Remove(i, 1),
                        1 => text.Insert(i, c),
                        _ => text.Remove(i, 1).Insert(i, c),
                    };
                }

                if (TryImport(File(text.ToString()), out RnnParameters target))
                {
                    Assert.Equal(Fixtures.Bits(Theta.Values), Fixtures.Bits(target.Values)); // an edit that kept the meaning
                }
            }, count: 1500);
    }

    [Fact]
    public void RandomBytesAsAHeaderThrowInvalidData() =>
        Generators.Check(
            Gen.ArrayOf(Gen.Choose(0, 255).Select(b => (byte)b)),
            header => Assert.False(TryImport(File(header), out _)),
            count: 500);

    [Fact]
    public void AnyHeadNameRoundTripsAsValidJson() =>
        Generators.Check(
            Gen.ArrayOf(Gen.OneOf(
                Gen.Elements('"', '\\', '/', '.', '\0', '\n', '\r', '\t', '\b', '\f', '\u001F', '\u007F', '<', '>', '&', '\'', '+', 'é', '中', '\u2028', '\uFEFF'),
                Gen.Choose(32, 126).Select(c => (char)c),
                Gen.Elements("😀", "\U0001F9E0").Select(s => s[0]))).Select(cs => new string(cs)),
            raw =>
            {
                string head = Sanitize(raw);
                byte[] file = Export(Theta, head);
                int length = (int)BinaryPrimitives.ReadUInt64LittleEndian(file);
                using (JsonDocument doc = JsonDocument.Parse(file.AsMemory(8, length)))
                {
                    Assert.True(doc.RootElement.TryGetProperty(head + ".weight", out _));
                    Assert.True(doc.RootElement.TryGetProperty(head + ".bias", out _));
                }

                var target = new RnnParameters(Shape);
                SafeTensors.Import(new MemoryStream(file), target, head);
                Assert.Equal(Fixtures.Bits(Theta.Values), Fixtures.Bits(target.Values));
            }, count: 300);

    /// <summary>Turns the generator's raw chars into a non-empty, well-formed string (a lone high surrogate gets its pair).</summary>
    private static string Sanitize(string raw)
    {
        var text = new StringBuilder("h");
        foreach (char c in raw)
        {
            text.Append(c);
            if (char.IsHighSurrogate(c))
            {
                text.Append('\uDE00');
            }
            else if (char.IsLowSurrogate(c))
            {
                text.Length--;
            }
        }

        return text.ToString();
    }

    /// <summary>By index: attribute arguments are stored as UTF-8, which would turn a lone surrogate into U+FFFD.</summary>
    private static readonly string[] UnpairedSurrogateHeads = ["\uD800", "fc\uDC00", "a\uD83Db", "\uDE00\uD83D"];

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void AHeadWithAnUnpairedSurrogateIsAnArgumentError(int index)
    {
        string head = UnpairedSurrogateHeads[index];
        using var stream = new MemoryStream();
        Assert.Equal("head", Assert.Throws<ArgumentException>(() => SafeTensors.Export(stream, Theta, head)).ParamName);
        Assert.Equal(0, stream.Length);
        var target = new RnnParameters(Shape);
        Assert.Equal("head", Assert.Throws<ArgumentException>(() => SafeTensors.Import(new MemoryStream(Exported), target, head)).ParamName);
    }

    [Theory]
    [InlineData(float.NaN, 0)]
    [InlineData(float.PositiveInfinity, 13)]
    [InlineData(float.NegativeInfinity, 25)]
    public void ExportRefusesNonFiniteParametersBeforeWritingAnything(float poison, int index)
    {
        RnnParameters theta = Theta.Clone();
        theta.Values[index] = poison;
        byte[] before = Fixtures.Bits(theta.Values);
        using var stream = new MemoryStream();
        var e = Assert.Throws<ArgumentException>(() => SafeTensors.Export(stream, theta));
        Assert.Equal("parameters", e.ParamName);
        Assert.Contains($"element {index}", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, stream.Length);
        Assert.Equal(before, Fixtures.Bits(theta.Values));
    }
}
