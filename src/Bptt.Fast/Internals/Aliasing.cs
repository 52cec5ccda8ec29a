using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Bptt.Fast.Internals;

/// <summary>
/// The one aliasing rule of the library, checked in one place: <b>a writable span shares no byte with any other span of the
/// same call</b>, read-only or writable. Read-only spans may overlap each other. The only exception is an in-place kernel
/// whose documentation says an input "may be the same span" as its output: then the two must be exactly the same span
/// (same start and length), never a partial overlap. Empty spans never overlap anything.
/// <para>An entry point lists its spans in an <see cref="AliasSet"/> (up to <see cref="AliasSet.Capacity"/>) and calls
/// <see cref="AliasSet.Check"/> before it writes anything; the first violation throws an <see cref="ArgumentException"/>
/// whose ParamName is the writable span (the later-listed one when both are writable).</para>
/// </summary>
internal static class Aliasing
{
    /// <summary>Whether two spans share at least one byte (GC-safe: the offset is taken between two tracked references).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static bool Overlap(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        if (a.IsEmpty || b.IsEmpty)
        {
            return false;
        }

        nint offset = Unsafe.ByteOffset(ref MemoryMarshal.GetReference(a), ref MemoryMarshal.GetReference(b));
        return offset >= 0 ? offset < a.Length : -offset < b.Length;
    }

    /// <summary>Whether two spans are the same memory: same start and same length (the in-place case).</summary>
    public static bool Same(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b) =>
        a.Length == b.Length && Unsafe.AreSame(ref MemoryMarshal.GetReference(a), ref MemoryMarshal.GetReference(b));

    /// <summary>Throws when <paramref name="output"/> overlaps <paramref name="other"/> (the rule for a single pair).</summary>
    public static void Disjoint<TA, TB>(ReadOnlySpan<TA> output, string outputName, ReadOnlySpan<TB> other, string otherName)
        where TA : unmanaged
        where TB : unmanaged
    {
        if (Overlap(MemoryMarshal.AsBytes(output), MemoryMarshal.AsBytes(other)))
        {
            throw Violation(outputName, otherName);
        }
    }

    /// <summary>Throws unless <paramref name="input"/> and <paramref name="output"/> are disjoint or exactly the same span (in place).</summary>
    public static void DisjointOrSame<TA, TB>(ReadOnlySpan<TA> output, string outputName, ReadOnlySpan<TB> input, string inputName)
        where TA : unmanaged
        where TB : unmanaged
    {
        ReadOnlySpan<byte> o = MemoryMarshal.AsBytes(output), i = MemoryMarshal.AsBytes(input);
        if (!Same(o, i) && Overlap(o, i))
        {
            throw Violation(outputName, inputName);
        }
    }

    internal static ArgumentException Violation(string output, string other) =>
        new($"'{output}' overlaps '{other}' in memory; a writable span must not share memory with any other argument (expected disjoint spans, actual an overlap).", output);
}

/// <summary>The spans of one call, each marked read-only or writable, checked pairwise by <see cref="Check"/>; nothing is allocated.</summary>
internal ref struct AliasSet
{
    /// <summary>The most spans one set holds.</summary>
    public const int Capacity = 12;

    private ReadOnlySpan<byte> _s0, _s1, _s2, _s3, _s4, _s5, _s6, _s7, _s8, _s9, _s10, _s11;
    private NameTable _names;
    private int _writable; // bit k: span k is writable
    private int _count;

    /// <summary>Adds a span the call only reads.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Read<T>(ReadOnlySpan<T> span, string name)
        where T : unmanaged => Add(MemoryMarshal.AsBytes(span), name, writable: false);

    /// <summary>Adds a span the call writes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Write<T>(ReadOnlySpan<T> span, string name)
        where T : unmanaged => Add(MemoryMarshal.AsBytes(span), name, writable: true);

    /// <summary>Throws an <see cref="ArgumentException"/> for the first writable span that overlaps another span of the set.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public readonly void Check()
    {
        for (int a = 0; a < _count; a++)
        {
            bool aWritable = (_writable & (1 << a)) != 0;
            for (int b = a + 1; b < _count; b++)
            {
                bool bWritable = (_writable & (1 << b)) != 0;
                if ((aWritable || bWritable) && Aliasing.Overlap(Get(a), Get(b)))
                {
                    throw bWritable ? Aliasing.Violation(_names[b]!, _names[a]!) : Aliasing.Violation(_names[a]!, _names[b]!);
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Add(ReadOnlySpan<byte> span, string name, bool writable)
    {
        if (span.IsEmpty)
        {
            return;
        }

        switch (_count)
        {
            case 0: _s0 = span; break;
            case 1: _s1 = span; break;
            case 2: _s2 = span; break;
            case 3: _s3 = span; break;
            case 4: _s4 = span; break;
            case 5: _s5 = span; break;
            case 6: _s6 = span; break;
            case 7: _s7 = span; break;
            case 8: _s8 = span; break;
            case 9: _s9 = span; break;
            case 10: _s10 = span; break;
            case 11: _s11 = span; break;
            default: throw new InvalidOperationException($"An alias set holds at most {Capacity} spans.");
        }

        _names[_count] = name;
        _writable |= writable ? 1 << _count : 0;
        _count++;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private readonly ReadOnlySpan<byte> Get(int k) => k switch
    {
        0 => _s0,
        1 => _s1,
        2 => _s2,
        3 => _s3,
        4 => _s4,
        5 => _s5,
        6 => _s6,
        7 => _s7,
        8 => _s8,
        9 => _s9,
        10 => _s10,
        _ => _s11,
    };

    [InlineArray(Capacity)]
    private struct NameTable
    {
        private string? _element;
    }
}
