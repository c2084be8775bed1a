import ChorusCache
import ChorusModel
import ChorusTensor
import Foundation

/// Errors from building or using a pool.
public enum PoolError: Error, CustomStringConvertible, Equatable {
    case modelNotFound(file: String, field: String, path: String)
    case noStudent(file: String, teacher: String)
    case vocabularyMismatch(teacher: String, vocabSize: Int, expected: Int)
    case aggregatorSize(aggregator: Int, teachers: Int)
    case badGroup(String)
    /// A cross-tokenizer teacher without a tokenizer.json, or a pool without the student's.
    case tokenizerNotFound(file: String, field: String, path: String)
    /// A feature that needs every teacher to share the student's vocabulary, asked of a pool
    /// holding a cross-tokenizer teacher.
    case needsSharedVocabulary(feature: String, teacher: String)

    public var description: String {
        switch self {
        case let .modelNotFound(f, k, p): return "\(f): \(k): model directory '\(p)' not found"
        case let .noStudent(f, t):
            return "\(f): self-teacher '\(t)' has no path and the pool has no student (set student = \"...\" in the manifest or pass --student)"
        case let .vocabularyMismatch(t, v, e): return "teacher '\(t)' has vocab_size \(v), the pool \(e)"
        case let .aggregatorSize(a, t): return "the aggregator is for \(a) teachers but the pool has \(t)"
        case let .badGroup(r): return "bad prompt group: \(r)"
        case let .tokenizerNotFound(f, k, p):
            return "\(f): \(k): tokenizer '\(p)' not found (a cross_tokenizer teacher is aligned to the student through both tokenizers)"
        case let .needsSharedVocabulary(f, t):
            return "\(f) needs every teacher to share the student's vocabulary, but teacher '\(t)' has its own tokenizer (cross-tokenizer teachers give chunk log-probs only; see docs/cross-tokenizer.md)"
        }
    }
}

/// A set of teachers (weakest first) that scores prompt groups and aggregates them into
/// π_ref, with the prompt prefix of a group shared across its responses.
public final class TeacherPool {
    /// The teachers in curriculum order.
    public let teachers: [any Teacher]
    /// Static mixture weights, normalized.
    public let weights: [Double]
    /// The teachers' common vocabulary size V.
    public let vocabularySize: Int
    /// The manifest the pool was loaded from, if any.
    public let manifest: PoolManifest?
    /// The student's tokenizer vocabulary, if known (control-token ids).
    public let studentVocabulary: TokenVocabulary?
    /// The student's vocab_size, if known.
    public let studentVocabularySize: Int?
    /// Optional score cache consulted before scoring and filled after (see `TeacherScoreStore`).
    public var store: TeacherScoreStore?
    /// Top-k kept in cache records.
    public var cacheTopK = 20
    /// Positions aggregated per chunk (bounds memory at K·chunk·V floats).
    public var chunkRows = 32
    /// The aggregation's scratch, (K + 1)·chunkRows·V floats (each teacher's rows, then the
    /// reference rows), kept across calls so a step's groups allocate none of it (`scoreGroup`
    /// runs one group at a time).
    var aggregationScratch = Tensor(shape: [0])

    public var names: [String] { teachers.map(\.name) }

    /// Indices of the teachers with their own tokenizer (scored per chunk).
    public var crossVocabularyTeachers: [Int] { teachers.indices.filter { isCrossVocabulary(teachers[$0]) } }

    /// Throws `PoolError.needsSharedVocabulary` naming the first cross-tokenizer teacher when
    /// there is one: for features that need teacher distributions over the student's
    /// vocabulary (the full-vocabulary objective, top-k or full-row aggregation, filters on
    /// the reference entropy).
    public func requireSharedVocabulary(for feature: String) throws {
        if let k = crossVocabularyTeachers.first { throw PoolError.needsSharedVocabulary(feature: feature, teacher: teachers[k].name) }
    }

    /// A pool over teachers built in code; `weights` nil means uniform.
    public init(teachers: [any Teacher], weights: [Double]? = nil, manifest: PoolManifest? = nil,
                studentVocabulary: TokenVocabulary? = nil, studentVocabularySize: Int? = nil) throws {
        if teachers.isEmpty { throw AggregatorError.noTeachers }
        self.teachers = teachers
        self.weights = try normalizedWeights(weights, count: teachers.count)
        // Cross-tokenizer teachers have their own V; the others share the student's.
        let shared = teachers.filter { !isCrossVocabulary($0) }
        vocabularySize = shared.first?.vocabularySize ?? studentVocabularySize
            ?? (teachers[0] as? CrossTokenizerTeacher)?.aligner.studentTokenizer.vocabSize ?? 0
        for t in shared where t.vocabularySize != vocabularySize {
            throw PoolError.vocabularyMismatch(teacher: t.name, vocabSize: t.vocabularySize, expected: vocabularySize)
        }
        self.manifest = manifest
        self.studentVocabulary = studentVocabulary
        self.studentVocabularySize = studentVocabularySize
    }

    /// The student's ids of `<|teacher-k|>`, k = 0..<K: taken from the student's tokenizer when
    /// it has them, otherwise the ids `ControlTokenInstaller.install` would give them (the next ids
    /// after the student tokenizer's largest, or V, V+1, … without a tokenizer).
    public func controlTokenIds() -> [Int] {
        let names = controlTokenNames(count: teachers.count)
        if let v = studentVocabulary {
            let ids = names.map { v.id(of: $0) }
            if ids.allSatisfy({ $0 != nil }) { return ids.map { $0! } }
            return (0..<teachers.count).map { v.tokens.count + $0 }
        }
        return (0..<teachers.count).map { vocabularySize + $0 }
    }

    /// An aggregator by name with this pool's static weights, control-token ids and (for
    /// `curriculum`) its manifest's `[curriculum]` filled in.
    public func makeAggregator(name: String, options: AggregatorOptions = AggregatorOptions()) throws -> any Aggregator {
        var o = options
        if o.weights == nil { o.weights = weights }
        if o.curriculum == nil { o.curriculum = manifest?.curriculum }
        if o.controlTokenIds == nil { o.controlTokenIds = controlTokenIds() }
        return try AggregatorFactory.make(name: name, teacherCount: teachers.count, options: o)
    }
}
