import ChorusCore
import ChorusReport
import ChorusTestSupport
import Foundation
import XCTest

/// The HTML pages in a real headless browser (Debian's chromium, which `make test` installs
/// when it is missing): they load with no console output and no errors, the plots have a
/// non-zero size, the tokens are coloured, the pages' scripts work, nothing is fetched, and
/// screenshots are produced. Skipped, saying how to install chromium, where none is found.
/// CHORUS_SCREENSHOT_DIR keeps the screenshots (to look at them).
final class BrowserTests: XCTestCase {
    /// Loads `page` (a probed copy) and returns the probe's result, asserting no console
    /// output, no recorded error and no fetched resource.
    func load(_ chromium: Chromium, _ page: URL, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let (status, dom, err) = try chromium.run(try Chromium.probed(page), ["--dump-dom"])
        XCTAssertEqual(status, 0, "chromium failed: \(err.suffix(2000))", file: file, line: line)
        XCTAssertEqual(Chromium.consoleLines(err), [], "the page wrote to the console", file: file, line: line)
        let r = try Chromium.probeResult(dom)
        XCTAssertEqual(r["errors"] as? [String], [], "errors in the page", file: file, line: line)
        XCTAssertEqual(r["resources"] as? Int, 0, "the page fetched resources (it must be self-contained)", file: file, line: line)
        return r
    }

    /// Takes a screenshot of the page itself (not the probed copy); asserts a PNG of some size.
    func screenshot(_ chromium: Chromium, _ page: URL, name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let png = page.deletingLastPathComponent().appendingPathComponent(name)
        let (status, _, err) = try chromium.run(page, ["--screenshot=\(png.path)"])
        XCTAssertEqual(status, 0, "chromium --screenshot failed: \(err.suffix(2000))", file: file, line: line)
        let data = try Data(contentsOf: png)
        XCTAssertEqual(Array(data.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], "not a PNG", file: file, line: line)
        // A blank 1400×1800 page compresses to a few kB; plots and tokens take far more.
        XCTAssertGreaterThan(data.count, 30_000, "the screenshot looks blank", file: file, line: line)
        if let keep = ProcessInfo.processInfo.environment["CHORUS_SCREENSHOT_DIR"], !keep.isEmpty {
            let dest = URL(fileURLWithPath: keep).appendingPathComponent(name)
            try? FileManager.default.removeItem(at: dest)
            try FileManager.default.copyItem(at: png, to: dest)
        }
    }

    /// The report of three synthetic groups (three seeds with a malformed line and a NaN gap,
    /// two seeds, an SFT run without KL, a hostile label) and of a tiny real run.
    func testReportInChromium() throws {
        let chromium = try Chromium.required()
        let dir = temporaryDirectory(self)
        var arith: [URL] = []
        for s in 0..<3 {
            var rows = syntheticRows(offset: 0.04 * Double(s))
            if s == 1 { rows.insert("not json at all", at: 5); rows[20] = "{\"step\": 17, \"kl_k1\": null, \"loss\": 1.0}" }
            arith.append(try writeRun(dir.appendingPathComponent("cmp/arithmetic/seed-\(s)"), seed: s, rows: rows,
                                      tail: s == 2 ? "{\"step\": 61, \"loss\"" : ""))
        }
        for s in 0..<2 { try writeRun(dir.appendingPathComponent("cmp/geometric/seed-\(s)"), seed: s, rows: syntheticRows(offset: -0.1 + 0.03 * Double(s))) }
        try writeRun(dir.appendingPathComponent("cmp/<img src=x onerror=alert(1)>/seed-0"), kind: "sft", rows: syntheticRows(offset: 0.2, kl: false))
        let (_, real) = try makeTinyRun(self)
        var groups = try ReportInputs.groups(paths: [dir.appendingPathComponent("cmp")])
        groups.append(ReportGroup(label: "tiny real run", runDirectories: [real]))
        XCTAssertEqual(groups.map(\.label), ["<img src=x onerror=alert(1)>", "arithmetic", "geometric", "tiny real run"])
        let page = dir.appendingPathComponent("report.html")
        try ComparisonReport.write(groups: groups, title: "Browser test <i>report</i>",
                                   summary: [["strategy", "mean@8"], ["arithmetic", "0.70 ± 0.04"], ["geometric", "0.62 ± 0.02"]], to: page)

        let r = try load(chromium, page)
        let plots = try XCTUnwrap(r["plots"] as? [[String: Any]])
        // add3 and rev mean@k and best@k, and the eight train metrics.
        XCTAssertGreaterThanOrEqual(plots.count, 12, "\(plots.map { $0["id"] ?? "" })")
        for p in plots {
            for k in ["bw", "bh", "cw", "ch"] { XCTAssertGreaterThan(p[k] as? Double ?? 0, 10, "plot \(p["id"] ?? "") \(k)") }
            XCTAssertGreaterThan(p["lines"] as? Int ?? 0, 0, "plot \(p["id"] ?? "") has no line")
        }
        let kl = try XCTUnwrap(plots.first { $0["id"] as? String == "plot-kl_k1" })
        // The SFT group logged no KL: three lines (arithmetic, geometric, the real run), bands for the multi-seed groups.
        XCTAssertEqual(kl["groups"] as? Int, 3)
        XCTAssertEqual(kl["bands"] as? Int, 2)
        // The real run logged weight/t-weak and weight/t-strong: its stacked teacher-weight panel,
        // one band per teacher; the synthetic groups logged none.
        let weights = try XCTUnwrap(plots.first { $0["id"] as? String == "plot-weights-3" }, "\(plots.map { $0["id"] ?? "" })")
        XCTAssertEqual(weights["lines"] as? Int, 2)
        XCTAssertEqual(plots.filter { ($0["id"] as? String ?? "").hasPrefix("plot-weights-") }.count, 1)
        XCTAssertGreaterThan(r["hiddenAfterClick"] as? Int ?? 0, 0, "the legend toggle hid nothing")
        XCTAssertEqual(r["hiddenAfterSecondClick"] as? Int, 0)
        try screenshot(chromium, page, name: "report.png")
    }

    /// The token view of a tiny real run's recorded rollout, and a page whose tokens are hostile strings.
    func testInspectPageInChromium() throws {
        let chromium = try Chromium.required()
        let (dir, run) = try makeTinyRun(self)
        let records = try RolloutLog.read(run: run, step: 2)
        // The sample with the most masked and filtered tokens shows both markings.
        let i = records.indices.max { a, b in
            let f = { (r: RolloutRecord) in r.masked.filter { $0 }.count * 100 + r.kept.filter { !$0 }.count + r.length }
            return f(records[a]) < f(records[b])
        }!
        let page = dir.appendingPathComponent("inspect.html")
        let (status, _, err) = try runChorus(["inspect", run.path, "--step", "2", "--sample", "\(i)", "--output", page.path])
        XCTAssertEqual(status, 0, err)
        let r = try load(chromium, page)
        let rec = records[i]
        XCTAssertEqual(r["tokens"] as? Int, rec.length)
        XCTAssertEqual(r["colored"] as? Int, rec.length, "every token has a colour")
        XCTAssertEqual(r["titled"] as? Int, rec.length, "every token has hover text")
        XCTAssertEqual(r["masked"] as? Int, rec.masked.filter { $0 }.count)
        XCTAssertEqual(r["filtered"] as? Int, zip(rec.masked, rec.kept).filter { !$0 && !$1 }.count)
        XCTAssertEqual(r["virtualRows"] as? Int, rec.length)
        XCTAssertEqual(r["virtualDiff"] as? Int, (0..<rec.length).filter { rec.referenceTop1![$0] != rec.responseIds[$0] }.count)
        XCTAssertEqual(r["radios"] as? Int, 3)
        XCTAssertGreaterThan(r["recolored"] as? Int ?? 0, 0, "the colouring toggle changed no token")
        try screenshot(chromium, page, name: "inspect.png")

        // Hostile token strings and prompt: escaped, so the page still loads without errors.
        var hostile = rec
        hostile.tokens = hostile.tokens.indices.map { ["<script>alert(1)</script>", "\"><img src=x onerror=alert(2)>", "&amp;", "'"][$0 % 4] }
        hostile.prompt = "</pre><script>console.error('injected')</script>"
        hostile.teachers = ["<b>t</b>", "x\" onmouseover=\"alert(3)"]
        let bad = dir.appendingPathComponent("hostile.html")
        try TokenPage.write(record: hostile, run: "<run>", samples: 1, coloring: .studentEntropy, to: bad)
        let h = try load(chromium, bad)
        XCTAssertEqual(h["tokens"] as? Int, rec.length)
    }
}
