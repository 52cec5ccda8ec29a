using System.Buffers.Binary;
using Bptt.Fast.Serving;
using Bptt.Fast.Training;
using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>Step counts stay in [0, 2⁵³]: a restored optimizer can never overflow its counter.</summary>
public sealed class StepCountTests
{
    private static readonly RnnShape Shape = new(3, 4, 2);

    public static TheoryData<long> BadStepCounts() => [long.MaxValue, long.MaxValue - 1, Checkpoint.MaxStepCount + 1, -1, long.MinValue, int.MinValue];

    [Theory]
    [MemberData(nameof(BadStepCounts))]
    public void LoadRejectsAStepCountOutsideTheBoundAndChangesNothing(long step)
    {
        foreach ((string _, Func<RnnShape, Optimizer> create) in Fixtures.Optimizers)
        {
            RnnParameters theta = Fixtures.Theta(Shape, 1);
            Optimizer optimizer = create(Shape);
            Fixtures.Train(optimizer, theta, 2);
            byte[] bytes = Fixtures.Save(theta, optimizer);
            BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(Fixtures.StepAt), step);
            Fixtures.RecomputeCrc(bytes);

            var destination = new Destination(Shape, create(Shape), 0);
            var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(new MemoryStream(bytes), destination.Parameters, destination.Optimizer));
            Assert.Contains(step.ToString(System.Globalization.CultureInfo.InvariantCulture), e.Message, StringComparison.Ordinal);
            destination.AssertUnchanged();
        }
    }

    [Theory]
    [InlineData(long.MaxValue)]
    [InlineData(long.MaxValue - 1)]
    [InlineData(Checkpoint.MaxStepCount + 1)]
    public void NoOptimizerCanCarryAStepCountAboveTheBoundToSave(long step)
    {
        // The optimizer itself refuses the count (Optimizer.MaxStepCount = Checkpoint.MaxStepCount), so Save never sees it.
        var adam = new Adam(Shape, 0.01f);
        Assert.Equal("stepCount", Assert.Throws<ArgumentOutOfRangeException>(() => adam.RestoreStepCount(step)).ParamName);
        Assert.Equal(0, adam.StepCount);
        Assert.Equal(Optimizer.MaxStepCount, Checkpoint.MaxStepCount);
    }

    [Fact]
    public void NoOptimizerCanCarryANegativeStepCountToSave() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new Adam(Shape, 0.01f).RestoreStepCount(-1));

    [Fact]
    public void TheBoundItselfRoundTripsAndTheRestoredOptimizerStopsThereWithoutWrapping()
    {
        RnnParameters theta = Fixtures.Theta(Shape, 3);
        var adam = new Adam(Shape, 0.01f);
        Fixtures.Train(adam, theta, 1);
        adam.RestoreStepCount(Checkpoint.MaxStepCount);
        byte[] bytes = Fixtures.Save(theta, adam);

        var restored = new Adam(Shape, 0.01f);
        var loaded = new RnnParameters(Shape);
        Assert.Equal(Checkpoint.MaxStepCount, Checkpoint.Load(new MemoryStream(bytes), loaded, restored).StepCount);
        Assert.Equal(Checkpoint.MaxStepCount, restored.StepCount);
        float[] before = loaded.Values.ToArray();
        Assert.Throws<InvalidOperationException>(() => restored.Step(loaded, Fixtures.Gradient(Shape, 0)));
        Assert.Equal(Checkpoint.MaxStepCount, restored.StepCount);
        Assert.Equal(before, loaded.Values.ToArray());
    }

    [Fact]
    public void ACheckpointWithoutOptimizerHoldsStepCountZero()
    {
        byte[] bytes = Fixtures.Save(Fixtures.Theta(Shape, 4));
        Assert.Equal(0, BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(Fixtures.StepAt)));
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(Fixtures.StepAt), 5);
        Fixtures.RecomputeCrc(bytes);
        var destination = new Destination(Shape, null, 0);
        Assert.Throws<InvalidDataException>(() => Checkpoint.Load(new MemoryStream(bytes), destination.Parameters));
        destination.AssertUnchanged();
    }
}
