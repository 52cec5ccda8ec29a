using System.Text;
using Bptt.Fast.Cli;
using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>The vocabulary is made of Unicode scalar values: emoji and other non-BMP symbols survive training, the .vocab file and sampling.</summary>
public sealed class CliUnicodeTests : CliHarness
{
    [Fact]
    public void EmojiBomAndCjkRoundTripThroughTrainingAndSampling()
    {
        const string Body = "猫😀🚀 𝄞漢字😀 ça🚀😀 ";
        byte[] text = [.. Encoding.UTF8.GetPreamble(), .. Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat(Body, 12)))];
        File.WriteAllBytes(P("u.txt"), text);
        (int code, _, string error) = Run("train", "--text", P("u.txt"), "--steps", "30", "--hidden", "16", "--chunk", "8", "--lr", "0.02", "--checkpoint", P("u.ckpt"));
        Assert.True(code == 0, error);

        // The vocabulary: the distinct scalars in ascending order, no BOM symbol, no surrogate halves.
        Rune[] expected = [.. Body.EnumerateRunes().Distinct().OrderBy(r => r.Value)];
        Assert.DoesNotContain(new Rune(0xFEFF), expected);
        byte[] vocab = File.ReadAllBytes(P("u.ckpt.vocab"));
        Assert.Equal([.. Encoding.UTF8.GetPreamble(), .. Encoding.UTF8.GetBytes(string.Concat(expected.Select(r => r.ToString())))], vocab);

        (code, string output, error) = Run("sample", "--checkpoint", P("u.ckpt"), "--length", "300", "--seed", "4", "--prime", "😀猫");
        Assert.True(code == 0, error);
        string sample = output.TrimEnd('\n', '\r');
        Assert.DoesNotContain('\uFFFD', sample);
        Assert.StartsWith("😀猫", sample, StringComparison.Ordinal);
        var runes = new List<Rune>();
        for (int at = 0; at < sample.Length;)
        {
            Assert.Equal(System.Buffers.OperationStatus.Done, Rune.DecodeFromUtf16(sample.AsSpan(at), out Rune r, out int used));
            runes.Add(r);
            at += used;
        }

        Assert.Equal(302, runes.Count);
        Assert.All(runes, r => Assert.Contains(r, expected));
        Assert.True(runes.Skip(2).Count(r => !r.IsBmp) > 20, "emoji are a third of the text; the sample should hold many");
    }

    [Fact]
    public void TheVocabularyFileRoundTripsEveryKindOfSymbol()
    {
        // U+FEFF as the first symbol, line breaks, a control character, non-BMP and the largest scalar.
        Rune[] symbols = [new(0xFEFF), new('\n'), new('\r'), new(0x01), new('a'), new(0x1F600), new(0x10FFFF), new(0x4E2D)];
        Vocabulary v = Vocabulary.Of(symbols);
        byte[] bytes = v.ToFileBytes();
        Assert.Equal([0xEF, 0xBB, 0xBF, 0xEF, 0xBB, 0xBF], bytes[..6]);
        Vocabulary back = Vocabulary.Parse(bytes);
        Assert.True(back.SameAs(v));
        Assert.Equal(symbols.Length, back.Count);
        Assert.All(Enumerable.Range(0, symbols.Length), k => Assert.Equal(symbols[k], back[k]));

        // A file without the mark (hand-written) reads the same when its first symbol is not U+FEFF.
        Assert.True(Vocabulary.Parse("BTPSXVE"u8).SameAs(Vocabulary.Of("BTPSXVE".EnumerateRunes())));
        Assert.Throws<InvalidDataException>(() => Vocabulary.Parse([0xEF, 0xBB, 0xBF]));
        Assert.Throws<InvalidDataException>(() => Vocabulary.Parse("abca"u8));
        Assert.Throws<InvalidDataException>(() => Vocabulary.Parse([0x61, 0xF0, 0x9F, 0x98]));
    }

    [Fact]
    public void ALeadingBomIsNotASymbolButALaterOneIs()
    {
        File.WriteAllBytes(P("b.txt"), [0xEF, 0xBB, 0xBF, .. Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat("ab\uFEFFba", 5)))]);
        (int code, _, string error) = Run("train", "--text", P("b.txt"), "--steps", "2", "--hidden", "4", "--chunk", "4", "--checkpoint", P("b.ckpt"));
        Assert.True(code == 0, error);
        Assert.True(Vocabulary.Parse(File.ReadAllBytes(P("b.ckpt.vocab"))).SameAs(Vocabulary.Of("ab\uFEFF".EnumerateRunes())));

        File.WriteAllBytes(P("c.txt"), [0xEF, 0xBB, 0xBF, .. Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat("abba", 5)))]);
        Assert.Equal(0, Run("train", "--text", P("c.txt"), "--steps", "2", "--hidden", "4", "--chunk", "4", "--checkpoint", P("c.ckpt")).Code);
        Assert.Equal("ab"u8.ToArray(), File.ReadAllBytes(P("c.ckpt.vocab"))[3..]);
    }
}
