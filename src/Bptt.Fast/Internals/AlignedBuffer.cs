using System.Runtime.CompilerServices;

namespace Bptt.Fast.Internals;

/// <summary>
/// A float buffer whose first element sits on a 64-byte (cache-line) boundary, so that packed GEMM panels never split a
/// vector load across two lines. The array is allocated pinned (on the pinned object heap), so the boundary never moves.
/// </summary>
internal sealed class AlignedBuffer
{
    private const int Alignment = 64;
    private readonly float[] _array;
    private readonly int _offset;

    public AlignedBuffer(long length)
    {
        Length = Sizes.ArrayLength(length, nameof(length), "aligned buffer");
        _array = GC.AllocateArray<float>(Sizes.ArrayLength(length + (Alignment / sizeof(float)), nameof(length), "aligned buffer"), pinned: true);
        unsafe
        {
            nint address = (nint)Unsafe.AsPointer(ref _array[0]);
            long misalignment = address % Alignment;
            _offset = (int)((Alignment - misalignment) % Alignment / sizeof(float));
        }
    }

    public int Length { [MethodImpl(MethodImplOptions.AggressiveInlining)] get; }

    public Span<float> Span
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => _array.AsSpan(_offset, Length);
    }
}
