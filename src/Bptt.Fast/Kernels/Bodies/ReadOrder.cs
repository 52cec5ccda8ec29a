namespace Bptt.Fast.Kernels.Bodies;

/// <summary>
/// How a packed product (<see cref="VectorKernels{TOps, TVec}.PackedTransposedProduct{TEpi}"/>: the fused steps and the
/// one-row head) reads its panels. <see cref="Forward"/> and <see cref="Backward"/> give the same
/// bits, so a recurrence may alternate them from step to step and start each step on the panels the step before read last,
/// which are still in cache; <see cref="Once"/> is a third summation, for a call that does not alternate.
/// </summary>
internal enum ReadOrder
{
    /// <summary>First panel to last, each output one chain of multiply-adds over all rows: the least work for one call.</summary>
    Once,

    /// <summary>First panel to last, the rows of each panel summed as four quarters combined in one fixed tree.</summary>
    Forward,

    /// <summary>Last panel to first, quarters last to first: the same sums as <see cref="Forward"/>, bit for bit.</summary>
    Backward,
}

/// <summary>Helpers for <see cref="ReadOrder"/>.</summary>
internal static class ReadOrders
{
    /// <summary><see cref="ReadOrder.Forward"/> for even <paramref name="index"/>, <see cref="ReadOrder.Backward"/> for odd: the order of the index-th step of a recurrence.</summary>
    public static ReadOrder Alternating(int index) => (index & 1) == 0 ? ReadOrder.Forward : ReadOrder.Backward;
}
