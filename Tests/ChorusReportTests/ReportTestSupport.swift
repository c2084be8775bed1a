import ChorusCore
import ChorusModel
import ChorusTokenizer
import ChorusTraining
import Foundation
import XCTest
import ChorusTestSupport

/// A tiny real `chorus train` run (random Qwen3 student, two sharper teachers, 4 steps of 4×2
/// rollouts, rollouts recorded at steps 1, 2 and 4), trained in-process into `dir/out`. bf16
/// sampling with a tight mask [0.995, 1.005] makes the correction mask some tokens, and a KL
/// filter keeping percentiles [0.2, 1] drops some: the token view shows both. Seconds.
func makeTinyRun(_ test: XCTestCase, steps: Int = 4, extra: String = "", trained: Bool = true) throws -> (dir: URL, run: URL) {
    let dir = temporaryDirectory(test)
    try writeTinyArithmeticModels(in: dir, promptSeed: 7, models: [("student", 1), ("t-weak", 2), ("t-strong", 4)])
    try """
    [[teacher]]
    name = "t-weak"
    path = "t-weak"

    [[teacher]]
    name = "t-strong"
    path = "t-strong"
    """.write(to: dir.appendingPathComponent("pool.toml"), atomically: true, encoding: .utf8)
    try """
    [model]
    init = "student"

    [teachers]
    pool = "pool.toml"

    [data]
    prompts = "prompts.jsonl"

    [rollout]
    group_size = 2
    prompts_per_step = 4
    max_tokens = 8
    precision = "bf16"

    [correction]
    mode = "mask"
    lo = 0.995
    hi = 1.005

    [filter]
    by = "kl"
    min = 0.2
    max = 1.0

    [train]
    steps = \(steps)
    lr = 1e-2
    schedule = "constant"
    seed = 3
    threads = 2
    checkpoint_every = 2

    [eval]
    data = "prompts.jsonl"
    every = 2
    k = 2
    problems = 4

    [output]
    dir = "out"
    rollouts_every = 2
    \(extra)
    """.write(to: dir.appendingPathComponent("run.toml"), atomically: true, encoding: .utf8)
    if trained {
        let trainer = try OnPolicyTrainer(config: try OnPolicyConfig(contentsOf: dir.appendingPathComponent("run.toml")))
        trainer.showProgress = false
        try trainer.train()
    }
    return (dir, dir.appendingPathComponent("out"))
}

/// Writes a synthetic run directory: run.json and metrics.jsonl from `rows` (already JSON
/// text, one per line) plus `tail` appended verbatim (a torn line).
@discardableResult
func writeRun(_ dir: URL, kind: String = "opd", seed: Int = 0, rows: [String], tail: String = "") throws -> URL {
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    try "{\"kind\": \"\(kind)\", \"seed\": \(seed)}".write(to: dir.appendingPathComponent("run.json"), atomically: true, encoding: .utf8)
    try (rows.joined(separator: "\n") + "\n" + tail).write(to: dir.appendingPathComponent("metrics.jsonl"), atomically: true, encoding: .utf8)
    return dir
}

/// Metrics rows of a synthetic OPD run over `steps` steps, eval every 10 on add3 and rev;
/// `offset` shifts the curves (a seed), `kl` false leaves out the KL fields (an SFT run).
func syntheticRows(steps: Int = 60, offset: Double = 0, kl: Bool = true) -> [String] {
    var rows: [String] = []
    for s in 0...steps {
        if s > 0 {
            let p = Double(s) / Double(steps)
            var fields = ["\"step\": \(s)", "\"loss\": \(1.5 - p + offset)", "\"grad_norm\": \(2 + sin(Double(s)) + offset)",
                          "\"student_entropy\": \(1.2 - 0.5 * p)", "\"ppl_drift\": \(0.01 * cos(Double(s)))",
                          "\"masked_fraction\": \(0.05 + 0.02 * sin(Double(s) / 3))"]
            if kl { fields += ["\"kl_k1\": \(1 - 0.8 * p + offset)", "\"kl_k3\": \(0.8 - 0.6 * p + offset)", "\"reference_entropy\": 0.4"] }
            rows.append("{" + fields.joined(separator: ", ") + "}")
        }
        if s % 10 == 0 {
            let m = min(1, 0.1 + 0.6 * Double(s) / Double(steps) + offset)
            rows.append("{\"step\": \(s), \"eval\": {\"add3\": {\"mean_at_k\": \(m), \"best_at_k\": \(min(1, m + 0.2)), \"k\": 8, \"problems\": 200}, "
                        + "\"rev\": {\"mean_at_k\": \(0.95 - 0.1 * Double(s) / Double(steps)), \"best_at_k\": 1, \"k\": 8, \"problems\": 200}}, \"eval_seconds\": 0.1}")
        }
    }
    return rows
}

/// Headless Debian chromium: finds the binary and runs it on a page (`--dump-dom`, `--screenshot`).
struct Chromium {
    let executable: URL

    /// CHORUS_CHROMIUM, or chromium / chromium-browser / google-chrome on PATH; nil when none.
    static func find() -> Chromium? {
        let env = ProcessInfo.processInfo.environment
        if let p = env["CHORUS_CHROMIUM"], !p.isEmpty { return Chromium(executable: URL(fileURLWithPath: p)) }
        for dir in (env["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            for name in ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"] {
                let u = URL(fileURLWithPath: String(dir)).appendingPathComponent(name)
                if FileManager.default.isExecutableFile(atPath: u.path) { return Chromium(executable: u) }
            }
        }
        return nil
    }

    /// Skips the test (XCTSkip) with how to install chromium when none is found.
    static func required() throws -> Chromium {
        guard let c = find() else {
            throw XCTSkip("no chromium found: the browser tests of the HTML pages are skipped. Install it with `sudo apt-get install chromium` (make test does when it can) or set CHORUS_CHROMIUM=/path/to/chrome")
        }
        return c
    }

    /// Runs chromium headless on `page` with `extra` arguments; returns (status, stdout, stderr).
    /// A fresh profile directory per run, so concurrent runs do not share one; killed after
    /// `timeout` seconds.
    func run(_ page: URL, _ extra: [String], timeout: Double = 90) throws -> (Int32, String, String) {
        let profile = FileManager.default.temporaryDirectory.appendingPathComponent("chorus-chromium-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: profile) }
        let p = Process()
        p.executableURL = executable
        p.arguments = ["--headless", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                       "--disable-extensions", "--hide-scrollbars", "--mute-audio", "--user-data-dir=\(profile.path)",
                       "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--window-size=1400,1800"]
            + (getuid() == 0 ? ["--no-sandbox"] : []) + extra + [page.absoluteString]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        final class Box: @unchecked Sendable { var data = Data() }
        let errBox = Box(), outBox = Box()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        group.enter()
        DispatchQueue.global().async { outBox.data = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(50_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        group.wait()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: outBox.data, as: UTF8.self), String(decoding: errBox.data, as: UTF8.self))
    }

    /// The console lines chromium logged (`--enable-logging=stderr`: "…:CONSOLE…] "message", source: …").
    static func consoleLines(_ stderr: String) -> [String] {
        stderr.split(separator: "\n").map(String.init).filter { $0.contains(":CONSOLE") }
    }

    /// The script a test inserts into a copy of a page, right after its charset: it records
    /// errors (window errors, failed resources, unhandled rejections, console.error/warn), and
    /// after load measures every plot (getBBox, on-screen size, lines, bands), counts the
    /// coloured, masked and filtered tokens and the virtual-rollout rows, clicks the legend and
    /// the colouring toggle (so their scripts run), counts fetched resources, and writes the
    /// result as JSON into body[data-chorus-test], which --dump-dom prints.
    static let probe = """
    <script>(function(){window.__errs=[];
    window.addEventListener('error',function(e){__errs.push('error: '+(e.message||(e.target&&e.target.outerHTML)||'?'));},true);
    window.addEventListener('unhandledrejection',function(e){__errs.push('rejection: '+e.reason);});
    ['error','warn'].forEach(function(k){var o=console[k];console[k]=function(){__errs.push(k+': '+Array.prototype.join.call(arguments,' '));o.apply(console,arguments);};});
    window.addEventListener('load',function(){setTimeout(function(){var r={plots:[]};
    document.querySelectorAll('svg.plot').forEach(function(s){var b=s.getBBox(),c=s.getBoundingClientRect();
    r.plots.push({id:s.id,bw:b.width,bh:b.height,cw:c.width,ch:c.height,lines:s.querySelectorAll('path.line').length,bands:s.querySelectorAll('path.band').length,groups:s.querySelectorAll('g.series').length});});
    var toks=document.querySelectorAll('#tokens .tok');r.tokens=toks.length;r.colored=0;
    toks.forEach(function(t){var bg=getComputedStyle(t).backgroundColor;if(bg&&bg!=='rgba(0, 0, 0, 0)'&&bg!=='rgb(255, 255, 255)')r.colored++;});
    r.masked=document.querySelectorAll('#tokens .tok.masked').length;r.filtered=document.querySelectorAll('#tokens .tok.filtered').length;
    r.titled=document.querySelectorAll('#tokens .tok[title]').length;
    r.virtualRows=document.querySelectorAll('#virtual-table tbody tr').length;r.virtualDiff=document.querySelectorAll('#virtual-table tbody tr.diff').length;
    var li=document.querySelector('.legend-item');if(li){li.click();r.hiddenAfterClick=document.querySelectorAll('svg.plot .series.hidden').length;li.click();r.hiddenAfterSecondClick=document.querySelectorAll('svg.plot .series.hidden').length;}
    var radios=document.querySelectorAll('input[name=coloring]');r.radios=radios.length;
    if(radios.length>1&&toks.length){var before=[];toks.forEach(function(t){before.push(t.style.background);});radios[1].click();
    var changed=0;toks.forEach(function(t,i){if(t.style.background!==before[i])changed++;});r.recolored=changed;radios[0].click();}
    r.resources=performance.getEntriesByType('resource').length;
    r.errors=__errs;document.body.setAttribute('data-chorus-test',JSON.stringify(r));},0);});})();</script>
    """

    /// A copy of `page` with `probe` inserted after its charset meta, beside the page.
    static func probed(_ page: URL) throws -> URL {
        let html = try String(contentsOf: page, encoding: .utf8)
        let marker = "<meta charset=\"utf-8\">"
        guard let r = html.range(of: marker) else { throw CocoaError(.fileReadCorruptFile) }
        let copy = page.deletingLastPathComponent().appendingPathComponent("probed-" + page.lastPathComponent)
        try (html.replacingCharacters(in: r, with: marker + probe)).write(to: copy, atomically: true, encoding: .utf8)
        return copy
    }

    /// The probe's result from a --dump-dom output.
    static func probeResult(_ dom: String) throws -> [String: Any] {
        guard let start = dom.range(of: "data-chorus-test=\"") else { throw CocoaError(.fileReadCorruptFile) }
        let rest = dom[start.upperBound...]
        guard let end = rest.firstIndex(of: "\"") else { throw CocoaError(.fileReadCorruptFile) }
        let json = String(rest[..<end]).replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&lt;", with: "<")
            .replacingOccurrences(of: "&gt;", with: ">").replacingOccurrences(of: "&#39;", with: "'").replacingOccurrences(of: "&amp;", with: "&")
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    }
}
