import ChorusModel
import ChorusTeachers
import ChorusTensor
import Foundation
import ChorusTestSupport
import XCTest

/// The log-space mixtures (geometric mean, log-space soft switch) at the pool level, against
/// the formula evaluated by hand on the teachers' own full distributions. The teachers differ,
/// so a missing or wrong normalizer shows (identical teachers have log Z = 0).
final class MixtureParityTests: XCTestCase {
    /// Each teacher's full (T, V) log-softmax rows for each response of the group.
    func teacherRows(_ pool: TeacherPool, _ g: ScoringGroup) throws -> [[[Float]]] {
        try pool.teachers.map { t in
            try t.score(g, fullDistribution: true).map { try XCTUnwrap($0.logProbabilities).array }
        }
    }

    /// log π_ref for a log-space mixture: Σ_k w_k log π_k(v) − log Σ_u exp(Σ_k w_k log π_k(u)),
    /// in Double; returns (log π_ref row, log Z).
    func logSpaceRow(_ rows: [[Float]], weights w: [Double], position t: Int, vocab V: Int) -> ([Double], Double) {
        var s = [Double](repeating: 0, count: V)
        for k in w.indices where w[k] > 0 { for v in 0..<V { s[v] += w[k] * Double(rows[k][t * V + v]) } }
        let m = s.max()!
        let logZ = m + Foundation.log(s.reduce(0) { $0 + Foundation.exp($1 - m) })
        return (s.map { $0 - logZ }, logZ)
    }

    func entropy(_ logp: [Double]) -> Double { -logp.reduce(0) { $0 + Foundation.exp($1) * $1 } }

    func check(_ pool: TeacherPool, aggregator: String, options: AggregatorOptions, progress: Double, weights: [Double],
               file: StaticString = #filePath, line: UInt = #line) throws {
        let g = sampleGroup()
        let V = pool.vocabularySize
        let rows = try teacherRows(pool, g)
        let out = try pool.score([g], aggregator: pool.makeAggregator(name: aggregator, options: options),
                                 progress: progress, keepDistribution: true)[0]
        XCTAssertEqual(out.count, g.responses.count, file: file, line: line)
        var largestLogZ = 0.0
        for (r, ref) in out.enumerated() {
            XCTAssertEqual(ref.weights.count, weights.count, file: file, line: line)
            for (a, b) in zip(ref.weights, weights) { XCTAssertEqual(a, b, accuracy: 1e-12, file: file, line: line) }
            let resp = g.responses[r]
            XCTAssertEqual(ref.logprobs.count, resp.count, file: file, line: line)
            let dist = try XCTUnwrap(ref.distribution).array
            XCTAssertEqual(dist.count, resp.count * V, file: file, line: line)
            for t in resp.indices {
                let (expect, logZ) = logSpaceRow(rows.map { $0[r] }, weights: weights, position: t, vocab: V)
                largestLogZ = max(largestLogZ, abs(logZ))
                XCTAssertEqual(Double(ref.logprobs[t]), expect[resp[t]], accuracy: 1e-5, "\(aggregator) r\(r) t\(t)", file: file, line: line)
                XCTAssertEqual(Double(ref.entropy[t]), entropy(expect), accuracy: 1e-4, "\(aggregator) entropy r\(r) t\(t)", file: file, line: line)
                for v in 0..<V { XCTAssertEqual(Double(dist[t * V + v]), expect[v], accuracy: 1e-5, file: file, line: line) }
            }
        }
        // The teachers differ enough that dropping the normalizer would be seen.
        XCTAssertGreaterThan(largestLogZ, 0.05, "\(aggregator): the normalizer is too close to 1 to test", file: file, line: line)
    }

    func testGeometricOfDifferentTeachersMatchesTheFormula() throws {
        let pool = try tinyPool(3, weights: [1, 2, 5])
        try check(pool, aggregator: "geometric", options: AggregatorOptions(), progress: 0.3, weights: [0.125, 0.25, 0.625])
    }

    /// Log-space soft switch at p = 0.8 with K = 3: x = 1.6, j = 1, λ = 0.6, so the blend is
    /// 0.4·log π_1 + 0.6·log π_2, normalized (asymmetric, so a swapped λ is seen).
    func testLogSpaceSoftSwitchMatchesTheFormula() throws {
        let pool = try tinyPool(3)
        try check(pool, aggregator: "soft-switch", options: AggregatorOptions(softSwitchLogSpace: true), progress: 0.8,
                  weights: [0, 0.4, 0.6])
        try check(pool, aggregator: "soft-switch", options: AggregatorOptions(softSwitchLogSpace: true), progress: 0.1,
                  weights: [0.8, 0.2, 0])
    }

    /// The log-space soft switch's mixture and kernel on hand-computed numbers: π1 = (0.5,
    /// 0.25, 0.25), π2 = (0.1, 0.6, 0.3) as teachers 0 and 1 of 2 at p = 0.3 (λ = 0.3):
    /// π_ref ∝ π1^0.7 · π2^0.3 = (0.308517, 0.325090, 0.264055) / 0.897662.
    func testLogSpaceSoftSwitchHandComputed() throws {
        let mix = try SoftSwitch(teacherCount: 2, logSpace: true).mixture(AggregationContext(progress: 0.3))
        XCTAssertEqual(mix.space, .logarithm)
        XCTAssertEqual(mix.weights[0], 0.7, accuracy: 1e-12)
        XCTAssertEqual(mix.weights[1], 0.3, accuracy: 1e-12)
        let p1: [Float] = [0.5, 0.25, 0.25].map { Foundation.log($0) }
        let p2: [Float] = [0.1, 0.6, 0.3].map { Foundation.log($0) }
        var out = [Float](repeating: 0, count: 3)
        let h = p1.withUnsafeBufferPointer { a in p2.withUnsafeBufferPointer { b in
            MixtureKernel.combine(mix, rows: [a.baseAddress!, b.baseAddress!], count: 3, into: &out)
        } }
        let expect = [0.343690, 0.362152, 0.294159]
        for v in 0..<3 { XCTAssertEqual(Double(out[v]), Foundation.log(expect[v]), accuracy: 2e-5, "v=\(v)") }
        XCTAssertEqual(Double(h), -expect.reduce(0) { $0 + $1 * Foundation.log($1) }, accuracy: 1e-4)
    }
}
