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

/// The self-contained HTML report of `chorus compare` and `chorus report`.
///
/// Interface stub (session 2026-12-05): writes the summary table only. The plotted report
/// (inline SVG curves, mean and spread bands over seeds) replaces this body.
public enum ComparisonReport {
    /// Writes `url` (one HTML file, no external resources).
    /// - Parameters:
    ///   - groups: the lines to plot, one per label.
    ///   - title: the page title.
    ///   - summary: an optional table, `summary[0]` the header row, shown above the plots.
    public static func write(groups: [ReportGroup], title: String, summary: [[String]]?, to url: URL) throws {
        var html = "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>\(escape(title))</title></head><body>"
        html += "<h1>\(escape(title))</h1>"
        if let summary, let header = summary.first {
            html += "<table><tr>" + header.map { "<th>\(escape($0))</th>" }.joined() + "</tr>"
            for row in summary.dropFirst() { html += "<tr>" + row.map { "<td>\(escape($0))</td>" }.joined() + "</tr>" }
            html += "</table>"
        }
        html += "<ul>" + groups.map { "<li>\(escape($0.label)): \($0.runDirectories.count) run(s)</li>" }.joined() + "</ul>"
        html += "</body></html>\n"
        try Data(html.utf8).write(to: url, options: .atomic)
    }

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
