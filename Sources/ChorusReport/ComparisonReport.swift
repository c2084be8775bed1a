import ChorusCore
import Foundation

/// One labelled set of run directories in a report: a strategy (or baseline) over its seeds.
/// Each directory is a `chorus train`/`chorus sft` run directory (metrics.jsonl, run.json).
public struct ReportGroup: Sendable {
    /// The line's name in plots and tables (e.g. "arithmetic", "sft-teacher").
    public var label: String
    /// The runs of this group, one per seed; plots show their mean and spread.
    public var runDirectories: [URL]

    public init(label: String, runDirectories: [URL]) {
        self.label = label
        self.runDirectories = runDirectories
    }
}

/// One summary table above a report's plots: an optional title (a sweep's axis) and its rows,
/// `rows[0]` the header.
public struct SummaryTable: Sendable {
    /// Shown above the table (escaped); nil: no title line.
    public var title: String?
    /// The cells as text, `rows[0]` the header; every row as wide as the header.
    public var rows: [[String]]

    /// A table of `rows` (header first) under `title`.
    public init(title: String?, rows: [[String]]) {
        self.title = title
        self.rows = rows
    }
}

/// The self-contained HTML report of `chorus compare` and `chorus report` (docs/report.md).
///
/// One HTML file with inline CSS, inline SVG plots and a few lines of JavaScript (the legend
/// toggles groups); nothing is loaded from elsewhere. Plots, x = step, one line per group:
/// each benchmark's mean@k and best@k (eval rows), then the train metrics `kl_k1`, `kl_k3`,
/// `grad_norm`, `student_entropy`, `reference_entropy`, `ppl_drift`, `masked_fraction` and
/// `loss`. A group's line is the mean over its runs of each run's EMA-smoothed series (weight
/// `evalSmoothing` for eval curves, `trainSmoothing` for train metrics), the band spans the
/// smoothed minimum to maximum over its runs, and the faint line is the unsmoothed mean. A
/// group that never logged a metric draws no line there; NaN and null values are gaps.
/// Below them, "Teacher weights": for each group whose runs logged the aggregator's weights
/// (`weight/NAME`), one stacked-area panel, a band per teacher (weakest at the bottom) over
/// training, the mean over the group's runs (unsmoothed: a curriculum's switch stays sharp).
public enum ComparisonReport {
    /// EMA weight of the eval curves (few points).
    public static let evalSmoothing = 0.6
    /// EMA weight of the train metrics (one point per step).
    public static let trainSmoothing = 0.9
    /// The marker in the page's head by which `chorus report` knows a file is a report it may replace.
    public static let generatorMarker = "<meta name=\"generator\" content=\"chorus report\">"

    /// The train metrics plotted, in order: (metrics.jsonl key, plot title, what it shows).
    public static let trainPlots: [(key: String, title: String, about: String)] = [
        ("kl_k1", "Train KL (k1)", "mean over response tokens of log π_θ − log π_ref (can dip below 0)"),
        ("kl_k3", "Train KL (k3)", "mean of 1/r − 1 + log r, r = π_θ/π_ref (≥ 0, lower variance)"),
        ("grad_norm", "Gradient norm", "global gradient norm before clipping"),
        ("student_entropy", "Student entropy", "mean entropy (nats) of the student at response tokens"),
        ("reference_entropy", "Reference entropy", "mean entropy (nats) of the aggregated reference"),
        ("ppl_drift", "PPL drift", "mean log π_rollout − log π_learner (rollout/learner mismatch)"),
        ("masked_fraction", "Masked fraction", "fraction of tokens the rollout correction masked"),
        ("loss", "Loss", "the step's training loss"),
    ]

    /// Writes `url` (one HTML file, no external resources), atomically.
    /// - Parameters:
    ///   - groups: the lines to plot, one per label.
    ///   - title: the page title.
    ///   - summary: an optional table, `summary[0]` the header row, shown above the plots.
    /// - Throws: `ReportError.noReadableRuns` when no run of any group has a readable
    ///   metrics.jsonl (other unreadable runs and malformed lines are listed under "Notes"),
    ///   or the write's `InputFileError`.
    public static func write(groups: [ReportGroup], title: String, summary: [[String]]?, to url: URL) throws {
        try write(groups: groups, title: title, summaries: summary.map { [SummaryTable(title: nil, rows: $0)] } ?? [], to: url)
    }

    /// Writes `url` as above with several summary tables under "Summary", each after its title
    /// (a sweep: one per axis).
    public static func write(groups: [ReportGroup], title: String, summaries: [SummaryTable], to url: URL) throws {
        let html = try render(groups: groups, title: title, summaries: summaries)
        try AtomicFile.write(Data(html.utf8), to: url)
    }

    /// The page's HTML (what `write` writes).
    public static func render(groups: [ReportGroup], title: String, summary: [[String]]?) throws -> String {
        try render(groups: groups, title: title, summaries: summary.map { [SummaryTable(title: nil, rows: $0)] } ?? [])
    }

    /// The page's HTML with several titled summary tables.
    public static func render(groups: [ReportGroup], title: String, summaries: [SummaryTable]) throws -> String {
        var notes: [String] = [], problems: [String] = []
        var runs: [[RunMetrics]] = []
        for g in groups {
            var read: [RunMetrics] = []
            for d in g.runDirectories {
                do {
                    let m = try RunMetrics.read(d)
                    read.append(m)
                    notes += m.notes
                } catch {
                    problems.append("\(error)")
                    notes.append("group \(g.label): run skipped: \(error)")
                }
            }
            if g.runDirectories.isEmpty { notes.append("group \(g.label): no run directories") }
            runs.append(read)
        }
        if runs.allSatisfy(\.isEmpty) {
            throw ReportError.noReadableRuns(problems.isEmpty ? ["no run directories were given"] : problems)
        }

        var html = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\(generatorMarker)"
        html += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>\(escape(title))</title><style>\(css)</style></head><body>\n"
        html += "<h1>\(escape(title))</h1>\n"
        let runCount = runs.reduce(0) { $0 + $1.count }
        html += "<p class=\"about\">\(runCount) run\(runCount == 1 ? "" : "s") in \(groups.count) group\(groups.count == 1 ? "" : "s"). "
            + "Each line is the mean over a group's runs of the EMA-smoothed metric (weight \(evalSmoothing) for evaluations, "
            + "\(trainSmoothing) for training metrics, bias-corrected); the shaded band spans the minimum to the maximum over the "
            + "group's runs (seeds); the faint line is the unsmoothed mean. Gaps are missing or non-finite values. "
            + "Click a legend entry to hide or show its group.</p>\n"
        let tables = summaries.filter { !$0.rows.isEmpty }
        if !tables.isEmpty { html += "<h2>Summary</h2>\n" }
        for table in tables {
            if let t = table.title { html += "<h3 class=\"summary-title\">\(escape(t))</h3>\n" }
            html += "<table class=\"summary\"><thead><tr>" + table.rows[0].map { "<th>\(escape($0))</th>" }.joined() + "</tr></thead><tbody>"
            for row in table.rows.dropFirst() { html += "<tr>" + row.map { "<td>\(escape($0))</td>" }.joined() + "</tr>" }
            html += "</tbody></table>\n"
        }
        html += legend(groups: groups, runs: runs)
        html += runTable(groups: groups, runs: runs)

        let benchmarks = Set(runs.joined().flatMap(\.benchmarks)).sorted()
        var absent: [String] = []
        if !benchmarks.isEmpty {
            html += "<h2>Evaluation</h2>\n<div class=\"plots\">"
            for b in benchmarks {
                let ks = Set(runs.joined().compactMap { $0.evalK[b] }).sorted()
                let k = ks.count == 1 ? "\(ks[0])" : "k"
                for (key, name) in [("mean_at_k", "mean@\(k)"), ("best_at_k", "best@\(k)")] {
                    let series = lines(RunMetrics.evalPrefix + b + "/" + key, groups: groups, runs: runs, smoothing: evalSmoothing)
                    if series.isEmpty { continue }
                    html += figure(id: "plot-eval-\(b)-\(key)", title: "\(b): \(name)", about: key == "mean_at_k"
                                   ? "mean reward over the k samples of every problem" : "fraction of problems with a correct sample among k",
                                   series: series)
                }
            }
            html += "</div>\n"
        }
        html += "<h2>Training</h2>\n<div class=\"plots\">"
        for p in trainPlots {
            let series = lines(p.key, groups: groups, runs: runs, smoothing: trainSmoothing)
            if series.isEmpty { absent.append(p.key); continue }
            html += figure(id: "plot-\(p.key)", title: p.title, about: p.about, series: series)
        }
        html += "</div>\n"
        let panels = groups.indices.map { weightsFigure(group: $0, label: groups[$0].label, runs: runs[$0]) }.filter { !$0.isEmpty }
        if !panels.isEmpty {
            html += "<h2>Teacher weights</h2>\n<p class=\"about\">The aggregator's weight of each teacher in the step's references "
                + "(metrics <code>weight/NAME</code>), stacked so the bands fill [0, 1], weakest teacher at the bottom; the mean over "
                + "the group's runs, unsmoothed. A curriculum's stages show as the bands' changes over training.</p>\n"
                + "<div class=\"plots\">" + panels.joined() + "</div>\n"
        }
        if !absent.isEmpty { notes.append("not logged by any run (no plot): " + absent.joined(separator: ", ")) }
        if !notes.isEmpty {
            html += "<h2>Notes</h2>\n<ul class=\"notes\">" + notes.map { "<li>\(escape($0))</li>" }.joined() + "</ul>\n"
        }
        html += "<script>\(script)</script>\n</body></html>\n"
        return html
    }

    /// One `PlotSeries` per group that logged `key` somewhere: each run smoothed on its own
    /// steps, then mean, min and max over the runs with a finite value at each step.
    static func lines(_ key: String, groups: [ReportGroup], runs: [[RunMetrics]], smoothing: Double) -> [PlotSeries] {
        var out: [PlotSeries] = []
        for (gi, g) in groups.enumerated() {
            let perRun = runs[gi].map { $0.points(key) }.filter { $0.contains { $0.value.isFinite } }
            if perRun.isEmpty { continue }
            let steps = Set(perRun.joined().map(\.step)).sorted()
            let index = Dictionary(uniqueKeysWithValues: steps.enumerated().map { ($1, $0) })
            var smooth = [[Double]](repeating: [Double](repeating: .nan, count: steps.count), count: perRun.count)
            var raw = smooth
            for (r, pts) in perRun.enumerated() {
                let s = emaSmoothed(pts.map(\.value), weight: smoothing)
                for (p, v) in zip(pts, s) { smooth[r][index[p.step]!] = v; raw[r][index[p.step]!] = p.value }
            }
            func across(_ rows: [[Double]], _ f: ([Double]) -> Double) -> [Double] {
                steps.indices.map { i in
                    let xs = rows.map { $0[i] }.filter(\.isFinite)
                    return xs.isEmpty ? .nan : f(xs)
                }
            }
            // The mean of finite values can overflow (two values near ±1e308): halve first.
            let meanOf: ([Double]) -> Double = { xs in xs.reduce(0) { $0 + $1 / Double(xs.count) } }
            out.append(PlotSeries(label: g.label, group: gi, steps: steps, mean: across(smooth, meanOf),
                                  low: across(smooth) { $0.min()! }, high: across(smooth) { $0.max()! },
                                  raw: across(raw, meanOf), runs: perRun.count))
        }
        return out
    }

    static func figure(id: String, title: String, about: String, series: [PlotSeries]) -> String {
        let svg = SVGPlot.render(id: id, series: series, yLabel: title)
        if svg.isEmpty { return "" }
        return "<figure class=\"plot-figure\"><figcaption><b>\(escape(title))</b> <span>\(escape(about))</span></figcaption>\(svg)</figure>"
    }

    /// The stacked teacher-weight panel of one group ("" when none of its runs logged
    /// `weight/NAME`): at each step, each teacher's mean over the runs with a finite value.
    static func weightsFigure(group gi: Int, label: String, runs: [RunMetrics]) -> String {
        var teachers: [String] = []
        for m in runs { for t in m.weightTeachers where !teachers.contains(t) { teachers.append(t) } }
        if teachers.isEmpty { return "" }
        let keys = teachers.map { RunMetrics.weightPrefix + $0 }
        let steps = Set(runs.flatMap { m in keys.flatMap { m.points($0).map(\.step) } }).sorted()
        let layers = zip(teachers, keys).map { name, key -> (label: String, values: [Double]) in
            let perRun = runs.map { Dictionary($0.points(key).map { ($0.step, $0.value) }, uniquingKeysWith: { $1 }) }
            return (name, steps.map { s in
                let xs = perRun.compactMap { $0[s] }.filter(\.isFinite)
                return xs.isEmpty ? .nan : xs.reduce(0) { $0 + $1 / Double(xs.count) }
            })
        }
        let title = "Teacher weights: \(label)"
        let svg = SVGPlot.renderStacked(id: "plot-weights-\(gi)", group: gi, steps: steps, layers: layers, yLabel: title)
        if svg.isEmpty { return "" }
        let key = teachers.enumerated().map { k, t in
            "<span class=\"swatch\"><svg width=\"10\" height=\"10\" aria-hidden=\"true\"><rect width=\"10\" height=\"10\" fill=\"\(SVGPlot.color(k))\"/></svg> \(escape(t))</span>"
        }.joined(separator: " ")
        return "<figure class=\"plot-figure weights\"><figcaption><b>\(escape(title))</b> <span>\(runs.count) run\(runs.count == 1 ? "" : "s"); bottom to top: </span>\(key)</figcaption>\(svg)</figure>"
    }

    static func legend(groups: [ReportGroup], runs: [[RunMetrics]]) -> String {
        var h = "<div class=\"legend\" id=\"legend\">"
        for (i, g) in groups.enumerated() {
            let dash = SVGPlot.dash(i).map { " stroke-dasharray=\"\($0)\"" } ?? ""
            h += "<button type=\"button\" class=\"legend-item\" data-group=\"\(i)\" title=\"show or hide this group\">"
                + "<svg width=\"28\" height=\"12\" aria-hidden=\"true\"><line x1=\"1\" y1=\"6\" x2=\"27\" y2=\"6\" stroke=\"\(SVGPlot.color(i))\" stroke-width=\"3\"\(dash)/></svg>"
                + "\(escape(g.label)) <span class=\"n\">(\(runs[i].count) run\(runs[i].count == 1 ? "" : "s"))</span></button>"
        }
        return h + "</div>\n"
    }

    static func runTable(groups: [ReportGroup], runs: [[RunMetrics]]) -> String {
        var h = "<details class=\"runs\"><summary>Runs</summary><table><thead><tr><th>group</th><th>run directory</th><th>kind</th><th>aggregator</th><th>seed</th><th>last step</th></tr></thead><tbody>"
        for (i, g) in groups.enumerated() {
            for m in runs[i] {
                let s = m.settings
                h += "<tr><td>\(escape(g.label))</td><td>\(escape(m.directory.path))</td><td>\(escape(s["kind"] ?? ""))</td>"
                    + "<td>\(escape(s["aggregator"] ?? ""))</td><td>\(escape(s["seed"] ?? ""))</td><td>\(m.lastStep.map(String.init) ?? "")</td></tr>"
            }
        }
        return h + "</tbody></table></details>\n"
    }

    static let css = """
    body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1b1b1b;background:#fff;max-width:1700px}
    h1{font-size:1.5em;margin:0 0 8px}h2{font-size:1.15em;margin:22px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
    .about{color:#555;font-size:.9em;max-width:70em}
    table{border-collapse:collapse;font-size:.88em}th,td{border:1px solid #d8d8d8;padding:3px 8px;text-align:left}
    th{background:#f3f3f3}.summary td{font-variant-numeric:tabular-nums}
    .legend{display:flex;flex-wrap:wrap;gap:6px;margin:12px 0;position:sticky;top:0;background:#fff;padding:6px 0;z-index:1}
    .legend-item{display:inline-flex;align-items:center;gap:6px;border:1px solid #ccc;border-radius:4px;background:#fafafa;padding:3px 8px;font:inherit;font-size:.9em;cursor:pointer}
    .legend-item.off{opacity:.35}.legend-item .n{color:#777}
    .plots{display:flex;flex-wrap:wrap;gap:14px}
    .plot-figure{margin:0;border:1px solid #e3e3e3;border-radius:4px;padding:6px}
    figcaption{font-size:.9em;margin:0 0 2px 4px;max-width:510px}figcaption span{color:#666;font-size:.9em}
    svg.plot .frame{fill:none;stroke:#bbb}svg.plot .grid{stroke:#eee}
    svg.plot .tick{font-size:10px;fill:#555}svg.plot .axis{font-size:11px;fill:#333}
    svg.plot .line{fill:none;stroke-width:2;stroke-linejoin:round}svg.plot .raw{fill:none;stroke-width:1;stroke-opacity:.3}
    svg.plot .band{fill-opacity:.16;stroke:none}svg.plot .series.hidden{display:none}
    svg.plot .area{fill-opacity:.55;stroke:none}svg.plot .edge{stroke-width:1.2}.swatch{white-space:nowrap;font-size:.9em}
    .notes{color:#7a4b00;font-size:.88em}details.runs{margin:6px 0 0;font-size:.9em}
    """

    /// Legend clicks toggle a group's lines in every plot.
    static let script = """
    (function(){var items=document.querySelectorAll('.legend-item');for(var i=0;i<items.length;i++){items[i].addEventListener('click',function(e){var b=e.currentTarget;var g=b.getAttribute('data-group');b.classList.toggle('off');var s=document.querySelectorAll('svg.plot .series[data-group="'+g+'"]');for(var j=0;j<s.length;j++){s[j].classList.toggle('hidden');}});}})();
    """

    /// `&`, `<`, `>`, `"` and `'` as HTML entities.
    public static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }
}
