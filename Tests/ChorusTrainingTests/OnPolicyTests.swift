import ChorusConfig
import ChorusModel
import ChorusTensor
import ChorusTokenizer
import ChorusTestSupport
import ChorusTraining
import Foundation
import XCTest

/// Builds a tiny on-policy setup in a temp directory: a tokenizer, a student and a sharper
/// teacher (random Qwen3 models), a one-teacher pool, prompts and a run file.
func makeOPDSetup(_ test: XCTestCase, steps: Int, extra: String = "") throws -> (dir: URL, runFile: URL) {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("chorus-opd-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
    // The teacher is the student made sharper (writeTinyArithmeticModels).
    try writeTinyArithmeticModels(in: dir, promptSeed: 4, models: [("student", 1), ("teacher", 4)])
    try """
    [[teacher]]
    name = "teacher"
    path = "teacher"
    """.write(to: dir.appendingPathComponent("pool.toml"), atomically: true, encoding: .utf8)
    let run = """
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

    [train]
    steps = \(steps)
    lr = 1e-2
    schedule = "constant"
    seed = 3
    threads = 2
    checkpoint_every = 2
    \(extra)

    [output]
    dir = "out"
    """
    let runFile = dir.appendingPathComponent("run.toml")
    try run.write(to: runFile, atomically: true, encoding: .utf8)
    return (dir, runFile)
}

/// The metrics rows of the setup's run, `dir/out` (`jsonRows`).
func metricsRows(_ dir: URL) throws -> [[String: Any]] {
    try jsonRows(dir.appendingPathComponent("out"))
}

/// Trains the setup's run file in-process into a fresh `dir/out` (removing an earlier run's),
/// stopped after `stopAfter` steps (asserting that it stopped); then `beforeResume(dir/out)`
/// (e.g. deleting checkpoints to simulate a kill) and a resume from that directory to the end.
/// Returns the resumed trainer, whose model holds the final weights.
@discardableResult
func trainStoppedAndResumed(_ dir: URL, _ runFile: URL, stopAfter: Int, file: StaticString = #filePath, line: UInt = #line,
                            beforeResume: (URL) throws -> Void = { _ in }) throws -> OnPolicyTrainer {
    let out = dir.appendingPathComponent("out")
    if FileManager.default.fileExists(atPath: out.path) { try FileManager.default.removeItem(at: out) }
    let first = try OnPolicyTrainer(config: try OnPolicyConfig(contentsOf: runFile))
    first.showProgress = false
    first.stopAfter = stopAfter
    XCTAssertNil(try first.train(), "the first run should stop after \(stopAfter) steps", file: file, line: line)
    try beforeResume(out)
    let second = try OnPolicyTrainer(config: try OnPolicyConfig(contentsOf: runFile), resume: out)
    second.showProgress = false
    try second.train()
    return second
}

/// The divergence weights are the unbiased policy gradient of D_f (and naive k3 is not).
final class DivergenceTests: XCTestCase {
    let all: [Divergence] = [.reverseKL, .forwardKL, .jensenShannon, .hellinger, .tsallis(alpha: 0.5), .tsallis(alpha: 2)]

    func softmax(_ z: [Double]) -> [Double] { let m = z.max()!; let e = z.map { Foundation.exp($0 - m) }; let s = e.reduce(0, +); return e.map { $0 / s } }
    func value(_ d: Divergence, _ p: [Double], _ q: [Double]) -> Double {
        zip(p, q).reduce(0) { $0 + $1.1 * d.f(logRatio: Foundation.log($1.0) - Foundation.log($1.1)) }
    }

    /// For a categorical student π = softmax(θ) and a fixed reference q, the exact expected
    /// policy gradient E_π[−f′(r) ∇log π] equals −∇_θ D_f(π‖q), the latter by central finite
    /// differences in Double (tolerance 1e-6).
    func testExpectedPolicyGradientIsTheExactDivergenceGradient() {
        let theta: [Double] = [0.3, -1.2, 0.8, 0.1, -0.4, 1.5]
        let q = softmax([1.0, 0.2, -0.5, 0.9, -1.1, 0.4])
        let V = theta.count
        for d in all + [.naiveK3] {
            let p = softmax(theta)
            var pg = [Double](repeating: 0, count: V)
            for y in 0..<V {
                let a = d.weight(logRatio: Foundation.log(p[y]) - Foundation.log(q[y]))
                for j in 0..<V { pg[j] += p[y] * a * ((j == y ? 1 : 0) - p[j]) }
            }
            let reference: Divergence = d == .naiveK3 ? .reverseKL : d
            var fd = [Double](repeating: 0, count: V)
            for j in 0..<V {
                var up = theta, dn = theta
                up[j] += 1e-5; dn[j] -= 1e-5
                fd[j] = -(value(reference, softmax(up), q) - value(reference, softmax(dn), q)) / 2e-5
            }
            let diff = zip(pg, fd).map { abs($0 - $1) }.max()!
            if d == .naiveK3 {
                XCTAssertGreaterThan(diff, 1e-2, "naive k3 must be biased (difference \(diff))")
            } else {
                XCTAssertLessThan(diff, 1e-6, "\(d): E[−f′(r)∇log π] vs −∇D_f differ by \(diff)")
            }
        }
    }

    /// The full-vocabulary objective's logits gradient equals the exact gradient of the
    /// divergence (finite differences in Double of Σ_v q_v f(p_v/q_v)), and its loss the value.
    func testFullVocabularyGradientIsExact() {
        let z: [Float] = [0.3, -1.2, 0.8, 0.1, -0.4, 1.5, 0.0, -2.0]
        let qd = softmax([1.0, 0.2, -0.5, 0.9, -1.1, 0.4, 0.3, -0.7])
        let q = qd.map { Float(Foundation.log($0)) }
        let V = z.count
        for d in all {
            var row = z
            let lse = Float(Foundation.log(z.map { Foundation.exp(Double($0)) }.reduce(0, +)))
            let loss = q.withUnsafeBufferPointer { qb in
                row.withUnsafeMutableBufferPointer { rb in
                    FullVocabularyDivergence(divergence: d, reference: [qb.baseAddress!], coefficients: [[0.5]])
                        .gradient(LogitRow(sequence: 0, position: 0, target: 2, values: rb.baseAddress!, vocabSize: V, logSumExp: lse))
                }
            }
            let zd = z.map(Double.init)
            XCTAssertEqual(loss, 0.5 * value(d, softmax(zd), qd), accuracy: 1e-5)
            for j in 0..<V {
                var up = zd, dn = zd
                up[j] += 1e-5; dn[j] -= 1e-5
                let fd = 0.5 * (value(d, softmax(up), qd) - value(d, softmax(dn), qd)) / 2e-5
                XCTAssertEqual(Double(row[j]), fd, accuracy: 1e-5, "\(d) logit \(j)")
            }
        }
    }
}

/// Correction, filtering, clipping, whitening and normalisation on hand-made cases.
final class TokenWeightTests: XCTestCase {
    func testCorrectionModes() {
        let learner: [[Float]] = [[log(0.5), log(0.2), log(0.9)]]
        let rollout: [[Float]] = [[log(0.5), log(0.6), log(0.3)]]   // ρ = 1, 1/3, 3
        let none = correctionWeights(learner: learner, rollout: rollout, mode: .none, lo: 0.5, hi: 2)
        XCTAssertEqual(none.weights, [[1, 1, 1]]); XCTAssertEqual(none.masked, [[false, false, false]])
        let tis = correctionWeights(learner: learner, rollout: rollout, mode: .truncate, lo: 0.5, hi: 2)
        XCTAssertEqual(tis.weights[0][0], 1, accuracy: 1e-6); XCTAssertEqual(tis.weights[0][1], 0.5); XCTAssertEqual(tis.weights[0][2], 2)
        XCTAssertEqual(tis.masked, [[false, false, false]])
        let mis = correctionWeights(learner: learner, rollout: rollout, mode: .mask, lo: 0.5, hi: 2)
        XCTAssertEqual(mis.weights[0][0], 1, accuracy: 1e-6); XCTAssertEqual(mis.weights[0][1], 0); XCTAssertEqual(mis.weights[0][2], 0)
        XCTAssertEqual(mis.masked, [[false, true, true]])
    }

    func testPercentileFilterKeepsTheRequestedRange() {
        let scores: [[Float]] = [[5, 1, 3], [2, 4]]
        let all: [[Bool]] = [[true, true, true], [true, true]]
        // Sorted 1,2,3,4,5 → percentiles 0, .25, .5, .75, 1.
        XCTAssertEqual(percentileFilter(scores: scores, eligible: all, pMin: 0.5, pMax: 1), [[true, false, true], [false, true]])
        XCTAssertEqual(percentileFilter(scores: scores, eligible: all, pMin: 0, pMax: 0.25), [[false, true, false], [true, false]])
        // Ineligible (masked) tokens are never kept and do not count in the percentiles.
        let some: [[Bool]] = [[false, true, true], [true, true]]   // 1,2,3,4 → 0, 1/3, 2/3, 1
        XCTAssertEqual(percentileFilter(scores: scores, eligible: some, pMin: 0.6, pMax: 1), [[false, false, true], [false, true]])
    }

    func testDiscountClipWhitenAndNormalise() {
        XCTAssertEqual(discounted([[1, 2, 4]], gamma: 0.5), [[1 + 0.5 * (2 + 0.5 * 4), 2 + 2, 4]])
        let (c, n) = clipped([[3, -0.5, -7]], limit: 2)
        XCTAssertEqual(c, [[2, -0.5, -2]]); XCTAssertEqual(n, 2)
        let kept: [[Bool]] = [[true, true, false], [true, true]]
        let w = whitened([[1, 3, 100], [5, 7]], kept: kept, mode: .batch, groupSize: 2)
        // mean 4, std √5 over the kept 1, 3, 5, 7; the unkept 100 is untouched.
        let s = Float(5.0.squareRoot()) + 1e-6
        for (got, want) in zip([w[0][0], w[0][1], w[1][0], w[1][1]], [-3 / s, -1 / s, 1 / s, 3 / s]) { XCTAssertEqual(got, want, accuracy: 1e-5) }
        XCTAssertEqual(w[0][2], 100)
        let sample = whitened([[1, 3, 100], [5, 7]], kept: kept, mode: .sample, groupSize: 2)
        XCTAssertEqual(sample[0][0], -1, accuracy: 1e-5); XCTAssertEqual(sample[1][1], 1, accuracy: 1e-5)
        XCTAssertEqual(lossNormalisers(kept: kept, aggregation: .tokenMean), [[0.25, 0.25, 0], [0.25, 0.25]])
        XCTAssertEqual(lossNormalisers(kept: [[true, false, false], [true, true]], aggregation: .sequenceMean), [[0.5, 0, 0], [0.25, 0.25]])
    }
}

/// `chorus train` end to end on tiny models.
final class OnPolicyTrainerTests: XCTestCase {
    /// The student's reverse KL to a fixed teacher falls. The exact full-vocabulary objective
    /// is used so that the logged loss is the KL itself (the sampled-token k1 estimate of a
    /// 280-token vocabulary over 64 tokens a step is too noisy to test a trend in 24 steps).
    func testReverseKLToAFixedTeacherFalls() throws {
        let (dir, runFile) = try makeOPDSetup(self, steps: 24)
        let trainer = try OnPolicyTrainer(config: try OnPolicyConfig(contentsOf: runFile, overrides: ["objective.full_vocabulary=true", "train.lr=5e-3"]))
        trainer.showProgress = false
        XCTAssertNotNil(try trainer.train())
        let rows = try metricsRows(dir)
        XCTAssertEqual(rows.map { $0["step"] as? Int }, Array(1...24))
        let kl = rows.map { $0["loss"] as! Double }
        let first = kl.prefix(4).reduce(0, +) / 4, last = kl.suffix(4).reduce(0, +) / 4
        XCTAssertLessThan(last, 0.75 * first, "mean KL of the first steps \(first), of the last \(last)")
        for key in ["kl_k1", "kl_k3", "kl_k1/teacher", "weight/teacher", "student_entropy", "reference_entropy", "ppl_drift",
                    "masked_fraction", "kept_fraction", "cache_hits", "seconds_rollout", "seconds_scoring", "seconds_update"] {
            XCTAssertNotNil(rows[0][key], key)
        }
    }

    /// A run stopped after 3 steps and resumed ends with the same weights as an uninterrupted one.
    func testResumeIsExact() throws {
        let (dir, runFile) = try makeOPDSetup(self, steps: 6, extra: "micro_batch = 3")
        let full = try OnPolicyTrainer(config: try OnPolicyConfig(contentsOf: runFile))
        full.showProgress = false
        try full.train()
        let reference = full.model.parameters.array
        let second = try trainStoppedAndResumed(dir, runFile, stopAfter: 3)
        XCTAssertEqual(second.model.parameters.array, reference)
        XCTAssertEqual(try metricsRows(dir).map { $0["step"] as? Int }, Array(1...6))
    }

    /// `chorus train` killed with SIGKILL at random moments and resumed each time ends with the
    /// weights of an uninterrupted run, bit for bit, and each step logged once.
    func testKilledTrainRunResumesToIdenticalWeights() throws {
        try assertKilledRunResumesExactly(steps: 24)
    }

    /// A non-finite loss stops the run naming the step, before the update, keeping the last checkpoint.
    func testNonFiniteStopsNamingTheStep() throws {
        let (_, runFile) = try makeOPDSetup(self, steps: 8, extra: "")
        let cfg = try OnPolicyConfig(contentsOf: runFile, overrides: ["train.lr=1e30"])
        let trainer = try OnPolicyTrainer(config: cfg)
        trainer.showProgress = false
        XCTAssertThrowsError(try trainer.train()) { e in
            let s = "\(e)"
            XCTAssertTrue(s.contains("step ") && s.contains("not finite"), s)
        }
    }

    /// Unknown keys and out-of-range values are errors naming the key, before any work.
    func testConfigErrorsNameTheKey() throws {
        let (_, runFile) = try makeOPDSetup(self, steps: 2)
        for (set, key) in [(["objective.divergence=\"kl\""], "objective.divergence"), (["rollout.group_size=0"], "rollout.group_size"),
                           (["correction.lo=3"], "correction.lo"),
                           (["objective.divergence=\"tsallis\"", "objective.tsallis_alpha=1"], "objective.tsallis_alpha"),
                           (["filter.min=1.5"], "filter.min"), (["rollout.tempurature=1"], "rollout.tempurature"),
                           (["train.batch_size=4"], "train.batch_size")] {
            XCTAssertThrowsError(try OnPolicyConfig(contentsOf: runFile, overrides: set), "\(set)") { e in
                XCTAssertTrue("\(e)".contains(key), "\(set): \(e)")
            }
        }
        XCTAssertThrowsError(try OnPolicyConfig(contentsOf: runFile, overrides: ["objective.full_vocabulary=true", "objective.gamma=0.5"]))
    }
}

extension XCTestCase {
    /// Runs `chorus train` (the setup's run file plus `extra`), killing it with SIGKILL at random
    /// moments and resuming until it finishes; asserts the final weights equal an uninterrupted
    /// in-process run's bit for bit and that metrics.jsonl holds each step row once, in order.
    /// Evaluation rows (those with an "eval" key) are not step rows: they are returned, with
    /// the uninterrupted run's, for the caller to compare.
    @discardableResult
    func assertKilledRunResumesExactly(steps: Int, extra: String = "") throws
        -> (killed: [[String: Any]], reference: [[String: Any]]) {
        let (dir, runFile) = try makeOPDSetup(self, steps: steps, extra: extra)
        let reference = try OnPolicyTrainer(config: try OnPolicyConfig(contentsOf: runFile))
        reference.showProgress = false
        let expected = try TransformerModel.load(directory: try XCTUnwrap(try reference.train())).parameters.array
        let referenceEvals = try metricsRows(dir).filter { $0["eval"] != nil }

        let killed = dir.appendingPathComponent("killed")
        guard let kills = try killAndResumeUntilFinished(runDirectory: killed, environment: ["CHORUS_THREADS": "2"],
                                                         pause: (200_000, 400_000), arguments: { resume in
            ["train", runFile.path, "--set", "output.dir=\"killed\"", "--quiet"] + (resume ? ["--resume", killed.path] : [])
        }) else { return ([], referenceEvals) }
        XCTAssertGreaterThanOrEqual(kills, 1, "the run should have been killed mid-way")
        let got = try TransformerModel.load(directory: killed.appendingPathComponent("final")).parameters.array
        XCTAssertEqual(got, expected, "resumed run differs from the uninterrupted one (after \(kills) kills)")
        let rows = try String(contentsOf: killed.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
            .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let logged = rows.filter { $0["eval"] == nil }.compactMap { $0["step"] as? Int }
        XCTAssertEqual(logged, Array(1...steps), "metrics has each step exactly once")
        return (rows.filter { $0["eval"] != nil }, referenceEvals)
    }
}
