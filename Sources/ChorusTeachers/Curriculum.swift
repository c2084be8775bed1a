import ChorusConfig
import Foundation

/// How a curriculum moves from one stage to the next (docs/curricula.md).
public enum CurriculumTransition: String, Sendable, Equatable, CaseIterable {
    /// Stage i's weights hold on [at_i, at_{i+1}); the next stage starts at once.
    case step
    /// Between at_i and at_{i+1} the weights move in a straight line from stage i's to stage
    /// i+1's: w(p) = (1 − λ)·w_i + λ·w_{i+1}, λ = (p − at_i) / (at_{i+1} − at_i).
    case linear
}

/// One stage of a curriculum: from progress `at` on, a weight per teacher.
public struct CurriculumStage: Sendable, Equatable {
    /// The progress p at which the stage begins, in [0, 1].
    public var at: Double
    /// The weight of each teacher (pool order), normalised: w_k >= 0, Σ_k w_k = 1.
    public var weights: [Double]
    public init(at: Double, weights: [Double]) {
        self.at = at
        self.weights = weights
    }
}

/// A user-written curriculum: the teacher weights as a function of training progress p,
/// through stages (each with a start `at` and a weight per teacher), mixed in probability
/// space (`arithmetic`) or log space (`geometric`), with a `step` or `linear` transition
/// between stages. Before the first stage's `at` the first stage holds; after the last stage's
/// `at` the last holds.
///
/// It is one more `Aggregator`, so the trainer calls it like any strategy. The named switch
/// strategies are special cases (tested position by position in CurriculumTests):
/// hard switch with boundaries b_1 < … < b_{K−1} is the `step` curriculum with stage k one-hot
/// on teacher k from `at` = b_k (b_0 = 0); soft switch is the `linear` curriculum with stage k
/// one-hot on teacher k at `at` = k/(K−1), in `geometric` space for its log-space variant.
public struct Curriculum: Aggregator, Equatable {
    public let name = "curriculum"
    /// The stages, `at` strictly increasing, weights normalised.
    public let stages: [CurriculumStage]
    /// The space the weights mix the teachers in (probability: arithmetic, logarithm: geometric).
    public let space: MixtureSpace
    /// Step or linear blend between stages.
    public let transition: CurriculumTransition
    public var teacherCount: Int { stages[0].weights.count }

    /// Validates and normalises: at least one stage, every `at` in [0, 1] and strictly
    /// increasing, each stage's weights one per teacher, finite, >= 0 and not all 0.
    /// Errors (`AggregatorError.badCurriculum`) name the stage (0-based) and the teacher index.
    public init(stages raw: [CurriculumStage], space: MixtureSpace, transition: CurriculumTransition) throws {
        guard let first = raw.first else { throw AggregatorError.badCurriculum("no stages (a curriculum needs at least one)") }
        let K = first.weights.count
        if K == 0 { throw AggregatorError.noTeachers }
        var stages: [CurriculumStage] = []
        for (i, s) in raw.enumerated() {
            if !(s.at >= 0 && s.at <= 1) { throw AggregatorError.badCurriculum("stage \(i): at = \(s.at) is outside [0, 1]") }
            if i > 0, !(s.at > raw[i - 1].at) {
                throw AggregatorError.badCurriculum("stage \(i): at = \(s.at) must be greater than stage \(i - 1)'s at = \(raw[i - 1].at)")
            }
            if s.weights.count != K { throw AggregatorError.badCurriculum("stage \(i): \(s.weights.count) weights for \(K) teachers") }
            if let k = s.weights.firstIndex(where: { !($0 >= 0) || !$0.isFinite }) {
                throw AggregatorError.badCurriculum("stage \(i): teacher \(k): weight \(s.weights[k]) is not a finite number >= 0")
            }
            if !(s.weights.max()! > 0) { throw AggregatorError.badCurriculum("stage \(i): all weights are 0; at least one must be positive") }
            stages.append(CurriculumStage(at: s.at, weights: try normalizedWeights(s.weights, count: K)))
        }
        self.stages = stages
        self.space = space
        self.transition = transition
    }

    /// The teacher weights at progress p (Σ = 1): the stage begun last (the first before its
    /// `at`), or with `linear` the blend of it and the next stage.
    public func weights(at p: Double) -> [Double] {
        guard let i = stages.lastIndex(where: { p >= $0.at }) else { return stages[0].weights }
        if transition == .step || i == stages.count - 1 { return stages[i].weights }
        let a = stages[i], b = stages[i + 1]
        let lambda = (p - a.at) / (b.at - a.at)
        // A teacher at 0 in both stages stays exactly 0 (it is not scored).
        return zip(a.weights, b.weights).map { (1 - lambda) * $0 + lambda * $1 }
    }

    public func mixture(_ c: AggregationContext) throws -> Mixture {
        try check(c)
        return Mixture(weights: weights(at: c.progress), space: space)
    }

    /// The curriculum as JSON-ready values (run.json): `space` (arithmetic | geometric),
    /// `transition`, and `stages`, each `at` and the normalised weight per teacher name.
    public func settings(teacherNames names: [String]) -> [String: Any] {
        ["space": space == .probability ? "arithmetic" : "geometric", "transition": transition.rawValue,
         "stages": stages.map { s -> [String: Any] in
             ["at": s.at, "weights": Dictionary(uniqueKeysWithValues: zip(names, s.weights))]
         }]
    }

    /// The hard switch as a curriculum: stage k one-hot on teacher k from b_k (b_0 = 0; a
    /// boundary at 0 drops the teachers it skips), `step` transitions. Same boundaries and
    /// defaults (equal stages) as `HardSwitch`.
    public static func hardSwitch(teacherCount K: Int, boundaries: [Double]? = nil) throws -> Curriculum {
        let h = try HardSwitch(teacherCount: K, boundaries: boundaries)
        let starts = [0.0] + h.boundaries
        // Teacher k holds from starts[k] until the next larger start; a teacher whose start
        // equals the next one's never holds.
        let kept = (0..<K).filter { k in k == K - 1 || starts[k + 1] > starts[k] }
        return try Curriculum(stages: kept.map { k in
            var w = [Double](repeating: 0, count: K)
            w[k] = 1
            return CurriculumStage(at: starts[k], weights: w)
        }, space: .probability, transition: .step)
    }

    /// The soft switch as a curriculum: stage k one-hot on teacher k at k/(K−1), `linear`
    /// transitions, geometric space for the log-space variant. `SoftSwitch` computes its
    /// weights with it (tests check them against x = p·(K−1), j = floor(x), λ = x − j).
    public static func softSwitch(teacherCount K: Int, logSpace: Bool = false) throws -> Curriculum {
        if K <= 0 { throw AggregatorError.noTeachers }
        return try Curriculum(stages: (0..<K).map { k in
            var w = [Double](repeating: 0, count: K)
            w[k] = 1
            return CurriculumStage(at: K == 1 ? 0 : Double(k) / Double(K - 1), weights: w)
        }, space: logSpace ? .logarithm : .probability, transition: .linear)
    }
}

/// A `[curriculum]` table as written in a run file or a pool manifest, before its teacher
/// names are matched to a pool:
///
/// ```toml
/// [curriculum]
/// space = "arithmetic"          # or "geometric" (default arithmetic)
/// transition = "linear"         # or "step" (default step)
///
/// [[curriculum.stage]]
/// at = 0.0                      # progress p in [0, 1] where the stage begins
/// weights = { t1 = 1, t2 = 0, t3 = 0, t4 = 0 }   # every teacher of the pool, by name
///
/// [[curriculum.stage]]
/// at = 0.5
/// weights = { t1 = 0.2, t2 = 0, t3 = 0, t4 = 0.8 }
/// ```
/// Errors are `ConfigFileError`s naming the file, the stage and the teacher:
/// `run.toml: curriculum.stage[1].weights.t2: must be >= 0.0, got -1.0`.
public struct CurriculumSpec: Sendable, Equatable {
    /// One `[[curriculum.stage]]`: its start and a weight per teacher name (as written).
    public struct Stage: Sendable, Equatable {
        public var at: Double
        public var weights: [String: Double]
        public init(at: Double, weights: [String: Double]) {
            self.at = at
            self.weights = weights
        }
    }

    /// The file the table is in (errors name it).
    public var file: String
    /// The dotted key of the table in that file ("curriculum").
    public var key: String
    public var space: MixtureSpace
    public var transition: CurriculumTransition
    public var stages: [Stage]

    /// The accepted names of `space`, as in `teachers.aggregator`.
    public static let spaces: [(String, MixtureSpace)] = [("arithmetic", .probability), ("geometric", .logarithm)]

    /// Reads and checks a `[curriculum]` table (`finish()`ed): `space`, `transition`, and
    /// `[[curriculum.stage]]` entries with `at` in [0, 1], strictly increasing, and `weights`,
    /// an inline table of finite numbers >= 0, not all 0. Teacher names are checked by `resolve`.
    public init(table t: ConfigTable) throws {
        file = t.file
        key = t.path
        let s = try t.choice("space", Self.spaces.map(\.0)) ?? "arithmetic"
        space = Self.spaces.first { $0.0 == s }!.1
        transition = CurriculumTransition(rawValue: try t.choice("transition", CurriculumTransition.allCases.map(\.rawValue)) ?? "step")!
        let entries = try t.tables("stage")
        if entries.isEmpty { throw t.error("stage", "missing: a curriculum needs at least one [[\(t.path).stage]] with at and weights") }
        var stages: [Stage] = []
        for (i, e) in entries.enumerated() {
            let at = try e.required("at", try e.double("at", min: 0, max: 1))
            if let prev = stages.last, !(at > prev.at) {
                throw e.error("at", "\(at) must be greater than stage[\(i - 1)]'s at = \(prev.at) (stages are listed in order of progress)")
            }
            let w = try e.required("weights", try e.table("weights"))
            var weights: [String: Double] = [:]
            for name in w.keys { weights[name] = try w.double(name, min: 0) }
            try w.finish()
            if weights.isEmpty { throw e.error("weights", "is empty: give every teacher of the pool a weight (0 leaves it out)") }
            if !(weights.values.max()! > 0) { throw e.error("weights", "all weights are 0; at least one must be positive") }
            try e.finish()
            stages.append(Stage(at: at, weights: weights))
        }
        try t.finish()
        self.stages = stages
    }

    /// The curriculum over a pool's teachers (`names`, pool order). Every stage must give
    /// every teacher a weight and name no other: errors name the file, the stage and the
    /// teacher, e.g. `curriculum.stage[2].weights.t9: unknown teacher 't9' (the pool has t1, t2)`.
    public func resolve(teacherNames names: [String]) throws -> Curriculum {
        var out: [CurriculumStage] = []
        for (i, s) in stages.enumerated() {
            let stageKey = "\(key).stage[\(i)].weights"
            for n in s.weights.keys.sorted() where !names.contains(n) {
                throw ConfigFileError(file: file, key: "\(stageKey).\(n)",
                                      reason: "unknown teacher '\(n)' (the pool has \(names.joined(separator: ", ")))")
            }
            if let missing = names.first(where: { s.weights[$0] == nil }) {
                throw ConfigFileError(file: file, key: stageKey,
                                      reason: "no weight for teacher '\(missing)' (give every teacher of the pool a weight, 0 leaves it out)")
            }
            out.append(CurriculumStage(at: s.at, weights: names.map { s.weights[$0]! }))
        }
        do { return try Curriculum(stages: out, space: space, transition: transition) } catch {
            // Checked when read; a hand-built spec may still be wrong.
            throw ConfigFileError(file: file, key: key, reason: "\(error)")
        }
    }
}
