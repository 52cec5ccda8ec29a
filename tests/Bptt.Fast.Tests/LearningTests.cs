using Bptt.Fast.Training;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>Gradient descent (the seed's rule) learns a task that needs memory.</summary>
public sealed class LearningTests
{
    /// <summary>
    /// Predict the next symbol of the period-5 sequence 0 0 1 0 1 0 0 1 0 1 …: the current symbol alone does not
    /// determine the next one (a 0 is followed by 0 or by 1), so the network must carry its position in hₜ.
    /// </summary>
    [Theory]
    [InlineData(KernelPath.Reference)]
    [InlineData(KernelPath.Fast)]
    public void GradientDescentCutsTheLossOfAPeriodFiveSequenceBy95Percent(KernelPath path)
    {
        int[] period = [0, 0, 1, 0, 1];
        const int Steps = 20;
        var tokens = new int[Steps];
        var targets = new int[Steps];
        for (int t = 0; t < Steps; t++)
        {
            tokens[t] = period[t % 5];
            targets[t] = period[(t + 1) % 5];
        }

        var shape = new RnnShape(2, 12, 2);
        var theta = new RnnParameters(shape);
        theta.InitializeGlorot(seed: 5);
        var grad = new RnnParameters(shape);
        var engine = new BpttEngine(shape, Steps, path: path);
        var optimizer = new GradientDescent(shape, learningRate: 0.05f);
        var batch = new SequenceBatch<float>(Steps, 1, tokens, targets);

        float first = engine.Evaluate(theta, batch);
        for (int step = 0; step < 1500; step++)
        {
            float loss = engine.ComputeGradients(theta, batch, grad);
            Assert.True(optimizer.Step(theta, grad, loss));
        }

        float last = engine.Evaluate(theta, batch);
        Assert.True(last <= 0.05f * first, $"loss {first} -> {last}: cut by {100 * (1 - (last / first)):F1}%, expected at least 95%");
    }
}
