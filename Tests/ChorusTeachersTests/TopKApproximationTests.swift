import ChorusCache
import ChorusModel
import ChorusTeachers
import ChorusTensor
import Foundation
import ChorusTestSupport
import XCTest

/// Cache hits rebuild teacher rows from top-k records (`TopKApproximation`). For every mixture
/// the approximate reference log-prob and entropy stay within the bounds documented in
/// docs/teachers.md ("How far off they can be"), computed here from the records alone.
final class TopKApproximationTests: XCTestCase {
    struct Bound { var logprob: Double; var entropy: Double }

    /// The documented bounds at one position from the active teachers' records.
    func bound(_ recs: [PositionScore], weights w: [Double], target y: Int, vocab V: Int, space: MixtureSpace) -> Bound {
        // A: tokens every record knows (top-k plus the sampled token), with π_k on A.
        let known: [[Int: Double]] = recs.map { r in
            var d: [Int: Double] = [:]
            for (id, lp) in zip(r.topIds, r.topLogprobs) { d[Int(id)] = Double(lp) }
            d[y] = Double(r.logprob)
            return d
        }
        let A = known.dropFirst().reduce(Set(known[0].keys)) { $0.intersection($1.keys) }
        let nB = Double(V - A.count)
        let logB = nB > 0 ? Foundation.log(nB) : 0
        let beta = known.map { d in max(0, 1 - A.reduce(0) { $0 + Foundation.exp(d[$1]!) }) }
        if space == .probability {
            let b = zip(w, beta).reduce(0) { $0 + $1.0 * $1.1 }
            return Bound(logprob: 0, entropy: b * logB)
        }
        let logG = A.map { u in (0..<recs.count).reduce(0.0) { $0 + w[$1] * lpOf(recs[$1], u, y) } }
        let ZA = logG.reduce(0) { $0 + Foundation.exp($1) }
        let P = zip(w, beta).reduce(1.0) { $0 * Foundation.pow($1.1, $1.0) }
        let b = P / (ZA + P)
        let Hr = -logG.reduce(0) { $0 + Foundation.exp($1) / ZA * ($1 - Foundation.log(ZA)) }
        let hb = min(b, 0.5)
        let binary = hb > 0 ? -(hb * Foundation.log(hb) + (1 - hb) * Foundation.log(1 - hb)) : 0
        return Bound(logprob: Foundation.log(1 + P / ZA), entropy: binary + b * (Hr + logB))
    }

    func lpOf(_ r: PositionScore, _ u: Int, _ y: Int) -> Double {
        if u == y { return Double(r.logprob) }
        return Double(r.topLogprobs[r.topIds.firstIndex(of: Int32(u))!])
    }

    /// Three related teachers (one random model and two small perturbations of it), peaked
    /// enough that their top-k sets overlap, as checkpoints of one family's models do.
    func relatedPool() throws -> TeacherPool {
        let base = TransformerModel(config: tinyConfig())
        base.initializeRandom(seed: 31, std: 1.0)
        var rng = ChorusRNG(seed: 32)
        let ts: [any Teacher] = (0..<3).map { k in
            let m = base.copy()
            if k > 0 { for i in 0..<m.parameters.count { m.parameters[i] += 0.1 * rng.normal() } }
            return CheckpointTeacher(name: "t\(k)", model: m)
        }
        return try TeacherPool(teachers: ts, weights: [1, 2, 3])
    }

    func testCachedScoresStayWithinTheDocumentedBounds() throws {
        let pool = try relatedPool()
        let store = MemoryStore()
        pool.store = store
        pool.cacheTopK = 16
        let g = sampleGroup()
        let V = pool.vocabularySize
        let cases: [(String, AggregatorOptions, Double)] = [
            ("geometric", AggregatorOptions(), 0.4),
            ("soft-switch", AggregatorOptions(), 0.8),
            ("soft-switch", AggregatorOptions(softSwitchLogSpace: true), 0.8),
            ("arithmetic", AggregatorOptions(), 0.4),
        ]
        for (name, opts, p) in cases {
            store.records = [:]
            let agg = try pool.makeAggregator(name: name, options: opts)
            let label = "\(name)\(opts.softSwitchLogSpace ? " log-space" : "")"
            pool.store = nil
            let exact = try pool.score([g], aggregator: agg, progress: p)[0]
            pool.store = store
            let miss = try pool.score([g], aggregator: agg, progress: p)[0]
            let approx = try pool.score([g], aggregator: agg, progress: p)[0]
            // A miss trains on its scores as stored: the same reference as the hit, bit for bit.
            XCTAssertEqual(miss.map(\.logprobs), approx.map(\.logprobs), label)
            XCTAssertEqual(miss.map(\.entropy), approx.map(\.entropy), label)
            let mix = try agg.mixture(AggregationContext(progress: p, group: g.index))
            XCTAssertGreaterThan(mix.active.count, 1, label)
            XCTAssertEqual(exact.count, approx.count)
            var worstLP = 0.0, worstH = 0.0
            var bounds: [(Double, Double)] = []
            for (r, (e, a)) in zip(exact, approx).enumerated() {
                XCTAssertFalse(e.approximate, label)
                XCTAssertTrue(a.approximate, label)
                let resp = g.responses[r]
                XCTAssertEqual([e.logprobs.count, a.logprobs.count, e.entropy.count, a.entropy.count], [Int](repeating: resp.count, count: 4))
                // The records the cached calls used.
                let recs = try mix.active.map { k -> [PositionScore] in
                    let t = pool.teachers[k]
                    return try XCTUnwrap(store.records[store.key(try t.fingerprint(), 16, try t.context(for: g), resp)], "\(label) teacher \(k)")
                }
                for t in resp.indices {
                    let bd = bound(recs.map { $0[t] }, weights: mix.active.map { mix.weights[$0] }, target: resp[t], vocab: V, space: mix.space)
                    let dLP = abs(Double(a.logprobs[t]) - Double(e.logprobs[t]))
                    let dH = abs(Double(a.entropy[t]) - Double(e.entropy[t]))
                    XCTAssertLessThanOrEqual(dLP, bd.logprob + 1e-5, "\(label) r\(r) t\(t) log-prob")
                    XCTAssertLessThanOrEqual(dH, bd.entropy + 1e-4, "\(label) r\(r) t\(t) entropy")
                    worstLP = max(worstLP, dLP); worstH = max(worstH, dH)
                    bounds.append((bd.logprob, bd.entropy))
                }
            }
            // The approximation is visible (the test compares something), and the bounds are
            // informative at a typical position (median), not only true.
            XCTAssertGreaterThan(worstH, 1e-3, "\(label): entropies identical, the tail was not exercised")
            if mix.space == .logarithm { XCTAssertGreaterThan(worstLP, 1e-3, "\(label): the normalizer was not approximated") }
            XCTAssertEqual(bounds.count, g.responses.reduce(0) { $0 + $1.count })
            XCTAssertLessThan(bounds.map(\.0).sorted()[bounds.count / 2], 0.05, "\(label): median log-prob bound")
            XCTAssertLessThan(bounds.map(\.1).sorted()[bounds.count / 2], 0.3, "\(label): median entropy bound")
        }
    }
}
