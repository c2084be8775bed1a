import ChorusCore
import ChorusTestSupport
import Foundation
import XCTest
@testable import ChorusReport

/// The report: reading metrics (damaged files included), grouping, plots, escaping, output rules.
final class ComparisonReportTests: XCTestCase {
    func testEscape() {
        XCTAssertEqual(ComparisonReport.escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;")
    }

    /// Every number in every path's `d` and every coordinate attribute is finite.
    func assertFiniteCoordinates(_ html: String, file: StaticString = #filePath, line: UInt = #line) {
        for bad in ["nan", "inf", "NaN", "Inf"] {
            for attr in [" d=\"", " cx=\"", " cy=\"", " x1=\"", " y1=\"", " y=\""] {
                var rest = html[...]
                while let r = rest.range(of: attr) {
                    let value = rest[r.upperBound...].prefix { $0 != "\"" }
                    XCTAssertFalse(value.contains(bad), "non-finite coordinate in\(attr)\(value.prefix(80))", file: file, line: line)
                    rest = rest[r.upperBound...]
                }
            }
        }
    }

    /// Paths of the plot `id`.
    func paths(_ html: String, plot id: String, cls: String = "line") -> [String] {
        guard let start = html.range(of: "id=\"\(id)\"") else { return [] }
        let svg = html[start.upperBound...].prefix { _ in true }
        let body = svg[..<(svg.range(of: "</svg>")?.lowerBound ?? svg.endIndex)]
        var out: [String] = [], rest = body
        while let r = rest.range(of: "<path class=\"\(cls)\" d=\"") {
            let d = rest[r.upperBound...].prefix { $0 != "\"" }
            out.append(String(d))
            rest = rest[r.upperBound...]
        }
        return out
    }

    func testMalformedAndTornLinesAreSkippedWithANote() throws {
        let dir = temporaryDirectory(self)
        var rows = syntheticRows(steps: 20)
        rows.insert("{oops", at: 3)
        rows.insert("[1, 2]", at: 6)
        rows.insert("{\"no_step\": 1}", at: 8)
        let run = try writeRun(dir.appendingPathComponent("a"), rows: rows, tail: "{\"step\": 21, \"lo")
        let m = try RunMetrics.read(run)
        XCTAssertEqual(m.points("loss").count, 20)
        XCTAssertEqual(m.points(RunMetrics.evalPrefix + "add3/mean_at_k").map(\.step), [0, 10, 20])
        XCTAssertEqual(m.notes.count, 1)
        XCTAssertTrue(m.notes[0].contains("skipped 4 malformed lines"), m.notes[0])
        XCTAssertTrue(m.notes[0].contains("incomplete"), m.notes[0])
        let html = try ComparisonReport.render(groups: [ReportGroup(label: "a", runDirectories: [run])], title: "t", summary: nil)
        XCTAssertTrue(html.contains("skipped 4 malformed lines"))
        XCTAssertFalse(paths(html, plot: "plot-loss").isEmpty)
    }

    func testNoReadableRunIsAnErrorButOneUnreadableRunIsANote() throws {
        let dir = temporaryDirectory(self)
        let empty = dir.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let blank = try writeRun(dir.appendingPathComponent("blank"), rows: [], tail: "\n\n")
        let garbage = try writeRun(dir.appendingPathComponent("garbage"), rows: ["nope", "{\"x\": 1}"])
        for groups in [[ReportGroup(label: "e", runDirectories: [empty])], [ReportGroup(label: "b", runDirectories: [blank, garbage])], [],
                       [ReportGroup(label: "none", runDirectories: [])]] {
            XCTAssertThrowsError(try ComparisonReport.render(groups: groups, title: "t", summary: nil)) { e in
                XCTAssertTrue("\(e)".hasPrefix("no run could be read"), "\(e)")
                XCTAssertFalse("\(e)".contains("\n"))
            }
        }
        let good = try writeRun(dir.appendingPathComponent("good"), rows: syntheticRows(steps: 10))
        let html = try ComparisonReport.render(groups: [ReportGroup(label: "g", runDirectories: [good, empty])], title: "t", summary: nil)
        XCTAssertTrue(html.contains("run skipped: \(empty.path): "), "the unreadable run is named in the notes")
        XCTAssertTrue(html.contains("g <span class=\"n\">(1 run)</span>"))
    }

    func testNullAndNonFiniteValuesAreGaps() throws {
        let dir = temporaryDirectory(self)
        let rows = (1...9).map { s -> String in
            let v = s == 5 ? "null" : s == 7 ? "1e999" : "\(Double(s) * 0.1)"
            return "{\"step\": \(s), \"kl_k1\": \(v), \"loss\": \(s == 3 ? "-1e999" : "1")}"
        }
        let run = try writeRun(dir.appendingPathComponent("r"), rows: rows)
        let m = try RunMetrics.read(run)
        // 1e999 parses to infinity or fails: either way no finite value at steps 5 and 7.
        XCTAssertTrue(m.points("kl_k1").filter { [5, 7].contains($0.step) }.allSatisfy { !$0.value.isFinite })
        let html = try ComparisonReport.render(groups: [ReportGroup(label: "r", runDirectories: [run])], title: "t", summary: nil)
        assertFiniteCoordinates(html)
        let d = try XCTUnwrap(paths(html, plot: "plot-kl_k1").first)
        XCTAssertGreaterThanOrEqual(d.components(separatedBy: "M").count - 1, 2, "a gap starts a new subpath: \(d)")
    }

    func testHugeValuesKeepFiniteCoordinates() throws {
        let dir = temporaryDirectory(self)
        let rows = (1...6).map { s in "{\"step\": \(s), \"grad_norm\": \(s % 2 == 0 ? "1.7e308" : "-1.7e308"), \"loss\": 1e300, \"kl_k1\": 5e-324}" }
        let a = try writeRun(dir.appendingPathComponent("a"), rows: rows)
        let b = try writeRun(dir.appendingPathComponent("b"), rows: rows.map { $0.replacingOccurrences(of: "1e300", with: "-1e300") })
        let html = try ComparisonReport.render(groups: [ReportGroup(label: "ab", runDirectories: [a, b])], title: "t", summary: nil)
        assertFiniteCoordinates(html)
        for id in ["plot-grad_norm", "plot-loss", "plot-kl_k1"] { XCTAssertFalse(paths(html, plot: id).isEmpty, id) }
    }

    func testHostileLabelsTitlesAndNamesAreEscaped() throws {
        let dir = temporaryDirectory(self)
        let row = "{\"step\": 0, \"eval\": {\"<img src=x onerror=alert(1)>\": {\"mean_at_k\": 0.5, \"best_at_k\": 1, \"k\": 4}}}"
        let run = try writeRun(dir.appendingPathComponent("r"), rows: [row, "{\"step\": 1, \"loss\": 1}", "{\"step\": 2, \"loss\": 0.5}"])
        let html = try ComparisonReport.render(
            groups: [ReportGroup(label: "<script>alert('x')</script>", runDirectories: [run])], title: "\"><script>alert(2)</script>",
            summary: [["<b>h</b>"], ["</table><script>alert(3)</script>"]])
        XCTAssertEqual(html.components(separatedBy: "<script>").count - 1, 1, "only the page's own script")
        XCTAssertFalse(html.contains("<img"))
        XCTAssertFalse(html.contains("<b>h</b>"))
        XCTAssertTrue(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"))
    }

    /// A sweep's summary: one titled table per axis, in order, titles and cells escaped; the
    /// one-table form (a comparison of strategies) has no title line; empty tables are left out.
    func testTitledSummaryTables() throws {
        let dir = temporaryDirectory(self)
        let run = try writeRun(dir.appendingPathComponent("r"), rows: syntheticRows(steps: 3))
        let groups = [ReportGroup(label: "default", runDirectories: [run])]
        let html = try ComparisonReport.render(groups: groups, title: "t", summaries: [
            SummaryTable(title: "sweep rollout.group_size: the run file's value 4", rows: [["rollout.group_size", "flags"], ["4 (default)", "—"]]),
            SummaryTable(title: "<script>alert(1)</script>", rows: [["k", "flags"], ["</td><script>", "—"]]),
            SummaryTable(title: "empty", rows: []),
        ])
        XCTAssertEqual(html.components(separatedBy: "<script>").count - 1, 1, "only the page's own script")
        XCTAssertEqual(html.components(separatedBy: "<h2>Summary</h2>").count - 1, 1)
        let first = try XCTUnwrap(html.range(of: "<h3 class=\"summary-title\">sweep rollout.group_size: the run file&#39;s value 4</h3>\n<table class=\"summary\"><thead><tr><th>rollout.group_size</th><th>flags</th></tr></thead><tbody><tr><td>4 (default)</td><td>—</td></tr></tbody></table>"))
        let second = try XCTUnwrap(html.range(of: "<h3 class=\"summary-title\">&lt;script&gt;alert(1)&lt;/script&gt;</h3>"))
        XCTAssertLessThan(first.lowerBound, second.lowerBound)
        XCTAssertFalse(html.contains(">empty</h3>"))
        let plain = try ComparisonReport.render(groups: groups, title: "t", summary: [["strategy"], ["a (default)"]])
        XCTAssertFalse(plain.contains("<h3"))
        XCTAssertTrue(plain.contains("<h2>Summary</h2>\n<table class=\"summary\"><thead><tr><th>strategy</th></tr></thead><tbody><tr><td>a (default)</td></tr></tbody></table>"))
        XCTAssertFalse(try ComparisonReport.render(groups: groups, title: "t", summaries: []).contains("<h2>Summary</h2>"))
    }

    func testGroupsOfRunsSeedsAndACompareOutput() throws {
        let dir = temporaryDirectory(self)
        let cmp = dir.appendingPathComponent("cmp")
        for s in [0, 1, 10, 2] { try writeRun(cmp.appendingPathComponent("arith/seed-\(s)"), rows: syntheticRows(steps: 5)) }
        try writeRun(cmp.appendingPathComponent("geo/seed-0"), rows: syntheticRows(steps: 5))
        try writeRun(cmp.appendingPathComponent("sft"), rows: syntheticRows(steps: 5, kl: false))
        try FileManager.default.createDirectory(at: cmp.appendingPathComponent("notes"), withIntermediateDirectories: true)
        let all = try ReportInputs.groups(paths: [cmp])
        XCTAssertEqual(all.map(\.label), ["arith", "geo", "sft"])
        XCTAssertEqual(all[0].runDirectories.map(\.lastPathComponent), ["seed-0", "seed-1", "seed-2", "seed-10"])
        let one = try ReportInputs.groups(paths: [cmp.appendingPathComponent("arith"), cmp.appendingPathComponent("arith/seed-1")])
        XCTAssertEqual(one.map(\.label), ["arith", "seed-1"])
        XCTAssertEqual(one[0].runDirectories.count, 4)
        // Two runs of one name get their parents' names.
        try writeRun(dir.appendingPathComponent("x/out"), rows: syntheticRows(steps: 3))
        try writeRun(dir.appendingPathComponent("y/out"), rows: syntheticRows(steps: 3))
        let twins = try ReportInputs.groups(paths: [dir.appendingPathComponent("x/out"), dir.appendingPathComponent("y/out")])
        XCTAssertEqual(twins.map(\.label), ["x/out", "y/out"])
        try writeRun(dir.appendingPathComponent("x/geo/seed-0"), rows: syntheticRows(steps: 3))
        try writeRun(dir.appendingPathComponent("y/geo/seed-0"), rows: syntheticRows(steps: 3))
        let seedTwins = try ReportInputs.groups(paths: [dir.appendingPathComponent("x/geo"), dir.appendingPathComponent("y/geo")])
        XCTAssertEqual(seedTwins.map(\.label), ["x/geo", "y/geo"])
        let explicit = try ReportInputs.groups(paths: [], explicit: [try ReportInputs.parseGroup("mine=\(dir.path)/x/out, \(dir.path)/y/out")])
        XCTAssertEqual(explicit.map(\.label), ["mine"])
        XCTAssertEqual(explicit[0].runDirectories.count, 2)
        assertThrows(try ReportInputs.groups(paths: [dir.appendingPathComponent("nowhere")]), containing: ["nowhere", "no such directory"])
        assertThrows(try ReportInputs.groups(paths: [cmp.appendingPathComponent("notes")]), containing: ["notes", "holds no runs"])
        assertThrows(try ReportInputs.parseGroup("nodirs="), containing: ["--group", "no run directories"])
        assertThrows(try ReportInputs.parseGroup("x"), containing: ["--group", "NAME=DIR"])
    }

    func testOutputRules() throws {
        let dir = temporaryDirectory(self)
        let run = try writeRun(dir.appendingPathComponent("run"), rows: syntheticRows(steps: 3))
        assertThrows(try ReportInputs.checkOutput(run.appendingPathComponent("report.html"), runs: [run]), containing: ["inside the run directory"])
        assertThrows(try ReportInputs.checkOutput(run.appendingPathComponent("metrics.jsonl"), runs: [run]), containing: ["inside the run directory"])
        assertThrows(try ReportInputs.checkOutput(dir.appendingPathComponent("run"), runs: []), containing: ["is a directory"])
        assertThrows(try ReportInputs.checkOutput(dir.appendingPathComponent("no/such/x.html"), runs: []), containing: ["does not exist"])
        let other = dir.appendingPathComponent("notes.html")
        try "<html>mine</html>".write(to: other, atomically: true, encoding: .utf8)
        assertThrows(try ReportInputs.checkOutput(other, runs: [run]), containing: ["not a page written by chorus"])
        let page = dir.appendingPathComponent("report.html")
        try ComparisonReport.write(groups: [ReportGroup(label: "r", runDirectories: [run])], title: "t", summary: nil, to: page)
        XCTAssertNoThrow(try ReportInputs.checkOutput(page, runs: [run]), "a report may be replaced")
    }

    func testSmoothingTicksAndPaths() {
        let s = emaSmoothed([1, 1, .nan, 3], weight: 0.5)
        XCTAssertEqual(s[0], 1)
        XCTAssertEqual(s[1], 1)
        XCTAssertTrue(s[2].isNaN)
        // acc = 0.75 after two ones (the NaN leaves it), then 0.5·0.75 + 0.5·3 = 1.875, debiased by 1 − 0.5³.
        XCTAssertEqual(s[3], 1.875 / 0.875, accuracy: 1e-12)
        XCTAssertEqual(SVGPlot.ticks(0, 1).count, 6)
        XCTAssertEqual(SVGPlot.ticks(-1.7e308, 1.7e308).count, 3)
        let t = SVGPlot.ticks(0.9951, 0.9999)
        XCTAssertEqual(Set(t.map { SVGPlot.label($0, ticks: t) }).count, t.count, "distinct labels for close ticks: \(t)")
        // A constant series smoothed with rounding noise is drawn flat, mid-plot, with distinct tick labels.
        let (lo, hi) = SVGPlot.paddedRange(0.995 - 1e-16, 0.995)
        XCTAssertEqual(lo, 0.995 - 0.0995, accuracy: 1e-12)
        XCTAssertEqual(hi, 0.995 + 0.0995, accuracy: 1e-12)
        let flat = SVGPlot.ticks(lo, hi)
        XCTAssertEqual(Set(flat.map { SVGPlot.label($0, ticks: flat) }).count, flat.count)
        let d = SVGPlot.linePath(steps: [1, 2, 3, 4, 5], values: [1, 2, .nan, 4, 5], x: Double.init, y: { $0 })
        XCTAssertEqual(d, "M1.00 1.00 L2.00 2.00 M4.00 4.00 L5.00 5.00")
        let band = SVGPlot.bandPath(steps: [1, 2, 3], low: [0, 0, .nan], high: [1, 2, 3], x: Double.init, y: { $0 })
        XCTAssertEqual(band, "M1.00 1.00 L2.00 2.00 L2.00 0.00 L1.00 0.00 Z")
    }

    /// The group line is the mean of each run's smoothed series; the band its min and max.
    func testGroupMeanAndBand() throws {
        let dir = temporaryDirectory(self)
        let a = try writeRun(dir.appendingPathComponent("a"), rows: ["{\"step\": 1, \"loss\": 1}", "{\"step\": 2, \"loss\": 1}"])
        let b = try writeRun(dir.appendingPathComponent("b"), rows: ["{\"step\": 1, \"loss\": 3}", "{\"step\": 3, \"loss\": 5}"])
        let runs = [[try RunMetrics.read(a), try RunMetrics.read(b)]]
        let s = try XCTUnwrap(ComparisonReport.lines("loss", groups: [ReportGroup(label: "g", runDirectories: [a, b])], runs: runs, smoothing: 0).first)
        XCTAssertEqual(s.steps, [1, 2, 3])
        XCTAssertEqual(s.mean, [2, 1, 5])
        XCTAssertEqual(s.low, [1, 1, 5])
        XCTAssertEqual(s.high, [3, 1, 5])
        XCTAssertEqual(s.runs, 2)
        XCTAssertTrue(ComparisonReport.lines("kl_k1", groups: [ReportGroup(label: "g", runDirectories: [a, b])], runs: runs, smoothing: 0).isEmpty)
    }

    /// The attribute `attr` of every element `<tag class="cls"` inside the plot `id`.
    func attributes(_ html: String, plot id: String, tag: String = "path", cls: String, attr: String = "d") -> [String] {
        guard let start = html.range(of: "id=\"\(id)\"") else { return [] }
        let svg = html[start.upperBound...]
        var rest = svg[..<(svg.range(of: "</svg>")?.lowerBound ?? svg.endIndex)]
        var out: [String] = []
        while let r = rest.range(of: "<\(tag) class=\"\(cls)\"") {
            let el = rest[r.upperBound...].prefix { $0 != ">" }
            if let a = el.range(of: " \(attr)=\"") { out.append(String(el[a.upperBound...].prefix { $0 != "\"" })) }
            rest = rest[r.upperBound...]
        }
        return out
    }

    /// Runs that log `weight/NAME` get a stacked teacher-weight panel (pool order from
    /// run.json, the mean over a group's runs); runs without those fields get none.
    func testTeacherWeightsPanelAppearsOnlyWithWeightFields() throws {
        let dir = temporaryDirectory(self)
        // A step curriculum: t1 alone for steps 1-5, then t2; run b keeps t1 at 0 throughout.
        func rows(_ t1: (Int) -> Double) -> [String] {
            (1...10).map { s in "{\"step\": \(s), \"loss\": 1, \"weight/t2\": \(1 - t1(s)), \"weight/t1\": \(t1(s))}" }
        }
        let a = try writeRun(dir.appendingPathComponent("cur/seed-0"), rows: rows { $0 <= 5 ? 1 : 0 })
        let b = try writeRun(dir.appendingPathComponent("cur/seed-1"), rows: rows { _ in 0 })
        for r in [a, b] {
            // Pool order t1 (weakest) then t2, the reverse of the alphabet-free row order above.
            try "{\"kind\": \"opd\", \"seed\": 0, \"teachers\": [\"t1\", \"t2\", \"t3\"]}"
                .write(to: r.appendingPathComponent("run.json"), atomically: true, encoding: .utf8)
        }
        let plain = try writeRun(dir.appendingPathComponent("plain"), rows: syntheticRows(steps: 10))
        XCTAssertEqual(try RunMetrics.read(a).weightTeachers, ["t1", "t2"], "pool order, only teachers with a series")
        XCTAssertEqual(try RunMetrics.read(plain).weightTeachers, [])

        let html = try ComparisonReport.render(groups: [ReportGroup(label: "cur", runDirectories: [a]), ReportGroup(label: "plain", runDirectories: [plain]),
                                                        ReportGroup(label: "both", runDirectories: [a, b])], title: "t", summary: nil)
        assertFiniteCoordinates(html)
        XCTAssertTrue(html.contains("<h2>Teacher weights</h2>"))
        XCTAssertTrue(html.contains("id=\"plot-weights-0\""))
        XCTAssertFalse(html.contains("id=\"plot-weights-1\""), "the group without weight fields has no panel")
        XCTAssertTrue(html.contains("id=\"plot-weights-2\""))
        XCTAssertEqual(attributes(html, plot: "plot-weights-0", tag: "g", cls: "layer", attr: "data-teacher"), ["0", "1"])
        XCTAssertTrue(html.contains("<title>t1</title>") && html.contains("<title>t2</title>"))
        // One band per teacher. The plot area spans y = 12 (weight sum 1) to 242 (0): t1's top
        // edge is at the top for steps 1-5, at the bottom after; t2's top edge stays at 1.
        XCTAssertEqual(attributes(html, plot: "plot-weights-0", cls: "area").count, 2)
        let edges = attributes(html, plot: "plot-weights-0", cls: "line edge")
        XCTAssertEqual(edges.count, 2)
        let t1 = edges[0].split(separator: "L").map { $0.split(separator: " ").last.map(String.init) ?? "" }
        XCTAssertEqual(t1, ["12.00", "12.00", "12.00", "12.00", "12.00", "242.00", "242.00", "242.00", "242.00", "242.00"])
        XCTAssertTrue(edges[1].split(separator: "L").allSatisfy { $0.hasSuffix(" 12.00") || $0.hasSuffix(" 12.00 ") }, edges[1])
        // The group of two runs: t1's weight is the mean, 0.5 (y = 127) for steps 1-5.
        let mean = attributes(html, plot: "plot-weights-2", cls: "line edge")[0].split(separator: "L").map { $0.split(separator: " ").last.map(String.init) ?? "" }
        XCTAssertEqual(Array(mean.prefix(6)), ["127.00", "127.00", "127.00", "127.00", "127.00", "242.00"])

        // No run with weight fields: no section, no panel.
        let none = try ComparisonReport.render(groups: [ReportGroup(label: "plain", runDirectories: [plain])], title: "t", summary: nil)
        XCTAssertFalse(none.contains("Teacher weights"))
        XCTAssertFalse(none.contains("plot-weights-"))

        // A null or negative weight is a gap; coordinates stay finite; a run.json without
        // teachers orders them by name.
        let gappy = try writeRun(dir.appendingPathComponent("gappy"), rows: (1...6).map { s in
            "{\"step\": \(s), \"weight/b\": \(s == 3 ? "null" : "0.25"), \"weight/a\": \(s == 5 ? "-1" : "0.75")}"
        })
        XCTAssertEqual(try RunMetrics.read(gappy).weightTeachers, ["a", "b"])
        let g = try ComparisonReport.render(groups: [ReportGroup(label: "g", runDirectories: [gappy])], title: "t", summary: nil)
        assertFiniteCoordinates(g)
        let area = try XCTUnwrap(attributes(g, plot: "plot-weights-0", cls: "area").first)
        XCTAssertEqual(area.components(separatedBy: "M").count - 1, 1, "one band, steps 1-2, before the gaps: \(area)")
        XCTAssertEqual(attributes(g, plot: "plot-weights-0", tag: "line", cls: "line edge", attr: "x1").count, 4,
                       "steps 4 and 6 stand alone between gaps: a mark per layer each")
    }

    /// `chorus report`: the page, its one-line errors, and concurrent writers of one output
    /// (each writes a temporary file and renames it: the result is one whole page).
    func testReportCommand() throws {
        let dir = temporaryDirectory(self)
        let cmp = dir.appendingPathComponent("cmp")
        for s in 0..<2 { try writeRun(cmp.appendingPathComponent("arith/seed-\(s)"), rows: syntheticRows(steps: 200, offset: 0.1 * Double(s))) }
        try writeRun(cmp.appendingPathComponent("geo/seed-0"), rows: syntheticRows(steps: 200))
        let out = dir.appendingPathComponent("r.html")
        let (status, stdout, err) = try runChorus(["report", cmp.path, "--output", out.path, "--title", "T<1>"])
        XCTAssertEqual(status, 0, err)
        XCTAssertEqual(stdout, "")
        let html = try String(contentsOf: out, encoding: .utf8)
        XCTAssertTrue(html.contains("<title>T&lt;1&gt;</title>"))
        XCTAssertTrue(html.contains("arith <span class=\"n\">(2 runs)</span>"))

        final class Results: @unchecked Sendable { var codes = [Int32](repeating: -1, count: 6); let lock = NSLock() }
        let results = Results()
        DispatchQueue.concurrentPerform(iterations: 6) { i in
            let code = (try? runChorus(["report", cmp.path, "--output", out.path, "--title", "T<1>"]))?.0 ?? -2
            results.lock.lock(); results.codes[i] = code; results.lock.unlock()
        }
        XCTAssertEqual(results.codes, [Int32](repeating: 0, count: 6))
        XCTAssertEqual(try String(contentsOf: out, encoding: .utf8), html, "concurrent writers leave one whole page")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") }
        XCTAssertEqual(leftovers, [], "no temporary files left")

        assertOneLineFailure(try runChorus(["report"]), containing: ["at least one RUN_DIR"])
        assertOneLineFailure(try runChorus(["report", dir.appendingPathComponent("missing").path, "--output", out.path]), containing: ["missing", "no such directory"])
        assertOneLineFailure(try runChorus(["report", cmp.path, "--output", cmp.appendingPathComponent("geo/seed-0/report.html").path]),
                             containing: ["inside the run directory"])
        let empty = dir.appendingPathComponent("emptyrun")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        try "".write(to: empty.appendingPathComponent("metrics.jsonl"), atomically: true, encoding: .utf8)
        assertOneLineFailure(try runChorus(["report", empty.path, "--output", out.path]), containing: ["no run could be read", "emptyrun"])
        assertOneLineFailure(try runChorus(["report", "--group", "bad", "--output", out.path]), containing: ["--group"])
    }
}
