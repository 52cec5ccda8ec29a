using System.Globalization;
using Bptt.Fast;
using Bptt.Fast.Serving;
using Bptt.Fast.Training;

// One training step (workload S, token input, Adam) and 64 streaming inference steps on fixed data; prints the path
// and the exact bits of the results, so that a JIT run and a NativeAOT run can be compared line for line.
var shape = new RnnShape(64, 128, 64);
var theta = new RnnParameters(shape);
theta.InitializeGlorot(42);
var gradients = new RnnParameters(shape);
var engine = new BpttEngine(shape, maxSteps: 64);
var adam = new Adam(shape, 1e-3f);
int[] tokens = new int[64], targets = new int[64];
for (int t = 0; t < 64; t++)
{
    tokens[t] = (t * 7) % 64;
    targets[t] = (t * 11) % 64;
}

engine.WarmUp();
float loss = engine.ComputeGradients(theta, new SequenceBatch<float>(64, 1, tokens, targets), gradients);
adam.Step(theta, gradients, loss);
float after = engine.Evaluate(theta, new SequenceBatch<float>(64, 1, tokens, targets));

var model = new RnnModel(theta, Activation.Tanh);
RnnState state = model.CreateState();
var probs = new float[shape.OutputSize];
double checksum = 0;
foreach (int token in tokens)
{
    model.Step(token, state, probs);
    checksum += probs[token % shape.OutputSize];
}

string Bits(float v) => BitConverter.SingleToInt32Bits(v).ToString("X8", CultureInfo.InvariantCulture);
Console.WriteLine($"isa={KernelInfo.Isa} loss={Bits(loss)} after={Bits(after)} checksum={BitConverter.DoubleToInt64Bits(checksum):X16}");
Console.WriteLine($"note={KernelInfo.UnusedHardware ?? "none"}");
return after < loss ? 0 : 1;
