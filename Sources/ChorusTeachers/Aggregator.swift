import ChorusTensor
import Foundation

/// How the weighted teachers are combined into π_ref.
public enum MixtureSpace: String, Sendable, Equatable {
    /// log π_ref(v) = log Σ_k w_k π_k(v)  (probability-space mean).
    case probability
    /// log π_ref(v) = Σ_k w_k log π_k(v) − log Σ_u exp(Σ_k w_k log π_k(u))  (normalized).
    case logarithm
}

/// The combination an aggregator chooses for one prompt group at one progress: a weight per
/// teacher (w_k >= 0, Σ w_k = 1) and the space they are mixed in. One-hot weights pick a
/// single teacher, for which both spaces agree.
public struct Mixture: Sendable, Equatable {
    public var weights: [Double]
    public var space: MixtureSpace
    public init(weights: [Double], space: MixtureSpace) {
        self.weights = weights
        self.space = space
    }
    /// One-hot on teacher k of K.
    public static func single(_ k: Int, of K: Int) -> Mixture {
        var w = [Double](repeating: 0, count: K)
        w[k] = 1
        return Mixture(weights: w, space: .probability)
    }
    /// Teachers with a positive weight (the ones that must be scored).
    public var active: [Int] { weights.indices.filter { weights[$0] > 0 } }
}

/// Where in training and which prompt group an aggregation is for.
public struct AggregationContext: Sendable, Equatable {
    /// Training progress p = step / total_steps, in [0, 1].
    public var progress: Double
    /// Prompt-group index (routing strategies choose per group).
    public var group: Int
    public init(progress: Double = 0, group: Int = 0) {
        self.progress = progress
        self.group = group
    }
}

/// One teacher's next-token distribution at one response position, summarized: what a
/// per-token adaptive aggregator weighs teachers by.
public struct TeacherTokenStatistics: Sendable, Equatable {
    /// log π_k(y_t), the sampled token's log-prob (exact, also for cached scores).
    public var logprob: Float
    /// Entropy (nats) of π_k(· | s_t); NaN when unknown (imported cache records).
    public var entropy: Float
    /// max_v log π_k(v | s_t), the log-prob of the teacher's most likely token (of the rebuilt
    /// row for cached top-k scores: exact when k >= 1).
    public var topLogprob: Float
}

/// Errors from aggregator construction and use.
public enum AggregatorError: Error, CustomStringConvertible, Equatable {
    case unknownName(String)
    case progressOutOfRange(Double)
    case badWeights(String)
    case badBoundaries(String)
    case noTeachers
    case badControlTokens(String)
    /// A curriculum's stages are invalid, or `curriculum` was asked for without one.
    case badCurriculum(String)

    public var description: String {
        switch self {
        case let .unknownName(n):
            return "unknown aggregator '\(n)' (valid: \(AggregatorFactory.names.joined(separator: ", ")))"
        case let .progressOutOfRange(p): return "progress \(p) is outside [0, 1]"
        case let .badWeights(r): return "teacher weights: \(r)"
        case let .badBoundaries(r): return "hard-switch boundaries: \(r)"
        case .noTeachers: return "an aggregator needs at least one teacher"
        case let .badControlTokens(r): return "control tokens: \(r)"
        case let .badCurriculum(r): return "curriculum: \(r)"
        }
    }
}

/// Turns K teachers into one reference distribution π_ref: decides, per prompt group and
/// progress, the mixture (see DESIGN.md "Aggregators"), and which prompt the teachers see.
public protocol Aggregator: Sendable {
    /// The factory name (`arithmetic`, `geometric`, ...).
    var name: String { get }
    /// Number of teachers K.
    var teacherCount: Int { get }
    /// The mixture for a group at a progress. Throws for progress outside [0, 1].
    func mixture(_ context: AggregationContext) throws -> Mixture
    /// The prompt the teachers score for a student prompt (routing removes control tokens).
    func teacherPrompt(_ studentPrompt: [Int]) -> [Int]
    /// The mixture at one response position, given the group's mixture (which decided the
    /// teachers scored) and each teacher's statistics there (nil for a teacher not scored).
    /// Weight may go only to scored teachers; weights are normalized. Default: the group's
    /// mixture at every position. A per-token adaptive strategy (e.g. w_k ∝ exp(−entropy_k))
    /// returns its own weights here.
    func positionMixture(_ group: Mixture, statistics: [TeacherTokenStatistics?]) -> Mixture
}

extension Aggregator {
    public func teacherPrompt(_ studentPrompt: [Int]) -> [Int] { studentPrompt }
    public func positionMixture(_ group: Mixture, statistics: [TeacherTokenStatistics?]) -> Mixture { group }

    func check(_ c: AggregationContext) throws {
        if !(c.progress >= 0 && c.progress <= 1) { throw AggregatorError.progressOutOfRange(c.progress) }
    }
}

/// Static per-teacher weights, validated and normalized to sum to 1 (uniform when nil).
public func normalizedWeights(_ w: [Double]?, count K: Int) throws -> [Double] {
    if K <= 0 { throw AggregatorError.noTeachers }
    guard let w else { return [Double](repeating: 1 / Double(K), count: K) }
    if w.count != K { throw AggregatorError.badWeights("\(w.count) weights for \(K) teachers") }
    if let bad = w.first(where: { !($0 >= 0) || !$0.isFinite }) { throw AggregatorError.badWeights("weight \(bad) is not a finite number >= 0") }
    // Scaled by the largest first, so huge finite weights (1e308 + 1e308) cannot overflow
    // the sum: only the ratios matter.
    let top = w.max() ?? 0
    if !(top > 0) { throw AggregatorError.badWeights("all weights are 0; at least one must be positive") }
    let scaled = w.map { $0 / top }
    let s = scaled.reduce(0, +)
    return scaled.map { $0 / s }
}

/// A static mixture of all teachers with weights w_k: `arithmetic` in probability space,
/// log π_ref = log Σ_k w_k π_k, or `geometric` (normalized) in log space,
/// log π_ref = Σ_k w_k log π_k − logsumexp.
public struct WeightedMean: Aggregator {
    public let name: String
    public let weights: [Double]
    public let space: MixtureSpace
    public var teacherCount: Int { weights.count }
    /// `space` .probability gives the arithmetic mean, .logarithm the geometric one.
    public init(_ space: MixtureSpace, teacherCount: Int, weights: [Double]? = nil) throws {
        self.space = space
        self.name = space == .probability ? "arithmetic" : "geometric"
        self.weights = try normalizedWeights(weights, count: teacherCount)
    }
    public func mixture(_ c: AggregationContext) throws -> Mixture {
        try check(c)
        return Mixture(weights: weights, space: space)
    }
}

/// A curriculum: one teacher at a time, index = number of boundaries b_1 < … < b_{K−1} with
/// p >= b_i. Default boundaries are equal stages b_i = i/K, so teachers (weakest first) each
/// get an equal share of training.
public struct HardSwitch: Aggregator {
    public let name = "hard-switch"
    public let teacherCount: Int
    public let boundaries: [Double]
    public init(teacherCount K: Int, boundaries: [Double]? = nil) throws {
        if K <= 0 { throw AggregatorError.noTeachers }
        let b = boundaries ?? (1..<K).map { Double($0) / Double(K) }
        if b.count != K - 1 { throw AggregatorError.badBoundaries("\(b.count) boundaries for \(K) teachers (need \(K - 1))") }
        for i in b.indices {
            if !(b[i] >= 0 && b[i] <= 1) { throw AggregatorError.badBoundaries("\(b[i]) is outside [0, 1]") }
            if i > 0 && !(b[i] > b[i - 1]) { throw AggregatorError.badBoundaries("must increase strictly (\(b[i - 1]) then \(b[i]))") }
        }
        teacherCount = K
        self.boundaries = b
    }
    /// The teacher active at progress p.
    public func teacher(at p: Double) -> Int { boundaries.filter { p >= $0 }.count }
    public func mixture(_ c: AggregationContext) throws -> Mixture {
        try check(c)
        return .single(teacher(at: c.progress), of: teacherCount)
    }
}

/// A moving mixture of two neighbouring teachers: x = p·(K−1), j = floor(x), λ = x − j,
/// π_ref = (1−λ)·π_j + λ·π_{j+1} (or the normalized geometric blend with `logSpace`).
///
/// Computed as its curriculum (`Curriculum.softSwitch`: stage k one-hot on teacher k at
/// k/(K−1), linear blends), so the two are one computation. Why it matters: within rounding
/// of a stage start the two ways of finding λ give the fading teacher weights like 4e-16 and
/// 3e-16, and in probability space the reference log-prob of a token only that teacher
/// supports moves with log w (here by ln 4/3), so only one path agrees position by position.
public struct SoftSwitch: Aggregator {
    public let name = "soft-switch"
    public let teacherCount: Int
    public let logSpace: Bool
    /// The equivalent curriculum, which computes the weights.
    public let curriculum: Curriculum
    public init(teacherCount K: Int, logSpace: Bool = false) throws {
        if K <= 0 { throw AggregatorError.noTeachers }
        teacherCount = K
        self.logSpace = logSpace
        curriculum = try Curriculum.softSwitch(teacherCount: K, logSpace: logSpace)
    }
    public func mixture(_ c: AggregationContext) throws -> Mixture {
        try check(c)
        return try curriculum.mixture(c)
    }
}

/// The control-token names, one per teacher (0-based, weakest first): `<|teacher-0|>`, ….
public func controlTokenNames(count K: Int) -> [String] { (0..<K).map { "<|teacher-\($0)|>" } }

/// True for a control-token name `<|teacher-N|>`.
public func isControlTokenName(_ s: String) -> Bool {
    guard s.hasPrefix("<|teacher-"), s.hasSuffix("|>") else { return false }
    let mid = s.dropFirst("<|teacher-".count).dropLast(2)
    return !mid.isEmpty && mid.allSatisfy(\.isASCII) && mid.allSatisfy(\.isNumber)
}

/// Control-token routing: prompt group g is given teacher g mod K (so a batch of groups is
/// split evenly across teachers); the student's prompt starts with `<|teacher-k|>`, and the
/// teacher scores the same response for the prompt without any control token.
public struct ControlTokenRouting: Aggregator {
    public let name = "control-token"
    public let teacherCount: Int
    /// The student's id of `<|teacher-k|>` for each k.
    public let controlTokenIds: [Int]
    public init(teacherCount K: Int, controlTokenIds: [Int]) throws {
        if K <= 0 { throw AggregatorError.noTeachers }
        if controlTokenIds.count != K { throw AggregatorError.badControlTokens("\(controlTokenIds.count) ids for \(K) teachers") }
        if Set(controlTokenIds).count != K { throw AggregatorError.badControlTokens("ids must be distinct") }
        teacherCount = K
        self.controlTokenIds = controlTokenIds
    }
    /// The teacher of a prompt group.
    public func teacher(forGroup g: Int) -> Int { ((g % teacherCount) + teacherCount) % teacherCount }
    /// The student's prompt for a group: the control token, then the prompt.
    public func studentPrompt(_ prompt: [Int], group: Int) -> [Int] { [controlTokenIds[teacher(forGroup: group)]] + prompt }
    /// The control token used at evaluation (default: the strongest teacher's, the last).
    public func evaluationPrompt(_ prompt: [Int], teacher k: Int? = nil) -> [Int] {
        [controlTokenIds[k ?? teacherCount - 1]] + prompt
    }
    public func mixture(_ c: AggregationContext) throws -> Mixture {
        try check(c)
        return .single(teacher(forGroup: c.group), of: teacherCount)
    }
    public func teacherPrompt(_ studentPrompt: [Int]) -> [Int] {
        let ids = Set(controlTokenIds)
        return studentPrompt.filter { !ids.contains($0) }
    }
}

/// A uniformly random teacher per prompt group, from a generator seeded by (seed, group), so
/// the choice is reproducible and independent of batch order.
public struct RandomRouting: Aggregator {
    public let name = "random"
    public let teacherCount: Int
    public let seed: UInt64
    public init(teacherCount K: Int, seed: UInt64 = 0) throws {
        if K <= 0 { throw AggregatorError.noTeachers }
        teacherCount = K
        self.seed = seed
    }
    public func teacher(forGroup g: Int) -> Int {
        var rng = ChorusRNG(seed: seed ^ (UInt64(bitPattern: Int64(g)) &* 0x9E37_79B9_7F4A_7C15))
        return rng.int(below: teacherCount)
    }
    public func mixture(_ c: AggregationContext) throws -> Mixture {
        try check(c)
        return .single(teacher(forGroup: c.group), of: teacherCount)
    }
}

/// Options some strategies take.
public struct AggregatorOptions: Sendable {
    /// Static teacher weights for the means (normalized; uniform when nil).
    public var weights: [Double]?
    /// Hard-switch boundaries (default equal stages).
    public var boundaries: [Double]?
    /// Soft switch blends in log space (normalized geometric) instead of probability space.
    public var softSwitchLogSpace = false
    /// Random routing seed.
    public var seed: UInt64 = 0
    /// The student's control-token ids for control-token routing (default: V, V+1, … for a
    /// student vocabulary V without them, see `TeacherPool.controlTokenIds`).
    public var controlTokenIds: [Int]?
    /// The stages of `curriculum` (from a run file's or a pool manifest's `[curriculum]`).
    public var curriculum: Curriculum?
    public init(weights: [Double]? = nil, boundaries: [Double]? = nil, softSwitchLogSpace: Bool = false,
                seed: UInt64 = 0, controlTokenIds: [Int]? = nil, curriculum: Curriculum? = nil) {
        self.weights = weights
        self.boundaries = boundaries
        self.softSwitchLogSpace = softSwitchLogSpace
        self.seed = seed
        self.controlTokenIds = controlTokenIds
        self.curriculum = curriculum
    }
}

/// Builds aggregators by name.
public enum AggregatorFactory {
    public static let names = ["arithmetic", "geometric", "hard-switch", "soft-switch", "control-token", "random", "curriculum"]

    public static func make(name: String, teacherCount K: Int, options o: AggregatorOptions = AggregatorOptions()) throws -> any Aggregator {
        switch name {
        case "arithmetic": return try WeightedMean(.probability, teacherCount: K, weights: o.weights)
        case "geometric": return try WeightedMean(.logarithm, teacherCount: K, weights: o.weights)
        case "hard-switch": return try HardSwitch(teacherCount: K, boundaries: o.boundaries)
        case "soft-switch": return try SoftSwitch(teacherCount: K, logSpace: o.softSwitchLogSpace)
        case "control-token":
            guard let ids = o.controlTokenIds else { throw AggregatorError.badControlTokens("no control-token ids given") }
            return try ControlTokenRouting(teacherCount: K, controlTokenIds: ids)
        case "random": return try RandomRouting(teacherCount: K, seed: o.seed)
        case "curriculum":
            guard let c = o.curriculum else {
                throw AggregatorError.badCurriculum("none given (write a [curriculum] table in the run file or the pool manifest)")
            }
            if c.teacherCount != K { throw AggregatorError.badCurriculum("its stages weigh \(c.teacherCount) teachers, the pool has \(K)") }
            return c
        default: throw AggregatorError.unknownName(name)
        }
    }
}
