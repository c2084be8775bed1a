import ChorusModel
import ChorusTeachers
import ChorusTensor
import Foundation
import ChorusTestSupport
import XCTest

/// A per-token adaptive aggregator written outside the library: the group's mixture is uniform
/// over all teachers, and at each position w_k ∝ exp(−entropy_k), so the teachers that are
/// sure of the next token count most there.
struct EntropyWeighted: Aggregator {
    let name = "entropy-weighted"
    let teacherCount: Int
    func mixture(_ c: AggregationContext) throws -> Mixture {
        Mixture(weights: [Double](repeating: 1 / Double(teacherCount), count: teacherCount), space: .probability)
    }
    func positionMixture(_ group: Mixture, statistics: [TeacherTokenStatistics?]) -> Mixture {
        let w = statistics.map { s in s.map { Foundation.exp(-Double($0.entropy)) } ?? 0 }
        let sum = w.reduce(0, +)
        return Mixture(weights: w.map { $0 / sum }, space: .probability)
    }
}

/// An aggregator that (wrongly) puts weight on a teacher the group's mixture left unscored.
struct WeighsUnscored: Aggregator {
    let name = "weighs-unscored"
    let teacherCount: Int
    func mixture(_ c: AggregationContext) throws -> Mixture { .single(0, of: teacherCount) }
    func positionMixture(_ group: Mixture, statistics: [TeacherTokenStatistics?]) -> Mixture {
        Mixture(weights: [0.5, 0.5] + [Double](repeating: 0, count: teacherCount - 2), space: .probability)
    }
}

final class TeacherRowsTests: XCTestCase {
    func testPerTokenAdaptiveAggregatorSeesTeacherStatistics() throws {
        let pool = try tinyPool(3)
        let g = sampleGroup()
        let own = try pool.teachers.map { try $0.score(g, topK: 1, fullDistribution: true) }
        let out = try pool.score([g], aggregator: EntropyWeighted(teacherCount: 3), progress: 0)[0]
        var distinct = Set<[Double]>()
        for (r, resp) in g.responses.enumerated() {
            let weights = try XCTUnwrap(out[r].positionWeights, "the weights change per token")
            XCTAssertEqual(weights.count, resp.count)
            for t in resp.indices {
                // The weights the aggregator saw come from each teacher's own entropy there.
                let e = own.map { Foundation.exp(-Double($0[r].positions[t].entropy)) }
                let w = e.map { $0 / e.reduce(0, +) }
                for k in 0..<3 { XCTAssertEqual(weights[t][k], w[k], accuracy: 1e-5) }
                distinct.insert(weights[t].map { ($0 * 1e4).rounded() })
                // π_ref(y_t) = Σ_k w_k π_k(y_t) with those weights.
                let mixed = (0..<3).map { k in w[k] * Foundation.exp(Double(own[k][r].positions[t].logprob)) }.reduce(0, +)
                XCTAssertEqual(Foundation.exp(Double(out[r].logprobs[t])), mixed, accuracy: 1e-5)
            }
        }
        XCTAssertGreaterThan(distinct.count, 1, "weights differ between positions")
        // Static strategies keep the group's weights at every position.
        let static_ = try pool.score([g], aggregator: pool.makeAggregator(name: "arithmetic"), progress: 0)[0]
        XCTAssertTrue(static_.allSatisfy { $0.positionWeights == nil })
        assertThrows(try pool.score([g], aggregator: WeighsUnscored(teacherCount: 3), progress: 0), containing: ["teacher 1", "not scored"])
    }

    func testStatisticsCarryTopLogprobFromForwardAndCache() throws {
        /// Records the statistics it is shown and keeps the group's mixture.
        final class Spy: @unchecked Sendable { var seen: [[TeacherTokenStatistics?]] = [] }
        struct Watching: Aggregator {
            let name = "watching"
            let teacherCount = 2
            let spy: Spy
            func mixture(_ c: AggregationContext) throws -> Mixture { Mixture(weights: [0.5, 0.5], space: .probability) }
            func positionMixture(_ group: Mixture, statistics: [TeacherTokenStatistics?]) -> Mixture {
                spy.seen.append(statistics)
                return group
            }
        }
        let pool = try tinyPool(2)
        let store = MemoryStore()
        pool.store = store
        pool.cacheTopK = 4
        let g = sampleGroup()
        let own = try pool.teachers.map { try $0.score(g, topK: 1) }
        let expected = g.responses.indices.flatMap { r in g.responses[r].indices.map { t in own.map { $0[r].positions[t] } } }
        for pass in ["forward, filling the cache", "cached top-k"] {
            let spy = Spy()
            _ = try pool.score([g], aggregator: Watching(spy: spy), progress: 0)
            XCTAssertEqual(spy.seen.count, expected.count, pass)
            for (seen, want) in zip(spy.seen, expected) {
                for k in 0..<2 {
                    let s = try XCTUnwrap(seen[k])
                    XCTAssertEqual(s.logprob, want[k].logprob, accuracy: 1e-3, pass)
                    XCTAssertEqual(s.entropy, want[k].entropy, accuracy: 1e-3, pass)
                    XCTAssertEqual(s.topLogprob, want[k].topLogprobs[0], accuracy: 1e-3, pass)
                }
            }
        }
    }

    /// A miss scores the group once, records what the teacher says, and then uses those scores
    /// as the store gives them back: the same reference as a later hit, bit for bit (so a step
    /// redone after a kill, or another strategy reading the record, sees what the first saw).
    func testCacheMissScoresOnceAndTrainsOnTheStoredScores() throws {
        let pool = try tinyPool(3)
        let g = sampleGroup()
        let agg = try pool.makeAggregator(name: "geometric")
        let store = MemoryStore()
        pool.store = store
        pool.cacheTopK = 5
        let missed = try pool.score([g], aggregator: agg, progress: 0, keepDistribution: true)[0]
        XCTAssertEqual(store.records.count, pool.teachers.count * g.responses.count, "one record per teacher and response")
        let hit = try pool.score([g], aggregator: agg, progress: 0, keepDistribution: true)[0]
        XCTAssertEqual(store.records.count, pool.teachers.count * g.responses.count, "a hit records nothing")
        for (a, b) in zip(missed, hit) {
            XCTAssertEqual(a.logprobs, b.logprobs, "a miss gives the numbers a hit gives")
            XCTAssertEqual(a.entropy, b.entropy)
            XCTAssertEqual(a.distribution!.array, b.distribution!.array)
            XCTAssertTrue(a.approximate)
            XCTAssertTrue(b.approximate)
        }
        // What was recorded is what the teacher says on its own, top-k included.
        for t in pool.teachers {
            let fp = try t.fingerprint()
            let own = try t.score(g, topK: 5)
            for (r, resp) in g.responses.enumerated() {
                let rec = try XCTUnwrap(store.records[store.key(fp, 5, g.prompt, resp)])
                XCTAssertEqual(rec, own[r].positions)
            }
        }
    }
}
