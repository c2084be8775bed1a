import ChorusCache
import ChorusCore
import ChorusModel
import ChorusTeachers
import Foundation
import XCTest

/// An in-memory TeacherScoreStore (what the ChorusCache adapter provides on disk).
final class MemoryStore: TeacherScoreStore {
    var records: [String: [PositionScore]] = [:]
    var counts: [String: (hits: Int, misses: Int)] = [:]
    func key(_ fp: TeacherFingerprint, _ k: Int, _ c: [Int], _ r: [Int]) -> String { "\(fp)|\(k)|\(c)|\(r)" }
    func lookup(teacher: String, fingerprint: TeacherFingerprint, topK: Int, context: [Int], response: [Int]) -> [PositionScore]? {
        let r = records[key(fingerprint, topK, context, response)]
        var c = counts[teacher] ?? (0, 0)
        if r == nil { c.misses += 1 } else { c.hits += 1 }
        counts[teacher] = c
        return r
    }
    func store(teacher: String, fingerprint: TeacherFingerprint, topK: Int, context: [Int], response: [Int], scores: [PositionScore]) throws -> [PositionScore]? {
        let k = key(fingerprint, topK, context, response)
        if records[k] == nil { records[k] = scores }
        return records[k]
    }
    func hitsAndMisses() -> [String: (hits: Int, misses: Int)] { counts }
}

final class CacheHookTests: XCTestCase {
    func testCachedScoresGiveExactSampledTokenForArithmeticAndSwitches() throws {
        let pool = try tinyPool(3, weights: [1, 2, 1])
        let store = MemoryStore()
        pool.store = store
        pool.cacheTopK = 8
        let g = sampleGroup()
        for name in ["arithmetic", "hard-switch"] {
            store.records = [:]
            let agg = try pool.makeAggregator(name: name)
            pool.store = nil
            let exact = try pool.score([g], aggregator: agg, progress: 0.5)[0]
            pool.store = store
            let first = try pool.score([g], aggregator: agg, progress: 0.5)[0]
            let second = try pool.score([g], aggregator: agg, progress: 0.5)[0]
            for ((e, a), b) in zip(zip(exact, first), second) {
                XCTAssertFalse(e.approximate)
                // The miss trains on the scores as stored, so the hit gives the same reference bit
                // for bit (what makes a resumed run with a cache exact).
                XCTAssertTrue(a.approximate)
                XCTAssertTrue(b.approximate)
                XCTAssertEqual(a.logprobs, b.logprobs, name)
                XCTAssertEqual(a.entropy, b.entropy, name)
                // The sampled token's log-prob survives the top-k record.
                XCTAssertLessThan(maxDiff(e.logprobs, b.logprobs), 1e-5, name)
                if name == "hard-switch" { XCTAssertLessThan(maxDiff(e.entropy, b.entropy), 1e-5) }
            }
        }
        let c = store.hitsAndMisses()
        // A group is looked up response by response until the first miss.
        XCTAssertEqual(c["t0"]?.misses, 1)   // arithmetic only; the hard switch at 0.5 uses t1
        XCTAssertEqual(c["t0"]?.hits, 3)
        XCTAssertEqual(c["t1"]?.misses, 2)
        XCTAssertEqual(c["t1"]?.hits, 6)
    }
}
