import ChorusModel
import ChorusTraining
import Foundation
import XCTest

/// On-policy training whose sampler is a bf16 / f16 copy (16-bit matrices through the
/// AVX-512 kernel where the CPU has it): runs are reproducible, and the rollout log-probs are
/// the sampler's, not the learner's.
final class HalfRolloutTests: XCTestCase {
    func testHalfPrecisionRunsAreReproducible() throws {
        for precision in ["bf16", "f16"] {
            let (dir, runFile) = try makeOPDSetup(self, steps: 4)
            func train(_ out: String) throws -> [Float] {
                let t = try OnPolicyTrainer(config: try OnPolicyConfig(contentsOf: runFile, overrides: [
                    "rollout.precision=\"\(precision)\"", "output.dir=\"\(out)\""]))
                t.showProgress = false
                try t.train()
                return t.model.parameters.array
            }
            let a = try train("out")
            let rows = try metricsRows(dir)
            let b = try train("again")
            XCTAssertEqual(a, b, "\(precision): same config and seed, same weights")
            XCTAssertEqual(rows.count, 4)
            for r in rows {
                let drift = try XCTUnwrap(r["ppl_drift"] as? Double, precision)
                XCTAssertTrue(drift.isFinite, precision)
            }
            // The rounded sampler differs from the f32 learner somewhere in the run.
            XCTAssertTrue(rows.contains { ($0["ppl_drift"] as? Double ?? 0) != 0 }, "\(precision): ppl_drift all zero")
        }
    }
}
