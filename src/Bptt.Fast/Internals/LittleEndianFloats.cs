using System.Buffers.Binary;
using System.IO.Hashing;
using System.Runtime.InteropServices;

namespace Bptt.Fast.Internals;

/// <summary>float32 arrays as little-endian bytes on streams, without a copy on little-endian hosts.</summary>
internal static class LittleEndianFloats
{
    /// <summary>Writes <paramref name="values"/> as little-endian float32, appending the same bytes to <paramref name="crc"/> if given.</summary>
    public static void Write(Stream stream, Crc32? crc, ReadOnlySpan<float> values)
    {
        if (BitConverter.IsLittleEndian)
        {
            ReadOnlySpan<byte> bytes = MemoryMarshal.AsBytes(values);
            crc?.Append(bytes);
            stream.Write(bytes);
            return;
        }

        Span<byte> chunk = stackalloc byte[1024];
        while (!values.IsEmpty)
        {
            int n = Math.Min(values.Length, chunk.Length / 4);
            for (int k = 0; k < n; k++)
            {
                BinaryPrimitives.WriteSingleLittleEndian(chunk[(4 * k)..], values[k]);
            }

            crc?.Append(chunk[..(4 * n)]);
            stream.Write(chunk[..(4 * n)]);
            values = values[n..];
        }
    }

    /// <summary>Turns floats whose bytes were read verbatim from little-endian data into host order, in place.</summary>
    public static void ToHost(Span<float> values)
    {
        if (!BitConverter.IsLittleEndian)
        {
            Span<int> bits = MemoryMarshal.Cast<float, int>(values);
            BinaryPrimitives.ReverseEndianness(bits, bits);
        }
    }
}
