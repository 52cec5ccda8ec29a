using System.Runtime.CompilerServices;
using System.Numerics;

using Bptt.Fast.Internals;

namespace Bptt.Fast.Model;

/// <summary>Checks a <see cref="SequenceBatch{T}"/> against a shape and an engine's capacity before anything is written.</summary>
internal static class BatchValidation
{
    /// <summary>
    /// Everything one engine call checks, in one place and before anything is written: θ (length, and finiteness unless
    /// <paramref name="parametersFinite"/> says the caller checked it in this call), the
    /// batch against the shape and the capacity, and the aliasing rule over θ, the gradient block (empty for a forward
    /// pass) and every span of the batch.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ValidateCall<T>(RnnShape shape, int maxSteps, int maxBatch, ReadOnlySpan<T> parameters, in SequenceBatch<T> batch, ReadOnlySpan<T> gradients, bool parametersFinite = false)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        if (parametersFinite)
        {
            Guard.Length(shape.ParameterCount, parameters.Length, "parameters", $"parameter count of {shape}");
        }
        else
        {
            ValidateParameters(parameters, "parameters", shape);
        }

        Validate(in batch, shape, maxSteps, maxBatch);
        CheckAliasing(in batch, parameters, gradients);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Validate<T>(in SequenceBatch<T> batch, RnnShape shape, int maxSteps, int maxBatch)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int steps = batch.Steps, size = batch.BatchSize;
        if (steps < 1 || steps > maxSteps)
        {
            throw new ArgumentOutOfRangeException("batch.Steps", steps, $"Expected steps in [1, {maxSteps}] (the engine's maxSteps), actual {steps}.");
        }

        if (size < 1 || size > maxBatch)
        {
            throw new ArgumentOutOfRangeException("batch.BatchSize", size, $"Expected a batch size in [1, {maxBatch}] (the engine's maxBatch), actual {size}.");
        }

        // Products in 64 bits: B·L·D·H and T·B·(D·H) can pass 2³¹ for shapes and limits an engine with a large
        // maxWorkspaceBytes accepts, and a wrapped length must never match a short span.
        long rows = (long)steps * size;
        int h = shape.HiddenSize, i = shape.InputSize;
        Guard.Length(rows, batch.Targets.Length, "batch.Targets", $"steps × batch = {steps}×{size}");
        Guard.OptionalLength(size, batch.Lengths.Length, "batch.Lengths", $"batch = {size}");
        for (int b = 0; b < batch.Lengths.Length; b++)
        {
            if (batch.Lengths[b] < 1 || batch.Lengths[b] > steps)
            {
                throw new ArgumentOutOfRangeException("batch.Lengths", batch.Lengths[b], $"Expected every length in [1, {steps}]; length {b} is {batch.Lengths[b]}.");
            }
        }

        if (batch.IsTokenInput)
        {
            Guard.Length(rows, batch.Tokens.Length, "batch.Tokens", $"steps × batch = {steps}×{size}");
            CheckIds(batch.Tokens, in batch, i, "batch.Tokens");
            if (!batch.InputGradient.IsEmpty)
            {
                throw new ArgumentException($"∂L/∂x is defined for dense input only; expected an empty span with token input, actual length {batch.InputGradient.Length}.", "batch.InputGradient");
            }
        }
        else
        {
            Guard.Length(rows * i, batch.Inputs.Length, "batch.Inputs", $"steps × batch × inputSize = {steps}×{size}×{i}");
            CheckFiniteInputs(in batch, i);
            Guard.OptionalLength(rows * i, batch.InputGradient.Length, "batch.InputGradient", $"steps × batch × inputSize = {steps}×{size}×{i}");
        }

        CheckIds(batch.Targets, in batch, shape.OutputSize, "batch.Targets", allowIgnore: true);
        long states = (long)shape.BlockCount * size * h, outputs = rows * shape.LayerOutputSize;
        Guard.OptionalLength(states, batch.InitialState.Length, "batch.InitialState", $"{(shape.IsSingleLayer ? "" : "layers·directions × ")}batch × hiddenSize = {(shape.IsSingleLayer ? "" : $"{shape.BlockCount}×")}{size}×{h}");
        Guard.Finite(batch.InitialState, "batch.InitialState");
        Guard.OptionalLength(states, batch.FinalState.Length, "batch.FinalState", $"{(shape.IsSingleLayer ? "" : "layers·directions × ")}batch × hiddenSize = {(shape.IsSingleLayer ? "" : $"{shape.BlockCount}×")}{size}×{h}");
        Guard.OptionalLength(states, batch.InitialStateGradient.Length, "batch.InitialStateGradient", $"{(shape.IsSingleLayer ? "" : "layers·directions × ")}batch × hiddenSize = {(shape.IsSingleLayer ? "" : $"{shape.BlockCount}×")}{size}×{h}");
        Guard.OptionalLength(outputs, batch.HiddenStates.Length, "batch.HiddenStates", $"steps × batch × {(shape.IsBidirectional ? "directions·" : "")}hiddenSize = {steps}×{size}×{shape.LayerOutputSize}");
    }

    /// <summary>
    /// The aliasing rule (<see cref="Aliasing"/>) for every engine entry point: θ, the gradient block and every span of
    /// the batch, with ∂L/∂θ and the batch's outputs writable. Throws <see cref="ArgumentException"/> naming the writable span.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void CheckAliasing<T>(in SequenceBatch<T> batch, ReadOnlySpan<T> parameters, ReadOnlySpan<T> gradients)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var set = default(AliasSet);
        set.Read(parameters, "parameters");
        set.Read(batch.Inputs, "batch.Inputs");
        set.Read(batch.Tokens, "batch.Tokens");
        set.Read(batch.Targets, "batch.Targets");
        set.Read(batch.Lengths, "batch.Lengths");
        set.Read(batch.InitialState, "batch.InitialState");
        set.Write(gradients, "gradients");
        set.Write<T>(batch.FinalState, "batch.FinalState");
        set.Write<T>(batch.InitialStateGradient, "batch.InitialStateGradient");
        set.Write<T>(batch.InputGradient, "batch.InputGradient");
        set.Write<T>(batch.HiddenStates, "batch.HiddenStates");
        set.Check();
    }

    /// <summary>θ (and the gradient block, when given) must match the shape, be distinct, and θ must be finite.</summary>
    public static void ValidateParameters<T>(ReadOnlySpan<T> parameters, string name, RnnShape shape)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        Guard.Length(shape.ParameterCount, parameters.Length, name, $"parameter count of {shape}");
        Guard.Finite(parameters, name);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void CheckIds<T>(ReadOnlySpan<int> ids, in SequenceBatch<T> batch, int count, string name, bool allowIgnore = false)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int size = batch.BatchSize;
        for (int t = 0; t < batch.Steps; t++)
        {
            for (int b = 0; b < size; b++)
            {
                int id = ids[(t * size) + b];
                if (t < batch.LengthOf(b) && (uint)id >= (uint)count && !(allowIgnore && id == SequenceBatch<T>.IgnoreTarget))
                {
                    throw new ArgumentOutOfRangeException(name, id, $"Expected ids in [0, {count}){(allowIgnore ? " or -1 (ignore)" : "")}; step {t}, sequence {b} holds {id}.");
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void CheckFiniteInputs<T>(in SequenceBatch<T> batch, int inputSize)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int size = batch.BatchSize;
        for (int t = 0; t < batch.Steps; t++)
        {
            for (int b = 0; b < size; b++)
            {
                if (t >= batch.LengthOf(b))
                {
                    continue;
                }

                int row = (t * size) + b;
                int bad = Guard.FirstNonFinite(batch.Inputs.Slice(row * inputSize, inputSize));
                if (bad >= 0)
                {
                    throw new ArgumentException($"Expected finite inputs; step {t}, sequence {b}, element {bad} is {batch.Inputs[(row * inputSize) + bad]}.", "batch.Inputs");
                }
            }
        }
    }
}
