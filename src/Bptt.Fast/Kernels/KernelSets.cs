using System.Numerics;
using System.Runtime.Intrinsics;
using Bptt.Fast.Kernels.Functions;
using Bptt.Fast.Kernels.Isa;
using Bptt.Fast.Model;

namespace Bptt.Fast.Kernels;

/// <summary>
/// The one dispatch point of the library: (instruction set, activation) → <see cref="KernelSet"/>. The sets are created
/// once per pair and shared (they hold no state). Engines, models, optimizers and the public <see cref="FastKernels"/>
/// facade resolve their set here when they are built; nothing else switches on the ISA or the activation.
/// </summary>
internal static class KernelSets
{
    private static readonly KernelSet?[] Cache = new KernelSet?[Enum.GetValues<KernelIsa>().Length * 3];

    /// <summary>The set for <paramref name="isa"/> (which this process must support) and <paramref name="activation"/>.</summary>
    public static KernelSet For(KernelIsa isa, Activation activation)
    {
        if (!KernelInfo.IsSupported(isa))
        {
            throw new ArgumentOutOfRangeException(nameof(isa), isa, $"This machine does not support {isa}; best supported: {KernelInfo.BestSupported}.");
        }

        ActivationRule.Check(activation, nameof(activation));

        int slot = ((int)isa * 3) + (int)activation;
        return Cache[slot] ??= Create(isa, activation);
    }

    /// <summary>The set of the process's ISA (<see cref="KernelInfo.Isa"/>) for <paramref name="activation"/>.</summary>
    public static KernelSet Current(Activation activation = Activation.Tanh) => For(KernelInfo.Isa, activation);

    private static KernelSet Create(KernelIsa isa, Activation activation) => (isa, activation) switch
    {
        (KernelIsa.Avx512, Activation.Tanh) => new KernelSet<Simd512, Vector512<float>, TanhKind>(isa),
        (KernelIsa.Avx512, Activation.Relu) => new KernelSet<Simd512, Vector512<float>, ReluKind>(isa),
        (KernelIsa.Avx512, _) => new KernelSet<Simd512, Vector512<float>, SigmoidKind>(isa),
        (KernelIsa.Avx2, Activation.Tanh) => new KernelSet<Simd256, Vector256<float>, TanhKind>(isa),
        (KernelIsa.Avx2, Activation.Relu) => new KernelSet<Simd256, Vector256<float>, ReluKind>(isa),
        (KernelIsa.Avx2, _) => new KernelSet<Simd256, Vector256<float>, SigmoidKind>(isa),
        (KernelIsa.AdvSimd, Activation.Tanh) => new KernelSet<Simd128, Vector128<float>, TanhKind>(isa),
        (KernelIsa.AdvSimd, Activation.Relu) => new KernelSet<Simd128, Vector128<float>, ReluKind>(isa),
        (KernelIsa.AdvSimd, _) => new KernelSet<Simd128, Vector128<float>, SigmoidKind>(isa),
        (KernelIsa.Vector, Activation.Tanh) => new KernelSet<VectorSimd, Vector<float>, TanhKind>(isa),
        (KernelIsa.Vector, Activation.Relu) => new KernelSet<VectorSimd, Vector<float>, ReluKind>(isa),
        (KernelIsa.Vector, _) => new KernelSet<VectorSimd, Vector<float>, SigmoidKind>(isa),
        (_, Activation.Tanh) => new KernelSet<ScalarSimd, float, TanhKind>(isa),
        (_, Activation.Relu) => new KernelSet<ScalarSimd, float, ReluKind>(isa),
        _ => new KernelSet<ScalarSimd, float, SigmoidKind>(isa),
    };
}
