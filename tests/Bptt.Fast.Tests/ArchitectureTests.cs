using Mono.Cecil;
using NetArchTest.Rules;
using Xunit;

namespace Bptt.Fast.Tests;

/// <summary>
/// The folders of src/Bptt.Fast are layers, and each uses only the layers below it (docs/design.md, section 3):
/// Internals → Model → Kernels → Reference → Engine → Training → Serving, with Reference never using Kernels (the oracle
/// shares no code with what it checks). Public types of the root namespace are assigned to their layer by name.
/// </summary>
public sealed class ArchitectureTests
{
    private static readonly string[] Layers = ["Internals", "Model", "Kernels", "Reference", "Engine", "Training", "Serving"];

    /// <summary>The root-namespace types (public API in <c>Bptt.Fast</c>) and the layer each belongs to.</summary>
    private static readonly Dictionary<string, string> RootTypes = new(StringComparer.Ordinal)
    {
        ["RnnShape"] = "Model",
        ["RnnLayerBlock"] = "Model",
        ["RnnParameters"] = "Model",
        ["SequenceBatch`1"] = "Model",
        ["Activation"] = "Model",
        ["KernelPath"] = "Model",
        ["KernelInfo"] = "Kernels",
        ["KernelIsa"] = "Kernels",
        ["BpttEngine"] = "Engine",
        ["ParallelBpttEngine"] = "Engine",
    };

    public static TheoryData<string> LayerNames() => new(Layers);

    [Theory]
    [MemberData(nameof(LayerNames))]
    public void NoLayerReferencesALayerAboveIt(string layer)
    {
        int level = Array.IndexOf(Layers, layer);
        string[] forbidden = [.. Layers.Skip(level + 1).SelectMany(Names), .. layer == "Reference" ? Names("Kernels") : []];
        NetArchTest.Rules.TestResult result = Types.InAssembly(typeof(RnnShape).Assembly).That().MeetCustomRule(new InLayer(layer))
            .ShouldNot().HaveDependencyOnAny(forbidden).GetResult();
        Assert.True(result.IsSuccessful, $"{layer} references a layer above it: {string.Join(", ", result.FailingTypeNames ?? [])}");
    }

    public static TheoryData<string, string[]> KernelSublayers() => new()
    {
        // Kernels/Isa holds the per-ISA structs alone; Functions (exp, tanh, epilogues) use them; Bodies (the generic
        // kernels) use both; the dispatch and facade in Kernels/ use everything below.
        { "Bptt.Fast.Kernels.Isa", ["Bptt.Fast.Kernels.Functions", "Bptt.Fast.Kernels.Bodies", .. KernelRoot] },
        { "Bptt.Fast.Kernels.Functions", ["Bptt.Fast.Kernels.Bodies", .. KernelRoot] },
        { "Bptt.Fast.Kernels.Bodies", KernelRoot },
    };

    [Theory]
    [MemberData(nameof(KernelSublayers))]
    public void KernelFoldersFormADagToo(string ns, string[] forbidden)
    {
        NetArchTest.Rules.TestResult result = Types.InAssembly(typeof(RnnShape).Assembly).That().ResideInNamespace(ns)
            .ShouldNot().HaveDependencyOnAny(forbidden).GetResult();
        Assert.True(result.IsSuccessful, $"{ns} references a folder above it: {string.Join(", ", result.FailingTypeNames ?? [])}");
    }

    [Fact]
    public void EveryTypeBelongsToALayer()
    {
        var unassigned = Types.InAssembly(typeof(RnnShape).Assembly).GetTypes()
            .Select(Outermost)
            .Where(t => t.Namespace is not null && t.Namespace.StartsWith("Bptt.Fast", StringComparison.Ordinal) && LayerOf(t.Namespace, t.Name) is null)
            .Select(t => t.FullName).ToArray();
        Assert.Empty(unassigned);
    }

    [Fact]
    public void TheRuleCatchesAnUpwardReference()
    {
        // Guard against a rule that passes whatever the code does: Engine does use Kernels, so "Engine must not use
        // Kernels" must fail.
        NetArchTest.Rules.TestResult result = Types.InAssembly(typeof(RnnShape).Assembly).That().MeetCustomRule(new InLayer("Engine"))
            .ShouldNot().HaveDependencyOnAny([.. Names("Kernels")]).GetResult();
        Assert.False(result.IsSuccessful);
    }

    /// <summary>The types of the Kernels folder itself (dispatch, checks, facade, KernelInfo).</summary>
    private static string[] KernelRoot =>
        [.. typeof(RnnShape).Assembly.GetTypes().Where(t => t.Namespace == "Bptt.Fast.Kernels" && t.DeclaringType is null).Select(t => t.FullName!), "Bptt.Fast.KernelInfo", "Bptt.Fast.KernelIsa"];

    /// <summary>The dependency names of a layer: its namespace (not the root) and its root-namespace types.</summary>
    private static IEnumerable<string> Names(string layer) =>
        [$"Bptt.Fast.{layer}", .. RootTypes.Where(p => p.Value == layer).Select(p => $"Bptt.Fast.{p.Key}")];

    private static string? LayerOf(string ns, string name)
    {
        if (ns == "Bptt.Fast")
        {
            return RootTypes.GetValueOrDefault(name);
        }

        return Layers.FirstOrDefault(l => ns == $"Bptt.Fast.{l}" || ns.StartsWith($"Bptt.Fast.{l}.", StringComparison.Ordinal));
    }

    private static Type Outermost(Type type) => type.DeclaringType is { } outer ? Outermost(outer) : type;

    private sealed class InLayer(string layer) : ICustomRule
    {
        public bool MeetsRule(TypeDefinition type)
        {
            TypeDefinition outer = type;
            while (outer.DeclaringType is not null)
            {
                outer = outer.DeclaringType;
            }

            return LayerOf(outer.Namespace, outer.Name) == layer;
        }
    }
}
