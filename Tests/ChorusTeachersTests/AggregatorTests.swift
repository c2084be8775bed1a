import ChorusModel
import ChorusTeachers
import ChorusTensor
import Foundation
import ChorusTestSupport
import XCTest

final class AggregatorTests: XCTestCase {
    /// Per-teacher log-probs of the group's responses, scored on their own.
    func teacherLogprobs(_ pool: TeacherPool, _ g: ScoringGroup) throws -> [[[Float]]] {
        try pool.teachers.map { t in try t.score(g).map { $0.positions.map(\.logprob) } }
    }

    func testReferenceNormalizesForEveryStrategy() throws {
        let pool = try tinyPool(3, weights: [1, 2, 3])
        // The curriculum strategy's stages (the other strategies ignore them): a linear blend
        // in either space.
        let stages = [CurriculumStage(at: 0.1, weights: [1, 0, 0]), CurriculumStage(at: 0.6, weights: [0, 1, 2])]
        let arithmetic = try Curriculum(stages: stages, space: .probability, transition: .linear)
        let geometric = try Curriculum(stages: stages, space: .logarithm, transition: .linear)
        for name in AggregatorFactory.names {
            for opts in [AggregatorOptions(curriculum: arithmetic), AggregatorOptions(softSwitchLogSpace: true, curriculum: geometric)] {
                let agg = try pool.makeAggregator(name: name, options: opts)
                for (p, gi) in [(0.0, 0), (0.37, 1), (0.5, 2), (1.0, 5)] {
                    var g = sampleGroup(index: gi)
                    if name == "control-token" { g.prompt = [pool.vocabularySize + gi % 3] + g.prompt }
                    let out = try pool.score([g], aggregator: agg, progress: p, keepDistribution: true)[0]
                    for r in out {
                        let d = try XCTUnwrap(r.distribution)
                        let V = pool.vocabularySize
                        for t in 0..<d.shape[0] {
                            var s: Double = 0
                            for v in 0..<V { s += Foundation.exp(Double(d[t * V + v])) }
                            XCTAssertEqual(s, 1, accuracy: 1e-5, "\(name) p=\(p) position \(t)")
                            XCTAssertGreaterThan(r.entropy[t], 0)
                        }
                        XCTAssertEqual(r.weights.reduce(0, +), 1, accuracy: 1e-12)
                    }
                }
            }
        }
    }

    func testGeometricOfIdenticalTeachersEqualsThatTeacher() throws {
        let m = tinyModel(seed: 3)
        let pool = try TeacherPool(teachers: [CheckpointTeacher(name: "a", model: m), CheckpointTeacher(name: "b", model: m.copy())],
                                   weights: [0.3, 0.7])
        let g = sampleGroup()
        let single = try pool.teachers[0].score(g)
        let ref = try pool.score([g], aggregator: pool.makeAggregator(name: "geometric"), progress: 0)[0]
        for (r, s) in zip(ref, single) {
            XCTAssertLessThan(maxDiff(r.logprobs, s.positions.map(\.logprob)), 1e-5)
            XCTAssertLessThan(maxDiff(r.entropy, s.positions.map(\.entropy)), 1e-4)
        }
    }

    /// π1 = (0.5, 0.25, 0.25), π2 = (0.1, 0.6, 0.3), w = (0.25, 0.75), by hand:
    /// arithmetic = (0.2, 0.5125, 0.2875); geometric ∝ π1^0.25 · π2^0.75.
    func testArithmeticAndGeometricHandComputed() {
        let p1: [Float] = [0.5, 0.25, 0.25].map { Foundation.log($0) }
        let p2: [Float] = [0.1, 0.6, 0.3].map { Foundation.log($0) }
        var out = [Float](repeating: 0, count: 3)
        let w = [0.25, 0.75]
        let hA = p1.withUnsafeBufferPointer { a in p2.withUnsafeBufferPointer { b in
            MixtureKernel.combine(Mixture(weights: w, space: .probability), rows: [a.baseAddress!, b.baseAddress!], count: 3, into: &out)
        } }
        let arith = [0.2, 0.5125, 0.2875]
        for v in 0..<3 { XCTAssertEqual(Double(out[v]), Foundation.log(arith[v]), accuracy: 1e-6) }
        XCTAssertEqual(Double(hA), -arith.map { $0 * Foundation.log($0) }.reduce(0, +), accuracy: 1e-5)

        let hG = p1.withUnsafeBufferPointer { a in p2.withUnsafeBufferPointer { b in
            MixtureKernel.combine(Mixture(weights: w, space: .logarithm), rows: [a.baseAddress!, b.baseAddress!], count: 3, into: &out)
        } }
        let un = [Foundation.pow(0.5, 0.25) * Foundation.pow(0.1, 0.75), Foundation.pow(0.25, 0.25) * Foundation.pow(0.6, 0.75),
                  Foundation.pow(0.25, 0.25) * Foundation.pow(0.3, 0.75)]
        let z = un.reduce(0, +)
        let geo = un.map { $0 / z }   // ≈ (0.1581, 0.5299, 0.3120)
        for v in 0..<3 { XCTAssertEqual(Double(out[v]), Foundation.log(geo[v]), accuracy: 1e-6) }
        XCTAssertEqual(Double(hG), -geo.map { $0 * Foundation.log($0) }.reduce(0, +), accuracy: 1e-5)
    }

    /// At the pool level the reference log-prob of the sampled token is the hand mixture of
    /// the per-teacher log-probs.
    func testPoolArithmeticMatchesTeacherMixture() throws {
        let pool = try tinyPool(3, weights: [1, 1, 2])
        let g = sampleGroup()
        let lps = try teacherLogprobs(pool, g)
        let out = try pool.score([g], aggregator: pool.makeAggregator(name: "arithmetic"), progress: 0.4)[0]
        let w = [0.25, 0.25, 0.5]
        for (r, ref) in out.enumerated() {
            XCTAssertEqual(ref.weights, w)
            for t in ref.logprobs.indices {
                let mix = (0..<3).map { w[$0] * Foundation.exp(Double(lps[$0][r][t])) }.reduce(0, +)
                XCTAssertEqual(Double(ref.logprobs[t]), Foundation.log(mix), accuracy: 1e-5)
                for k in 0..<3 { XCTAssertEqual(ref.teacherLogprobs[k]![t], lps[k][r][t], accuracy: 1e-5) }
            }
        }
    }

    func testHardSwitchChangesTeacherExactlyAtBoundaries() throws {
        let h = try HardSwitch(teacherCount: 3)
        XCTAssertEqual(h.boundaries, [1.0 / 3, 2.0 / 3])
        XCTAssertEqual(h.teacher(at: 0), 0)
        XCTAssertEqual(h.teacher(at: (1.0 / 3).nextDown), 0)
        XCTAssertEqual(h.teacher(at: 1.0 / 3), 1)
        XCTAssertEqual(h.teacher(at: (2.0 / 3).nextDown), 1)
        XCTAssertEqual(h.teacher(at: 2.0 / 3), 2)
        XCTAssertEqual(h.teacher(at: 1), 2)
        let c = try HardSwitch(teacherCount: 3, boundaries: [0.2, 0.9])
        XCTAssertEqual([0.0, 0.1999, 0.2, 0.5, 0.8999, 0.9, 1].map { c.teacher(at: $0) }, [0, 0, 1, 1, 1, 2, 2])
        XCTAssertEqual(try c.mixture(AggregationContext(progress: 0.95)).weights, [0, 0, 1])
        assertThrows(try HardSwitch(teacherCount: 3, boundaries: [0.5]), containing: ["1 boundaries for 3 teachers"])
        assertThrows(try HardSwitch(teacherCount: 3, boundaries: [0.5, 0.4]), containing: ["increase"])
        assertThrows(try c.mixture(AggregationContext(progress: 1.5)), containing: ["1.5", "outside [0, 1]"])

        // In the pool, the reference is exactly the chosen teacher.
        let pool = try tinyPool(3)
        let g = sampleGroup()
        let lps = try teacherLogprobs(pool, g)
        for (p, k) in [(0.0, 0), (0.34, 1), (0.7, 2)] {
            let out = try pool.score([g], aggregator: pool.makeAggregator(name: "hard-switch"), progress: p)[0]
            for (r, ref) in out.enumerated() {
                XCTAssertLessThan(maxDiff(ref.logprobs, lps[k][r]), 1e-5)
                XCTAssertEqual(ref.teacherLogprobs.map { $0 != nil }, (0..<3).map { $0 == k }, "only the active teacher is scored")
            }
        }
    }

    func testSoftSwitchEndpointsAndLinearity() throws {
        let pool = try tinyPool(3)
        let g = sampleGroup()
        let lps = try teacherLogprobs(pool, g)
        let agg = try pool.makeAggregator(name: "soft-switch")
        for (p, k) in [(0.0, 0), (0.5, 1), (1.0, 2)] {
            let out = try pool.score([g], aggregator: agg, progress: p)[0]
            for (r, ref) in out.enumerated() { XCTAssertLessThan(maxDiff(ref.logprobs, lps[k][r]), 1e-5, "p=\(p)") }
        }
        // Between teachers 1 and 2 (p in (0.5, 1)): π = (1−λ)π_1 + λπ_2, λ = 2p − 1.
        for p in [0.6, 0.75, 0.9] {
            let lambda = p * 2 - 1
            let out = try pool.score([g], aggregator: agg, progress: p)[0]
            for (r, ref) in out.enumerated() {
                XCTAssertEqual(ref.weights[1], 1 - lambda, accuracy: 1e-12)
                XCTAssertEqual(ref.weights[2], lambda, accuracy: 1e-12)
                for t in ref.logprobs.indices {
                    let expect = (1 - lambda) * Foundation.exp(Double(lps[1][r][t])) + lambda * Foundation.exp(Double(lps[2][r][t]))
                    XCTAssertEqual(Foundation.exp(Double(ref.logprobs[t])), expect, accuracy: 1e-6)
                }
            }
        }
        // The log-space option blends log-probs (normalized), which differs from the mixture.
        let geo = try pool.score([g], aggregator: pool.makeAggregator(name: "soft-switch", options: AggregatorOptions(softSwitchLogSpace: true)), progress: 0.75)[0]
        let ari = try pool.score([g], aggregator: agg, progress: 0.75)[0]
        XCTAssertGreaterThan(maxDiff(geo[0].logprobs, ari[0].logprobs), 1e-4)
    }

    func testControlTokenRoutingSplitsEvenlyAndHidesTheToken() throws {
        let V = 64, K = 3
        let rec = (0..<K).map { RecordingTeacher(CheckpointTeacher(name: "t\($0)", model: tinyModel(seed: UInt64(20 + $0)))) }
        let pool = try TeacherPool(teachers: rec)
        XCTAssertEqual(pool.controlTokenIds(), [V, V + 1, V + 2], "appended after the teachers' vocabulary")
        let agg = try XCTUnwrap(try pool.makeAggregator(name: "control-token") as? ControlTokenRouting)
        let groups = (0..<6).map { gi -> ScoringGroup in
            var g = sampleGroup(index: gi)
            g.prompt = agg.studentPrompt(g.prompt, group: gi)
            return g
        }
        XCTAssertEqual(groups.map { $0.prompt[0] }, [64, 65, 66, 64, 65, 66])
        XCTAssertEqual(agg.evaluationPrompt([1])[0], 66, "strongest teacher by default")
        let out = try pool.score(groups, aggregator: agg, progress: 0.3)
        var counts = [Int](repeating: 0, count: K)
        for (gi, g) in out.enumerated() {
            let k = try XCTUnwrap(g[0].weights.firstIndex(of: 1))
            XCTAssertEqual(k, gi % K)
            counts[k] += 1
            let single = try rec[k].inner.score(sampleGroup(index: gi))
            for (r, ref) in g.enumerated() { XCTAssertLessThan(maxDiff(ref.logprobs, single[r].positions.map(\.logprob)), 1e-5) }
        }
        XCTAssertEqual(counts, [2, 2, 2])
        for t in rec {
            XCTAssertFalse(t.seenPrompts.isEmpty)
            for p in t.seenPrompts {
                XCTAssertEqual(p, sampleGroup().prompt)
                XCTAssertFalse(p.contains { $0 >= V }, "a teacher saw a control token")
            }
        }
    }

    func testRandomRoutingIsReproducibleAndCoversAllTeachers() throws {
        let a = try RandomRouting(teacherCount: 4, seed: 7), b = try RandomRouting(teacherCount: 4, seed: 7)
        let c = try RandomRouting(teacherCount: 4, seed: 8)
        let ga = (0..<200).map(a.teacher(forGroup:)), gb = (0..<200).map(b.teacher(forGroup:)), gc = (0..<200).map(c.teacher(forGroup:))
        XCTAssertEqual(ga, gb)
        XCTAssertNotEqual(ga, gc)
        for k in 0..<4 { XCTAssertGreaterThan(ga.filter { $0 == k }.count, 25, "teacher \(k) is drawn") }
        XCTAssertEqual(try a.mixture(AggregationContext(progress: 0.9, group: 5)).weights.firstIndex(of: 1), ga[5])
    }

    func testFactoryNamesAndErrors() throws {
        let two = try Curriculum(stages: [CurriculumStage(at: 0, weights: [1, 1])], space: .probability, transition: .step)
        for n in AggregatorFactory.names {
            let a = try AggregatorFactory.make(name: n, teacherCount: 2, options: AggregatorOptions(controlTokenIds: [10, 11], curriculum: two))
            XCTAssertEqual(a.name, n)
        }
        assertThrows(try AggregatorFactory.make(name: "curriculum", teacherCount: 2), containing: ["curriculum", "[curriculum] table"])
        assertThrows(try AggregatorFactory.make(name: "curriculum", teacherCount: 3, options: AggregatorOptions(curriculum: two)),
                     containing: ["2 teachers", "has 3"])
        assertThrows(try AggregatorFactory.make(name: "median", teacherCount: 2),
                     containing: ["median", "arithmetic, geometric, hard-switch, soft-switch, control-token, random"])
        assertThrows(try WeightedMean(.probability, teacherCount: 2, weights: [1, -1]), containing: ["-1"])
        assertThrows(try WeightedMean(.probability, teacherCount: 2).mixture(AggregationContext(progress: -0.1)), containing: ["outside [0, 1]"])
    }
}

func maxDiff(_ a: [Float], _ b: [Float]) -> Float {
    if a.count != b.count { return .infinity }
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}
