import ChorusCore
import ChorusTestSupport
import Foundation
import XCTest
@testable import ChorusReport

/// `chorus inspect` and the rollout records of a tiny real run.
final class InspectTests: XCTestCase {
    /// The recorded rollouts agree with the step's metrics row and with themselves.
    func testRecordedRolloutsAreConsistent() throws {
        let (_, run) = try makeTinyRun(self)
        XCTAssertEqual(RolloutLog.steps(run: run), [1, 2, 4])
        let rows = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").compactMap {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.filter { $0["eval"] == nil }
        for step in [1, 2, 4] {
            let recs = try RolloutLog.read(run: run, step: step)
            XCTAssertEqual(recs.count, 8)
            XCTAssertEqual(recs.map(\.sample), Array(0..<8))
            let row = try XCTUnwrap(rows.first { ($0["step"] as? Int) == step })
            let tokens = recs.reduce(0) { $0 + $1.length }
            let masked = recs.reduce(0) { $0 + $1.masked.filter { $0 }.count }
            let kept = recs.reduce(0) { $0 + $1.kept.filter { $0 }.count }
            XCTAssertEqual(row["masked_fraction"] as? Double ?? -1, Double(masked) / Double(tokens), accuracy: 1e-12)
            XCTAssertEqual(row["kept_fraction"] as? Double ?? -1, Double(kept) / Double(tokens), accuracy: 1e-12)
            var k1 = 0.0
            for r in recs {
                XCTAssertEqual(r.step, step)
                XCTAssertEqual(r.teachers, ["t-weak", "t-strong"])
                let top = try XCTUnwrap(r.referenceTop1), topLp = try XCTUnwrap(r.referenceTop1Logprob)
                for t in 0..<r.length {
                    k1 += Double(r.learnerLogprob[t]) - Double(r.referenceLogprob[t])
                    // The top-1 is the reference's most likely token: at least as likely as the student's.
                    XCTAssertGreaterThanOrEqual(topLp[t], r.referenceLogprob[t] - 1e-5)
                    if top[t] == r.responseIds[t] { XCTAssertEqual(topLp[t], r.referenceLogprob[t], accuracy: 1e-5) }
                    // Masked and dropped tokens get no gradient.
                    if r.masked[t] || !r.kept[t] { XCTAssertEqual(r.weight[t], 0) }
                    if r.masked[t] { XCTAssertFalse(r.kept[t]) }
                    let rho = exp(Double(r.learnerLogprob[t]) - Double(r.rolloutLogprob[t]))
                    XCTAssertEqual(r.masked[t], !(rho >= 0.995 && rho <= 1.005), "mask follows ρ = \(rho)")
                }
                XCTAssertEqual(r.reward != nil, r.answer != nil)
            }
            XCTAssertEqual(row["kl_k1"] as? Double ?? .nan, k1 / Double(tokens), accuracy: 1e-5)
        }
        let all = try RolloutLog.read(run: run, step: 2)
        XCTAssertGreaterThan(all.reduce(0) { $0 + $1.masked.filter { $0 }.count }, 0, "the tight mask should mask some tokens")
    }

    func testInspectCommandAndItsErrors() throws {
        let (dir, run) = try makeTinyRun(self)
        let page = dir.appendingPathComponent("p.html")
        let (status, out, err) = try runChorus(["inspect", run.path, "--step", "4", "--sample", "7", "--color", "reference-entropy", "--output", page.path])
        XCTAssertEqual(status, 0, err)
        XCTAssertEqual(out, "")
        let html = try String(contentsOf: page, encoding: .utf8)
        XCTAssertTrue(html.contains("Rollout: step 4, sample 7 of 8"))
        XCTAssertTrue(html.contains("value=\"2\" checked"), "opens with the reference-entropy colouring")
        XCTAssertTrue(html.contains("id=\"virtual-table\""))
        XCTAssertTrue(html.contains("teacher t-strong: log π"), "each teacher's log-prob on hover")

        assertOneLineFailure(try runChorus(["inspect", run.path, "--step", "3", "--output", page.path]),
                             containing: ["no rollouts recorded for step 3", "steps with rollouts: 1, 2, 4"])
        assertOneLineFailure(try runChorus(["inspect", run.path, "--step", "2", "--sample", "8", "--output", page.path]),
                             containing: ["--sample 8 is out of range", "8 samples (0...7)"])
        assertOneLineFailure(try runChorus(["inspect", run.path, "--step", "2", "--sample", "-1", "--output", page.path]), containing: ["--sample"])
        assertOneLineFailure(try runChorus(["inspect", run.path, "--step", "2", "--color", "pink", "--output", page.path]),
                             containing: ["--color", "kl, student-entropy, reference-entropy"])
        assertOneLineFailure(try runChorus(["inspect", dir.appendingPathComponent("nope").path, "--step", "2"]), containing: ["nope"])
        assertOneLineFailure(try runChorus(["inspect", dir.appendingPathComponent("student").path, "--step", "2", "--output", page.path]),
                             containing: ["not a run directory"])
        assertOneLineFailure(try runChorus(["inspect", run.path, "--step", "2", "--output", run.appendingPathComponent("x.html").path]),
                             containing: ["inside the run directory"])
        // A run that recorded none.
        try FileManager.default.removeItem(at: RolloutLog.directory(run: run))
        assertOneLineFailure(try runChorus(["inspect", run.path, "--step", "2", "--output", page.path]),
                             containing: ["no rollouts recorded", "rollouts_every"])
        // A damaged file names its line.
        let rec = RolloutRecord(step: 9, sample: 0, group: 0, prompt: "p", promptIds: [1], responseIds: [2, 3], tokens: ["a", "b"],
                                rolloutLogprob: [0, 0], learnerLogprob: [0, 0], studentEntropy: [0, 0], referenceLogprob: [0, 0],
                                referenceEntropy: [.nan, 1], teachers: [], teacherLogprobs: [], teacherWeights: [], masked: [false, false],
                                kept: [true, true], weight: [0, 0])
        try RolloutLog.write([rec], step: 9, run: run)
        let back = try RolloutLog.read(run: run, step: 9)
        XCTAssertEqual(back.count, 1)
        XCTAssertTrue(back[0].referenceEntropy[0].isNaN, "NaN round-trips")
        var same = back[0]
        same.referenceEntropy = rec.referenceEntropy
        XCTAssertEqual(same.tokens, rec.tokens)
        XCTAssertEqual(same.responseIds, rec.responseIds)
        let file = RolloutLog.fileURL(run: run, step: 9)
        let text = try String(contentsOf: file, encoding: .utf8)
        try (text + text.replacingOccurrences(of: "\"tokens\":[\"a\",\"b\"]", with: "\"tokens\":[\"a\"]")).write(to: file, atomically: true, encoding: .utf8)
        assertOneLineFailure(try runChorus(["inspect", run.path, "--step", "9", "--output", page.path]), containing: ["step-00000009.jsonl:2", "tokens has 1 entries"])
    }

    /// A sample without the reference's top-1 (a cross-tokenizer pool) says why instead.
    func testVirtualRolloutUnavailableIsExplained() {
        let rec = RolloutRecord(step: 1, sample: 0, group: 0, prompt: "p", promptIds: [1], responseIds: [2], tokens: ["a"],
                                rolloutLogprob: [0], learnerLogprob: [-1], studentEntropy: [1], referenceLogprob: [-2],
                                referenceEntropy: [.nan], teachers: ["x"], teacherLogprobs: [[-2]], teacherWeights: [1], masked: [false],
                                kept: [true], weight: [1], chunks: [[0, 1]])
        let html = TokenPage.render(record: rec, run: "r", samples: 1, coloring: .kl)
        XCTAssertTrue(html.contains("id=\"virtual-unavailable\""))
        XCTAssertTrue(html.contains("cross-tokenizer teacher"))
        XCTAssertEqual(TokenPage.values(rec, .kl), [1])
    }
}
