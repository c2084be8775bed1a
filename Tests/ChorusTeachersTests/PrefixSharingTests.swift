import ChorusModel
import ChorusTeachers
import ChorusTensor
import Foundation
import ChorusTestSupport
import XCTest

final class PrefixSharingTests: XCTestCase {
    func testSharedPrefixEqualsIndependentScoring() throws {
        let m = tinyModel(seed: 5)
        let shared = CheckpointTeacher(name: "s", model: m)
        let alone = CheckpointTeacher(name: "i", model: m)
        alone.runner.sharePrefix = false
        let g = sampleGroup()
        let a = try shared.score(g, topK: 4, fullDistribution: true), b = try alone.score(g, topK: 4, fullDistribution: true)
        XCTAssertEqual(a.map { $0.positions.count }, g.responses.map(\.count))
        for (x, y) in zip(a, b) {
            XCTAssertLessThan(maxDiff(x.positions.map(\.logprob), y.positions.map(\.logprob)), 1e-4)
            XCTAssertLessThan(maxDiff(x.positions.map(\.entropy), y.positions.map(\.entropy)), 1e-4)
            XCTAssertEqual(x.positions.map(\.topIds), y.positions.map(\.topIds))
            XCTAssertLessThan(maxDiff(x.logProbabilities!.array, y.logProbabilities!.array), 1e-4)
        }
        // And both equal scoring each whole sequence on its own.
        for (r, resp) in g.responses.enumerated() {
            let full = try m.scoreSequence(g.prompt + resp, from: g.prompt.count)
            XCTAssertLessThan(maxDiff(a[r].positions.map(\.logprob), full.compactMap { $0?.logprob }), 1e-4)
        }
        // A tiny KV budget forces one fork per batch: same result.
        shared.runner.kvBudgetBytes = 1
        let c = try shared.score(g)
        for (x, y) in zip(a, c) { XCTAssertLessThan(maxDiff(x.positions.map(\.logprob), y.positions.map(\.logprob)), 1e-5) }
    }

    /// A training step scores all its groups in one batched forward per teacher; every group's
    /// scores equal scoring that group alone, with and without a cache holding some of them.
    func testGroupsScoredTogetherEqualGroupsScoredAlone() throws {
        let groups = (0..<4).map { i -> ScoringGroup in
            var g = sampleGroup(index: i)
            g.prompt = Array(g.prompt.prefix(2 + i))             // prefixes of different lengths
            g.responses = g.responses.map { $0.map { ($0 + 7 * i) % 64 } }
            return g
        }
        for cached in [false, true] {
            let pool = try tinyPool(3)
            let aggregator = try AggregatorFactory.make(name: "arithmetic", teacherCount: 3, options: AggregatorOptions())
            if cached {
                pool.store = try ScoreCacheStore(directory: temporaryDirectory(self).appendingPathComponent("cache"))
                _ = try pool.score([groups[1], groups[3]], aggregator: aggregator, progress: 0)   // half the groups cached
            }
            let together = try pool.score(groups, aggregator: aggregator, progress: 0, keepDistribution: true)
            // Uncached: a fresh pool scores each group alone. Cached: every group (pre-cached or
            // recorded by the call above) was scored from its records as stored, so a lone lookup
            // of the same store gives the same reference bit for bit.
            let fresh = cached ? pool : try tinyPool(3)
            for (i, g) in groups.enumerated() {
                let alone = try fresh.score([g], aggregator: aggregator, progress: 0, keepDistribution: true)[0]
                XCTAssertEqual(together[i].count, g.responses.count)
                for (x, y) in zip(together[i], alone) {
                    XCTAssertEqual(x.approximate, cached, "group \(i): with a cache, groups are rebuilt from their top-k records")
                    if cached {
                        XCTAssertEqual(x.logprobs, y.logprobs, "group \(i)")
                        XCTAssertEqual(x.entropy, y.entropy, "group \(i)")
                        XCTAssertEqual(x.distribution!.array, y.distribution!.array, "group \(i)")
                        continue
                    }
                    XCTAssertLessThan(maxDiff(x.logprobs, y.logprobs), 1e-5, "group \(i)")
                    XCTAssertLessThan(maxDiff(x.entropy, y.entropy), 1e-5, "group \(i)")
                    // Whole rows reach log-probs of ~12 nats, where float32 spacing is ~1e-6: 1e-5
                    // plus 1e-6 per nat of magnitude (OpenBLAS' sgemm gives a row different last
                    // bits inside a different batch, up to 7.6e-6 on unit-scale values; measured
                    // here up to 8.1e-6 before the direct attention kernel and 1.05e-5 after).
                    let excess = zip(x.distribution!.array, y.distribution!.array).map { abs($0 - $1) - 1e-6 * abs($1) }.max() ?? 0
                    XCTAssertLessThan(excess, 1e-5, "group \(i)")
                    for k in 0..<3 { XCTAssertLessThan(maxDiff(x.teacherLogprobs[k]!, y.teacherLogprobs[k]!), 1e-5) }
                }
            }
        }
    }

    /// The head rows one forward precomputes for all its groups give what the on-demand head
    /// gives (up to the products' summation order), top-k included; a forward superseded by a
    /// later call of the same runner runs the head itself and still gives its own rows.
    func testPrecomputedHeadRowsEqualOnDemandRows() throws {
        let m = tinyModel(seed: 7)
        let groups = (0..<3).map { i -> ScoringGroup in
            var g = sampleGroup(index: i)
            g.responses = g.responses.map { $0.map { ($0 + 5 * i) % 64 } } + [[]]
            return g
        }
        let pre = CheckpointTeacher(name: "p", model: m), lazy = CheckpointTeacher(name: "l", model: m)
        lazy.runner.headBudgetFloats = 0
        let fp = try pre.forward(groups: groups), fl = try lazy.forward(groups: groups)
        func rows(_ f: TeacherForward) -> ([PositionScore], [Float]) {
            let out = Tensor(shape: [max(1, f.count), 64])
            return (f.scores(rows: 0..<f.count, topK: 5, logProbabilities: out.data), Array(out.array.prefix(f.count * 64)))
        }
        for (a, b) in zip(fp, fl) {
            XCTAssertNotNil(a.precomputed)
            XCTAssertNil(b.precomputed)
            let (sa, la) = rows(a), (sb, lb) = rows(b)
            XCTAssertEqual(sa.count, sb.count)
            XCTAssertLessThan(maxDiff(sa.map(\.logprob), sb.map(\.logprob)), 1e-5)
            XCTAssertLessThan(maxDiff(sa.map(\.entropy), sb.map(\.entropy)), 1e-5)
            XCTAssertEqual(sa.map(\.topIds), sb.map(\.topIds))
            XCTAssertLessThan(maxDiff(la, lb), 1e-5)
            // A part of a response (the chunked path of the pool) reads the same rows.
            if a.count > 2 {
                let part = a.scores(rows: 1..<3, topK: 0)
                XCTAssertEqual(part.map(\.logprob), Array(sa[1..<3]).map(\.logprob))
            }
        }
        // A later call replaces the runner's rows: the earlier forwards fall back to the head.
        let before = fp.map { rows($0).0.map(\.logprob) }
        _ = try pre.forward(groups: [groups[2], groups[0]])
        for (f, want) in zip(fp, before) {
            let got = rows(f).0.map(\.logprob)
            XCTAssertLessThan(maxDiff(got, want), 1e-5)
        }
    }

    /// Teachers scored side by side (one per worker, each forward serial on its worker) give
    /// exactly what one thread gives; two teachers over one model object, which would share its
    /// buffers, are scored one after the other; a teacher's error still reaches the caller.
    func testTeachersScoredSideBySideEqualOneThread() throws {
        let threads = Parallel.threads
        defer { Parallel.configure(threads: threads) }
        let groups = (0..<3).map { i -> ScoringGroup in
            var g = sampleGroup(index: i)
            g.responses = g.responses.map { $0.map { ($0 + 11 * i) % 64 } }
            return g
        }
        let aggregator = try AggregatorFactory.make(name: "arithmetic", teacherCount: 4, options: AggregatorOptions())
        func run(threads: Int, pool: TeacherPool) throws -> [[ReferenceScores]] {
            Parallel.configure(threads: threads)
            return try pool.score(groups, aggregator: aggregator, progress: 0, keepDistribution: true)
        }
        let serial = try run(threads: 1, pool: try tinyPool(4)), coarse = try run(threads: 2, pool: try tinyPool(4))
        for (a, b) in zip(serial.joined(), coarse.joined()) {
            XCTAssertEqual(a.logprobs, b.logprobs)
            XCTAssertEqual(a.entropy, b.entropy)
            XCTAssertEqual(a.teacherLogprobs.map { $0! }, b.teacherLogprobs.map { $0! })
            XCTAssertEqual(a.distribution!.array, b.distribution!.array)
        }
        // One model object behind two teachers: scored in turn, same numbers as two copies.
        let m = tinyModel(seed: 10)
        let shared = try TeacherPool(teachers: [CheckpointTeacher(name: "a", model: m), CheckpointTeacher(name: "b", model: m),
                                                CheckpointTeacher(name: "c", model: tinyModel(seed: 12)),
                                                CheckpointTeacher(name: "d", model: tinyModel(seed: 13))])
        let copies = try TeacherPool(teachers: [CheckpointTeacher(name: "a", model: tinyModel(seed: 10)),
                                                CheckpointTeacher(name: "b", model: tinyModel(seed: 10)),
                                                CheckpointTeacher(name: "c", model: tinyModel(seed: 12)),
                                                CheckpointTeacher(name: "d", model: tinyModel(seed: 13))])
        let x = try run(threads: 2, pool: shared), y = try run(threads: 2, pool: copies)
        for (a, b) in zip(x.joined(), y.joined()) { XCTAssertEqual(a.logprobs, b.logprobs) }
        // A token outside one teacher's vocabulary fails the call with that teacher's error.
        var bad = groups[1]
        bad.responses[0][0] = 64
        Parallel.configure(threads: 2)
        XCTAssertThrowsError(try tinyPool(4).score([groups[0], bad], aggregator: aggregator, progress: 0)) { e in
            XCTAssertEqual(e as? TeacherError, .tokenOutOfRange(teacher: "t0", token: 64, vocabSize: 64))
        }
    }

    func testForkCopiesFilledPositions() throws {
        let m = tinyModel(seed: 6)
        let ws = ForwardWorkspace()
        let cache = KVCache(config: m.config, capacity: 4)
        _ = try m.forwardHidden([PackedSequence(tokens: [1, 2, 3], cache: cache)], workspace: ws)
        let f = cache.fork(capacity: 10)
        XCTAssertEqual(f.length, 3)
        XCTAssertEqual(f.capacity, 10)
        let h1 = Array(UnsafeBufferPointer(start: try m.forwardHidden([PackedSequence(tokens: [4, 5], cache: f)], workspace: ws), count: 2 * 32))
        let h2 = try m.forwardHidden([PackedSequence(tokens: [1, 2, 3, 4, 5])], workspace: ws)
        XCTAssertLessThan(maxDiff(h1, Array(UnsafeBufferPointer(start: h2 + 3 * 32, count: 2 * 32))), 1e-5)
        XCTAssertEqual(cache.length, 3, "the original is untouched")
    }

    func testSelfTeacherScoresResponseAfterRenderedContext() throws {
        let m = tinyModel(seed: 8)
        let enc = CharEncoder(vocab: 64)
        let tpl = try PrivilegedTemplate("Solution: {answer}\n{prompt}", teacher: "self")
        XCTAssertEqual(tpl.placeholders, ["answer"])
        let t = SelfTeacher(name: "self", model: m, template: tpl, encoder: enc)
        var g = sampleGroup()
        g.privileged = ["answer": "42"]
        let ctx = try t.context(for: g)
        XCTAssertEqual(ctx, enc.encode("Solution: 42\n") + g.prompt)
        let s = try t.score(g)
        for (r, resp) in g.responses.enumerated() {
            XCTAssertEqual(s[r].positions.count, resp.count, "only response positions")
            let full = try m.scoreSequence(ctx + resp, from: ctx.count)
            XCTAssertLessThan(maxDiff(s[r].positions.map(\.logprob), full.compactMap { $0?.logprob }), 1e-4)
        }
        // The privileged context changes the scores.
        let plain = try CheckpointTeacher(name: "p", model: m).score(g)
        XCTAssertGreaterThan(maxDiff(plain[0].positions.map(\.logprob), s[0].positions.map(\.logprob)), 1e-3)
        g.privileged = [:]
        assertThrows(try t.context(for: g), containing: ["{answer}"])
        assertThrows(try PrivilegedTemplate("no prompt here", teacher: "x"), containing: ["{prompt}"])
        // A BOS at the prompt's start stays first.
        var c = m.config
        c.bosTokenId = 1
        let mb = TransformerModel(config: c)
        let tb = SelfTeacher(name: "b", model: mb, template: tpl, encoder: enc)
        g.privileged = ["answer": "7"]
        XCTAssertEqual(try tb.context(for: g), [1] + enc.encode("Solution: 7\n") + g.prompt.dropFirst())
    }

    func testFingerprintsAreStableAndDistinguish() throws {
        let dir = temporaryDirectory(self)
        try writeModel(dir.appendingPathComponent("a"), seed: 1)
        try writeModel(dir.appendingPathComponent("b"), seed: 2)
        let a1 = try CheckpointTeacher(name: "a", directory: dir.appendingPathComponent("a")).fingerprint()
        let a2 = try CheckpointTeacher(name: "a2", directory: dir.appendingPathComponent("a")).fingerprint()
        let b = try CheckpointTeacher(name: "b", directory: dir.appendingPathComponent("b")).fingerprint()
        XCTAssertEqual(a1, a2)
        XCTAssertNotEqual(a1, b)
        XCTAssertEqual(a1.hex.count, 64)
        let m = try TransformerModel.load(directory: dir.appendingPathComponent("a"))
        let tpl1 = try PrivilegedTemplate("A {prompt}", teacher: "s"), tpl2 = try PrivilegedTemplate("B {prompt}", teacher: "s")
        let s1 = try SelfTeacher(name: "s", model: m, template: tpl1, encoder: CharEncoder(vocab: 64), directory: dir.appendingPathComponent("a")).fingerprint()
        let s2 = try SelfTeacher(name: "s", model: m, template: tpl2, encoder: CharEncoder(vocab: 64), directory: dir.appendingPathComponent("a")).fingerprint()
        XCTAssertNotEqual(s1, s2)
        XCTAssertNotEqual(s1, a1)
    }

    func testAddingVocabularyRowsKeepsOldLogitsAndUsesMeanRows() throws {
        let m = tinyModel(seed: 9)
        let g = m.addingVocabularyRows(3)
        XCTAssertEqual(g.config.vocabSize, 67)
        let C = 32
        for base in [g.layout.embed, g.layout.lmHead] {
            for j in 0..<C {
                var mean: Double = 0
                let oldBase = base == g.layout.embed ? m.layout.embed : m.layout.lmHead
                for r in 0..<64 { mean += Double(m.parameter(oldBase)[r * C + j]) }
                for r in 64..<67 { XCTAssertEqual(Double(g.parameter(base)[r * C + j]), mean / 64, accuracy: 1e-5) }
            }
        }
        let ws = ForwardWorkspace()
        let h1 = Array(UnsafeBufferPointer(start: try m.forwardHidden([PackedSequence(tokens: [3, 4, 5])], workspace: ws), count: 3 * C))
        let h2 = Array(UnsafeBufferPointer(start: try g.forwardHidden([PackedSequence(tokens: [3, 4, 5])], workspace: ws), count: 3 * C))
        XCTAssertEqual(h1, h2)
        XCTAssertNoThrow(try g.forwardHidden([PackedSequence(tokens: [66, 4])], workspace: ws))
    }
}
