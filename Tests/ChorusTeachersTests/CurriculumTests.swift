import ChorusConfig
import ChorusCore
import ChorusTeachers
import ChorusTensor
import Foundation
import ChorusTestSupport
import XCTest

/// The `curriculum` aggregator: its semantics (weights as a function of progress), the strict
/// `[curriculum]` table, and that the hard and soft switch are curricula, position by position.
final class CurriculumTests: XCTestCase {
    let names = ["t1", "t2", "t3", "t4"]

    /// A run-file-like text with a `[curriculum]` table, parsed and resolved over `names`.
    func parse(_ text: String, file: String = "run.toml", teachers: [String]? = nil) throws -> Curriculum {
        let root = try ConfigTable(string: text, file: file)
        let spec = try CurriculumSpec(table: try XCTUnwrap(try root.table("curriculum")))
        return try spec.resolve(teacherNames: teachers ?? names)
    }

    func assertWeights(_ c: Curriculum, _ p: Double, _ expected: [Double], file: StaticString = #filePath, line: UInt = #line) {
        let w = c.weights(at: p)
        XCTAssertEqual(w.count, expected.count, file: file, line: line)
        for (a, b) in zip(w, expected) { XCTAssertEqual(a, b, accuracy: 1e-12, "p = \(p): \(w)", file: file, line: line) }
        XCTAssertEqual(w.reduce(0, +), 1, accuracy: 1e-12, file: file, line: line)
    }

    // MARK: semantics

    let threeStages = """
        [curriculum]
        space = "arithmetic"
        transition = "TRANSITION"

        [[curriculum.stage]]
        at = 0.2
        weights = { t1 = 1, t2 = 0, t3 = 0, t4 = 0 }

        [[curriculum.stage]]
        at = 0.5
        weights = { t1 = 0, t2 = 1, t3 = 3, t4 = 0 }

        [[curriculum.stage]]
        at = 0.8
        weights = { t1 = 0, t2 = 0, t3 = 0, t4 = 2 }
        """

    func testStepCurriculumHoldsEachStageFromItsStart() throws {
        let c = try parse(threeStages.replacingOccurrences(of: "TRANSITION", with: "step"))
        XCTAssertEqual(c.name, "curriculum")
        XCTAssertEqual(c.space, .probability)
        XCTAssertEqual(c.teacherCount, 4)
        // Normalised per stage: (0, 1, 3, 0) -> (0, 0.25, 0.75, 0), (0, 0, 0, 2) -> one-hot.
        XCTAssertEqual(c.stages.map(\.weights), [[1, 0, 0, 0], [0, 0.25, 0.75, 0], [0, 0, 0, 1]])
        assertWeights(c, 0, [1, 0, 0, 0])                   // before the first stage: the first holds
        assertWeights(c, 0.1999, [1, 0, 0, 0])
        assertWeights(c, 0.2, [1, 0, 0, 0])                 // at a stage's start
        assertWeights(c, 0.35, [1, 0, 0, 0])                // inside a stage
        assertWeights(c, 0.5.nextDown, [1, 0, 0, 0])        // just before a boundary
        assertWeights(c, 0.5, [0, 0.25, 0.75, 0])           // at the boundary: the new stage
        assertWeights(c, 0.79, [0, 0.25, 0.75, 0])
        assertWeights(c, 0.8, [0, 0, 0, 1])
        assertWeights(c, 1, [0, 0, 0, 1])                   // after the last: the last holds
        let m = try c.mixture(AggregationContext(progress: 0.6, group: 3))
        XCTAssertEqual(m, Mixture(weights: [0, 0.25, 0.75, 0], space: .probability))
        XCTAssertEqual(m.active, [1, 2], "teachers at weight 0 are not scored")
        assertThrows(try c.mixture(AggregationContext(progress: 1.01)), containing: ["outside [0, 1]"])
        assertThrows(try c.mixture(AggregationContext(progress: .nan)), containing: ["outside [0, 1]"])
    }

    func testLinearCurriculumBlendsNeighbouringStages() throws {
        let c = try parse(threeStages.replacingOccurrences(of: "TRANSITION", with: "linear").replacingOccurrences(of: "arithmetic", with: "geometric"))
        XCTAssertEqual(c.space, .logarithm)
        XCTAssertEqual(c.transition, .linear)
        assertWeights(c, 0, [1, 0, 0, 0])
        assertWeights(c, 0.2, [1, 0, 0, 0])
        // λ = (0.35 − 0.2) / 0.3 = 0.5: half stage 0, half stage 1.
        assertWeights(c, 0.35, [0.5, 0.125, 0.375, 0])
        // λ = 0.1 / 0.3 = 1/3.
        assertWeights(c, 0.3, [2.0 / 3, 0.25 / 3, 0.75 / 3, 0])
        assertWeights(c, 0.5, [0, 0.25, 0.75, 0])
        // λ = (0.74 − 0.5) / 0.3 = 0.8.
        assertWeights(c, 0.74, [0, 0.05, 0.15, 0.8])
        assertWeights(c, 0.8, [0, 0, 0, 1])
        assertWeights(c, 0.95, [0, 0, 0, 1])
        assertWeights(c, 1, [0, 0, 0, 1])
        // Teachers at 0 in both neighbouring stages stay exactly 0 (not scored).
        XCTAssertEqual(c.weights(at: 0.35)[3], 0)
        XCTAssertEqual(try c.mixture(AggregationContext(progress: 0.35)).active, [0, 1, 2])
        // The blend moves monotonically from one stage to the next.
        var last = 1.0
        for i in 0...100 {
            let w = c.weights(at: 0.2 + 0.3 * Double(i) / 100)[0]
            XCTAssertLessThanOrEqual(w, last + 1e-15)
            last = w
        }
    }

    func testSingleStageAndDefaults() throws {
        let c = try parse("[curriculum]\n[[curriculum.stage]]\nat = 0.5\nweights = { t1 = 1, t2 = 1, t3 = 2, t4 = 0 }\n")
        XCTAssertEqual(c.space, .probability, "default space arithmetic")
        XCTAssertEqual(c.transition, .step, "default transition step")
        for p in [0, 0.25, 0.5, 0.99, 1] { assertWeights(c, p, [0.25, 0.25, 0.5, 0]) }
    }

    // MARK: validation

    func testValidationNamesFileStageAndTeacher() throws {
        func stage(_ at: String, _ w: String) -> String { "[[curriculum.stage]]\nat = \(at)\nweights = { \(w) }\n" }
        let ok = "t1 = 1, t2 = 0, t3 = 0, t4 = 0"
        let cases: [(String, [String])] = [
            (stage("0", ok) + stage("0.5", "t1 = 1, t2 = -1, t3 = 0, t4 = 0"), ["stage[1].weights.t2", ">= 0", "-1"]),
            (stage("0", "t1 = nan, t2 = 1, t3 = 0, t4 = 0"), ["stage[0].weights.t1", "finite"]),
            (stage("0", ok) + stage("0.5", "t1 = 0, t2 = 0, t3 = inf, t4 = 0"), ["stage[1].weights.t3", "finite"]),
            (stage("0", "t1 = 0, t2 = 0, t3 = 0, t4 = 0"), ["stage[0].weights", "all weights are 0"]),
            (stage("0", ok) + stage("0.5", "t1 = 0.0, t2 = 0, t3 = 0, t4 = 0"), ["stage[1].weights", "all weights are 0"]),
            (stage("1.5", ok), ["stage[0].at", "<= 1"]),
            (stage("-0.1", ok), ["stage[0].at", ">= 0"]),
            (stage("0.5", ok) + stage("0.5", ok), ["stage[1].at", "greater than stage[0]'s at = 0.5"]),
            (stage("0.5", ok) + stage("0.7", ok) + stage("0.6", ok), ["stage[2].at", "greater than stage[1]'s at = 0.7"]),
            (stage("0", ok + ", t9 = 1"), ["stage[0].weights.t9", "unknown teacher 't9'", "t1, t2, t3, t4"]),
            (stage("0", ok) + stage("0.4", "t1 = 1, t3 = 0, t4 = 0"), ["stage[1].weights", "no weight for teacher 't2'"]),
            (stage("0", ""), ["stage[0].weights", "empty"]),
            ("[[curriculum.stage]]\nweights = { \(ok) }\n", ["stage[0].at", "missing"]),
            ("[[curriculum.stage]]\nat = 0\n", ["stage[0].weights", "missing"]),
            ("[[curriculum.stage]]\nat = 0\nweights = 1\n", ["stage[0].weights", "table"]),
            ("[[curriculum.stage]]\nat = \"0\"\nweights = { \(ok) }\n", ["stage[0].at", "number"]),
            ("[[curriculum.stage]]\nat = 0\nweight = 1\nweights = { \(ok) }\n", ["stage[0].weight", "unknown key"]),
            (stage("0", "t1 = 1, t2 = \"x\", t3 = 0, t4 = 0"), ["stage[0].weights.t2", "number"]),
            ("", ["curriculum.stage", "at least one"]),
            ("space = \"median\"\n" + stage("0", ok), ["curriculum.space", "arithmetic, geometric"]),
            ("transition = \"smooth\"\n" + stage("0", ok), ["curriculum.transition", "step, linear"]),
            ("stages = 1\n" + stage("0", ok), ["curriculum.stages", "unknown key"]),
        ]
        for (body, fragments) in cases {
            assertThrows(try parse("[curriculum]\n" + body, file: "runs/x.toml"), containing: ["runs/x.toml: curriculum."] + fragments)
        }
        // The same checks for a curriculum built in code (teacher and stage by index).
        let one: [Double] = [1, 0]
        assertThrows(try Curriculum(stages: [], space: .probability, transition: .step), containing: ["no stages"])
        assertThrows(try Curriculum(stages: [CurriculumStage(at: 0, weights: [1, -2])], space: .probability, transition: .step),
                     containing: ["stage 0", "teacher 1", "-2"])
        assertThrows(try Curriculum(stages: [CurriculumStage(at: 0, weights: [.infinity, 1])], space: .probability, transition: .step),
                     containing: ["stage 0", "teacher 0"])
        assertThrows(try Curriculum(stages: [CurriculumStage(at: 0, weights: one), CurriculumStage(at: 0.5, weights: [0, 0])],
                                    space: .probability, transition: .step), containing: ["stage 1", "all weights are 0"])
        assertThrows(try Curriculum(stages: [CurriculumStage(at: .nan, weights: one)], space: .probability, transition: .step),
                     containing: ["stage 0", "outside [0, 1]"])
        assertThrows(try Curriculum(stages: [CurriculumStage(at: 0.3, weights: one), CurriculumStage(at: 0.3, weights: one)],
                                    space: .probability, transition: .linear), containing: ["stage 1", "greater than stage 0"])
        assertThrows(try Curriculum(stages: [CurriculumStage(at: 0, weights: one), CurriculumStage(at: 1, weights: [1, 0, 0])],
                                    space: .probability, transition: .step), containing: ["stage 1", "3 weights for 2 teachers"])
        // Huge finite weights normalise without overflow.
        let big = try Curriculum(stages: [CurriculumStage(at: 0, weights: [1e308, 1e308])], space: .probability, transition: .step)
        XCTAssertEqual(big.weights(at: 0.5), [0.5, 0.5])
    }

    func testManifestCurriculumIsCheckedAgainstItsTeachers() throws {
        let teachers = "[[teacher]]\nname = \"a\"\npath = \"a\"\n[[teacher]]\nname = \"b\"\npath = \"b\"\n"
        let file = URL(fileURLWithPath: "/pools/ladder.toml")
        let m = try PoolManifest(toml: teachers + """
            [curriculum]
            transition = "linear"
            [[curriculum.stage]]
            at = 0
            weights = { a = 1, b = 0 }
            [[curriculum.stage]]
            at = 1
            weights = { a = 0, b = 1 }
            """, file: file)
        let c = try XCTUnwrap(m.curriculum)
        XCTAssertEqual(c.weights(at: 0.25), [0.75, 0.25])
        XCTAssertNil(try PoolManifest(toml: teachers, file: file).curriculum)
        assertThrows(try PoolManifest(toml: teachers + "[curriculum]\n[[curriculum.stage]]\nat = 0\nweights = { a = 1, c = 1 }\n", file: file),
                     containing: ["/pools/ladder.toml: curriculum.stage[0].weights.c", "unknown teacher 'c'", "a, b"])
        assertThrows(try PoolManifest(toml: teachers + "[curriculum]\n[[curriculum.stage]]\nat = 0\nweights = { b = 1 }\n", file: file),
                     containing: ["/pools/ladder.toml: curriculum.stage[0].weights", "no weight for teacher 'a'"])
        // The pool hands its curriculum to `makeAggregator("curriculum")`.
        let pool = try TeacherPool(teachers: [CheckpointTeacher(name: "a", model: tinyModel(seed: 1)),
                                              CheckpointTeacher(name: "b", model: tinyModel(seed: 2))], manifest: m)
        let agg = try pool.makeAggregator(name: "curriculum")
        XCTAssertEqual(try agg.mixture(AggregationContext(progress: 0.5)).weights, [0.5, 0.5])
        assertThrows(try tinyPool(2).makeAggregator(name: "curriculum"), containing: ["[curriculum] table"])
    }

    // MARK: equivalence with the named switch strategies

    /// Random log-softmax rows (K, V), some sharply peaked, some flat.
    func randomRows(K: Int, V: Int, seed: UInt64) -> [[Float]] {
        var rng = ChorusRNG(seed: seed)
        return (0..<K).map { k in
            let scale = Float(1 + 4 * k)
            let logits = (0..<V).map { _ in scale * rng.normal() }
            let m = logits.max()!
            let lse = m + Foundation.log(logits.reduce(Float(0)) { $0 + Foundation.exp($1 - m) })
            return logits.map { $0 - lse }
        }
    }

    /// log π_ref (V) for a mixture of `rows`.
    func combine(_ m: Mixture, _ rows: [[Float]]) -> [Float] {
        let V = rows[0].count
        var out = [Float](repeating: 0, count: V)
        let ptrs = rows.map { r -> UnsafeMutablePointer<Float> in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: V)
            p.update(from: r, count: V)
            return p
        }
        defer { ptrs.forEach { $0.deallocate() } }
        _ = MixtureKernel.combine(m, rows: m.weights.indices.map { m.weights[$0] > 0 ? UnsafePointer(ptrs[$0]) : nil }, count: V, into: &out)
        return out
    }

    /// Progress values: a grid, every boundary with its neighbours, and random points; with
    /// `avoiding` > 0, none within that distance of a boundary.
    func progresses(boundaries: [Double], avoiding: Double = 0) -> [Double] {
        var rng = ChorusRNG(seed: 99)
        var ps = (0...200).map { Double($0) / 200 } + (0..<200).map { _ in rng.uniformDouble() }
        for b in boundaries { ps += [b, b.nextDown, b.nextUp, b + 1e-9, b - 1e-9] }
        return ps.filter { p in p >= 0 && p <= 1 && (avoiding == 0 || boundaries.allSatisfy { abs(p - $0) >= avoiding }) }
    }

    /// DESIGN.md's closed form of the soft switch, computed on its own as the oracle:
    /// x = p·(K−1), j = floor(x), λ = x − j, w_j = 1 − λ, w_{j+1} = λ.
    struct SoftSwitchFormula: Aggregator {
        let name = "soft-switch formula"
        let teacherCount: Int
        let logSpace: Bool
        func mixture(_ c: AggregationContext) throws -> Mixture {
            let K = teacherCount
            let x = c.progress * Double(K - 1)
            let j = min(Int(x.rounded(.down)), K - 1)
            let lambda = x - Double(j)
            var w = [Double](repeating: 0, count: K)
            if j == K - 1 || lambda == 0 {
                w[j] = 1
            } else {
                w[j] = 1 - lambda
                w[j + 1] = lambda
            }
            return Mixture(weights: w, space: logSpace ? .logarithm : .probability)
        }
    }

    /// The named strategy and the curriculum give the same reference, full row and sampled
    /// token, at every progress (random teacher rows; the sampled token drawn per p).
    func assertSameReference(_ named: any Aggregator, _ curriculum: Curriculum, boundaries: [Double], avoiding: Double = 0,
                             file: StaticString = #filePath, line: UInt = #line) throws {
        let K = named.teacherCount, V = 97
        var rng = ChorusRNG(seed: 5)
        var worst: Float = 0
        for (i, p) in progresses(boundaries: boundaries, avoiding: avoiding).enumerated() {
            let rows = randomRows(K: K, V: V, seed: UInt64(i))
            let a = combine(try named.mixture(AggregationContext(progress: p, group: i)), rows)
            let b = combine(try curriculum.mixture(AggregationContext(progress: p, group: i)), rows)
            let diff = maxDiff(a, b)
            worst = max(worst, diff)
            XCTAssertLessThanOrEqual(diff, 1e-6, "\(named.name) p = \(p): full row", file: file, line: line)
            let token = rng.int(below: V)
            XCTAssertEqual(a[token], b[token], accuracy: 1e-6, "\(named.name) p = \(p): sampled token \(token)", file: file, line: line)
        }
        XCTAssertLessThanOrEqual(worst, 1e-6)
    }

    func testHardSwitchIsAStepCurriculum() throws {
        for (K, boundaries) in [(4, nil), (4, [0.2, 0.45, 0.7]), (3, [0.0, 0.5]), (3, [0.3, 1.0]), (2, [0.999]), (1, nil)] as [(Int, [Double]?)] {
            let named = try HardSwitch(teacherCount: K, boundaries: boundaries)
            let c = try Curriculum.hardSwitch(teacherCount: K, boundaries: boundaries)
            for p in progresses(boundaries: named.boundaries) {
                XCTAssertEqual(try named.mixture(AggregationContext(progress: p)).weights, c.weights(at: p), "K \(K) \(named.boundaries) p \(p)")
            }
            try assertSameReference(named, c, boundaries: named.boundaries)
        }
        // The curriculum a user writes for hard-switch.toml's boundaries is that one.
        let written = try parse("""
            [curriculum]
            transition = "step"
            [[curriculum.stage]]
            at = 0.0
            weights = { t1 = 1, t2 = 0, t3 = 0, t4 = 0 }
            [[curriculum.stage]]
            at = 0.2
            weights = { t1 = 0, t2 = 1, t3 = 0, t4 = 0 }
            [[curriculum.stage]]
            at = 0.45
            weights = { t1 = 0, t2 = 0, t3 = 1, t4 = 0 }
            [[curriculum.stage]]
            at = 0.7
            weights = { t1 = 0, t2 = 0, t3 = 0, t4 = 1 }
            """)
        XCTAssertEqual(written, try Curriculum.hardSwitch(teacherCount: 4, boundaries: [0.2, 0.45, 0.7]))
        try assertSameReference(try HardSwitch(teacherCount: 4, boundaries: [0.2, 0.45, 0.7]), written, boundaries: [0.2, 0.45, 0.7])
    }

    /// `SoftSwitch` computes its weights as its curriculum (one path, see its doc comment), so
    /// the oracle here is DESIGN.md's closed form: the weights agree to 1e-12 at every p, the
    /// references position by position away from rounding distance of a stage start. There a
    /// 1e-16 weight on the fading teacher, present in one computation of λ and not the other,
    /// moves the probability-space log-prob of tokens only it supports by ln(w/w'): the
    /// planted check below shows the oracle differs there, which is why one path computes both.
    func testSoftSwitchIsALinearCurriculumInBothSpaces() throws {
        for K in [1, 2, 3, 4, 7, 50] {
            for logSpace in [false, true] {
                let named = try SoftSwitch(teacherCount: K, logSpace: logSpace)
                let formula = SoftSwitchFormula(teacherCount: K, logSpace: logSpace)
                let c = try Curriculum.softSwitch(teacherCount: K, logSpace: logSpace)
                XCTAssertEqual(c.space, logSpace ? .logarithm : .probability)
                XCTAssertEqual(named.curriculum, c)
                let stageStarts = c.stages.map(\.at)
                for p in progresses(boundaries: stageStarts) {
                    let a = try formula.mixture(AggregationContext(progress: p)).weights, b = c.weights(at: p)
                    for k in 0..<K { XCTAssertEqual(a[k], b[k], accuracy: 1e-12, "K \(K) p \(p)") }
                    XCTAssertEqual(try named.mixture(AggregationContext(progress: p)).weights, b)
                }
                if K <= 7 { try assertSameReference(formula, c, boundaries: stageStarts, avoiding: 1e-9) }
            }
        }
        // At p = 1/49 exactly the closed form gives teacher 0 a weight of 1e-16 (49·fl(1/49) < 1):
        // visible in probability space, absent from the curriculum (and so from SoftSwitch).
        let p = 1.0 / 49
        let formula50 = try SoftSwitchFormula(teacherCount: 50, logSpace: false).mixture(AggregationContext(progress: p))
        XCTAssertGreaterThan(formula50.weights[0], 0)
        XCTAssertEqual(try SoftSwitch(teacherCount: 50).mixture(AggregationContext(progress: p)).weights[0], 0)
        // As written in a run file (soft-switch.toml's ladder, log-space variant).
        let written = try parse("""
            [curriculum]
            space = "geometric"
            transition = "linear"
            [[curriculum.stage]]
            at = 0
            weights = { t1 = 1, t2 = 0, t3 = 0, t4 = 0 }
            [[curriculum.stage]]
            at = 0.3333333333333333
            weights = { t1 = 0, t2 = 1, t3 = 0, t4 = 0 }
            [[curriculum.stage]]
            at = 0.6666666666666666
            weights = { t1 = 0, t2 = 0, t3 = 1, t4 = 0 }
            [[curriculum.stage]]
            at = 1
            weights = { t1 = 0, t2 = 0, t3 = 0, t4 = 1 }
            """)
        XCTAssertEqual(written, try Curriculum.softSwitch(teacherCount: 4, logSpace: true))
        try assertSameReference(try SoftSwitch(teacherCount: 4, logSpace: true), written, boundaries: written.stages.map(\.at))
        // Stage weights are normalised: any positive one-hot weight is that teacher alone.
        try assertSameReference(try SoftSwitch(teacherCount: 4), try parse("""
            [curriculum]
            space = "arithmetic"
            transition = "linear"
            [[curriculum.stage]]
            at = 0
            weights = { t1 = 2, t2 = 0, t3 = 0, t4 = 0 }
            [[curriculum.stage]]
            at = 0.3333333333333333
            weights = { t1 = 0, t2 = 0.5, t3 = 0, t4 = 0 }
            [[curriculum.stage]]
            at = 0.6666666666666666
            weights = { t1 = 0, t2 = 0, t3 = 7, t4 = 0 }
            [[curriculum.stage]]
            at = 1
            weights = { t1 = 0, t2 = 0, t3 = 0, t4 = 1e-3 }
            """), boundaries: written.stages.map(\.at))
    }

    /// Through the pool: the reference log-probs of sampled tokens and the full-vocabulary
    /// rows of the named strategies and their curricula agree position by position.
    func testPoolReferencesMatchTheNamedStrategies() throws {
        let pool = try tinyPool(3)
        let pairs: [(any Aggregator, Curriculum)] = [
            (try HardSwitch(teacherCount: 3, boundaries: [0.3, 0.65]), try Curriculum.hardSwitch(teacherCount: 3, boundaries: [0.3, 0.65])),
            (SoftSwitchFormula(teacherCount: 3, logSpace: false), try Curriculum.softSwitch(teacherCount: 3)),
            (SoftSwitchFormula(teacherCount: 3, logSpace: true), try Curriculum.softSwitch(teacherCount: 3, logSpace: true)),
        ]
        let g = sampleGroup(index: 1)
        for (named, c) in pairs {
            for p in [0, 0.1, 0.3, 0.3.nextDown, 0.42, 0.5, 0.65, 0.77, 0.9, 1] {
                let a = try pool.score([g], aggregator: named, progress: p, keepDistribution: true)[0]
                let b = try pool.score([g], aggregator: c, progress: p, keepDistribution: true)[0]
                for (ra, rb) in zip(a, b) {
                    XCTAssertLessThanOrEqual(maxDiff(ra.logprobs, rb.logprobs), 1e-6, "\(named.name) p \(p): sampled tokens")
                    let da = try XCTUnwrap(ra.distribution), db = try XCTUnwrap(rb.distribution)
                    XCTAssertLessThanOrEqual(maxDiff(Array(UnsafeBufferPointer(start: da.data, count: da.count)),
                                                     Array(UnsafeBufferPointer(start: db.data, count: db.count))), 1e-6,
                                             "\(named.name) p \(p): full-vocabulary rows")
                    XCTAssertLessThanOrEqual(maxDiff(ra.entropy, rb.entropy), 1e-5)
                    for k in 0..<3 { XCTAssertEqual(ra.weights[k], rb.weights[k], accuracy: 1e-12) }
                }
            }
        }
        // A planted difference is seen: a curriculum one stage late is not the hard switch.
        let late = try Curriculum.hardSwitch(teacherCount: 3, boundaries: [0.31, 0.65])
        let a = try pool.score([g], aggregator: pairs[0].0, progress: 0.305)[0]
        let b = try pool.score([g], aggregator: late, progress: 0.305)[0]
        XCTAssertGreaterThan(maxDiff(a[0].logprobs, b[0].logprobs), 1e-3)
    }
}
