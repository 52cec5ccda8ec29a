using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>
/// The GEMM micro-kernel keeps its accumulators in registers in every compilation mode, not only after dynamic PGO
/// (docs/design.md, section 4). A child process runs the CLI's check (which trains through the GEMM) with dynamic PGO
/// off and the JIT's disassembly of the micro-kernel written to a file; the inner loop must not touch the stack.
/// </summary>
public sealed class JitRegisterTests
{
    public static TheoryData<string> Paths() => new(["", "avx2"]);

    [Theory]
    [MemberData(nameof(Paths))]
    public void MicroKernelLoopNeverSpillsWithoutDynamicPgo(string isa)
    {
        Assert.SkipWhen(isa == "avx2" && !System.Runtime.Intrinsics.X86.Avx2.IsSupported, "the CPU lacks AVX2");
        Assert.SkipWhen(KernelInfo.Isa == KernelIsa.Scalar, "the scalar path has no vector micro-kernel to inspect");
        string[] lines = JitOutputOfCheck(("DOTNET_JitDisasm", "MicroKernel"), ("BPTT_FAST_ISA", isa));
        int listings = 0;
        for (int k = 0; k < lines.Length; k++)
        {
            if (!lines[k].StartsWith("; Assembly listing for method", StringComparison.Ordinal) || !lines[k].Contains("GemmCore", StringComparison.Ordinal))
            {
                continue;
            }

            listings++;
            int end = Array.FindIndex(lines, k + 1, l => l.StartsWith("; Assembly listing for method", StringComparison.Ordinal));
            string[] body = lines[k..(end < 0 ? lines.Length : end)];
            string[] loop = InnerLoop(body);
            Assert.True(loop.Length > 10, $"no inner loop found in {lines[k]}");
            Assert.DoesNotContain(loop, l => l.Contains("rsp", StringComparison.Ordinal) || l.Contains("rbp", StringComparison.Ordinal));
            // One accumulation per accumulator: fused multiply-adds, or (the Vector<T> path, which does not fuse) adds.
            int accumulations = loop.Count(l => l.Contains("vfmadd", StringComparison.Ordinal));
            accumulations = accumulations > 0 ? accumulations : loop.Count(l => l.Contains("vaddps", StringComparison.Ordinal));
            int expected = lines[k].Contains("EightRows", StringComparison.Ordinal) ? 16
                : lines[k].Contains("FourRows", StringComparison.Ordinal) ? 8 : 12; // 8, 4 or 6 rows × 2 vectors
            Assert.True(accumulations == expected, $"expected {expected} accumulations in the loop of {lines[k]}:\n{string.Join('\n', loop)}");
        }

        Assert.True(listings > 0, "the JIT wrote no listing of the micro-kernel");
    }

    /// <summary>
    /// The vector math (exp, tanh, sigmoid and the ISA structs' operations) must be inlined into the kernels that use it. A
    /// call left out of line is compiled on its own under tiering, tier 0 first and tier 1 only after 30 calls and a delay,
    /// with its vector arguments passed through memory: a softmax that called four exps out of line cost a served step
    /// about 1 µs until tier 1 arrived. A child process runs the CLI's check (training and the loss kernels through the
    /// fast path) with the JIT's summary of every method it compiled; no method of SimdMath and no ISA-struct operation may
    /// be among them (the structs' Count, read once by cold setup code, is the one exception).
    /// </summary>
    [Fact]
    public void VectorMathIsInlinedIntoTheKernelsThatUseIt()
    {
        string[] compiled = JitOutputOfCheck(("DOTNET_JitDisasmSummary", "1")).Where(l => l.Contains("JIT compiled", StringComparison.Ordinal)).ToArray();
        Assert.Contains(compiled, l => l.Contains("ElementWise", StringComparison.Ordinal)); // the summary lists the kernels
        string[] outOfLine = compiled.Where(l =>
            l.Contains("Kernels.Functions.SimdMath", StringComparison.Ordinal)
            || (System.Text.RegularExpressions.Regex.IsMatch(l, @"Kernels\.Isa\.(Simd512|Simd256|Simd128|VectorSimd|ScalarSimd|Lanes):")
                && !l.Contains(":get_Count()", StringComparison.Ordinal))).ToArray();
        Assert.True(outOfLine.Length == 0, "compiled on their own, so called out of line:\n" + string.Join('\n', outOfLine));
    }

    /// <summary>
    /// Runs the CLI's check (training and the loss kernels through the fast path) in a child process with dynamic PGO off,
    /// the given environment and the JIT's output written to a file, and returns that output; skips where no dotnet host
    /// can start a child (the self-contained arm64 run).
    /// </summary>
    private static string[] JitOutputOfCheck(params (string Name, string Value)[] environment)
    {
        string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH")
            ?? Path.GetFullPath(Path.Combine(System.Runtime.InteropServices.RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", "..", OperatingSystem.IsWindows() ? "dotnet.exe" : "dotnet"));
        string cli = Path.Combine(AppContext.BaseDirectory, "bptt.dll");
        Assert.SkipWhen(!File.Exists(host) || !File.Exists(cli), "no dotnet host to start a child process with (e.g. the self-contained arm64 run)");
        string output = Path.Combine(Path.GetTempPath(), $"bptt-jit-{Guid.NewGuid():N}.txt");
        try
        {
            var start = new System.Diagnostics.ProcessStartInfo(host, [cli, "check"]) { RedirectStandardOutput = true, RedirectStandardError = true };
            start.Environment["DOTNET_TieredPGO"] = "0";
            start.Environment["DOTNET_JitStdOutFile"] = output;
            foreach ((string name, string value) in environment)
            {
                start.Environment[name] = value;
            }

            using (var process = System.Diagnostics.Process.Start(start)!)
            {
                process.StandardOutput.ReadToEnd();
                process.StandardError.ReadToEnd();
                Assert.True(process.WaitForExit(120_000), "the child process did not finish");
                Assert.Equal(0, process.ExitCode);
            }

            return File.ReadAllLines(output);
        }
        finally
        {
            File.Delete(output);
        }
    }

    /// <summary>The instructions between the target of the last backward conditional jump and that jump.</summary>
    private static string[] InnerLoop(string[] body)
    {
        for (int j = body.Length - 1; j >= 0; j--)
        {
            string line = body[j].Trim();
            if (!line.StartsWith('j') || line.StartsWith("jmp", StringComparison.Ordinal))
            {
                continue;
            }

            string target = line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[^1];
            int label = Array.FindIndex(body, l => l.StartsWith(target + ":", StringComparison.Ordinal));
            if (label >= 0 && label < j)
            {
                return body[(label + 1)..j];
            }
        }

        return [];
    }
}
