using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>
/// Every output of <c>bptt train</c> (checkpoint, .vocab, .loss.csv, .loss.svg) is checked before training: a folder in
/// the way, a missing folder, a dangling link, an existing file without --force, or a special file is refused, and
/// nothing is written.
/// </summary>
public sealed class CliOutputPathTests : CliHarness
{
    private string[] Train(string checkpoint, params string[] extra) =>
        ["train", "--text", P("t.txt"), "--steps", "3", "--hidden", "4", "--chunk", "5", "--checkpoint", checkpoint, .. extra];

    public CliOutputPathTests() => File.WriteAllText(P("t.txt"), string.Concat(Enumerable.Repeat("abcabcaabbcc", 10)));

    [Theory]
    [InlineData("")]
    [InlineData(".vocab")]
    [InlineData(".loss.csv")]
    [InlineData(".loss.svg")]
    public void AFolderInPlaceOfAnOutputIsRefused(string suffix)
    {
        Directory.CreateDirectory(P("m.ckpt" + suffix));
        AssertRefused(2, ["--checkpoint", "m.ckpt" + suffix, "folder"], Train(P("m.ckpt")));
        AssertRefused(2, ["--checkpoint", "m.ckpt" + suffix, "folder"], Train(P("m.ckpt"), "--force"));
    }

    [Fact]
    public void ACheckpointPathEndingInASeparatorOrInAMissingFolderIsRefused()
    {
        AssertRefused(2, ["--checkpoint", "folder"], Train(Dir + Path.DirectorySeparatorChar));
        AssertRefused(2, ["--checkpoint", "missing"], Train(P(Path.Combine("missing", "m.ckpt"))));
        File.WriteAllText(P("file"), "x");
        AssertRefused(2, ["--checkpoint", "file"], Train(P(Path.Combine("file", "m.ckpt"))));
    }

    [Theory]
    [InlineData(".vocab")]
    [InlineData(".loss.csv")]
    [InlineData(".loss.svg")]
    public void AnExistingOutputIsReplacedOnlyWithForce(string suffix)
    {
        File.WriteAllText(P("m.ckpt" + suffix), "precious");
        AssertRefused(2, ["--checkpoint", "m.ckpt" + suffix, "--force"], Train(P("m.ckpt")));
        (int code, _, string error) = Run(Train(P("m.ckpt"), "--force"));
        Assert.True(code == 0, error);
        Assert.NotEqual("precious", File.ReadAllText(P("m.ckpt" + suffix)));
    }

    [Theory]
    [InlineData("")]
    [InlineData(".vocab")]
    [InlineData(".loss.csv")]
    [InlineData(".loss.svg")]
    public void AnEmptyOrSpecialFileInPlaceOfAnOutputIsRefusedEvenWithForce(string suffix)
    {
        // Devices and pipes report length 0, like this empty file: none is opened, renamed over or truncated.
        File.WriteAllBytes(P("m.ckpt" + suffix), []);
        AssertRefused(2, ["--checkpoint", "m.ckpt" + suffix, "regular file"], Train(P("m.ckpt"), "--force"));
    }

    [Fact]
    public void ADeviceAsCheckpointIsRefused()
    {
        Assert.SkipUnless(File.Exists("/dev/null"), "needs /dev/null");
        AssertRefused(2, ["--checkpoint", "/dev/null"], Train("/dev/null", "--force"));
        Assert.True(File.Exists("/dev/null"));
    }

    [Theory]
    [InlineData("")]
    [InlineData(".vocab")]
    [InlineData(".loss.csv")]
    [InlineData(".loss.svg")]
    public void ADanglingLinkInPlaceOfAnOutputIsRefused(string suffix)
    {
        Assert.SkipWhen(OperatingSystem.IsWindows(), "symbolic links need privileges on Windows");
        File.CreateSymbolicLink(P("m.ckpt" + suffix), P(Path.Combine("missing", "target")));
        AssertRefused(2, ["--checkpoint", "m.ckpt" + suffix, "link"], Train(P("m.ckpt"), "--force"));
    }

    [Fact]
    public void AnUnwritableFolderIsRefused()
    {
        Assert.SkipWhen(OperatingSystem.IsWindows(), "Windows has no mode bits");
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        if (Environment.UserName == "root")
        {
            // Root writes through mode bits (CI runs as root), but not into sysfs, which refuses to create files for
            // every user; without this the refusal was never tested on CI.
            Assert.SkipWhen(!Directory.Exists("/sys/kernel"), "no sysfs here");
            AssertRefused(2, ["--checkpoint", "/sys"], Train("/sys/m.ckpt"));
            return;
        }

        Directory.CreateDirectory(P("ro"));
        File.SetUnixFileMode(P("ro"), UnixFileMode.UserRead | UnixFileMode.UserExecute);
        try
        {
            AssertRefused(2, ["--checkpoint", "ro"], Train(P(Path.Combine("ro", "m.ckpt"))));
        }
        finally
        {
            File.SetUnixFileMode(P("ro"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
    }

    [Fact]
    public void ASuccessfulRunLeavesExactlyTheFourOutputs()
    {
        (int code, _, string error) = Run(Train(P("m.ckpt"), "--every", "1"));
        Assert.True(code == 0, error);
        Assert.Equal(
            ["m.ckpt", "m.ckpt.loss.csv", "m.ckpt.loss.svg", "m.ckpt.vocab", "t.txt"],
            Directory.EnumerateFileSystemEntries(Dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(["1,", "2,", "3,"], File.ReadAllLines(P("m.ckpt.loss.csv")).Select(l => l[..2]));
    }
}
