using System.Globalization;
using System.Text;

namespace Bptt.Fast.Cli;

/// <summary>
/// The loss curves as a self-contained SVG file, written here without any drawing library: the training loss per step
/// (means of equal runs of steps when there are many), its moving average over a span that grows with the run, and the
/// held-out loss at each evaluation. The y-axis spans the smoothed and held-out curves, so a few spiky chunks do not
/// flatten them; the per-step line is clipped to the plot.
/// </summary>
internal static class LossPlot
{
    /// <summary>The most points drawn per line; longer runs are drawn as the means of equal runs of steps.</summary>
    public const int MaxPoints = 2000;

    private const int Width = 800, Height = 450, Left = 72, Right = 20, Top = 44, Bottom = 56;

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Writes the plot.</summary>
    /// <param name="losses">The training loss of every step, step 1 first (at least one).</param>
    /// <param name="heldOut">The held-out loss after the given steps.</param>
    /// <param name="path">The file.</param>
    /// <param name="title">What was trained on (a file name: escaped here).</param>
    /// <param name="unit">"char" or "symbol".</param>
    public static void Save(IReadOnlyList<float> losses, IReadOnlyList<(int Step, double Loss)> heldOut, string path, string title, string unit)
    {
        try
        {
            byte[] svg = new UTF8Encoding(false).GetBytes(Render(losses, heldOut, title, unit));
            AtomicWrite.Replace(path, stream => stream.Write(svg));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"--checkpoint: the loss plot '{path}' could not be written ({e.Message}); the checkpoint and the loss log are saved", e);
        }
    }

    /// <summary>The SVG document.</summary>
    /// <param name="losses">The training loss of every step.</param>
    /// <param name="heldOut">The held-out loss after the given steps.</param>
    /// <param name="title">What was trained on.</param>
    /// <param name="unit">"char" or "symbol".</param>
    /// <returns>The SVG text.</returns>
    internal static string Render(IReadOnlyList<float> losses, IReadOnlyList<(int Step, double Loss)> heldOut, string title, string unit)
    {
        // The smoothed curve runs over every step; both lines are then averaged down to at most MaxPoints points.
        int n = Math.Max(1, losses.Count), stride = Math.Max(1, (n + MaxPoints - 1) / MaxPoints), points = (n + stride - 1) / stride;
        var xs = new double[points];
        var raw = new double[points];
        var smooth = new double[points];
        // A moving average over about 50 steps, or a two-hundredth of a long run: readable at any length.
        double s = losses.Count > 0 ? losses[0] : 0, span = Math.Max(50, n / 200.0), keep = 1 - (1 / span);
        for (int i = 0; i < losses.Count; i++)
        {
            s = (keep * s) + ((1 - keep) * losses[i]);
            int bucket = i / stride, size = Math.Min(stride, losses.Count - (bucket * stride));
            xs[bucket] += (i + 1.0) / size;
            raw[bucket] += (double)losses[i] / size;
            smooth[bucket] += s / size;
        }

        double yMin = double.PositiveInfinity, yMax = double.NegativeInfinity;
        foreach (double v in smooth.Concat(heldOut.Select(h => h.Loss)))
        {
            yMin = Math.Min(yMin, v);
            yMax = Math.Max(yMax, v);
        }

        double pad = Math.Max((yMax - yMin) * 0.06, 0.01);
        (yMin, yMax) = (Math.Max(0, yMin - pad), yMax + pad);
        double xMin = 1, xMax = Math.Max(2, n);
        double plotW = Width - Left - Right, plotH = Height - Top - Bottom;
        double X(double step) => Left + ((step - xMin) / (xMax - xMin) * plotW);
        double Y(double loss) => Top + ((yMax - loss) / (yMax - yMin) * plotH);

        var svg = new StringBuilder();
        Append(svg, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        Append(svg, $"<title>bptt train: {Escape(title)}</title>\n");
        Append(svg, $"<rect width=\"{Width}\" height=\"{Height}\" fill=\"white\"/>\n");
        Append(svg, $"<defs><clipPath id=\"plot\"><rect x=\"{Left}\" y=\"{Top}\" width=\"{plotW}\" height=\"{plotH}\"/></clipPath></defs>\n");
        Append(svg, $"<text x=\"{Width / 2}\" y=\"26\" text-anchor=\"middle\" font-size=\"16\">bptt train: {Escape(title)}</text>\n");

        // Grid and tick labels.
        foreach (double t in Ticks(yMin, yMax, 6))
        {
            Append(svg, $"<line x1=\"{Left}\" x2=\"{Left + plotW}\" y1=\"{F(Y(t))}\" y2=\"{F(Y(t))}\" stroke=\"#e4e4e4\"/>\n");
            Append(svg, $"<text x=\"{Left - 6}\" y=\"{F(Y(t) + 4)}\" text-anchor=\"end\">{t.ToString("0.###", Inv)}</text>\n");
        }

        foreach (double t in Ticks(xMin, xMax, 8))
        {
            Append(svg, $"<line x1=\"{F(X(t))}\" x2=\"{F(X(t))}\" y1=\"{Top}\" y2=\"{Top + plotH}\" stroke=\"#e4e4e4\"/>\n");
            Append(svg, $"<text x=\"{F(X(t))}\" y=\"{Top + plotH + 18}\" text-anchor=\"middle\">{t.ToString("#,0", Inv)}</text>\n");
        }

        Append(svg, $"<rect x=\"{Left}\" y=\"{Top}\" width=\"{plotW}\" height=\"{plotH}\" fill=\"none\" stroke=\"#444\"/>\n");
        Append(svg, $"<text x=\"{Left + (plotW / 2)}\" y=\"{Height - 12}\" text-anchor=\"middle\">update</text>\n");
        Append(svg, $"<text transform=\"translate(18 {Top + (plotH / 2)}) rotate(-90)\" text-anchor=\"middle\">loss (nats per {unit})</text>\n");

        // The curves.
        string perStep = stride == 1 ? "training, per step" : string.Create(Inv, $"training, per {stride} steps");
        Polyline(svg, xs.Select((x, i) => (X(x), Y(raw[i]))), "#c4c4c4", 1);
        Polyline(svg, xs.Select((x, i) => (X(x), Y(smooth[i]))), "#2f6fa7", 2);
        if (heldOut.Count > 0)
        {
            Polyline(svg, heldOut.Select(h => (X(h.Step), Y(h.Loss))), "#d9480f", 2);
            foreach ((int step, double loss) in heldOut)
            {
                Append(svg, $"<circle cx=\"{F(X(step))}\" cy=\"{F(Y(loss))}\" r=\"3.5\" fill=\"#d9480f\"/>\n");
            }
        }

        // The legend, top right.
        var entries = new List<(string Label, string Color)> { (perStep, "#c4c4c4"), (string.Create(Inv, $"training, mean of ~{span:F0} steps"), "#2f6fa7") };
        if (heldOut.Count > 0)
        {
            entries.Add((string.Create(Inv, $"held-out (last: {heldOut[^1].Loss:F3})"), "#d9480f"));
        }

        double lx = Left + plotW - 240, ly = Top + 10;
        Append(svg, $"<rect x=\"{F(lx)}\" y=\"{F(ly)}\" width=\"230\" height=\"{(entries.Count * 18) + 8}\" fill=\"white\" fill-opacity=\"0.9\" stroke=\"#bbb\"/>\n");
        for (int k = 0; k < entries.Count; k++)
        {
            double y = ly + 14 + (k * 18);
            Append(svg, $"<line x1=\"{F(lx + 8)}\" x2=\"{F(lx + 30)}\" y1=\"{F(y - 4)}\" y2=\"{F(y - 4)}\" stroke=\"{entries[k].Color}\" stroke-width=\"2\"/>\n");
            Append(svg, $"<text x=\"{F(lx + 36)}\" y=\"{F(y)}\">{Escape(entries[k].Label)}</text>\n");
        }

        svg.Append("</svg>\n");
        return svg.ToString();
    }

    private static void Polyline(StringBuilder svg, IEnumerable<(double X, double Y)> points, string color, double width)
    {
        svg.Append("<polyline clip-path=\"url(#plot)\" fill=\"none\" stroke-linejoin=\"round\" stroke=\"").Append(color)
            .Append("\" stroke-width=\"").Append(width.ToString(Inv)).Append("\" points=\"");
        foreach ((double x, double y) in points)
        {
            // A spike far outside the plot is drawn at a bounded distance; the clip hides it either way.
            Append(svg, $"{F(x)},{F(Math.Clamp(y, -Height, 2 * Height))} ");
        }

        svg.Append("\"/>\n");
    }

    /// <summary>About <paramref name="count"/> round tick values (1, 2 or 5 times a power of ten apart) within [lo, hi].</summary>
    private static IEnumerable<double> Ticks(double lo, double hi, int count)
    {
        double raw = (hi - lo) / count, power = Math.Pow(10, Math.Floor(Math.Log10(raw))), step = power;
        foreach (double m in new[] { 1.0, 2.0, 5.0, 10.0 })
        {
            step = m * power;
            if (step >= raw)
            {
                break;
            }
        }

        for (double t = Math.Ceiling(lo / step) * step; t <= hi + (step * 1e-9); t += step)
        {
            yield return Math.Round(t / step) * step;
        }
    }

    private static string F(double v) => v.ToString("0.#", Inv);

    private static void Append(StringBuilder svg, FormattableString text) => svg.Append(text.ToString(Inv));

    /// <summary>Text for XML: markup characters escaped, and characters XML cannot hold (controls, lone surrogates) replaced by '?'.</summary>
    internal static string Escape(string text)
    {
        var escaped = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            bool pair = char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]);
            _ = c switch
            {
                '&' => escaped.Append("&amp;"),
                '<' => escaped.Append("&lt;"),
                '>' => escaped.Append("&gt;"),
                '"' => escaped.Append("&quot;"),
                _ when pair => escaped.Append(c).Append(text[++i]),
                _ when char.IsControl(c) || char.IsSurrogate(c) || c is '\uFFFE' or '\uFFFF' => escaped.Append('?'),
                _ => escaped.Append(c),
            };
        }

        return escaped.ToString();
    }
}
