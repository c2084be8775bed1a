import ChorusCore
import ChorusModel
import ChorusTestSupport
import ChorusTraining
import Foundation
import XCTest

/// The tiny on-policy setup (`makeOPDSetup`) with a second teacher (the student itself), the
/// full-vocabulary objective and an evaluation on four of the prompts every 2 steps.
func makeCompareSetup(_ test: XCTestCase, steps: Int = 4) throws -> (dir: URL, runFile: URL) {
    let (dir, runFile) = try makeOPDSetup(test, steps: steps, extra: """

    [objective]
    full_vocabulary = true

    [eval]
    data = "prompts.jsonl"
    every = 2
    k = 2
    problems = 4
    temperature = 1.0
    """)
    try """
    [[teacher]]
    name = "weak"
    path = "student"

    [[teacher]]
    name = "teacher"
    path = "teacher"
    """.write(to: dir.appendingPathComponent("pool.toml"), atomically: true, encoding: .utf8)
    return (dir, runFile)
}

/// The JSON objects of a run directory's metrics.jsonl.
func jsonRows(_ run: URL) throws -> [[String: Any]] {
    try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").map {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
    }
}

final class ComparisonTests: XCTestCase {
    func compare(_ runFile: URL, _ out: URL, aggregators: [String] = ["arithmetic", "geometric"], baselines: [String] = [],
                 seeds: Int = 2, steps: Int? = nil, overrides: [String] = []) throws -> Comparison {
        try Comparison(runFile: runFile, overrides: overrides, aggregators: aggregators, baselines: baselines, seeds: seeds,
                       steps: steps, output: out)
    }

    /// 2 strategies × 2 seeds: the layout, resumable child run files, identical step-1 rollouts
    /// served from the cache for the second strategy, and the table and JSON computed from the
    /// runs' metrics; a corrupt metrics line becomes a note, not a failure.
    func testTwoStrategiesTwoSeeds() throws {
        let (dir, runFile) = try makeCompareSetup(self)
        let out = dir.appendingPathComponent("cmp")
        let c = try compare(runFile, out)
        var log: [String] = []
        c.log = { log.append($0) }
        XCTAssertTrue(try c.run())
        XCTAssertEqual(c.defaultLabel, "arithmetic")
        XCTAssertTrue(log.contains { $0.hasPrefix("[4/4] geometric seed 4") }, "\(log)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent(ComparisonPlan.fileName).path))
        for label in ["arithmetic", "geometric"] {
            for seed in [3, 4] {
                let run = out.appendingPathComponent("\(label)/seed-\(seed)")
                XCTAssertTrue(FileManager.default.fileExists(atPath: run.appendingPathComponent("final/model.safetensors").path))
                // The child run file is a normal run file: absolute paths, its own seed and directory.
                let cfg = try OnPolicyConfig(contentsOf: run.appendingPathComponent("run.toml"))
                XCTAssertEqual(cfg.aggregator, label)
                XCTAssertEqual(cfg.opt.seed, UInt64(seed))
                XCTAssertEqual(cfg.outputDir.standardizedFileURL.path, run.standardizedFileURL.path)
                XCTAssertEqual(cfg.cache?.standardizedFileURL.path, out.appendingPathComponent("cache").standardizedFileURL.path)
                XCTAssertEqual(cfg.cacheTopK, try ModelConfig(contentsOf: dir.appendingPathComponent("student/config.json")).vocabSize,
                               "full vocabulary and a small V: records hold whole rows")
            }
        }
        // Same seed: the same first-step rollouts, and the second strategy's scores come from the cache.
        for seed in [3, 4] {
            let a = try RolloutLog.read(run: out.appendingPathComponent("arithmetic/seed-\(seed)"), step: 1)
            let g = try RolloutLog.read(run: out.appendingPathComponent("geometric/seed-\(seed)"), step: 1)
            XCTAssertEqual(a.map(\.responseIds), g.map(\.responseIds))
            let first = try jsonRows(out.appendingPathComponent("arithmetic/seed-\(seed)")).first { $0["step"] as? Int == 1 && $0["loss"] != nil }!
            let second = try jsonRows(out.appendingPathComponent("geometric/seed-\(seed)")).first { $0["step"] as? Int == 1 && $0["loss"] != nil }!
            XCTAssertEqual(first["cache_hits"] as? Int, 0)
            XCTAssertGreaterThan(first["cache_misses"] as? Int ?? 0, 0)
            XCTAssertEqual(second["cache_hits"] as? Int, 16, "2 teachers × 8 responses")
            XCTAssertEqual(second["cache_misses"] as? Int, 0)
        }
        let s3 = try RolloutLog.read(run: out.appendingPathComponent("arithmetic/seed-3"), step: 1)
        let s4 = try RolloutLog.read(run: out.appendingPathComponent("arithmetic/seed-4"), step: 1)
        XCTAssertNotEqual(s3.map(\.responseIds), s4.map(\.responseIds), "different seeds sample differently")

        // The table's numbers, recomputed from metrics.jsonl.
        let summary = c.summary()
        func expected(_ label: String) throws -> (kl: [Double], peak: [Double], final: [Double]) {
            var kl: [Double] = [], peak: [Double] = [], final: [Double] = []
            for seed in [3, 4] {
                let rows = try jsonRows(out.appendingPathComponent("\(label)/seed-\(seed)"))
                let k1 = rows.filter { $0["loss"] != nil }.compactMap { $0["kl_k1"] as? Double }
                XCTAssertEqual(k1.count, 4)
                kl.append(k1.last!)   // the last 10% of 4 steps is the last step
                let means = rows.compactMap { (($0["eval"] as? [String: Any])?["prompts"] as? [String: Any])?["mean_at_k"] as? Double }
                XCTAssertEqual(means.count, 3, "eval at steps 0, 2, 4")
                peak.append(means.max()!); final.append(means.last!)
            }
            return (kl, peak, final)
        }
        for label in ["arithmetic", "geometric"] {
            let e = try expected(label)
            let kl = try XCTUnwrap(summary.cells[label]?["kl.final"])
            XCTAssertEqual(kl.values, e.kl)
            XCTAssertEqual(kl.mean, ComparisonStatistics.meanStd(e.kl).mean, accuracy: 1e-12)
            XCTAssertEqual(kl.std, ComparisonStatistics.meanStd(e.kl).std, accuracy: 1e-12)
            XCTAssertEqual(summary.cells[label]?["prompts.mean.peak"]?.values, e.peak)
            XCTAssertEqual(summary.cells[label]?["prompts.mean.final"]?.values, e.final)
            if label == "geometric" {
                let a = try expected("arithmetic")
                XCTAssertEqual(kl.paired?.differences, zip(e.kl, a.kl).map { $0 - $1 })
            } else {
                XCTAssertNil(kl.paired)
            }
        }
        XCTAssertEqual(summary.columns.map(\.title).first, "prompts mean@2 peak")
        let table = summary.table
        XCTAssertTrue(table.contains("arithmetic (default)"), table)
        XCTAssertTrue(table.contains(" ± "), table)
        try summary.write(to: out)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("compare.json"))) as? [String: Any])
        XCTAssertEqual(json["default"] as? String, "arithmetic")
        let labels = try XCTUnwrap(json["labels"] as? [[String: Any]])
        XCTAssertEqual(labels.map { $0["label"] as? String }, ["arithmetic", "geometric"])
        let gsum = try XCTUnwrap((labels[1]["summary"] as? [String: Any])?["kl.final"] as? [String: Any])
        XCTAssertEqual(gsum["mean"] as? Double ?? .nan, summary.cells["geometric"]!["kl.final"]!.mean, accuracy: 1e-12)
        XCTAssertNotNil(gsum["significant"] as? Bool)
        XCTAssertEqual(try String(contentsOf: out.appendingPathComponent("table.txt"), encoding: .utf8), table)

        // A damaged metrics line in a finished child: the re-run skips every run, the table
        // still comes out, and the note names the file and line.
        let metrics = out.appendingPathComponent("geometric/seed-4/metrics.jsonl")
        var lines = try String(contentsOf: metrics, encoding: .utf8).components(separatedBy: "\n")
        lines[2] = "{\"step\": 2, \"loss\": 0.1, \"kl_"
        try lines.joined(separator: "\n").write(to: metrics, atomically: true, encoding: .utf8)
        let again = try compare(runFile, out)
        var log2: [String] = []
        again.log = { log2.append($0) }
        XCTAssertTrue(try again.run())
        XCTAssertEqual(log2.filter { $0.contains("already finished, skipped") }.count, 4, "\(log2)")
        let damaged = again.summary()
        XCTAssertTrue(damaged.notes.contains { $0.contains("geometric/seed-4/metrics.jsonl") && $0.contains("skipped 1 malformed line (line 3)") },
                      "\(damaged.notes)")
        XCTAssertTrue(damaged.table.contains("note: "), damaged.table)
        XCTAssertNotNil(damaged.cells["geometric"]?["kl.final"])
    }

    /// An interrupted compare re-run with the same arguments skips the finished run and resumes
    /// the started one. Stopped cleanly in the middle of its second run (Ctrl-C, which
    /// checkpoints the finished steps), the final weights equal an uninterrupted compare's bit
    /// for bit. Killed so that a step is lost (its checkpoint never written), the redone step
    /// reads its own teacher scores back from the shared cache — the values the lost step trained
    /// on too (a miss uses its scores as stored), so the weights are again equal bit for bit.
    func testResumeAfterInterruption() throws {
        let (dir, runFile) = try makeCompareSetup(self)
        let whole = dir.appendingPathComponent("whole")
        XCTAssertTrue(try compare(runFile, whole, seeds: 1).run())
        func weights(_ run: URL) throws -> [Float] {
            let m = try TransformerModel.load(directory: run.appendingPathComponent("final"))
            return Array(UnsafeBufferPointer(start: m.parameters.data, count: m.parameters.count))
        }
        for lose in [false, true] {
            let cut = dir.appendingPathComponent(lose ? "killed" : "stopped")
            let first = try compare(runFile, cut, seeds: 1)
            first.stopAfterSteps = 7   // run 1: 4 steps; run 2: 3 steps (checkpoints at 2 and 3)
            XCTAssertFalse(try first.run())
            let second = cut.appendingPathComponent("geometric/seed-3")
            XCTAssertFalse(FileManager.default.fileExists(atPath: second.appendingPathComponent("final").path))
            if lose {
                // A kill after step 3's metrics row but before its checkpoint: only step 2's is left.
                try FileManager.default.removeItem(at: second.appendingPathComponent("checkpoints/step-00000003"))
                try "step-00000002".write(to: second.appendingPathComponent("checkpoints/latest"), atomically: true, encoding: .utf8)
            }
            let resumed = try compare(runFile, cut, seeds: 1)
            var log: [String] = []
            resumed.log = { log.append($0) }
            XCTAssertTrue(try resumed.run())
            XCTAssertTrue(log.contains("[1/2] arithmetic seed 3: already finished, skipped"), "\(log)")
            XCTAssertTrue(log.contains { $0.hasPrefix("[2/2] geometric seed 3: resuming at step \(lose ? 2 : 3)") }, "\(log)")
            let rows = try jsonRows(second).filter { $0["loss"] != nil }
            XCTAssertEqual(rows.compactMap { $0["step"] as? Int }, [1, 2, 3, 4], "no duplicated or missing step rows after the resume")
            for label in ["arithmetic", "geometric"] {
                let a = try weights(whole.appendingPathComponent("\(label)/seed-3")), b = try weights(cut.appendingPathComponent("\(label)/seed-3"))
                if lose && label == "geometric" {
                    XCTAssertEqual(rows[2]["cache_misses"] as? Int, 0, "the redone step 3 is served by the cache")
                }
                XCTAssertEqual(a, b, "\(label): resumed weights differ from the uninterrupted compare")
            }
        }
    }

    /// `chorus compare` killed (SIGKILL) while its second run trains, then run again: the first
    /// run is skipped, the second resumed from its directory, and the compare completes.
    func testKilledCommandResumes() throws {
        let (dir, runFile) = try makeCompareSetup(self, steps: 8)
        let out = dir.appendingPathComponent("cmp")
        let args = ["compare", runFile.path, "--aggregators", "arithmetic,geometric", "--output", out.path, "--quiet"]
        guard let exe = chorusExecutable() else { return }
        let p = Process()
        p.executableURL = exe
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.merging(["CHORUS_THREADS": "2"]) { $1 }
        p.standardError = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let metrics = out.appendingPathComponent("geometric/seed-3/metrics.jsonl")
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let t = try? String(contentsOf: metrics, encoding: .utf8), t.contains("\"loss\"") { break }
            usleep(2_000)
        }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .uncaughtSignal, "the compare finished before it could be killed")
        let (status, stdout, stderr) = try runChorus(args)
        XCTAssertEqual(status, 0, stderr)
        XCTAssertTrue(stderr.contains("[1/2] arithmetic seed 3: already finished, skipped"), stderr)
        XCTAssertTrue(stderr.contains("[2/2] geometric seed 3: resuming at step"), stderr)
        XCTAssertTrue(stdout.contains("geometric"), stdout)
        let steps = try jsonRows(out.appendingPathComponent("geometric/seed-3")).filter { $0["loss"] != nil }.compactMap { $0["step"] as? Int }
        XCTAssertEqual(steps, Array(1...8))
    }

    /// The sft-teacher baseline trains to the default strategy's response tokens (the fewest SFT
    /// steps of P·G sequences that reach them) with eval rows; sft-self with a student that is
    /// never right is flagged `failed` with the reason, and the compare completes.
    func testBaselinesAtTheTokenBudget() throws {
        let (dir, runFile) = try makeCompareSetup(self)
        let out = dir.appendingPathComponent("cmp")
        let c = try compare(runFile, out, aggregators: ["arithmetic"], baselines: ["sft-teacher", "sft-self"], seeds: 1)
        var log: [String] = []
        c.log = { log.append($0) }
        XCTAssertTrue(try c.run(), "a baseline that cannot be built is flagged, not fatal")
        XCTAssertTrue(log.contains("[3/3] sft-self seed 3: failed: none of the 32 samples was kept (the student answered no training prompt correctly)"), "\(log)")
        XCTAssertEqual(Array(c.failures.keys), [out.appendingPathComponent("sft-self/seed-3").path])
        let opd = try jsonRows(out.appendingPathComponent("arithmetic/seed-3")).filter { $0["loss"] != nil }
        let budget = Int((opd.compactMap { $0["response_length"] as? Double }.reduce(0, +) * 8).rounded())
        XCTAssertGreaterThan(budget, 0)
        let sft = out.appendingPathComponent("sft-teacher/seed-3")
        XCTAssertTrue(FileManager.default.fileExists(atPath: sft.appendingPathComponent("final/model.safetensors").path))
        let cfg = try SFTConfig(contentsOf: sft.appendingPathComponent("run.toml"))
        XCTAssertEqual(cfg.opt.batchSize, 8)
        XCTAssertEqual(cfg.opt.seed, 3)
        XCTAssertEqual(cfg.opt.lr, 1e-2)
        let teacher = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("sft-teacher/teacher.json"))) as? [String: Any])
        XCTAssertNotNil(teacher["teacher"] as? String)
        // The step count: the fewest whose completion tokens (in SFTTrainer's order) reach the budget.
        let trainer = try SFTTrainer(config: cfg, resume: sft)
        var tokens: [Int] = []
        for s in 0..<cfg.opt.steps { tokens.append(trainer.batch(step: s).reduce(0) { $0 + $1.responseLength }) }
        XCTAssertGreaterThanOrEqual(tokens.reduce(0, +), budget)
        XCTAssertLessThan(tokens.dropLast().reduce(0, +), budget)
        // Eval rows through the same evaluator and cadence (step 0, every 2, the last).
        let evalSteps = try jsonRows(sft).filter { $0["eval"] != nil }.compactMap { $0["step"] as? Int }
        XCTAssertEqual(evalSteps.first, 0)
        XCTAssertEqual(evalSteps.last, cfg.opt.steps)
        let summary = c.summary()
        XCTAssertNotNil(summary.cells["sft-teacher"]?["prompts.mean.final"])
        XCTAssertNil(summary.cells["sft-teacher"]?["kl.final"], "SFT logs no KL")
        XCTAssertTrue(summary.table.contains("sft-self"))
        XCTAssertEqual(summary.flagText("sft-self"), "failed")
        XCTAssertTrue(summary.notes.contains("sft-self seed 3 failed: none of the 32 samples was kept (the student answered no training prompt correctly)"))
    }

    /// A strategy whose loss or weights go non-finite is flagged `failed` (its numbers left out),
    /// and the compare goes on with the others and completes its table.
    func testDivergingStrategyIsFlagged() throws {
        let (dir, runFile) = try makeCompareSetup(self, steps: 2)
        let out = dir.appendingPathComponent("cmp")
        let c = try compare(runFile, out, seeds: 1, overrides: ["train.lr=1e30", "train.grad_clip=0"])
        XCTAssertTrue(try c.run())
        XCTAssertEqual(c.failures.count, 2, "\(c.failures)")
        let summary = c.summary()
        XCTAssertEqual(summary.flagText("arithmetic"), "failed")
        XCTAssertNil(summary.cells["arithmetic"]?["kl.final"])
        XCTAssertTrue(summary.notes.contains { $0.hasPrefix("geometric seed 3 failed: step ") && $0.contains("not finite") }, "\(summary.notes)")
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(summary.json.utf8)) as? [String: Any])
        let runs = try XCTUnwrap((json["labels"] as? [[String: Any]])?.first?["runs"] as? [[String: Any]])
        XCTAssertTrue((runs[0]["failure"] as? String)?.contains("not finite") == true)
    }

    /// A curriculum run file: the curriculum strategy keeps its `[curriculum]` table, the others
    /// get run files without it; `curriculum` without stages anywhere is refused before any work.
    func testCurriculumRunFile() throws {
        let (dir, runFile) = try makeCompareSetup(self, steps: 2)
        let plain = try String(contentsOf: runFile, encoding: .utf8)
        assertThrows(try compare(runFile, dir.appendingPathComponent("x"), aggregators: ["curriculum", "arithmetic"]),
                     containing: ["curriculum", "needs a [curriculum] table"])
        let staged = dir.appendingPathComponent("staged.toml")
        try (plain + """

        [curriculum]
        space = "arithmetic"
        transition = "step"

        [[curriculum.stage]]
        at = 0.5
        weights = { weak = 1, teacher = 0 }

        [[curriculum.stage]]
        at = 1.0
        weights = { weak = 0, teacher = 1 }
        """).write(to: staged, atomically: true, encoding: .utf8)
        let c = try compare(staged, dir.appendingPathComponent("cmp"), aggregators: ["curriculum", "arithmetic"], seeds: 1)
        XCTAssertEqual(c.defaultLabel, "curriculum", "a [curriculum] table makes the run file's own aggregator curriculum")
        let cur = try XCTUnwrap(c.runs.first { $0.label == "curriculum" }?.text), ari = try XCTUnwrap(c.runs.first { $0.label == "arithmetic" }?.text)
        XCTAssertTrue(cur.contains("[[curriculum.stage]]"))
        XCTAssertFalse(ari.contains("curriculum"), ari)
        XCTAssertTrue(c.changes["arithmetic"]!.contains { $0.contains("[curriculum] table left out") })
        XCTAssertTrue(try c.run())
        let rows = try jsonRows(dir.appendingPathComponent("cmp/arithmetic/seed-3"))
        // The curriculum's first stage scores only "weak": arithmetic's step 1 reuses those scores.
        XCTAssertGreaterThan(rows.first { $0["step"] as? Int == 1 && $0["loss"] != nil }?["cache_hits"] as? Int ?? 0, 0)
    }

    /// `chorus sft` run files take `[eval]` (the baselines' evaluation): bad keys are named.
    func testSFTEvalTable() throws {
        let dir = temporaryDirectory(self)
        let base = """
        [model]
        init = "m"
        [data]
        train = "t.jsonl"
        [eval]

        """
        for (extra, fragment) in [("benchmarks = [\"add9\"]", "add9"), ("k = 0", "k"), ("", "eval.data"), ("benchmarks = [\"add3\"]\nbogus = 1", "bogus")] {
            assertThrows(try SFTConfig(text: base + extra, file: "sft.toml", base: dir), containing: ["sft.toml", fragment])
        }
        let ok = try SFTConfig(text: base + "benchmarks = [\"add3\", \"rev\"]\nevery = 5\nk = 2", file: "sft.toml", base: dir)
        XCTAssertEqual(ok.eval?.benchmarks, ["add3", "rev"])
        XCTAssertEqual(ok.eval?.every, 5)
        XCTAssertEqual(ok.eval?.maxTokens, 64)
    }

    /// Bad arguments fail before any work with one line naming the option and the valid values.
    func testHostileArguments() throws {
        let (dir, runFile) = try makeCompareSetup(self, steps: 2)
        let out = dir.appendingPathComponent("cmp")
        assertThrows(try compare(runFile, out, aggregators: ["arithmetic", "median"]),
                     containing: ["--aggregators", "'median'", "valid: arithmetic, geometric, hard-switch, soft-switch, control-token, random"])
        assertThrows(try compare(runFile, out, baselines: ["sft-oracle"]), containing: ["--baselines", "'sft-oracle'", "valid: sft-teacher, sft-self"])
        assertThrows(try compare(runFile, out, aggregators: []), containing: ["--aggregators", "at least one"])
        assertThrows(try compare(runFile, out, aggregators: ["random", "random"]), containing: ["'random' is listed twice"])
        assertThrows(try compare(runFile, out, seeds: 0), containing: ["--seeds must be in 1...100, got 0"])
        assertThrows(try compare(runFile, out, seeds: 1 << 40), containing: ["--seeds must be in 1...100"])
        assertThrows(try compare(runFile, out, steps: 0), containing: ["--steps must be in 1...", "got 0"])
        assertThrows(try compare(runFile, out, overrides: ["train.lr=-1"]), containing: ["lr"])
        let epochs = dir.appendingPathComponent("epochs.toml")
        try String(contentsOf: runFile, encoding: .utf8).replacingOccurrences(of: "steps = 2\n", with: "")
            .write(to: epochs, atomically: true, encoding: .utf8)
        assertThrows(try compare(epochs, out, steps: 3, overrides: ["data.epochs=1"]), containing: ["--steps cannot be combined with data.epochs"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "nothing is written before the checks pass")
        // An explicit teachers.cache_top_k is kept (and said), not raised to V.
        let kept = try compare(runFile, out, overrides: ["teachers.cache_top_k=20"])
        XCTAssertTrue(kept.runs[0].text!.contains("cache_top_k = 20"))
        XCTAssertTrue(kept.changes["arithmetic"]!.contains { $0.contains("kept from the run file") }, "\(kept.changes)")

        // A non-empty OUTPUT that is not a compare output.
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try "x".write(to: out.appendingPathComponent("notes.txt"), atomically: true, encoding: .utf8)
        assertThrows(try compare(runFile, out), containing: [out.path, "not empty", ComparisonPlan.fileName])
        try "x".write(to: dir.appendingPathComponent("file"), atomically: true, encoding: .utf8)
        assertThrows(try compare(runFile, dir.appendingPathComponent("file")), containing: ["not a directory"])

        // A compare output made from a different run file (or other lists) is not continued.
        let fresh = dir.appendingPathComponent("cmp2")
        let started = try compare(runFile, fresh, seeds: 1)
        started.stopAfterSteps = 1
        XCTAssertFalse(try started.run())
        assertThrows(try compare(runFile, fresh, seeds: 1, overrides: ["train.lr=0.5"]),
                     containing: [fresh.path, "different comparison", "different run file"])
        assertThrows(try compare(runFile, fresh, seeds: 2), containing: ["--seeds was 1, now 2"])
        assertThrows(try compare(runFile, fresh, aggregators: ["geometric"], seeds: 1), containing: ["--aggregators was arithmetic,geometric, now geometric"])
        try "{not json".write(to: fresh.appendingPathComponent(ComparisonPlan.fileName), atomically: true, encoding: .utf8)
        assertThrows(try compare(runFile, fresh, seeds: 1), containing: ["unreadable compare plan"])
    }

    /// `chorus compare` end to end: progress on stderr, the table on stdout, the three files;
    /// and a one-line usage error.
    func testCommandLine() throws {
        let (dir, runFile) = try makeCompareSetup(self, steps: 2)
        let out = dir.appendingPathComponent("cmp")
        let (status, stdout, stderr) = try runChorus(["compare", runFile.path, "--aggregators", "arithmetic,hard-switch", "--output", out.path, "--quiet"])
        XCTAssertEqual(status, 0, stderr)
        XCTAssertTrue(stderr.contains("[1/2] arithmetic seed 3: starting"), stderr)
        XCTAssertTrue(stderr.contains("[2/2] hard-switch seed 3"), stderr)
        XCTAssertTrue(stdout.hasPrefix("strategy"), stdout)
        XCTAssertTrue(stdout.contains("arithmetic (default)") && stdout.contains("hard-switch"), stdout)
        XCTAssertEqual(try String(contentsOf: out.appendingPathComponent("table.txt"), encoding: .utf8), stdout)
        let html = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        XCTAssertTrue(html.contains("<svg") && html.contains("hard-switch") && html.contains("train KL (k1, last 10%)"))
        XCTAssertNotNil(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("compare.json"))))
        // --json: compare.json on stdout; the finished runs are skipped.
        let (s2, json, _) = try runChorus(["compare", runFile.path, "--aggregators", "arithmetic,hard-switch", "--output", out.path, "--quiet", "--json"])
        XCTAssertEqual(s2, 0)
        XCTAssertEqual(json, try String(contentsOf: out.appendingPathComponent("compare.json"), encoding: .utf8))
        assertOneLineFailure(try runChorus(["compare", runFile.path, "--aggregators", "mean", "--output", dir.appendingPathComponent("x").path]),
                             containing: ["unknown aggregator 'mean'", "valid: arithmetic"])
    }
}
