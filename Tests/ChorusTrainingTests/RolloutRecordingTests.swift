import ChorusCore
import ChorusTestSupport
import ChorusTraining
import Foundation
import XCTest

/// `[output] rollouts_every`: recording rollouts leaves training bit for bit as it was, and a
/// resumed run drops the files of steps it redoes.
final class RolloutRecordingTests: XCTestCase {
    func train(_ runFile: URL, _ overrides: [String]) throws -> OnPolicyTrainer {
        let t = try OnPolicyTrainer(config: try OnPolicyConfig(contentsOf: runFile, overrides: overrides))
        t.showProgress = false
        try t.train()
        return t
    }

    func testRecordingDoesNotChangeTheTrainedWeights() throws {
        let (dir, runFile) = try makeOPDSetup(self, steps: 5)
        let out = dir.appendingPathComponent("out")
        _ = try train(runFile, ["output.rollouts_every=0"])
        let plain = try Data(contentsOf: out.appendingPathComponent("final/model.safetensors"))
        let plainMetrics = try metricsRows(dir).map { $0.filter { !$0.key.hasPrefix("seconds_") && !$0.key.hasPrefix("tokens_per_s") && $0.key != "step_seconds" } }
        XCTAssertEqual(RolloutLog.steps(run: out), [])
        try FileManager.default.removeItem(at: out)
        _ = try train(runFile, ["output.rollouts_every=2"])
        XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("final/model.safetensors")), plain, "weights differ with recording on")
        let metrics = try metricsRows(dir).map { $0.filter { !$0.key.hasPrefix("seconds_") && !$0.key.hasPrefix("tokens_per_s") && $0.key != "step_seconds" } }
        XCTAssertEqual(metrics.count, plainMetrics.count)
        for (a, b) in zip(metrics, plainMetrics) { XCTAssertEqual(NSDictionary(dictionary: a), NSDictionary(dictionary: b)) }
        XCTAssertEqual(RolloutLog.steps(run: out), [1, 2, 4, 5])
        XCTAssertEqual(try RolloutLog.read(run: out, step: 5).count, 8)
    }

    func testDefaultIsTheEvalIntervalOr50() throws {
        let (_, runFile) = try makeOPDSetup(self, steps: 5)
        XCTAssertEqual(try OnPolicyConfig(contentsOf: runFile).rolloutsEvery, 50)
        XCTAssertEqual(try OnPolicyConfig(contentsOf: runFile, overrides: ["eval.data=\"prompts.jsonl\"", "eval.every=7"]).rolloutsEvery, 7)
        assertThrows(try OnPolicyConfig(contentsOf: runFile, overrides: ["output.rollouts_every=-1"]), containing: ["rollouts_every"])
    }

    /// A run resumed from step 2's checkpoint removes the files of steps 3 and later (and a
    /// torn temporary), then writes them again exactly as an uninterrupted run does.
    func testResumeRemovesRolloutsPastTheCheckpoint() throws {
        let (dir, runFile) = try makeOPDSetup(self, steps: 4)
        let out = dir.appendingPathComponent("out")
        _ = try train(runFile, ["output.rollouts_every=1"])
        let reference = try (1...4).map { try Data(contentsOf: RolloutLog.fileURL(run: out, step: $0)) }
        try FileManager.default.removeItem(at: out)

        let first = try OnPolicyTrainer(config: try OnPolicyConfig(contentsOf: runFile, overrides: ["output.rollouts_every=1"]))
        first.showProgress = false
        first.stopAfter = 3
        XCTAssertNil(try first.train())
        XCTAssertEqual(RolloutLog.steps(run: out), [1, 2, 3])
        // As if killed after step 3's rollouts but before its checkpoint: back to step 2's.
        try FileManager.default.removeItem(at: out.appendingPathComponent("checkpoints/step-00000003"))
        try "step-00000002".write(to: out.appendingPathComponent("checkpoints/latest"), atomically: true, encoding: .utf8)
        try "torn".write(to: RolloutLog.directory(run: out).appendingPathComponent(".step-00000004.jsonl.tmp-1"), atomically: true, encoding: .utf8)
        let resumed = try OnPolicyTrainer(config: try OnPolicyConfig(contentsOf: runFile, overrides: ["output.rollouts_every=1"]), resume: out)
        resumed.showProgress = false
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: RolloutLog.directory(run: out).path).sorted(),
                       ["step-00000001.jsonl", "step-00000002.jsonl"])
        try resumed.train()
        XCTAssertEqual(try (1...4).map { try Data(contentsOf: RolloutLog.fileURL(run: out, step: $0)) }, reference)
    }
}
