using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Bptt.Fast.Model;

namespace Bptt.Fast.Serving;

/// <summary>The input of an exported graph.</summary>
public enum OnnxInput
{
    /// <summary>Token ids, int64: <c>[B]</c> for a step, <c>[T, B]</c> for a sequence.</summary>
    Tokens,

    /// <summary>Dense vectors, float: <c>[B, I]</c> for a step, <c>[T, B, I]</c> for a sequence.</summary>
    Dense,
}

/// <summary>How an exported sequence graph runs the recurrence.</summary>
public enum OnnxSequenceForm
{
    /// <summary>ONNX's <c>RNN</c> operator (opset 14): any T and B.</summary>
    RnnOperator,

    /// <summary>The recurrence unrolled into T Gemm + activation nodes: T fixed at export, any B.</summary>
    Unrolled,
}

/// <summary>
/// Writes a model as an ONNX graph (IR version 8, opset 17, default domain only) for ONNX Runtime or any other ONNX
/// runtime. Every graph has two inputs, <c>x</c> (token ids as int64, or dense float inputs) and <c>h</c>, the state
/// <c>[B, H]</c>, and two outputs, <c>y</c> (logits or probabilities) and <c>h_out</c>, the new state <c>[B, H]</c>, so a
/// caller carries the state from one run to the next exactly as with <see cref="RnnState"/>. B (and T for the RNN
/// operator form) are symbolic dimensions. The activation is the model's own (Tanh, Relu and Sigmoid are all in ONNX's
/// <c>RNN</c> operator and in ONNX Runtime's CPU kernel; GPU runtimes may lack Sigmoid in their RNN kernel: use the
/// unrolled form there). The protobuf is written by a small encoder here, so the library takes no dependency.
/// <list type="table">
/// <listheader><term>graph</term><description>nodes</description></listheader>
/// <item><term>step, tokens</term><description>Gather(W_xhᵀ + b_h, x) → Gemm(h, W_hh, transB, C = gathered) → f → Gemm(·, W_hy, transB, C = b_y) [→ Softmax]</description></item>
/// <item><term>step, dense</term><description>Gemm(x, W_xh, transB, C = b_h) → Gemm(h, W_hh, transB, C) → f → head</description></item>
/// <item><term>sequence, RNN operator</term><description>x (dense; tokens as OneHot when I ≤ H, else Gather(W_xhᵀ) with W = identity) → RNN(W, R = W_hh, B = [b_h, 0], initial_h = h) → MatMul(·, W_hyᵀ) + b_y [→ Softmax]; y is <c>[T, B, O]</c></description></item>
/// <item><term>sequence, unrolled</term><description>the input projection for all T at once, then per step Gather(·, t) → Gemm(h, W_hh, transB, C) → f, then one Gemm head over the T·B rows</description></item>
/// </list>
/// </summary>
public static class OnnxExport
{
    /// <summary>The ONNX opset the graphs import.</summary>
    public const int Opset = 17;

    /// <summary>The ONNX IR version of the file.</summary>
    public const int IrVersion = 8;

    /// <summary>The most steps an unrolled graph holds.</summary>
    public const int MaxUnrolledSteps = 4096;

    /// <summary>The largest graph written, in bytes (a protobuf message is limited to 2 GiB; θ is stored inline).</summary>
    public const long MaxBytes = int.MaxValue - (1 << 20);

    /// <summary>A one-step graph: x <c>[B]</c> int64 or <c>[B, I]</c> float, h <c>[B, H]</c> → y <c>[B, O]</c>, h_out <c>[B, H]</c>.</summary>
    /// <param name="model">The model; its θ and activation are written.</param>
    /// <param name="input">Token or dense input.</param>
    /// <param name="output">Logits or probabilities.</param>
    /// <returns>The ONNX model file's bytes (e.g. for <see cref="File.WriteAllBytes(string, byte[])"/>).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="model"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An undefined <paramref name="input"/> or <paramref name="output"/>.</exception>
    /// <exception cref="ArgumentException">The graph would exceed <see cref="MaxBytes"/>, or the model is stacked or
    /// bidirectional (the export writes the one-layer, one-direction network only).</exception>
    public static byte[] StepGraph(RnnModel model, OnnxInput input, StepOutput output = StepOutput.Logits)
    {
        Check(model, input, output);
        CheckSize(4L * model.Shape.ParameterCount, nameof(model));
        return Build(model, $"bptt_step_{Name(input)}", g => StepNodes(g, model, input, output));
    }

    /// <summary>
    /// A sequence graph: x <c>[T, B]</c> int64 or <c>[T, B, I]</c> float, h <c>[B, H]</c> → y <c>[T, B, O]</c> (every
    /// step), h_out <c>[B, H]</c> (h_T).
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="input">Token or dense input.</param>
    /// <param name="output">Logits or probabilities.</param>
    /// <param name="form">The RNN operator (any T), or the recurrence unrolled over <paramref name="unrolledSteps"/>.</param>
    /// <param name="unrolledSteps">T of an unrolled graph, in [1, <see cref="MaxUnrolledSteps"/>]; ignored for the RNN operator.</param>
    /// <returns>The ONNX model file's bytes.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="model"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An undefined enum value, or <paramref name="unrolledSteps"/> out of range for the unrolled form.</exception>
    /// <exception cref="ArgumentException">The graph would exceed <see cref="MaxBytes"/>, or the model is stacked or
    /// bidirectional (the export writes the one-layer, one-direction network only).</exception>
    public static byte[] SequenceGraph(RnnModel model, OnnxInput input, StepOutput output = StepOutput.Logits, OnnxSequenceForm form = OnnxSequenceForm.RnnOperator, int unrolledSteps = 0)
    {
        Check(model, input, output);
        if (!Enum.IsDefined(form))
        {
            throw new ArgumentOutOfRangeException(nameof(form), form, "Expected RnnOperator or Unrolled.");
        }

        if (form == OnnxSequenceForm.Unrolled)
        {
            Internals.Guard.InRange(unrolledSteps, 1, MaxUnrolledSteps, nameof(unrolledSteps));
        }

        RnnShape s = model.Shape;
        long h = s.HiddenSize, extra = OneHot(s) || input == OnnxInput.Dense || form == OnnxSequenceForm.Unrolled ? 0 : h * h;
        CheckSize(4L * ((2L * s.ParameterCount) + extra), nameof(model));
        return form == OnnxSequenceForm.RnnOperator
            ? Build(model, $"bptt_sequence_rnn_{Name(input)}", g => RnnOperatorNodes(g, model, input, output))
            : Build(model, $"bptt_sequence_unrolled{unrolledSteps}_{Name(input)}", g => UnrolledNodes(g, model, input, output, unrolledSteps));
    }

    private static string Name(OnnxInput input) => input == OnnxInput.Tokens ? "tokens" : "dense";

    /// <summary>Token input of the RNN operator form as OneHot (W = W_xh) when that is the cheaper product.</summary>
    private static bool OneHot(RnnShape s) => s.InputSize <= s.HiddenSize;

    private static void Check(RnnModel model, OnnxInput input, StepOutput output)
    {
        ArgumentNullException.ThrowIfNull(model);
        ModelGuard.SingleLayer(model.Shape, nameof(model), "The ONNX export");
        if (!Enum.IsDefined(input))
        {
            throw new ArgumentOutOfRangeException(nameof(input), input, "Expected Tokens or Dense.");
        }

        if (!Enum.IsDefined(output))
        {
            throw new ArgumentOutOfRangeException(nameof(output), output, "Expected Probabilities or Logits.");
        }
    }

    private static void CheckSize(long bytes, string paramName)
    {
        if (bytes > MaxBytes)
        {
            throw new ArgumentException($"The graph would hold about {bytes} bytes of weights; an ONNX file written inline holds at most {MaxBytes}.", paramName);
        }
    }

    private static string OpName(Activation f) => f switch
    {
        Activation.Tanh => "Tanh",
        Activation.Relu => "Relu",
        _ => "Sigmoid",
    };

    private static byte[] Build(RnnModel model, string name, Action<Graph> nodes)
    {
        var graph = new Graph(name);
        nodes(graph);
        var file = new ProtoWriter();
        file.Int(1, IrVersion);
        file.String(2, "Bptt.Fast");
        file.String(3, typeof(OnnxExport).Assembly.GetName().Version?.ToString() ?? "0");
        file.String(6, $"Elman RNN {model.Shape}, f = {model.Activation}");
        file.Message(7, graph.Write);
        file.Message(8, op =>
        {
            op.String(1, "");
            op.Int(2, Opset);
        });
        return file.ToArray();
    }

    /// <summary>
    /// The token graphs' table, [I, H]: row k = b_h + W_xh[:, k], the addend of (1) for token k. Two finite floats can
    /// sum to ±∞ (3e38 + 3e38), which must not reach the file: such a model is refused, naming it.
    /// </summary>
    private static float[] TokenTable(RnnParameters theta)
    {
        int i = theta.Shape.InputSize, h = theta.Shape.HiddenSize;
        var table = new float[i * h]; // bounded by CheckSize: the graph holds it
        for (int k = 0; k < i; k++)
        {
            for (int j = 0; j < h; j++)
            {
                float sum = theta.Bh[j] + theta.Wxh[(j * i) + k];
                if (!float.IsFinite(sum))
                {
                    throw new ArgumentException($"b_h[{j}] + W_xh[{j}, {k}] = {theta.Bh[j]} + {theta.Wxh[(j * i) + k]} overflows to {sum}; a token graph holds that sum, and only finite values are exported.", "model");
                }

                table[(k * h) + j] = sum;
            }
        }

        return table;
    }

    private static void StepNodes(Graph g, RnnModel model, OnnxInput input, StepOutput output)
    {
        RnnShape s = model.Shape;
        RnnParameters theta = model.Parameters;
        int i = s.InputSize, h = s.HiddenSize, o = s.OutputSize;
        g.Input("x", input == OnnxInput.Tokens ? Graph.Int64 : Graph.Float, input == OnnxInput.Tokens ? ["B"] : ["B", i]);
        g.Input("h", Graph.Float, ["B", h]);
        if (input == OnnxInput.Tokens)
        {
            g.Floats("Wxh_T_plus_bh", [i, h], TokenTable(theta));
            g.Node("Gather", ["Wxh_T_plus_bh", "x"], ["xw"], a => a.Int("axis", 0));
        }
        else
        {
            g.Floats("Wxh", [h, i], theta.Wxh);
            g.Floats("bh", [h], theta.Bh);
            g.Node("Gemm", ["x", "Wxh", "bh"], ["xw"], a => a.Int("transB", 1));
        }

        g.Floats("Whh", [h, h], theta.Whh);
        g.Node("Gemm", ["h", "Whh", "xw"], ["u"], a => a.Int("transB", 1));
        g.Node(OpName(model.Activation), ["u"], ["h_out"]);
        g.Floats("Why", [o, h], theta.Why);
        g.Floats("by", [o], theta.By);
        Head(g, output, "Gemm", ["h_out", "Why", "by"], a => a.Int("transB", 1), ["B", o]);
        g.Output("h_out", ["B", h]);
    }

    private static void RnnOperatorNodes(Graph g, RnnModel model, OnnxInput input, StepOutput output)
    {
        RnnShape s = model.Shape;
        RnnParameters theta = model.Parameters;
        int i = s.InputSize, h = s.HiddenSize, o = s.OutputSize;
        g.Input("x", input == OnnxInput.Tokens ? Graph.Int64 : Graph.Float, input == OnnxInput.Tokens ? ["T", "B"] : ["T", "B", i]);
        g.Input("h", Graph.Float, ["B", h]);
        g.Longs("axis0", [1], [0]);
        g.Longs("axis1", [1], [1]);
        string x = "x";
        int width = i;
        if (input == OnnxInput.Tokens && OneHot(s))
        {
            g.Longs("depth", [1], [i]);
            g.Floats("off_on", [2], [0f, 1f]);
            g.Node("OneHot", ["x", "depth", "off_on"], ["x_onehot"], a => a.Int("axis", -1));
            x = "x_onehot";
        }
        else if (input == OnnxInput.Tokens)
        {
            g.Floats("Wxh_T", [i, h], Transpose(theta.Wxh, h, i));
            g.Node("Gather", ["Wxh_T", "x"], ["x_projected"], a => a.Int("axis", 0));
            x = "x_projected";
            width = h;
        }

        if (width == i)
        {
            g.Floats("W", [1, h, i], theta.Wxh);
        }
        else
        {
            var identity = new float[h * h];
            for (int j = 0; j < h; j++)
            {
                identity[(j * h) + j] = 1f;
            }

            g.Floats("W", [1, h, h], identity);
        }

        g.Floats("R", [1, h, h], theta.Whh);
        var bias = new float[2 * h];
        theta.Bh.CopyTo(bias);
        g.Floats("B", [1, 2 * h], bias);
        g.Node("Unsqueeze", ["h", "axis0"], ["initial_h"]);
        g.Node("RNN", [x, "W", "R", "B", "", "initial_h"], ["Y", "Y_h"], a =>
        {
            a.Int("hidden_size", h);
            a.Strings("activations", [OpName(model.Activation)]);
        });
        g.Node("Squeeze", ["Y_h", "axis0"], ["h_out"]);
        g.Node("Squeeze", ["Y", "axis1"], ["hs"]);
        g.Floats("Why_T", [h, o], Transpose(theta.Why, o, h));
        g.Floats("by", [o], theta.By);
        g.Node("MatMul", ["hs", "Why_T"], ["hs_why"]);
        Head(g, output, "Add", ["hs_why", "by"], null, ["T", "B", o]);
        g.Output("h_out", ["B", h]);
    }

    private static void UnrolledNodes(Graph g, RnnModel model, OnnxInput input, StepOutput output, int steps)
    {
        RnnShape s = model.Shape;
        RnnParameters theta = model.Parameters;
        int i = s.InputSize, h = s.HiddenSize, o = s.OutputSize;
        g.Input("x", input == OnnxInput.Tokens ? Graph.Int64 : Graph.Float, input == OnnxInput.Tokens ? [steps, "B"] : [steps, "B", i]);
        g.Input("h", Graph.Float, ["B", h]);
        if (input == OnnxInput.Tokens)
        {
            g.Floats("Wxh_T_plus_bh", [i, h], TokenTable(theta));
            g.Node("Gather", ["Wxh_T_plus_bh", "x"], ["xw"], a => a.Int("axis", 0));
        }
        else
        {
            g.Floats("Wxh_T", [i, h], Transpose(theta.Wxh, h, i));
            g.Floats("bh", [h], theta.Bh);
            g.Node("MatMul", ["x", "Wxh_T"], ["x_wxh"]);
            g.Node("Add", ["x_wxh", "bh"], ["xw"]);
        }

        g.Floats("Whh", [h, h], theta.Whh);
        string previous = "h";
        var states = new string[steps];
        for (int t = 0; t < steps; t++)
        {
            string index = $"t{t}", current = t == steps - 1 ? "h_out" : $"h{t + 1}";
            g.Longs(index, [], [t]);
            g.Node("Gather", ["xw", index], [$"xw{t}"], a => a.Int("axis", 0));
            g.Node("Gemm", [previous, "Whh", $"xw{t}"], [$"u{t}"], a => a.Int("transB", 1));
            g.Node(OpName(model.Activation), [$"u{t}"], [current]);
            states[t] = current;
            previous = current;
        }

        g.Node("Concat", states, ["hs"], a => a.Int("axis", 0));
        g.Floats("Why", [o, h], theta.Why);
        g.Floats("by", [o], theta.By);
        g.Node("Gemm", ["hs", "Why", "by"], ["v_rows"], a => a.Int("transB", 1));
        g.Longs("y_shape", [3], [steps, -1, o]);
        Head(g, output, "Reshape", ["v_rows", "y_shape"], null, [steps, "B", o]);
        g.Output("h_out", ["B", h]);
    }

    /// <summary>The last node of the output layer, writing y directly (logits) or through a Softmax over the last axis.</summary>
    private static void Head(Graph g, StepOutput output, string op, string[] inputs, Action<Attributes>? attributes, object[] shape)
    {
        if (output == StepOutput.Logits)
        {
            g.Node(op, inputs, ["y"], attributes);
        }
        else
        {
            g.Node(op, inputs, ["v"], attributes);
            g.Node("Softmax", ["v"], ["y"], a => a.Int("axis", -1));
        }

        g.Output("y", shape);
    }

    private static float[] Transpose(ReadOnlySpan<float> a, int rows, int cols)
    {
        var t = new float[rows * cols];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < cols; c++)
            {
                t[(c * rows) + r] = a[(r * cols) + c];
            }
        }

        return t;
    }

    /// <summary>A GraphProto under construction: nodes, initializers, inputs and outputs, written in ONNX's field numbers.</summary>
    private sealed class Graph(string name)
    {
        public const int Float = 1, Int64 = 7;

        private readonly List<Action<ProtoWriter>> _nodes = [], _initializers = [], _inputs = [], _outputs = [];

        public void Node(string op, string[] inputs, string[] outputs, Action<Attributes>? attributes = null)
        {
            string nodeName = $"{op}_{_nodes.Count}";
            _nodes.Add(w =>
            {
                foreach (string input in inputs)
                {
                    w.String(1, input);
                }

                foreach (string output in outputs)
                {
                    w.String(2, output);
                }

                w.String(3, nodeName);
                w.String(4, op);
                attributes?.Invoke(new Attributes(w));
            });
        }

        public void Floats(string tensor, long[] dims, ReadOnlySpan<float> values)
        {
            byte[] raw = new byte[values.Length * 4];
            for (int k = 0; k < values.Length; k++)
            {
                BinaryPrimitives.WriteSingleLittleEndian(raw.AsSpan(4 * k), values[k]);
            }

            _initializers.Add(w => Tensor(w, tensor, Float, dims, raw));
        }

        public void Longs(string tensor, long[] dims, long[] values)
        {
            byte[] raw = new byte[values.Length * 8];
            for (int k = 0; k < values.Length; k++)
            {
                BinaryPrimitives.WriteInt64LittleEndian(raw.AsSpan(8 * k), values[k]);
            }

            _initializers.Add(w => Tensor(w, tensor, Int64, dims, raw));
        }

        public void Input(string value, int type, object[] shape) => _inputs.Add(w => ValueInfo(w, value, type, shape));

        public void Output(string value, object[] shape) => _outputs.Add(w => ValueInfo(w, value, Float, shape));

        public void Write(ProtoWriter w)
        {
            foreach (Action<ProtoWriter> node in _nodes)
            {
                w.Message(1, node);
            }

            w.String(2, name);
            foreach (Action<ProtoWriter> tensor in _initializers)
            {
                w.Message(5, tensor);
            }

            foreach (Action<ProtoWriter> input in _inputs)
            {
                w.Message(11, input);
            }

            foreach (Action<ProtoWriter> output in _outputs)
            {
                w.Message(12, output);
            }
        }

        /// <summary>TensorProto: dims 1, data_type 2, name 8, raw_data 9 (little-endian).</summary>
        private static void Tensor(ProtoWriter w, string name, int type, long[] dims, byte[] raw)
        {
            foreach (long d in dims)
            {
                w.Int(1, d);
            }

            w.Int(2, type);
            w.String(8, name);
            w.Bytes(9, raw);
        }

        /// <summary>ValueInfoProto (name 1, type 2) → TypeProto.tensor_type 1 → elem_type 1, shape 2 → dim 1 → dim_value 1 | dim_param 2.</summary>
        private static void ValueInfo(ProtoWriter w, string name, int type, object[] shape)
        {
            w.String(1, name);
            w.Message(2, t => t.Message(1, tensor =>
            {
                tensor.Int(1, type);
                tensor.Message(2, s =>
                {
                    foreach (object d in shape)
                    {
                        s.Message(1, dim =>
                        {
                            if (d is string symbol)
                            {
                                dim.String(2, symbol);
                            }
                            else
                            {
                                dim.Int(1, Convert.ToInt64(d, System.Globalization.CultureInfo.InvariantCulture));
                            }
                        });
                    }
                });
            }));
        }
    }

    /// <summary>AttributeProto (name 1, i 3, strings 9, type 20: INT = 2, STRINGS = 8), field 5 of a NodeProto.</summary>
    private readonly struct Attributes(ProtoWriter node)
    {
        public void Int(string name, long value) => node.Message(5, a =>
        {
            a.String(1, name);
            a.Int(3, value);
            a.Int(20, 2);
        });

        public void Strings(string name, string[] values) => node.Message(5, a =>
        {
            a.String(1, name);
            foreach (string v in values)
            {
                a.String(9, v);
            }

            a.Int(20, 8);
        });
    }

    /// <summary>
    /// The protobuf wire format, as much as ONNX needs: varints (wire type 0) and length-delimited fields (wire type 2:
    /// strings, bytes, nested messages). A nested message is written to its own buffer first, then length-prefixed.
    /// </summary>
    private sealed class ProtoWriter
    {
        private readonly ArrayBufferWriter<byte> _buffer = new();

        public void Int(int field, long value)
        {
            Varint((ulong)field << 3);
            Varint((ulong)value); // negative int64 values take 10 bytes, as protobuf encodes them
        }

        public void String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

        public void Bytes(int field, ReadOnlySpan<byte> value)
        {
            Varint(((ulong)field << 3) | 2);
            Varint((ulong)value.Length);
            _buffer.Write(value);
        }

        public void Message(int field, Action<ProtoWriter> body)
        {
            var inner = new ProtoWriter();
            body(inner);
            Bytes(field, inner._buffer.WrittenSpan);
        }

        public byte[] ToArray() => _buffer.WrittenSpan.ToArray();

        private void Varint(ulong value)
        {
            Span<byte> bytes = _buffer.GetSpan(10);
            int n = 0;
            while (value >= 0x80)
            {
                bytes[n++] = (byte)(value | 0x80);
                value >>= 7;
            }

            bytes[n++] = (byte)value;
            _buffer.Advance(n);
        }
    }
}
