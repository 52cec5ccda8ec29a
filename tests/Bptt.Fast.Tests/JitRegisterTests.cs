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
    /// Fully optimised code never calls tiered code. The serving and training entry points and the kernels are compiled
    /// fully optimised at their first call (<c>MethodImplOptions.AggressiveOptimization</c>), so that a service's first
    /// requests run at steady-state speed, and so that speed never waits on tiering or dynamic PGO. A helper that such a
    /// method calls out of line, and that is not marked itself, runs tier-0 code (no inlining, no register allocation of
    /// spans) for its first 30 calls, and is promoted only after a delay that every other tier-0 compilation pushes back:
    /// <c>RnnModel.StepBatch</c> once called eight such helpers, and a bench process's first iterations ran up to 57%
    /// slower than its last. A child process runs the CLI with the JIT's disassembly of every method it compiles; every
    /// method of the library that a fully optimised method of the library calls or tail-calls (directly, or through a
    /// virtual or interface call, matched by name and signature) must itself have been compiled fully optimised, never at
    /// tier 0.
    /// The CLI covers every serving entry point and the data-parallel engine with its worker threads (<c>check</c> runs
    /// them against the reference and against one engine), the training step with each optimizer, dropout and clipping
    /// (<c>train</c>), and sampling.
    /// </summary>
    [Theory]
    [InlineData("check")]
    [InlineData("train --steps 40 --layers 2 --dropout 0.2 --clip 1 --chunk 10|sample --checkpoint bptt-model.ckpt --length 80")]
    [InlineData("train --steps 40 --optimizer momentum")]
    [InlineData("train --steps 40 --optimizer adagrad")]
    [InlineData("train --steps 40 --optimizer sgd")]
    [InlineData("train --steps 40 --optimizer adamw")]
    public void FullyOptimizedCodeNeverCallsTieredCode(string commands)
    {
        string work = Directory.CreateTempSubdirectory("bptt-jit-").FullName; // train writes its checkpoint here, and sample reads it
        string[] lines;
        try
        {
            // Call counting off: no method is promoted to tier 1, so no background compilation writes listings while the
            // main thread does (the JIT does not serialise its disassembly), and every tier-0 compile still shows.
            lines = commands.Split('|').SelectMany(c => JitOutputOf(c.Split(' '), work, ("DOTNET_JitDisasm", "*"), ("DOTNET_TC_CallCounting", "0"))).ToArray();
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }

        var tiers = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        var calls = new List<(string Caller, string Callee, bool Indirect)>();
        string? caller = null;
        foreach (string line in lines)
        {
            const string Header = "; Assembly listing for method ";
            if (line.StartsWith(Header, StringComparison.Ordinal))
            {
                string rest = line[Header.Length..];
                int open = rest.LastIndexOf(" (", StringComparison.Ordinal);
                string method = Signature(rest[..open]), tier = rest[(open + 2)..].TrimEnd(')');
                (tiers.TryGetValue(method, out HashSet<string>? set) ? set : tiers[method] = []).Add(tier);
                // Callers: the methods marked AggressiveOptimization (FullOpts), the hot path by design. A Tier0-FullOpts
                // method is cold code the runtime chose to optimise at once (a loop it cannot patch for OSR).
                caller = tier == "FullOpts" && method.StartsWith("Bptt.Fast", StringComparison.Ordinal) ? method : null;
                continue;
            }

            // A call, or a tail call (tail.jmp, jmp) to a method: its operand names Type:Method(parameters).
            var instruction = System.Text.RegularExpressions.Regex.Match(line, @"^\s+(?:tail\.)?(?:call|jmp)\s+(.*)$");
            if (caller is null || !instruction.Success || !instruction.Groups[1].Value.Contains(':', StringComparison.Ordinal) || !instruction.Groups[1].Value.Contains('(', StringComparison.Ordinal))
            {
                continue;
            }

            string operand = instruction.Groups[1].Value.Trim();
            var indirect = System.Text.RegularExpressions.Regex.Match(operand, @"^\[?[a-z0-9]+(\+0x[0-9A-F]+)?\]");
            string callee = Signature(operand[indirect.Length..]);
            if (callee.StartsWith("Bptt.Fast", StringComparison.Ordinal))
            {
                calls.Add((caller, callee, indirect.Success));
            }
        }

        // The parse found what it must: the kernels compiled fully optimised, library setup code at tier 0 (so tiering was
        // on), and a call every run makes, from a served step into its kernel.
        Assert.Contains(tiers, t => t.Key.StartsWith("Bptt.Fast.Kernels.KernelSet`3", StringComparison.Ordinal) && t.Value.Any(FullyOptimized));
        Assert.Contains(tiers, t => t.Key.StartsWith("Bptt.Fast.", StringComparison.Ordinal) && !t.Key.StartsWith("Bptt.Fast.Cli.", StringComparison.Ordinal) && t.Value.Contains("Tier0"));
        Assert.Contains(calls, c => c.Caller.StartsWith("Bptt.Fast.Serving.RnnModel:Step(", StringComparison.Ordinal) && c.Callee.Contains(":StepForwardFrom(", StringComparison.Ordinal));
        var tiered = new SortedSet<string>(StringComparer.Ordinal);
        foreach ((string from, string callee, bool indirect) in calls)
        {
            // A virtual or interface call reaches whichever override ran: every compiled method of the same name and signature.
            string name = callee[(callee.IndexOf(':', StringComparison.Ordinal) + 1)..];
            foreach ((string method, HashSet<string> compiled) in tiers)
            {
                bool target = method == callee || (indirect && method.StartsWith("Bptt.Fast", StringComparison.Ordinal) && method.EndsWith(":" + name, StringComparison.Ordinal));
                if (target && !compiled.All(FullyOptimized))
                {
                    tiered.Add($"{method} [{string.Join(", ", compiled)}], called from {from}");
                }
            }
        }

        Assert.True(tiered.Count == 0, "fully optimised code calls these tiered methods:\n" + string.Join('\n', tiered));
    }

    /// <summary>A callee's tier that is full optimisation: <c>FullOpts</c>, or <c>Tier0-FullOpts</c> (switched to it at its first compile).</summary>
    private static bool FullyOptimized(string tier) => tier is "FullOpts" or "Tier0-FullOpts";

    /// <summary>Type:Method(parameters) of a JIT listing header or call operand, without brackets or the return type.</summary>
    private static string Signature(string text)
    {
        text = text.Trim().TrimStart('[');
        int close = text.IndexOf(')', StringComparison.Ordinal);
        return close < 0 ? text.TrimEnd(']') : text[..(close + 1)];
    }

    /// <summary>
    /// Runs the CLI's check (training and the loss kernels through the fast path) in a child process with dynamic PGO off,
    /// the given environment and the JIT's output written to a file, and returns that output; skips where no dotnet host
    /// can start a child (the self-contained arm64 run).
    /// </summary>
    private static string[] JitOutputOfCheck(params (string Name, string Value)[] environment) => JitOutputOf(["check"], Path.GetTempPath(), environment);

    /// <summary>
    /// Runs the CLI with <paramref name="arguments"/> in a child process, in <paramref name="workDirectory"/>, with dynamic PGO
    /// off, the given environment and the JIT's output written to a file, and returns that output; skips where no dotnet
    /// host can start a child (the self-contained arm64 run).
    /// </summary>
    private static string[] JitOutputOf(string[] arguments, string workDirectory, params (string Name, string Value)[] environment)
    {
        string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH")
            ?? Path.GetFullPath(Path.Combine(System.Runtime.InteropServices.RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", "..", OperatingSystem.IsWindows() ? "dotnet.exe" : "dotnet"));
        string cli = Path.Combine(AppContext.BaseDirectory, "bptt.dll");
        Assert.SkipWhen(!File.Exists(host) || !File.Exists(cli), "no dotnet host to start a child process with (e.g. the self-contained arm64 run)");
        string output = Path.Combine(Path.GetTempPath(), $"bptt-jit-{Guid.NewGuid():N}.txt");
        try
        {
            var start = new System.Diagnostics.ProcessStartInfo(host, [cli, .. arguments]) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = workDirectory };
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
