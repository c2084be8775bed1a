import Foundation

/// One line of a plot: a group's mean over its runs at each step, the spread band (min and max
/// over the runs) and the unsmoothed mean drawn faint. Every array has one entry per `steps`
/// entry; NaN marks a gap (no run of the group has a finite value there).
struct PlotSeries {
    var label: String
    /// Index of the group (colour and the legend toggle).
    var group: Int
    var steps: [Int]
    var mean: [Double]
    var low: [Double]
    var high: [Double]
    /// The unsmoothed mean (nil: the plot is not smoothed).
    var raw: [Double]?
    /// How many runs contributed.
    var runs: Int
}

/// Inline SVG line plots (no external resources): axes with rounded ticks, one coloured line
/// per group with its band, gaps where a value is missing or not finite. Coordinates stay
/// finite for any finite input, ±1e308 included.
enum SVGPlot {
    /// The Okabe–Ito palette (colour-blind safe), yellow last (weak on white); beyond 8 groups
    /// the colours repeat with a dash pattern.
    static let palette = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#C9B400"]

    static func color(_ group: Int) -> String { palette[group % palette.count] }
    static func dash(_ group: Int) -> String? { group < palette.count ? nil : ["6 3", "2 3", "8 3 2 3"][(group / palette.count - 1) % 3] }

    static let width = 520.0, height = 280.0
    static let left = 64.0, right = 14.0, top = 12.0, bottom = 38.0

    /// The `<svg>` of one plot. `id` names it (tests and anchors); `yLabel` is the axis title.
    static func render(id: String, series: [PlotSeries], yLabel: String) -> String {
        let finiteSteps = series.flatMap { s in s.steps.indices.filter { s.mean[$0].isFinite || s.low[$0].isFinite }.map { s.steps[$0] } }
        var ys: [Double] = []
        for s in series {
            ys += s.mean.filter(\.isFinite) + s.low.filter(\.isFinite) + s.high.filter(\.isFinite)
            if let r = s.raw { ys += r.filter(\.isFinite) }
        }
        guard let x0 = finiteSteps.min(), let x1 = finiteSteps.max(), let y0 = ys.min(), let y1 = ys.max() else { return "" }
        let (lo, hi) = paddedRange(y0, y1)
        let xLo = Double(x0), xHi = Double(x1 == x0 ? x0 + 1 : x1)
        let pw = width - left - right, ph = height - top - bottom
        func px(_ step: Int) -> Double { left + (Double(step) - xLo) / (xHi - xLo) * pw }
        func py(_ v: Double) -> Double { top + ph - (v / 2 - lo / 2) / (hi / 2 - lo / 2) * ph }

        var svg = "<svg class=\"plot\" id=\"\(ComparisonReport.escape(id))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\" aria-label=\"\(ComparisonReport.escape(yLabel)) over steps\">"
        svg += "<rect class=\"frame\" x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(pw))\" height=\"\(f(ph))\"/>"
        svg += axes(yTicks: ticks(lo, hi), y: py, xLo: xLo, xHi: xHi)
        for s in series {
            let c = color(s.group)
            let dashAttr = dash(s.group).map { " stroke-dasharray=\"\($0)\"" } ?? ""
            svg += "<g class=\"series\" data-group=\"\(s.group)\"><title>\(ComparisonReport.escape(s.label)) (\(s.runs) run\(s.runs == 1 ? "" : "s"))</title>"
            if s.runs > 1 {
                let band = bandPath(steps: s.steps, low: s.low, high: s.high, x: px, y: py)
                if !band.isEmpty { svg += "<path class=\"band\" d=\"\(band)\" fill=\"\(c)\"/>" }
            }
            if let r = s.raw {
                let d = linePath(steps: s.steps, values: r, x: px, y: py)
                if !d.isEmpty { svg += "<path class=\"raw\" d=\"\(d)\" stroke=\"\(c)\"/>" }
            }
            let d = linePath(steps: s.steps, values: s.mean, x: px, y: py)
            if !d.isEmpty { svg += "<path class=\"line\" d=\"\(d)\" stroke=\"\(c)\"\(dashAttr)/>" }
            // Markers where points are few (eval curves) or isolated (a lone point between gaps).
            let few = s.mean.filter(\.isFinite).count <= 40
            for i in s.steps.indices where s.mean[i].isFinite {
                let isolated = (i == 0 || !s.mean[i - 1].isFinite) && (i == s.steps.count - 1 || !s.mean[i + 1].isFinite)
                if few || isolated {
                    svg += "<circle class=\"marker\" cx=\"\(f(px(s.steps[i])))\" cy=\"\(f(py(s.mean[i])))\" r=\"2.6\" fill=\"\(c)\"/>"
                }
            }
            svg += "</g>"
        }
        svg += "</svg>"
        return svg
    }

    /// The frame's grid lines and tick labels (y at `yTicks` placed by `y`, x over the steps
    /// xLo…xHi) and the "step" axis label: the part every panel shares.
    static func axes(yTicks: [Double], y py: (Double) -> Double, xLo: Double, xHi: Double) -> String {
        let pw = width - left - right, ph = height - top - bottom
        var svg = ""
        for t in yTicks {
            let y = py(t)
            svg += "<line class=\"grid\" x1=\"\(f(left))\" x2=\"\(f(left + pw))\" y1=\"\(f(y))\" y2=\"\(f(y))\"/>"
            svg += "<text class=\"tick\" x=\"\(f(left - 6))\" y=\"\(f(y + 4))\" text-anchor=\"end\">\(label(t, ticks: yTicks))</text>"
        }
        for t in ticks(xLo, xHi, integer: true) {
            let x = left + (t - xLo) / (xHi - xLo) * pw
            svg += "<line class=\"grid\" x1=\"\(f(x))\" x2=\"\(f(x))\" y1=\"\(f(top))\" y2=\"\(f(top + ph))\"/>"
            svg += "<text class=\"tick\" x=\"\(f(x))\" y=\"\(f(top + ph + 16))\" text-anchor=\"middle\">\(Int(t))</text>"
        }
        svg += "<text class=\"axis\" x=\"\(f(left + pw / 2))\" y=\"\(f(height - 4))\" text-anchor=\"middle\">step</text>"
        return svg
    }

    /// The `<svg>` of a stacked-area panel: `layers` (bottom first, one per teacher) are
    /// fractions at `steps` (each layer's values has one entry per step) that sum to about 1;
    /// layer k fills the band between the sum of layers 0..<k and 0...k. A step where any layer
    /// is NaN is a gap. The y axis spans [0, 1] (or the largest sum, if above 1). Everything
    /// sits in one `<g class="series" data-group=group>`, so the legend toggles the panel.
    static func renderStacked(id: String, group: Int, steps: [Int], layers: [(label: String, values: [Double])], yLabel: String) -> String {
        let valid = steps.indices.filter { i in layers.allSatisfy { $0.values[i].isFinite && $0.values[i] >= 0 } }
        guard !layers.isEmpty, let first = valid.first, let last = valid.last else { return "" }
        // Cumulative sums: tops[k][i] = Σ_{j<=k} layers[j].values[i].
        var tops = [[Double]](repeating: [Double](repeating: .nan, count: steps.count), count: layers.count)
        for i in valid {
            var acc = 0.0
            for k in layers.indices { acc += layers[k].values[i]; tops[k][i] = acc }
        }
        let yHi = max(1, valid.map { tops[layers.count - 1][$0] }.max() ?? 1)
        guard yHi.isFinite else { return "" }
        let xLo = Double(steps[first]), xHi = Double(steps[last] == steps[first] ? steps[first] + 1 : steps[last])
        let pw = width - left - right, ph = height - top - bottom
        func px(_ step: Int) -> Double { left + (Double(step) - xLo) / (xHi - xLo) * pw }
        func py(_ v: Double) -> Double { top + ph - v / yHi * ph }

        var svg = "<svg class=\"plot stacked\" id=\"\(ComparisonReport.escape(id))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\" aria-label=\"\(ComparisonReport.escape(yLabel)) over steps\">"
        svg += "<rect class=\"frame\" x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(pw))\" height=\"\(f(ph))\"/>"
        svg += axes(yTicks: ticks(0, yHi), y: py, xLo: xLo, xHi: xHi)
        svg += "<g class=\"series\" data-group=\"\(group)\">"
        let zero = [Double](repeating: 0, count: steps.count)
        for (k, layer) in layers.enumerated() {
            let c = color(k)
            let low = k == 0 ? zero.indices.map { tops[0][$0].isFinite ? 0 : .nan } : tops[k - 1]
            svg += "<g class=\"layer\" data-teacher=\"\(k)\"><title>\(ComparisonReport.escape(layer.label))</title>"
            let band = bandPath(steps: steps, low: low, high: tops[k], x: px, y: py)
            if !band.isEmpty { svg += "<path class=\"area\" d=\"\(band)\" fill=\"\(c)\"/>" }
            let edge = linePath(steps: steps, values: tops[k], x: px, y: py)
            if !edge.isEmpty { svg += "<path class=\"line edge\" d=\"\(edge)\" stroke=\"\(c)\"/>" }
            // A lone valid step between gaps draws no band: mark it.
            for i in valid where (i == 0 || !tops[k][i - 1].isFinite) && (i == steps.count - 1 || !tops[k][i + 1].isFinite) {
                svg += "<line class=\"line edge\" x1=\"\(f(px(steps[i])))\" x2=\"\(f(px(steps[i])))\" y1=\"\(f(py(low[i])))\" y2=\"\(f(py(tops[k][i])))\" stroke=\"\(c)\" stroke-width=\"4\"/>"
            }
            svg += "</g>"
        }
        svg += "</g></svg>"
        return svg
    }

    /// The y range with 8% padding, kept finite. A flat series (its spread below 1e-9 of its
    /// magnitude: rounding in the smoothing, not a change) gets ±10% of its value, or ±1 at 0.
    static func paddedRange(_ y0: Double, _ y1: Double) -> (Double, Double) {
        var pad = (y1 / 2 - y0 / 2) * 0.16
        if y1 / 2 - y0 / 2 <= 0.5e-9 * max(abs(y0), abs(y1)) {
            pad = y0 == 0 && y1 == 0 ? 1 : max(abs(y0), abs(y1)) * 0.1
        }
        var lo = y0 - pad, hi = y1 + pad
        if !lo.isFinite { lo = y0 }
        if !hi.isFinite { hi = y1 }
        if lo == hi { lo = -Double.greatestFiniteMagnitude; hi = Double.greatestFiniteMagnitude }
        return (lo, hi)
    }

    /// About five round tick values inside [lo, hi] (1, 2 or 5 times a power of ten); three
    /// evenly spaced ones when the span is not a finite number.
    static func ticks(_ lo: Double, _ hi: Double, integer: Bool = false) -> [Double] {
        let span = hi - lo
        guard span.isFinite, span > 0 else { return [lo, lo / 2 + hi / 2, hi] }
        let rough = span / 5
        let mag = pow(10, floor(log10(rough)))
        let n = rough / mag
        var step = (n < 1.5 ? 1 : n < 3 ? 2 : n < 7 ? 5 : 10) * mag
        if integer { step = max(1, step.rounded()) }
        guard step.isFinite, step > 0 else { return [lo, hi] }
        var out: [Double] = []
        var t = (lo / step).rounded(.up) * step
        while t <= hi + step * 1e-9 && out.count < 12 {
            out.append(abs(t) < step * 1e-9 ? 0 : t)
            t += step
        }
        return out
    }

    /// A tick label: as many decimals as the tick spacing needs (0.995, 0.996, …), or three
    /// significant digits for very large or very small values.
    static func label(_ v: Double, ticks: [Double]) -> String {
        let step = ticks.count > 1 ? abs(ticks[1] - ticks[0]) : 0
        let big = ticks.map(abs).max() ?? 0
        guard step.isFinite, step >= 1e-6, big < 1e6 else { return String(format: "%.3g", v) }
        let decimals = max(0, Int((-log10(step)).rounded(.up)))
        return String(format: "%.\(decimals)f", v)
    }

    /// A coordinate with two decimals.
    static func f(_ v: Double) -> String { String(format: "%.2f", v) }

    /// "M x y L x y …", a new "M" after each gap (a NaN value).
    static func linePath(steps: [Int], values: [Double], x: (Int) -> Double, y: (Double) -> Double) -> String {
        var d = "", pen = false
        for (s, v) in zip(steps, values) {
            guard v.isFinite else { pen = false; continue }
            d += (pen ? " L" : (d.isEmpty ? "M" : " M")) + "\(f(x(s))) \(f(y(v)))"
            pen = true
        }
        return d
    }

    /// One closed polygon per run of finite (low, high) pairs: along the highs, back along the lows.
    static func bandPath(steps: [Int], low: [Double], high: [Double], x: (Int) -> Double, y: (Double) -> Double) -> String {
        var d = "", segment: [Int] = []
        func flush() {
            defer { segment = [] }
            guard segment.count > 1 else { return }
            d += (d.isEmpty ? "M" : " M") + segment.map { "\(f(x(steps[$0]))) \(f(y(high[$0])))" }.joined(separator: " L")
            d += " L" + segment.reversed().map { "\(f(x(steps[$0]))) \(f(y(low[$0])))" }.joined(separator: " L") + " Z"
        }
        for i in steps.indices {
            if low[i].isFinite && high[i].isFinite { segment.append(i) } else { flush() }
        }
        flush()
        return d
    }
}

/// Exponential moving average with bias correction (as TensorBoard's smoothing): s_n =
/// w·s_{n−1} + (1−w)·x_n, shown as s_n / (1 − wⁿ) over the n finite values so far. A NaN
/// input stays NaN (a gap) and leaves the average as it was.
func emaSmoothed(_ xs: [Double], weight w: Double) -> [Double] {
    var acc = 0.0, n = 0.0
    return xs.map { x in
        guard x.isFinite else { return .nan }
        acc = w * acc + (1 - w) * x
        n += 1
        let debias = 1 - pow(w, n)
        return debias > 0 ? acc / debias : x
    }
}
