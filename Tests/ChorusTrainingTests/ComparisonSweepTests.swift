import ChorusCore
import ChorusModel
import ChorusTestSupport
@testable import ChorusTraining
import Foundation
import XCTest

/// `chorus compare --sweep`: the run matrix, the refusals, resume and the plan, the table's
/// blocks (docs/compare.md, "Sweeps"). The tiny setup of `makeCompareSetup`: group_size = 2,
/// no [correction] table (mask is the built-in default), seed 3.
final class ComparisonSweepTests: XCTestCase {
    func sweep(_ runFile: URL, _ out: URL, _ sweeps: [String], seeds: Int = 1, steps: Int? = nil, overrides: [String] = [],
               aggregators: [String] = [], baselines: [String] = []) throws -> Comparison {
        try Comparison(runFile: runFile, overrides: overrides, aggregators: aggregators, baselines: baselines, sweeps: sweeps,
                       seeds: seeds, steps: steps, output: out)
    }

    /// The run file's lines without the `dir = ` line (each run's own directory).
    func linesWithoutDirectory(_ text: String) -> [String] {
        text.components(separatedBy: "\n").filter { !$0.hasPrefix("dir = ") }
    }

    /// Two axes × 2 seeds: the labels and directories, one default run per seed shared by both
    /// axes, each child run file the default's with exactly the swept key changed, the same
    /// seeds and cache everywhere; after running, the table's blocks, the default mark, the
    /// paired comparison against the default runs, and compare.json's axes.
    func testRunMatrixTableAndJSON() throws {
        let (dir, runFile) = try makeCompareSetup(self, steps: 2)
        let out = dir.appendingPathComponent("sweep")
        let c = try sweep(runFile, out, ["rollout.group_size=1,2,4", "correction.mode=none,truncate"], seeds: 2)
        XCTAssertEqual(c.defaultLabel, "default")
        XCTAssertEqual(c.labels, ["default", "rollout.group_size=1", "rollout.group_size=4", "correction.mode=none", "correction.mode=truncate"])
        XCTAssertEqual(c.plan.sweeps, ["rollout.group_size=1,2,4", "correction.mode=none,truncate"])
        XCTAssertEqual(c.plan.aggregators, [])
        // Axis 1: 2 is the run file's value, so its row is the default run, in its place.
        XCTAssertEqual(c.axes[0].runFileValue, "2")
        XCTAssertEqual(c.axes[0].rows, [SweepAxis.Row(value: "1", label: "rollout.group_size=1", isDefault: false),
                                        SweepAxis.Row(value: "2", label: "default", isDefault: true),
                                        SweepAxis.Row(value: "4", label: "rollout.group_size=4", isDefault: false)])
        // Axis 2: the run file leaves correction.mode unset; the default row comes first.
        XCTAssertNil(c.axes[1].runFileValue)
        XCTAssertEqual(c.axes[1].rows.map(\.label), ["default", "correction.mode=none", "correction.mode=truncate"])
        XCTAssertEqual(c.axes[1].rows.map { c.axes[1].rowName($0) }, ["default (not set)", "none", "truncate"])

        // 5 labels × 2 seeds, seed-major; every label has the seeds 3 and 4.
        XCTAssertEqual(c.runs.count, 10)
        XCTAssertEqual(c.runs.map(\.seed), [3, 3, 3, 3, 3, 4, 4, 4, 4, 4])
        for label in c.labels { XCTAssertEqual(c.runs.filter { $0.label == label }.map(\.seed), [3, 4], label) }
        XCTAssertEqual(Set(c.runs.map(\.directory.path)).count, 10, "one directory per run")
        XCTAssertEqual(c.runs.first { $0.label == "rollout.group_size=4" && $0.seed == 4 }?.directory.path,
                       out.appendingPathComponent("rollout.group_size=4/seed-4").path)
        for r in c.runs {
            let def = try XCTUnwrap(c.runs.first { $0.label == "default" && $0.seed == r.seed })
            let cfg = try OnPolicyConfig(text: r.text!, file: "run.toml", base: dir)
            XCTAssertEqual(cfg.opt.seed, r.seed)
            XCTAssertEqual(cfg.cache?.standardizedFileURL.path, out.appendingPathComponent("cache").standardizedFileURL.path, "one shared cache")
            XCTAssertEqual(cfg.outputDir.standardizedFileURL.path, r.directory.standardizedFileURL.path)
            // Exactly the swept key differs from the default run file of the same seed.
            let diff = linesWithoutDirectory(r.text!).difference(from: linesWithoutDirectory(def.text!))
            let removed = diff.removals.map { if case let .remove(_, e, _) = $0 { return e } else { return "" } }
            let inserted = diff.insertions.map { if case let .insert(_, e, _) = $0 { return e } else { return "" } }
            switch r.label {
            case "default": XCTAssertTrue(diff.isEmpty)
            case "rollout.group_size=1", "rollout.group_size=4":
                XCTAssertEqual(removed, ["group_size = 2"])
                XCTAssertEqual(inserted, ["group_size = \(r.label.last!)"])
                XCTAssertEqual(cfg.groupSize, Int(String(r.label.last!)))
            default:
                // correction.mode is not in the run file: a [correction] table with the one key is added.
                XCTAssertEqual(removed, [])
                XCTAssertEqual(inserted, ["", "[correction]", "mode = \"\(r.label.dropFirst("correction.mode=".count))\""])
                XCTAssertEqual(cfg.correction.rawValue, String(r.label.dropFirst("correction.mode=".count)))
            }
        }

        var log: [String] = []
        c.log = { log.append($0) }
        XCTAssertTrue(try c.run())
        XCTAssertTrue(log.contains("sweep rollout.group_size: 2 gives the run file's own recipe, so its row is the default run"), "\(log)")
        XCTAssertTrue(log.contains { $0.hasPrefix("[10/10] correction.mode=truncate seed 4: starting") }, "\(log)")
        // correction.mode does not change sampling: its step 1 is served by the default run's scores.
        for seed in [3, 4] {
            let step1 = try jsonRows(out.appendingPathComponent("correction.mode=none/seed-\(seed)")).first { $0["step"] as? Int == 1 && $0["loss"] != nil }!
            XCTAssertEqual(step1["cache_misses"] as? Int, 0)
            XCTAssertEqual(step1["cache_hits"] as? Int, 16, "2 teachers × 8 responses")
        }

        let summary = c.summary()
        // The default's cells are the default runs' (read directly), shared by both blocks; a
        // variant is paired with the default run of each seed.
        let defaultKL = try [3, 4].map { seed in
            try jsonRows(out.appendingPathComponent("default/seed-\(seed)")).filter { $0["loss"] != nil }.compactMap { $0["kl_k1"] as? Double }.last!
        }
        let variantKL = try [3, 4].map { seed in
            try jsonRows(out.appendingPathComponent("rollout.group_size=4/seed-\(seed)")).filter { $0["loss"] != nil }.compactMap { $0["kl_k1"] as? Double }.last!
        }
        XCTAssertEqual(summary.cells["default"]?["kl.final"]?.values, defaultKL)
        XCTAssertNil(summary.cells["default"]?["kl.final"]?.paired)
        XCTAssertEqual(summary.cells["rollout.group_size=4"]?["kl.final"]?.paired?.differences, zip(variantKL, defaultKL).map { $0 - $1 })
        let blocks = summary.blocks
        XCTAssertEqual(blocks.map(\.title), ["sweep rollout.group_size: the default recipe has the run file's value 2",
                                             "sweep correction.mode: the default recipe has the built-in value (the run file does not set it)"])
        XCTAssertEqual(blocks[0].rows.map { $0[0] }, ["rollout.group_size", "1", "2 (default)", "4"])
        XCTAssertEqual(blocks[1].rows.map { $0[0] }, ["correction.mode", "default (not set)", "none", "truncate"])
        XCTAssertEqual(Array(blocks[0].rows[2].dropFirst()), Array(blocks[1].rows[1].dropFirst()), "the same default runs in both blocks")
        XCTAssertEqual(blocks[0].rows[0].count, summary.columns.count + 2)
        let table = summary.table
        XCTAssertTrue(table.hasPrefix("sweep rollout.group_size: the default recipe has the run file's value 2\nrollout.group_size  "), table)
        XCTAssertTrue(table.contains("\n\nsweep correction.mode: "), table)
        XCTAssertTrue(table.contains("differs from the default recipe"), table)

        try summary.write(to: out)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent("compare.json"))) as? [String: Any])
        XCTAssertEqual(json["default"] as? String, "default")
        XCTAssertEqual((json["labels"] as? [[String: Any]])?.map { $0["label"] as? String }, c.labels)
        let axes = try XCTUnwrap(json["sweeps"] as? [[String: Any]])
        XCTAssertEqual(axes.map { $0["key"] as? String }, ["rollout.group_size", "correction.mode"])
        XCTAssertEqual(axes[0]["run_file_value"] as? String, "2")
        XCTAssertTrue(axes[1]["run_file_value"] is NSNull)
        let rows = try XCTUnwrap(axes[0]["rows"] as? [[String: Any]])
        XCTAssertEqual(rows.map { $0["label"] as? String }, ["rollout.group_size=1", "default", "rollout.group_size=4"])
        XCTAssertEqual(rows.map { $0["default"] as? Bool }, [false, true, false])
        XCTAssertTrue((try XCTUnwrap(axes[1]["rows"] as? [[String: Any]]))[0]["value"] is NSNull)
    }

    /// Every refusal comes before any work (nothing written), one line naming the argument.
    func testRefusals() throws {
        let (dir, runFile) = try makeCompareSetup(self, steps: 2)
        let out = dir.appendingPathComponent("sweep")
        let cases: [([String], [String], [String])] = [
            // (sweeps, --set overrides, fragments of the message)
            (["rollout.bogus=1,2"], [], ["--sweep rollout.bogus=1:", "rollout.bogus: unknown key (allowed: group_size"]),
            (["nosuch.key=1,2"], [], ["--sweep nosuch.key=1:", "nosuch: unknown key"]),
            (["rollout.group_size=1,0"], [], ["--sweep rollout.group_size=0:", "rollout.group_size: must be >= 1, got 0"]),
            (["rollout.group_size=1,99999"], [], ["--sweep rollout.group_size=99999:", "must be <= 4096"]),
            (["correction.mode=none,sometimes"], [], ["--sweep correction.mode=sometimes:", "\"sometimes\" is not one of: none, truncate, mask"]),
            (["train.lr=1e-3,inf"], [], ["--sweep train.lr=inf:", "train.lr: must be finite"]),
            (["rollout.group_size=one,2"], [], ["--sweep rollout.group_size=one:", "must be an integer"]),
            (["objective.whitening=batch"], [], ["--sweep objective.whitening=batch:", "applies to the sampled-token estimate only"]),
            (["rollout.group_size="], [], ["--sweep rollout.group_size=:", "no values after '='"]),
            (["rollout.group_size= , "], [], ["--sweep rollout.group_size= , :", "value 1 is empty"]),
            (["rollout.group_size=1,,4"], [], ["--sweep rollout.group_size=1,,4:", "value 2 is empty"]),
            (["rollout.group_size=1,4,1"], [], ["--sweep rollout.group_size=1,4,1:", "the value 1 is listed twice"]),
            (["train.lr=1e-3,0.001"], [], ["--sweep train.lr=0.001:", "same run configuration as train.lr=1e-3"]),
            (["rollout.group_size=2"], [], ["--sweep rollout.group_size=2:", "every value gives the default recipe", "nothing to compare"]),
            (["correction.mode=mask"], [], ["every value gives the default recipe"]),
            (["objective.tsallis_alpha=0.3,0.7"], [], ["--sweep objective.tsallis_alpha=0.7:", "gives the default recipe's configuration, as objective.tsallis_alpha=0.3 does"]),
            (["rollout.group_size=1", "rollout.group_size=4"], [], ["--sweep rollout.group_size=4:", "swept twice"]),
            (["rollout.group_size=1,4"], ["rollout.group_size=8"], ["--sweep rollout.group_size=1,4:", "also given to --set"]),
            (["rollout.group_size"], [], ["--sweep rollout.group_size:", "expected KEY=V1,V2,..."]),
            (["group_size=1,2"], [], ["--sweep group_size=1,2:", "SECTION.KEY"]),
            (["rollout.group size=1,2"], [], ["SECTION.KEY"]),
            ([".x=1"], [], ["SECTION.KEY"]),
            (["teachers.boundaries=[0.5,[0.7]"], [], ["unbalanced bracket"]),
            (["teachers.boundaries=0.5]"], [], ["unbalanced ']'"]),
            (["data.prompts=\"a,b"], [], ["unbalanced quote"]),
            (["train.seed=1,2"], [], ["train.seed cannot be swept", "--seeds"]),
            (["output.dir=a,b"], [], ["output.dir cannot be swept"]),
            (["teachers.cache=a,b"], [], ["teachers.cache cannot be swept", "shares one score cache"]),
            (["curriculum.stage[3].at=0.2,0.4"], [], ["--sweep curriculum.stage[3].at=0.2:", "--sweep 'curriculum.stage[3].at=0.2': the file has 0 [[curriculum.stage]] tables"]),
            (["model.init=nowhere"], [], ["--sweep model.init=nowhere:", "nowhere/config.json"]),
            // Files a value names are read before the first run, not when its turn comes.
            (["teachers.pool=nopool.toml"], [], ["--sweep teachers.pool=nopool.toml:", "nopool.toml"]),
            (["data.prompts=none.jsonl"], [], ["--sweep data.prompts=none.jsonl:", "none.jsonl"]),
            (["eval.data=none.jsonl"], [], ["--sweep eval.data=none.jsonl:", "none.jsonl"]),
        ]
        for (sweeps, overrides, fragments) in cases {
            assertThrows(try sweep(runFile, out, sweeps, overrides: overrides), containing: fragments)
        }
        assertThrows(try sweep(runFile, out, ["train.steps=2,3"], steps: 4), containing: ["train.steps cannot be swept together with --steps"])
        assertThrows(try sweep(runFile, out, ["rollout.group_size=1"], aggregators: ["arithmetic"]), containing: ["--sweep cannot be combined with --aggregators"])
        assertThrows(try sweep(runFile, out, ["rollout.group_size=1"], baselines: ["sft-self"]), containing: ["--sweep cannot be combined"])
        assertThrows(try sweep(runFile, out, []), containing: ["--aggregators", "at least one", "--sweep"])
        // Too many runs: counted before any run file is built (100 000 values).
        let many = "train.lr=" + (1...100_000).map { "\($0)e-9" }.joined(separator: ",")
        assertThrows(try sweep(runFile, out, [many]), containing: ["--sweep: 100001 runs", "limit of 500"])
        assertThrows(try sweep(runFile, out, ["rollout.group_size=1,4,8,16,32"], seeds: 100), containing: ["--sweep: 600 runs"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "nothing is written before the checks pass")
        // A --steps that clashes with a swept data.epochs is named by the value.
        let epochs = dir.appendingPathComponent("epochs.toml")
        try String(contentsOf: runFile, encoding: .utf8).replacingOccurrences(of: "steps = 2\n", with: "")
            .write(to: epochs, atomically: true, encoding: .utf8)
        assertThrows(try sweep(epochs, out, ["data.epochs=1,2"], steps: 3), containing: ["--sweep data.epochs=1:", "train.steps or data.epochs"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
    }

    /// Values split at top-level commas only; sweep labels become safe, distinct directory names;
    /// the run file's value of a key reads back as short text.
    func testParsingAndNames() throws {
        XCTAssertEqual(try Comparison.parseSweep("teachers.boundaries=[0.3,0.6], [0.5, 0.8]").values, ["[0.3,0.6]", "[0.5, 0.8]"])
        XCTAssertEqual(try Comparison.parseSweep("data.prompts=\"a,b.jsonl\",c.jsonl").values, ["\"a,b.jsonl\"", "c.jsonl"])
        XCTAssertEqual(try Comparison.parseSweep(" curriculum.stage[1].at = 0.2 ,0.4").key, "curriculum.stage[1].at")
        XCTAssertEqual(try Comparison.parseSweep("curriculum.stage[1].at=0.2,0.4").values, ["0.2", "0.4"])
        XCTAssertEqual(Comparison.directoryName("curriculum.stage[1].at=0.3", index: 1, taken: []), "curriculum.stage_1_.at=0.3")
        XCTAssertEqual(Comparison.directoryName("data.prompts=/tmp/a b", index: 2, taken: []), "data.prompts=_tmp_a_b")
        XCTAssertEqual(Comparison.directoryName("data.prompts=\"x\"", index: 3, taken: ["data.prompts=_x_"]), "data.prompts=_x_~3")
        let long = Comparison.directoryName("model.init=" + String(repeating: "d/", count: 200), index: 4, taken: [])
        XCTAssertEqual(long.count, 92)
        XCTAssertTrue(long.hasSuffix("~4"))
        let text = "[rollout]\ngroup_size = 4\n[objective]\ndivergence = \"tsallis\"\n[teachers]\nboundaries = [0.25, 1]\n[[curriculum.stage]]\nat = 0.5\n"
        XCTAssertEqual(Comparison.runFileValue(of: "rollout.group_size", text: text), "4")
        XCTAssertEqual(Comparison.runFileValue(of: "objective.divergence", text: text), "tsallis")
        XCTAssertEqual(Comparison.runFileValue(of: "teachers.boundaries", text: text), "[0.25, 1]")
        XCTAssertEqual(Comparison.runFileValue(of: "curriculum.stage[0].at", text: text), "0.5")
        XCTAssertNil(Comparison.runFileValue(of: "curriculum.stage[1].at", text: text))
        XCTAssertNil(Comparison.runFileValue(of: "rollout.top_p", text: text))
    }

    /// A sweep of a curriculum stage's `at`: the child run files keep the `[curriculum]` table
    /// (the run file's own aggregator) with that one stage moved.
    func testCurriculumStageSweep() throws {
        let (dir, runFile) = try makeCompareSetup(self, steps: 2)
        let staged = dir.appendingPathComponent("staged.toml")
        try (try String(contentsOf: runFile, encoding: .utf8) + """

        [curriculum]
        [[curriculum.stage]]
        at = 0.0
        weights = { weak = 1, teacher = 0 }

        [[curriculum.stage]]
        at = 0.5
        weights = { weak = 0, teacher = 1 }
        """).write(to: staged, atomically: true, encoding: .utf8)
        let c = try sweep(staged, dir.appendingPathComponent("sweep"), ["curriculum.stage[1].at=0.25,0.5"])
        XCTAssertEqual(c.labels, ["default", "curriculum.stage[1].at=0.25"])
        XCTAssertEqual(c.axes[0].rows.map { c.axes[0].rowName($0) }, ["0.25", "0.5 (default)"])
        let run = try XCTUnwrap(c.runs.last)
        XCTAssertEqual(run.directory.deletingLastPathComponent().lastPathComponent, "curriculum.stage_1_.at=0.25")
        let cfg = try OnPolicyConfig(text: run.text!, file: "run.toml", base: dir)
        XCTAssertEqual(cfg.aggregator, "curriculum")
        XCTAssertEqual(cfg.curriculum?.stages.map(\.at), [0.0, 0.25])
        assertThrows(try sweep(staged, dir.appendingPathComponent("x"), ["curriculum.stage[1].at=0.0"]),
                     containing: ["--sweep curriculum.stage[1].at=0.0:", "curriculum.stage[1].at"])
    }

    /// An interrupted sweep re-run with the same arguments skips the finished default run and
    /// resumes the variant, ending with the weights of an uninterrupted sweep; a re-run with
    /// other sweeps (or strategies instead) is refused naming the difference.
    func testResumeAndPlanMismatch() throws {
        let (dir, runFile) = try makeCompareSetup(self)
        let whole = dir.appendingPathComponent("whole")
        XCTAssertTrue(try sweep(runFile, whole, ["correction.mode=none"]).run())
        let cut = dir.appendingPathComponent("cut")
        let first = try sweep(runFile, cut, ["correction.mode=none"])
        first.stopAfterSteps = 6   // the default: 4 steps; correction.mode=none: 2 (checkpointed at 2)
        XCTAssertFalse(try first.run())
        let variant = cut.appendingPathComponent("correction.mode=none/seed-3")
        XCTAssertFalse(FileManager.default.fileExists(atPath: variant.appendingPathComponent("final").path))
        assertThrows(try sweep(runFile, cut, ["correction.mode=truncate"]),
                     containing: [cut.path, "different comparison", "the sweeps were --sweep correction.mode=none, now --sweep correction.mode=truncate"])
        assertThrows(try sweep(runFile, cut, ["correction.mode=none", "rollout.group_size=1"]), containing: ["the sweeps were"])
        assertThrows(try Comparison(runFile: runFile, aggregators: ["arithmetic"], seeds: 1, output: cut),
                     containing: ["--aggregators was (none), now arithmetic"])
        let resumed = try sweep(runFile, cut, [" correction.mode = none "])
        var log: [String] = []
        resumed.log = { log.append($0) }
        XCTAssertTrue(try resumed.run())
        XCTAssertTrue(log.contains("[1/2] default seed 3: already finished, skipped"), "\(log)")
        XCTAssertTrue(log.contains { $0.hasPrefix("[2/2] correction.mode=none seed 3: resuming at step 2") }, "\(log)")
        XCTAssertEqual(try jsonRows(variant).filter { $0["loss"] != nil }.compactMap { $0["step"] as? Int }, [1, 2, 3, 4])
        func weights(_ run: URL) throws -> [Float] {
            let m = try TransformerModel.load(directory: run.appendingPathComponent("final"))
            return Array(UnsafeBufferPointer(start: m.parameters.data, count: m.parameters.count))
        }
        for label in ["default", "correction.mode=none"] {
            XCTAssertEqual(try weights(whole.appendingPathComponent("\(label)/seed-3")), try weights(cut.appendingPathComponent("\(label)/seed-3")), label)
        }
        // A finished sweep re-run skips everything.
        let again = try sweep(runFile, cut, ["correction.mode=none"])
        var log2: [String] = []
        again.log = { log2.append($0) }
        XCTAssertTrue(try again.run())
        XCTAssertEqual(log2.filter { $0.hasSuffix("already finished, skipped") }.count, 2, "\(log2)")
    }

    /// `chorus compare --sweep` end to end: the blocks on stdout and in table.txt, the titled
    /// summary tables and one line per label in report.html; one-line usage errors.
    func testCommandLine() throws {
        let (dir, runFile) = try makeCompareSetup(self, steps: 2)
        let out = dir.appendingPathComponent("sweep")
        let (status, stdout, stderr) = try runChorus(["compare", runFile.path, "--sweep", "rollout.group_size=1,2", "--output", out.path, "--quiet"])
        XCTAssertEqual(status, 0, stderr)
        XCTAssertTrue(stderr.contains("[1/2] default seed 3: starting"), stderr)
        XCTAssertTrue(stderr.contains("[2/2] rollout.group_size=1 seed 3: starting"), stderr)
        XCTAssertTrue(stdout.hasPrefix("sweep rollout.group_size: the default recipe has the run file's value 2\n"), stdout)
        XCTAssertTrue(stdout.contains("\n2 (default) "), stdout)
        XCTAssertEqual(try String(contentsOf: out.appendingPathComponent("table.txt"), encoding: .utf8), stdout)
        let html = try String(contentsOf: out.appendingPathComponent("report.html"), encoding: .utf8)
        XCTAssertTrue(html.contains("<h3 class=\"summary-title\">sweep rollout.group_size: the default recipe has the run file&#39;s value 2</h3>"), html)
        XCTAssertTrue(html.contains("<td>2 (default)</td>") && html.contains("rollout.group_size=1 <span class=\"n\">(1 run)</span>"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: out.appendingPathComponent("rollout.group_size=1/seed-3/final/model.safetensors").path))
        assertOneLineFailure(try runChorus(["compare", runFile.path, "--aggregators", "arithmetic", "--sweep", "rollout.group_size=1",
                                            "--output", dir.appendingPathComponent("x").path]),
                             containing: ["--sweep cannot be combined with --aggregators"])
        assertOneLineFailure(try runChorus(["compare", runFile.path, "--sweep", "rollout.group_size=1,1", "--output", dir.appendingPathComponent("x").path]),
                             containing: ["--sweep rollout.group_size=1,1: the value 1 is listed twice"])
        assertOneLineFailure(try runChorus(["compare", runFile.path, "--output", dir.appendingPathComponent("x").path]),
                             containing: ["--aggregators: give at least one aggregator", "--sweep"])
    }
}
