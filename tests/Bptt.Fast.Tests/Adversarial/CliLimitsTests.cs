using System.Text;
using Bptt.Fast.Cli;
using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>Models too large to hold or to train here are refused from their sizes alone, before anything is allocated.</summary>
public sealed class CliLimitsTests : CliHarness
{
    /// <summary>A text of <paramref name="count"/> distinct scalar values from U+10000 up (4 UTF-8 bytes each).</summary>
    private string ManySymbols(int count)
    {
        var text = new StringBuilder(2 * count);
        for (int v = 0x10000; v < 0x10000 + count; v++)
        {
            text.Append(char.ConvertFromUtf32(v));
        }

        File.WriteAllText(P("many.txt"), text.ToString(), new UTF8Encoding(false));
        return P("many.txt");
    }

    [Fact]
    public void AHiddenSizeBeyondTheLibrarysParameterLimitIsRefused()
    {
        // 140 000 symbols × 4096 hidden units × 2 > 2³⁰ parameters.
        string text = ManySymbols(140_000);
        string error = AssertRefused(2, ["--hidden 4096", "140000 symbols", "parameters"], "train", "--text", text, "--hidden", "4096", "--checkpoint", P("x.ckpt"));
        Assert.Contains(RnnShape.MaxParameterCount.ToString("N0", System.Globalization.CultureInfo.InvariantCulture), error, StringComparison.Ordinal);
    }

    [Fact]
    public void AModelThatNeedsMoreMemoryThanTheLimitIsRefused()
    {
        // 20 000 symbols × 4096 hidden units: 180 million parameters, about 6.5 GiB with Adam.
        string text = ManySymbols(20_000);
        AssertRefused(2, ["--hidden 4096", "20000 symbols", "GiB", "--chunk"], "train", "--text", text, "--hidden", "4096", "--checkpoint", P("x.ckpt"));
    }

    [Fact]
    public void TheMemoryEstimateCoversTheParameterBlocksAndTheWorkspace()
    {
        var shape = new RnnShape(20_000, 4096, 20_000);
        long p = shape.ParameterCount;
        long adam = TrainCommand.TrainingBytes(shape, 20, stateBlocks: 2, steps: 1000);
        Assert.InRange(adam, 4 * p * 9, 4 * p * 12);
        Assert.True(TrainCommand.TrainingBytes(shape, 20, stateBlocks: 0, steps: 1000) < adam);
        Assert.True(TrainCommand.TrainingBytes(shape, 1000, stateBlocks: 2, steps: 1000) > adam);
        Assert.InRange(TrainCommand.TrainingLimit(), 1, TrainCommand.MaxTrainingBytes);

        // The largest default-corpus model (7 symbols, 4096 hidden units) and enwik8-sized vocabularies fit the limit.
        Assert.True(TrainCommand.TrainingBytes(new RnnShape(7, 4096, 7), 1000, 2, TrainCommand.MaxSteps) < TrainCommand.MaxTrainingBytes);
        Assert.True(TrainCommand.TrainingBytes(new RnnShape(6000, 4096, 6000), 20, 2, 100_000) < TrainCommand.MaxTrainingBytes);
    }

    [Fact]
    public void ALargeStepCountTimesAChunkDoesNotOverflowThePosition()
    {
        // u · chunk passes 2³¹ at u = 2 147 484 with --chunk 1000; the position is computed in 64 bits.
        long u = 3_000_000, chunk = 1000, span = 7919 * 1000;
        Assert.InRange(u * chunk % span, 0, span - 1);
        Assert.True((int)u * (int)chunk < 0); // what the 32-bit product did
    }
}
