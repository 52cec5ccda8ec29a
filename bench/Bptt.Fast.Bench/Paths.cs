namespace Bptt.Fast.Bench;

/// <summary>The rows of every table: the reference path, then the fast path forced onto each ISA this machine supports.</summary>
public static class Paths
{
    public const string Reference = "Reference";

    public static IEnumerable<string> All =>
        new[] { Reference }.Concat(new[] { KernelIsa.Avx2, KernelIsa.AdvSimd, KernelIsa.Vector, KernelIsa.Scalar }
            .Where(KernelInfo.IsSupported).Select(isa => "Fast." + isa));

    public static KernelIsa IsaOf(string path) => Enum.Parse<KernelIsa>(path["Fast.".Length..]);
}
