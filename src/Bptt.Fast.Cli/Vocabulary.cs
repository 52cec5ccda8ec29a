using System.Buffers;
using System.Text;

namespace Bptt.Fast.Cli;

/// <summary>
/// The symbols of a text model: distinct Unicode scalar values (<see cref="Rune"/>), so a character outside the Basic
/// Multilingual Plane (an emoji, say) is one symbol and never two lone UTF-16 surrogate halves. Symbol id k is the k-th
/// rune. The <c>.vocab</c> file is a UTF-8 byte-order mark followed by the UTF-8 bytes of every symbol in id order, with
/// no separator; a reader drops exactly one leading byte-order mark, so a vocabulary whose first symbol is U+FEFF
/// round-trips too.
/// </summary>
internal sealed class Vocabulary
{
    /// <summary>The largest <c>.vocab</c> file read: every Unicode scalar value takes at most 4 bytes, so 8 MiB holds them all.</summary>
    public const int MaxFileBytes = 8 << 20;

    private readonly Rune[] _symbols;
    private readonly Dictionary<Rune, int> _ids;

    private Vocabulary(Rune[] symbols)
    {
        _symbols = symbols;
        _ids = new Dictionary<Rune, int>(symbols.Length);
        for (int k = 0; k < symbols.Length; k++)
        {
            if (!_ids.TryAdd(symbols[k], k))
            {
                throw new InvalidDataException($"the symbol {Describe(symbols[k])} appears twice");
            }
        }
    }

    /// <summary>The UTF-8 byte-order mark.</summary>
    public static ReadOnlySpan<byte> ByteOrderMark => [0xEF, 0xBB, 0xBF];

    /// <summary>The number of symbols.</summary>
    public int Count => _symbols.Length;

    /// <summary>The symbol with id <paramref name="id"/>.</summary>
    /// <param name="id">In [0, <see cref="Count"/>).</param>
    public Rune this[int id] => _symbols[id];

    /// <summary>A vocabulary of the given distinct symbols, in that order.</summary>
    /// <param name="symbols">Distinct scalar values.</param>
    /// <returns>The vocabulary.</returns>
    public static Vocabulary Of(IEnumerable<Rune> symbols) => new(symbols.ToArray());

    /// <summary>Reads a <c>.vocab</c> file's bytes.</summary>
    /// <param name="bytes">The file.</param>
    /// <returns>The vocabulary.</returns>
    /// <exception cref="InvalidDataException">Not valid UTF-8, empty, or a symbol repeats.</exception>
    public static Vocabulary Parse(ReadOnlySpan<byte> bytes)
    {
        if (bytes.StartsWith(ByteOrderMark))
        {
            bytes = bytes[ByteOrderMark.Length..];
        }

        var symbols = new List<Rune>();
        int offset = 0;
        while (offset < bytes.Length)
        {
            if (Rune.DecodeFromUtf8(bytes[offset..], out Rune rune, out int used) != OperationStatus.Done)
            {
                throw new InvalidDataException($"it is not valid UTF-8 (byte {offset})");
            }

            symbols.Add(rune);
            offset += used;
        }

        return symbols.Count == 0 ? throw new InvalidDataException("it lists no symbols") : new Vocabulary([.. symbols]);
    }

    /// <summary>The id of <paramref name="symbol"/>.</summary>
    /// <param name="symbol">A scalar value.</param>
    /// <param name="id">Its id, or -1.</param>
    /// <returns>Whether the symbol is in the vocabulary.</returns>
    public bool TryGetId(Rune symbol, out int id)
    {
        if (_ids.TryGetValue(symbol, out id))
        {
            return true;
        }

        id = -1;
        return false;
    }

    /// <summary>Whether both list the same symbols in the same order.</summary>
    /// <param name="other">The other vocabulary.</param>
    /// <returns>True when equal.</returns>
    public bool SameAs(Vocabulary other) => _symbols.AsSpan().SequenceEqual(other._symbols);

    /// <summary>The <c>.vocab</c> file: the byte-order mark, then every symbol's UTF-8 bytes in id order.</summary>
    /// <returns>The bytes.</returns>
    public byte[] ToFileBytes()
    {
        var bytes = new List<byte>(ByteOrderMark.Length + (4 * _symbols.Length));
        bytes.AddRange(ByteOrderMark);
        Span<byte> one = stackalloc byte[4];
        foreach (Rune r in _symbols)
        {
            bytes.AddRange(one[..r.EncodeToUtf8(one)]);
        }

        return [.. bytes];
    }

    /// <summary>The symbols concatenated.</summary>
    /// <returns>The text.</returns>
    public override string ToString() => string.Concat(_symbols.Select(r => r.ToString()));

    /// <summary>A symbol for a one-line message: the character when printable, and its code point.</summary>
    /// <param name="symbol">The symbol.</param>
    /// <returns>E.g. <c>'é' (U+00E9)</c>.</returns>
    public static string Describe(Rune symbol) =>
        Rune.IsControl(symbol) || Rune.IsWhiteSpace(symbol) ? $"U+{symbol.Value:X4}" : $"'{symbol}' (U+{symbol.Value:X4})";
}
