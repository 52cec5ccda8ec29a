using System.Numerics;
using System.Runtime.CompilerServices;

namespace Bptt.Fast;

/// <summary>
/// A view of B independent sequences of up to T steps, time-major, over the caller's memory (nothing is copied).
/// Inputs are either dense vectors, <c>[T, B, I]</c>, or token ids, <c>[T, B]</c> (xₜ one-hot, never built).
/// Targets are class ids, <c>[T, B]</c>. Optional: the initial state h₀ <c>[B, H]</c> (zeros when empty) and
/// per-sequence lengths <c>[B]</c> for a ragged batch (1 ≤ T_b ≤ T; the entries after T_b are ignored and may hold anything).
/// Optional outputs, written by the engine when not empty: the final state <c>[B, H]</c> (h at step T_b),
/// ∂L/∂h₀ <c>[B, H]</c>, every state hₜ <c>[T, B, H]</c> and, for dense input, ∂L/∂x <c>[T, B, I]</c>.
/// For a stacked or bidirectional shape (L layers, D directions) the states follow PyTorch's layout: h₀, the final state
/// and ∂L/∂h₀ are <c>[L·D, B, H]</c> (block l·D + d for layer l, direction d; a reverse direction starts from its h₀ at
/// step T_b and its final state is h at step 1), and the hidden states are the top layer's <c>[T, B, D·H]</c>.
/// A target of <see cref="IgnoreTarget"/> adds no loss at that step (eₜ = 0) while the state still advances.
/// </summary>
/// <typeparam name="T">float for the engine; double for the reference oracle.</typeparam>
public readonly ref struct SequenceBatch<T>
    where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>A target that adds no loss at its step (eₜ = 0); the recurrence still runs through the step.</summary>
    public const int IgnoreTarget = -1;

    /// <summary>A batch with dense inputs.</summary>
    /// <param name="steps">T, the number of time steps (at least 1).</param>
    /// <param name="batchSize">B, the number of sequences (at least 1).</param>
    /// <param name="inputs">xₜ for every step and sequence, <c>[T, B, I]</c>.</param>
    /// <param name="targets">The class id of every step and sequence, <c>[T, B]</c>.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public SequenceBatch(int steps, int batchSize, ReadOnlySpan<T> inputs, ReadOnlySpan<int> targets)
    {
        Steps = steps;
        BatchSize = batchSize;
        Inputs = inputs;
        Targets = targets;
    }

    /// <summary>A batch with token inputs: xₜ is the one-hot vector of the token id.</summary>
    /// <param name="steps">T, the number of time steps (at least 1).</param>
    /// <param name="batchSize">B, the number of sequences (at least 1).</param>
    /// <param name="tokens">The input token id of every step and sequence, <c>[T, B]</c>, each in [0, I).</param>
    /// <param name="targets">The class id of every step and sequence, <c>[T, B]</c>.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public SequenceBatch(int steps, int batchSize, ReadOnlySpan<int> tokens, ReadOnlySpan<int> targets)
    {
        Steps = steps;
        BatchSize = batchSize;
        Tokens = tokens;
        Targets = targets;
        IsTokenInput = true;
    }

    /// <summary>T, the number of time steps.</summary>
    public int Steps { get; }

    /// <summary>B, the number of sequences.</summary>
    public int BatchSize { get; }

    /// <summary>True when the inputs are token ids (<see cref="Tokens"/>), false for dense <see cref="Inputs"/>.</summary>
    public bool IsTokenInput { get; }

    /// <summary>Dense inputs <c>[T, B, I]</c>; empty for token input.</summary>
    public ReadOnlySpan<T> Inputs { get; }

    /// <summary>Token ids <c>[T, B]</c>; empty for dense input.</summary>
    public ReadOnlySpan<int> Tokens { get; }

    /// <summary>Target class ids <c>[T, B]</c>, each in [0, O) or <see cref="IgnoreTarget"/>.</summary>
    public ReadOnlySpan<int> Targets { get; }

    /// <summary>Optional h₀ <c>[B, H]</c> (<c>[L·D, B, H]</c> for a stacked or bidirectional shape); empty means zeros.</summary>
    public ReadOnlySpan<T> InitialState { get; init; }

    /// <summary>Optional lengths T_b <c>[B]</c>, each in [1, T]; empty means every sequence has T steps.</summary>
    public ReadOnlySpan<int> Lengths { get; init; }

    /// <summary>Optional output: the state h at step T_b of each sequence, <c>[B, H]</c> (<c>[L·D, B, H]</c>; a reverse direction's is h at step 1).</summary>
    public Span<T> FinalState { get; init; }

    /// <summary>Optional output: ∂L/∂h₀ = W_hhᵀ δ₁ (equation 16), <c>[B, H]</c> (<c>[L·D, B, H]</c>).</summary>
    public Span<T> InitialStateGradient { get; init; }

    /// <summary>Optional output: every state hₜ of the top layer, <c>[T, B, H]</c> (<c>[T, B, D·H]</c>, directions concatenated); zeros after a sequence's length.</summary>
    public Span<T> HiddenStates { get; init; }

    /// <summary>Optional output, dense input only: ∂L/∂xₜ = W_xhᵀ δₜ (equation 16), <c>[T, B, I]</c>.</summary>
    public Span<T> InputGradient { get; init; }

    /// <summary>
    /// The seed of the dropout mask between layers for this call (used only by an engine built with a dropout rate above 0,
    /// and only by its training pass). The mask is a pure function of (seed, layer, direction, step, sequence, unit), so equal
    /// seeds reproduce a call exactly; a trainer gives each step its own seed.
    /// </summary>
    public ulong DropoutSeed { get; init; }

    /// <summary>The length of sequence <paramref name="b"/>: T_b, or T when no lengths were given.</summary>
    /// <param name="b">The sequence index.</param>
    public int LengthOf(int b) => Lengths.IsEmpty ? Steps : Lengths[b];
}
