import ChorusModel
import ChorusTasks
import ChorusTestSupport
import ChorusTraining
import Foundation
import XCTest

/// The `[eval]` table of `chorus train`: evaluation rows at step 0, every N steps and at the
/// end, written by the same evaluator as `chorus eval`, without disturbing training or resume.
final class OnPolicyEvalTests: XCTestCase {
    /// Eval every 2 of 5 steps, 2 sampled completions of the first 4 prompts.
    let evalTable = """

    [eval]
    data = "prompts.jsonl"
    every = 2
    k = 2
    problems = 4
    temperature = 1.0
    max_tokens = 6
    """

    /// The metrics rows that are evaluations, as (step, the "prompts" benchmark's summary).
    func evalRows(_ dir: URL) throws -> [(Int, [String: Double])] {
        try metricsRows(dir).compactMap { row in
            guard let e = row["eval"] as? [String: Any] else { return nil }
            XCTAssertEqual(Array(e.keys), ["prompts"])
            XCTAssertNotNil(row["eval_seconds"])
            let s = try XCTUnwrap(e["prompts"] as? [String: Any])
            return (row["step"] as! Int, s.mapValues { ($0 as! NSNumber).doubleValue })
        }
    }

    func testEvalRowsAtStepZeroEveryNAndTheEnd() throws {
        let (dir, runFile) = try makeOPDSetup(self, steps: 5, extra: evalTable)
        let trainer = try OnPolicyTrainer(config: try OnPolicyConfig(contentsOf: runFile))
        trainer.showProgress = false
        // The step-0 evaluation is the evaluator on the initial student.
        let initial = try trainer.evaluator!.run(model: try TransformerModel.load(directory: dir.appendingPathComponent("student")))
        try trainer.train()
        let weights = trainer.model.parameters.array
        let rows = try metricsRows(dir)
        XCTAssertEqual(rows.filter { $0["eval"] == nil }.map { $0["step"] as? Int }, Array(1...5))
        let evals = try evalRows(dir)
        XCTAssertEqual(evals.map(\.0), [0, 2, 4, 5])
        for (_, s) in evals {
            XCTAssertEqual(s["k"], 2); XCTAssertEqual(s["problems"], 4)
            XCTAssertTrue((0...1).contains(s["mean_at_k"]!) && s["best_at_k"]! >= s["mean_at_k"]!)
        }
        XCTAssertEqual(evals[0].1["mean_at_k"], initial.scores.meanAtK)
        XCTAssertEqual(evals[0].1["best_at_k"], initial.scores.bestAtK)
        // An eval row precedes the step row of the next step (step 0 before step 1, ...).
        XCTAssertNotNil(rows[0]["eval"])

        // Evaluating changes nothing in training: a run without [eval] ends with the same weights.
        try FileManager.default.removeItem(at: dir.appendingPathComponent("out"))
        let runText = try String(contentsOf: runFile, encoding: .utf8).replacingOccurrences(of: evalTable, with: "")
        try runText.write(to: runFile, atomically: true, encoding: .utf8)
        let plain = try OnPolicyTrainer(config: try OnPolicyConfig(contentsOf: runFile))
        plain.showProgress = false
        try plain.train()
        XCTAssertEqual(plain.model.parameters.array, weights)
    }

    /// Stopped after 3 steps and resumed: same weights and the same evaluation rows as an
    /// uninterrupted run (the step-0 evaluation is not repeated on resume).
    func testResumeWithEvalIsExact() throws {
        let (dir, runFile) = try makeOPDSetup(self, steps: 5, extra: evalTable)
        let full = try OnPolicyTrainer(config: try OnPolicyConfig(contentsOf: runFile))
        full.showProgress = false
        try full.train()
        let reference = full.model.parameters.array
        let referenceEvals = try evalRows(dir)
        let second = try trainStoppedAndResumed(dir, runFile, stopAfter: 3)
        XCTAssertEqual(second.model.parameters.array, reference)
        let evals = try evalRows(dir)
        XCTAssertEqual(evals.map(\.0), referenceEvals.map(\.0))
        XCTAssertEqual(evals.map(\.1), referenceEvals.map(\.1))
        XCTAssertEqual(try metricsRows(dir).filter { $0["eval"] == nil }.map { $0["step"] as? Int }, Array(1...5))
    }

    /// `chorus train`'s progress line (stderr, one line per step at this size) ends its fields
    /// with the latest evaluation's mean@k: step s shows the row of the newest eval at or
    /// before s (the step-0 one on step 1, step 2's own on step 2).
    func testProgressLineShowsTheLatestEval() throws {
        let (dir, runFile) = try makeOPDSetup(self, steps: 5, extra: evalTable)
        let (status, _, err) = try runChorus(["train", runFile.path])
        XCTAssertEqual(status, 0, err)
        let evals = try evalRows(dir)
        let lines = err.split(separator: "\n").filter { $0.hasPrefix("step ") }
        XCTAssertEqual(lines.count, 5, err)
        for (i, line) in lines.enumerated() {
            let s = i + 1
            let latest = try XCTUnwrap(evals.last { $0.0 <= s })
            XCTAssertTrue(line.hasPrefix("step \(s)/5 "), String(line))
            XCTAssertTrue(line.contains("| eval " + String(format: "%.3f", latest.1["mean_at_k"]!) + " |"), "step \(s): \(line)")
        }
    }

    /// A run killed after its step-0 evaluation but before its first checkpoint (simulated by
    /// deleting the checkpoints of a stopped run) resumes from step 0 without evaluating step 0
    /// a second time: the rows are those of an uninterrupted run.
    func testStepZeroEvalIsNotRepeatedWhenResumingFromNoCheckpoint() throws {
        let (dir, runFile) = try makeOPDSetup(self, steps: 5, extra: evalTable)
        try trainStoppedAndResumed(dir, runFile, stopAfter: 1) { out in
            try FileManager.default.removeItem(at: out.appendingPathComponent("checkpoints"))
        }
        XCTAssertEqual(try evalRows(dir).map(\.0), [0, 2, 4, 5])
        XCTAssertEqual(try metricsRows(dir).filter { $0["eval"] == nil }.map { $0["step"] as? Int }, Array(1...5))
    }

    /// `chorus train` with [eval], killed with SIGKILL at random moments and resumed: the final
    /// weights of the uninterrupted run (checked by the helper), each step row once, and the
    /// evaluation rows exactly the uninterrupted run's: the same steps (0, every 5, the end),
    /// each once, with the same scores.
    func testKilledRunWithEvalResumesToIdenticalWeightsAndRows() throws {
        let table = evalTable.replacingOccurrences(of: "every = 2", with: "every = 5")
        let (killed, reference) = try assertKilledRunResumesExactly(steps: 12, extra: table)
        func summary(_ rows: [[String: Any]]) -> [String] {
            rows.map { r in
                let s = (r["eval"] as? [String: Any])?["prompts"] as? [String: Any] ?? [:]
                return "\(r["step"] as? Int ?? -1) " + s.keys.sorted().map { "\($0)=\(s[$0]!)" }.joined(separator: " ")
            }
        }
        XCTAssertEqual(reference.map { $0["step"] as? Int }, [0, 5, 10, 12])
        XCTAssertEqual(summary(killed), summary(reference))
    }

    /// A bad [eval] table is reported before any work: the key, or the data file and line.
    func testEvalConfigErrors() throws {
        let (dir, runFile) = try makeOPDSetup(self, steps: 2, extra: evalTable)
        XCTAssertThrowsError(try OnPolicyConfig(contentsOf: runFile, overrides: ["eval.k=0"])) { XCTAssertTrue("\($0)".contains("eval.k"), "\($0)") }
        XCTAssertThrowsError(try OnPolicyConfig(contentsOf: runFile, overrides: ["eval.every=0"])) { XCTAssertTrue("\($0)".contains("eval.every"), "\($0)") }
        let cfg = try OnPolicyConfig(contentsOf: runFile, overrides: ["eval.problems=99"])
        XCTAssertThrowsError(try OnPolicyTrainer(config: cfg)) { XCTAssertTrue("\($0)".contains("eval.problems = 99") && "\($0)".contains("16 problems"), "\($0)") }
        XCTAssertThrowsError(try OnPolicyConfig(contentsOf: runFile, overrides: ["eval.max_tokens=40000"])) { XCTAssertTrue("\($0)".contains("eval.max_tokens"), "\($0)") }
        try "{\"prompt\": \"1 + 1 =\"}\n".write(to: dir.appendingPathComponent("noanswer.jsonl"), atomically: true, encoding: .utf8)
        let cfg2 = try OnPolicyConfig(contentsOf: runFile, overrides: ["eval.data=\"noanswer.jsonl\"", "eval.problems=1"])
        XCTAssertThrowsError(try OnPolicyTrainer(config: cfg2)) { XCTAssertTrue("\($0)".contains("noanswer.jsonl:1:"), "\($0)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("out/run.toml").path), "no run started")
    }
}
