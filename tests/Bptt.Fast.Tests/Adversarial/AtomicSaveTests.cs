using System.Collections.Concurrent;
using System.Globalization;
using Bptt.Fast.Serving;
using Bptt.Fast.Training;
using Xunit;

namespace Bptt.Fast.Tests.Adversarial;

/// <summary>Saves to one path from several threads all succeed; a reader only ever sees one complete checkpoint; orphans are swept.</summary>
public sealed class AtomicSaveTests : IDisposable
{
    private static readonly RnnShape Shape = new(4, 6, 3);
    private readonly string _dir = Directory.CreateTempSubdirectory("bptt-atomic-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void ConcurrentSavesToOnePathAllSucceedAndAReaderOnlyEverSeesOneOfTheSavedCheckpoints()
    {
        const int Writers = 4, SavesEach = 25;
        string path = Path.Combine(_dir, "shared.ckpt");
        var thetas = Enumerable.Range(0, Writers).Select(w => Fixtures.Theta(Shape, (ulong)(100 + w))).ToArray();
        var optimizers = thetas.Select((t, w) =>
        {
            var adam = new Adam(Shape, 0.01f);
            Fixtures.Train(adam, t, w + 1);
            return adam;
        }).ToArray();
        var saved = thetas.Select(t => Convert.ToBase64String(Fixtures.Bits(t.Values))).ToHashSet();
        Checkpoint.Save(path, thetas[0], Activation.Tanh, optimizers[0], carriedState: new float[Shape.HiddenSize]);

        var errors = new ConcurrentQueue<Exception>();
        int writersLeft = Writers, loads = 0;
        using var start = new Barrier(Writers + 1);
        var writers = Enumerable.Range(0, Writers).Select(w => new Thread(() =>
        {
            var carried = new float[Shape.HiddenSize];
            carried.AsSpan().Fill(w);
            start.SignalAndWait();
            try
            {
                for (int k = 0; k < SavesEach; k++)
                {
                    Checkpoint.Save(path, thetas[w], Activation.Tanh, optimizers[w], (ulong)w, carried);
                }
            }
            catch (Exception e)
            {
                errors.Enqueue(e);
            }
            finally
            {
                Interlocked.Decrement(ref writersLeft);
            }
        })).ToArray();
        var reader = new Thread(() =>
        {
            var theta = new RnnParameters(Shape);
            var adam = new Adam(Shape, 0.01f);
            var carried = new float[Shape.HiddenSize];
            start.SignalAndWait();
            do
            {
                try
                {
                    CheckpointInfo info = Checkpoint.Load(path, theta, adam, carried);
                    int w = (int)info.RandomState;
                    if (!saved.Contains(Convert.ToBase64String(Fixtures.Bits(theta.Values))) || info.StepCount != w + 1 || carried.Any(c => c != w))
                    {
                        errors.Enqueue(new InvalidOperationException($"Load {loads} returned a checkpoint that was never saved."));
                    }

                    Checkpoint.ReadInfo(path);
                    loads++;
                }
                catch (Exception e)
                {
                    errors.Enqueue(e);
                }
            }
            while (Volatile.Read(ref writersLeft) > 0);
        });

        foreach (Thread t in writers)
        {
            t.Start();
        }

        reader.Start();
        foreach (Thread t in writers)
        {
            t.Join();
        }

        reader.Join();
        Assert.Empty(errors);
        Assert.True(loads > 0);
        Assert.Equal([path], Directory.GetFiles(_dir)); // every temporary file was renamed
    }

    [Fact]
    public void AFailedSaveRemovesOnlyItsOwnTemporaryFile()
    {
        string path = Path.Combine(_dir, "model.ckpt");
        string other = Path.Combine(_dir, $".model.ckpt.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        File.WriteAllBytes(other, [1, 2, 3]); // another save of this process, in flight
        Assert.Throws<IOException>(() => Checkpoint.Save(path, Fixtures.Theta(Shape, 1), Activation.Tanh, null, 0, default, s => new ThrowingStream()));
        Assert.Equal([other], Directory.GetFiles(_dir));
    }

    [Fact]
    public void OrphanedTemporaryFilesOfTheSameTargetAreSweptAndNothingElse()
    {
        string path = Path.Combine(_dir, "model.ckpt");
        string me = Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        const string Gone = "2147483647"; // above any pid_max: never a running process
        string Hex() => Guid.NewGuid().ToString("N");
        DateTime now = DateTime.UtcNow;
        var files = new (string Name, DateTime Written, bool Swept)[]
        {
            ($".model.ckpt.{Gone}.{Hex()}.tmp", now.AddHours(-1), true),           // crashed process, old
            ($".model.ckpt.{Gone}.1234567890.tmp", now.AddHours(-1), true),        // the earlier tick-count naming
            ($".model.ckpt.{me}.{Hex()}.tmp", now.AddDays(-2), true),              // stale whatever the id says
            ($".model.ckpt.{me}.{Hex()}.tmp", now.AddHours(-1), false),            // a running process
            ($".model.ckpt.{Gone}.{Hex()}.tmp", now.AddMinutes(-1), false),        // recent: maybe still being written
            ($".other.ckpt.{Gone}.{Hex()}.tmp", now.AddDays(-2), false),           // another target
            ($".model.ckpt.x.{Hex()}.tmp", now.AddDays(-2), false),                // not our naming
            ($".model.ckpt.{Gone}.{Hex()}.extra.tmp", now.AddDays(-2), false),      // not our naming
            ("model.ckpt.tmp", now.AddDays(-2), false),                            // a user's file
            (".model.ckpt.tmp", now.AddDays(-2), false),                           // an editor's file: prefix and suffix share a dot (once an exception that failed every save)
        };
        foreach ((string name, DateTime written, bool _) in files)
        {
            string file = Path.Combine(_dir, name);
            File.WriteAllBytes(file, new byte[1000]);
            File.SetLastWriteTimeUtc(file, written);
        }

        string[] Kept() => files.Where(f => !f.Swept).Select(f => Path.Combine(_dir, f.Name)).Append(path).Order(StringComparer.Ordinal).ToArray();

        // A refused save touches nothing, not even the orphans.
        RnnParameters theta = Fixtures.Theta(Shape, 2);
        theta.Values[3] = float.NaN;
        Assert.Equal("parameters", Assert.Throws<ArgumentException>(() => Checkpoint.Save(path, theta, Activation.Tanh)).ParamName);
        Assert.Equal(files.Length, Directory.GetFiles(_dir).Length);

        Checkpoint.Save(path, Fixtures.Theta(Shape, 3), Activation.Tanh);
        Assert.Equal(Kept(), Directory.GetFiles(_dir).Order(StringComparer.Ordinal));
        Checkpoint.ReadInfo(path);
    }

    [Fact]
    public void APathThatNamesAFolderIsRefusedBeforeAnythingIsCreated()
    {
        string folder = _dir + Path.DirectorySeparatorChar;
        Assert.Equal("path", Assert.Throws<ArgumentException>(() => Checkpoint.Save(folder, Fixtures.Theta(Shape, 4), Activation.Tanh)).ParamName);
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    private sealed class ThrowingStream : Stream
    {
        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new IOException("simulated disk full");
    }

    [Fact]
    public void TheCliReplacesItsSideFilesWholeOrNotAtAll()
    {
        // bptt train's loss log, vocabulary and plot once went through File.WriteAllLines/WriteAllBytes, which truncate
        // first: a write error left a short loss log beside an intact checkpoint, and --resume then refused the pair.
        string path = Path.Combine(_dir, "model.ckpt.loss.csv");
        File.WriteAllText(path, "1,0.5\n2,0.4\n");
        var e = Assert.Throws<IOException>(() => Bptt.Fast.Cli.AtomicWrite.Replace(path, stream =>
        {
            stream.Write("1,0.5\n"u8);
            throw new IOException("No space left on device");
        }));
        Assert.Equal("No space left on device", e.Message);
        Assert.Equal("1,0.5\n2,0.4\n", File.ReadAllText(path));
        Assert.Equal([path], Directory.GetFiles(_dir)); // the temporary file is gone

        Bptt.Fast.Cli.AtomicWrite.ReplaceLines(path, ["1,0.5", "2,0.4", "3,0.3"]);
        Assert.Equal(["1,0.5", "2,0.4", "3,0.3"], File.ReadAllLines(path));
        Assert.Equal([path], Directory.GetFiles(_dir));
    }
}
