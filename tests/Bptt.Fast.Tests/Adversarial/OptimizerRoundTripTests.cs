using Bptt.Fast.Serving;
using Bptt.Fast.Training;
using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>Every optimizer of the library survives a checkpoint bit for bit, including the stateless GradientDescent.</summary>
public sealed class OptimizerRoundTripTests : IDisposable
{
    private static readonly RnnShape Shape = new(3, 4, 2);
    private readonly string _dir = Directory.CreateTempSubdirectory("bptt-opt-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<int> OptimizerIndexes() => [.. Enumerable.Range(0, Fixtures.Optimizers.Count)];

    [Fact]
    public void TheListCoversEveryConcreteOptimizerOfTheLibrary()
    {
        string[] library = typeof(Optimizer).Assembly.GetTypes()
            .Where(t => t.IsSubclassOf(typeof(Optimizer)) && !t.IsAbstract)
            .Select(t => t.Name).Order(StringComparer.Ordinal).ToArray();
        string[] covered = Fixtures.Optimizers.Select(o => o.Create(Shape).GetType().Name).Distinct().Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(library, covered);
    }

    [Theory]
    [MemberData(nameof(OptimizerIndexes))]
    public void ARoundTripThroughAFileRestoresStateAndStepCountAndContinuesIdentically(int index)
    {
        (string label, Func<RnnShape, Optimizer> create) = Fixtures.Optimizers[index];
        RnnParameters theta = Fixtures.Theta(Shape, 5);
        Optimizer original = create(Shape);
        Fixtures.Train(original, theta, 4);
        float[] carried = [0.5f, -0.25f, 1.5f, -2f];
        string path = Path.Combine(_dir, label + ".ckpt");
        Checkpoint.Save(path, theta, Activation.Relu, original, randomState: 99, carriedState: carried);

        var loaded = new RnnParameters(Shape);
        Optimizer restored = create(Shape);
        var carried2 = new float[carried.Length];
        CheckpointInfo info = Checkpoint.Load(path, loaded, restored, carried2);

        Assert.Equal(new CheckpointInfo(Shape, Activation.Relu, 4, 99, original.GetType().Name, original.State.Count, carried.Length), info);
        Assert.Equal(info, Checkpoint.ReadInfo(path));
        Assert.Equal(Fixtures.Bits(theta.Values), Fixtures.Bits(loaded.Values));
        Assert.Equal(original.StepCount, restored.StepCount);
        Assert.Equal(original.State.Select(s => Fixtures.Bits(s.Values)), restored.State.Select(s => Fixtures.Bits(s.Values)));
        Assert.Equal(carried, carried2);

        // The restored optimizer continues exactly like the original.
        RnnParameters grad = Fixtures.Gradient(Shape, 10);
        Assert.True(original.Step(theta, grad));
        Assert.True(restored.Step(loaded, grad));
        Assert.Equal(Fixtures.Bits(theta.Values), Fixtures.Bits(loaded.Values));
    }

    [Theory]
    [MemberData(nameof(OptimizerIndexes))]
    public void ARoundTripThroughANonSeekableStreamRestoresTheSameState(int index)
    {
        Func<RnnShape, Optimizer> create = Fixtures.Optimizers[index].Create;
        RnnParameters theta = Fixtures.Theta(Shape, 6);
        Optimizer original = create(Shape);
        Fixtures.Train(original, theta, 2);
        byte[] bytes = Fixtures.Save(theta, original);

        var loaded = new RnnParameters(Shape);
        Optimizer restored = create(Shape);
        Checkpoint.Load(new NonSeekableStream(bytes), loaded, restored);
        Assert.Equal(Fixtures.Bits(theta.Values), Fixtures.Bits(loaded.Values));
        Assert.Equal(2, restored.StepCount);
        Assert.Equal(original.State.Select(s => Fixtures.Bits(s.Values)), restored.State.Select(s => Fixtures.Bits(s.Values)));
    }

    [Theory]
    [MemberData(nameof(OptimizerIndexes))]
    public void AnotherOptimizerTypeOrNoSavedOptimizerIsRefusedWithoutChangingAnything(int index)
    {
        Func<RnnShape, Optimizer> create = Fixtures.Optimizers[index].Create;
        RnnParameters theta = Fixtures.Theta(Shape, 7);
        Optimizer original = create(Shape);
        Fixtures.Train(original, theta, 1);
        byte[] withOptimizer = Fixtures.Save(theta, original);
        byte[] without = Fixtures.Save(theta);

        foreach ((string _, Func<RnnShape, Optimizer> other) in Fixtures.Optimizers)
        {
            var destination = new Destination(Shape, other(Shape), 0);
            if (destination.Optimizer!.GetType() == original.GetType())
            {
                continue;
            }

            Assert.Throws<InvalidDataException>(() => Checkpoint.Load(new MemoryStream(withOptimizer), destination.Parameters, destination.Optimizer));
            destination.AssertUnchanged();
        }

        var target = new Destination(Shape, create(Shape), 0);
        Assert.Throws<InvalidDataException>(() => Checkpoint.Load(new MemoryStream(without), target.Parameters, target.Optimizer));
        target.AssertUnchanged();
    }
}
