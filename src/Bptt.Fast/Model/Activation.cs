namespace Bptt.Fast;

/// <summary>The recurrent non-linearity f of equation (2), hₜ = f(uₜ).</summary>
public enum Activation
{
    /// <summary>f(u) = tanh(u); f′ = 1 − hₜ².</summary>
    Tanh,

    /// <summary>f(u) = max(u, 0); f′ = [hₜ &gt; 0].</summary>
    Relu,

    /// <summary>f(u) = 1 / (1 + e⁻ᵘ); f′ = hₜ(1 − hₜ).</summary>
    Sigmoid,
}

/// <summary>Which implementation of the same equations an engine runs.</summary>
public enum KernelPath
{
    /// <summary>The hand-vectorized path (docs/design.md, section 4), on the ISA reported by <see cref="KernelInfo"/>.</summary>
    Fast,

    /// <summary>The scalar reference path: plain loops over equations (1)–(16), the oracle.</summary>
    Reference,
}
