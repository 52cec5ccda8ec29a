namespace Bptt.Fast.Cli;

/// <summary>
/// The embedded Reber grammar (Hochreiter and Schmidhuber 1997): B, then T or P, then a Reber string, then the same T or
/// P again, then E. The inner Reber grammar is the classic six-state automaton below, every branch taken with
/// probability ½. Generated from a seed; the generator also records, for every position, the grammar's exact probability
/// of the next symbol and the set of legal next symbols, so the optimal loss and the legality of a prediction are known.
/// </summary>
internal static class ReberGrammar
{
    /// <summary>The seven symbols, in vocabulary order.</summary>
    public const string Symbols = "BTPSXVE";

    // Inner Reber automaton: state → (symbol, next state) for each of its two branches; state 6 emits E and ends.
    private static readonly (char Symbol, int Next)[][] Inner =
    [
        [('T', 1), ('P', 2)],   // 0: after the inner B
        [('S', 1), ('X', 3)],   // 1
        [('T', 2), ('V', 4)],   // 2
        [('X', 2), ('S', 5)],   // 3
        [('P', 3), ('V', 5)],   // 4
        [('E', -1)],            // 5: the inner E
    ];

    /// <summary>A generated stream of embedded Reber strings.</summary>
    /// <param name="Tokens">Symbol ids, concatenated strings.</param>
    /// <param name="NextProbability">p(x_{t+1} | history) under the grammar, for every position t (the last is 1).</param>
    /// <param name="Legal">For every position t, a bit mask of the symbols that may legally follow.</param>
    public sealed record Corpus(int[] Tokens, double[] NextProbability, int[] Legal)
    {
        /// <summary>The optimal cross-entropy per predicted symbol, in nats: the mean of −ln p over the corpus.</summary>
        public double OptimalNatsPerSymbol => NextProbability[..^1].Average(p => -Math.Log(p));
    }

    public static Corpus Generate(int strings, ulong seed)
    {
        var random = new Random(unchecked((int)seed ^ (int)(seed >> 32)));
        var symbols = new List<char>();
        var probability = new List<double>();   // p of the symbol at this index given the history before it
        var legalHere = new List<int>();        // legal symbols at this index given the history before it
        void Emit(char c, double p, string legal)
        {
            symbols.Add(c);
            probability.Add(p);
            legalHere.Add(Mask(legal));
        }

        for (int s = 0; s < strings; s++)
        {
            Emit('B', 1, "B");
            char outer = random.Next(2) == 0 ? 'T' : 'P';
            Emit(outer, 0.5, "TP");
            Emit('B', 1, "B");
            int state = 0;
            while (state != -1)
            {
                (char Symbol, int Next)[] branches = Inner[state];
                string legal = new(branches.Select(b => b.Symbol).ToArray());
                (char symbol, int next) = branches.Length == 1 ? branches[0] : branches[random.Next(2)];
                Emit(symbol, 1.0 / branches.Length, legal);
                state = next;
            }

            Emit(outer, 1, outer.ToString());
            Emit('E', 1, "E");
        }

        int n = symbols.Count;
        var tokens = symbols.Select(c => Symbols.IndexOf(c, StringComparison.Ordinal)).ToArray();
        var nextProbability = new double[n];
        var legalNext = new int[n];
        for (int t = 0; t < n - 1; t++)
        {
            nextProbability[t] = probability[t + 1];
            legalNext[t] = legalHere[t + 1];
        }

        nextProbability[n - 1] = 1;
        legalNext[n - 1] = Mask("B");
        return new Corpus(tokens, nextProbability, legalNext);
    }

    private static int Mask(string legal) => legal.Aggregate(0, (m, c) => m | (1 << Symbols.IndexOf(c, StringComparison.Ordinal)));
}
