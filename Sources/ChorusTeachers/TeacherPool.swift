import ChorusCache
import ChorusModel
import ChorusTensor
import Foundation

/// The reference scores of one response.
public struct ReferenceScores {
    /// log π_ref(y_t) per response token.
    public var logprobs: [Float]
    /// Entropy (nats) of the whole aggregated distribution π_ref at each token.
    public var entropy: [Float]
    /// The active teacher weights (the mixture; the same at every token of the response).
    public var weights: [Double]
    /// log π_k(y_t) per teacher; nil for a teacher that was not scored (weight 0 and
    /// `scoreInactive` off).
    public var teacherLogprobs: [[Float]?]
    /// (T, V) log π_ref rows when requested.
    public var distribution: Tensor?
    /// True when some active teacher's scores came from top-k records (cache) rather than
    /// full distributions; see `TopKApproximation`.
    public var approximate: Bool
}

/// Where the pool finds the student: its directory (tokenizer.json, config.json, weights for a
/// frozen self-teacher) and, optionally, the live model a self-teacher should follow.
public struct StudentSource {
    public var directory: URL
    public var liveModel: TransformerModel?
    public init(directory: URL, liveModel: TransformerModel? = nil) {
        self.directory = directory
        self.liveModel = liveModel
    }
}

/// Errors from building or using a pool.
public enum PoolError: Error, CustomStringConvertible, Equatable {
    case modelNotFound(file: String, field: String, path: String)
    case noStudent(file: String, teacher: String)
    case vocabularyMismatch(teacher: String, vocabSize: Int, expected: Int)
    case aggregatorSize(aggregator: Int, teachers: Int)
    case badGroup(String)

    public var description: String {
        switch self {
        case let .modelNotFound(f, k, p): return "\(f): \(k): model directory '\(p)' not found"
        case let .noStudent(f, t):
            return "\(f): self-teacher '\(t)' has no path and the pool has no student (set student = \"...\" in the manifest or pass --student)"
        case let .vocabularyMismatch(t, v, e): return "teacher '\(t)' has vocab_size \(v), the pool \(e)"
        case let .aggregatorSize(a, t): return "the aggregator is for \(a) teachers but the pool has \(t)"
        case let .badGroup(r): return "bad prompt group: \(r)"
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

    public var names: [String] { teachers.map(\.name) }

    /// A pool over teachers built in code; `weights` nil means uniform.
    public init(teachers: [any Teacher], weights: [Double]? = nil, manifest: PoolManifest? = nil,
                studentVocabulary: TokenVocabulary? = nil, studentVocabularySize: Int? = nil) throws {
        if teachers.isEmpty { throw AggregatorError.noTeachers }
        self.teachers = teachers
        self.weights = try normalizedWeights(weights, count: teachers.count)
        vocabularySize = teachers[0].vocabularySize
        for t in teachers where t.vocabularySize != vocabularySize {
            throw PoolError.vocabularyMismatch(teacher: t.name, vocabSize: t.vocabularySize, expected: vocabularySize)
        }
        self.manifest = manifest
        self.studentVocabulary = studentVocabulary
        self.studentVocabularySize = studentVocabularySize
    }

    /// Loads a pool from a manifest: checks that every model directory exists, that all
    /// teachers and the student share one vocabulary (`VocabularyCheck`), then loads the
    /// models. `student` overrides the manifest's `student` key. `encoderLoader` turns a
    /// tokenizer.json into the encoder of self-teacher templates.
    public static func load(manifest url: URL, student: StudentSource? = nil,
                            encoderLoader: (URL) throws -> TextEncoder = TokenizerEncoder.load) throws -> TeacherPool {
        let m = try PoolManifest.load(contentsOf: url)
        let file = url.path
        let fm = FileManager.default
        func isDir(_ u: URL) -> Bool {
            var d: ObjCBool = false
            return fm.fileExists(atPath: u.path, isDirectory: &d) && d.boolValue
        }
        let studentDir = student?.directory ?? m.student
        if let s = studentDir, !isDir(s) { throw PoolError.modelNotFound(file: file, field: student == nil ? "student" : "--student", path: s.path) }
        var members: [VocabularyCheck.Member] = []
        for (i, t) in m.teachers.enumerated() {
            if let p = t.path {
                if !isDir(p) { throw PoolError.modelNotFound(file: file, field: "teacher[\(i)].path ('\(t.name)')", path: p.path) }
            } else if studentDir == nil {
                throw PoolError.noStudent(file: file, teacher: t.name)
            }
        }
        if let s = studentDir {
            let cfg = try ModelConfig(contentsOf: s.appendingPathComponent("config.json"))
            members.append(.init(directory: s, vocabSize: cfg.vocabSize, isStudent: true))
        }
        for t in m.teachers {
            guard let p = t.path else { continue }
            let cfg = try ModelConfig(contentsOf: p.appendingPathComponent("config.json"))
            members.append(.init(directory: p, vocabSize: cfg.vocabSize, isStudent: false))
        }
        // Teachers first so the teachers' V is the reference; the student may add control rows.
        members.sort { !$0.isStudent && $1.isStudent }
        try VocabularyCheck.check(members)

        var teachers: [any Teacher] = []
        for t in m.teachers {
            switch t.kind {
            case .checkpoint:
                teachers.append(try CheckpointTeacher(name: t.name, directory: t.path!))
            case .selfTeacher:
                let template = try PrivilegedTemplate(t.privileged!, teacher: t.name)
                let dir = t.path ?? studentDir!
                let encoder = try encoderLoader(dir.appendingPathComponent("tokenizer.json"))
                if t.path == nil, let live = student?.liveModel {
                    teachers.append(SelfTeacher(name: t.name, model: live, template: template, encoder: encoder, followsStudent: true))
                } else {
                    let model = try TransformerModel.load(directory: dir)
                    teachers.append(SelfTeacher(name: t.name, model: model, template: template, encoder: encoder, directory: dir))
                }
            }
        }
        var sv: TokenVocabulary?, svSize: Int?
        if let s = studentDir {
            let tok = s.appendingPathComponent("tokenizer.json")
            if fm.fileExists(atPath: tok.path) { sv = try TokenVocabulary(contentsOf: tok) }
            svSize = try ModelConfig(contentsOf: s.appendingPathComponent("config.json")).vocabSize
        }
        let given = m.teachers.contains { $0.weightGiven }
        return try TeacherPool(teachers: teachers, weights: given ? m.teachers.map(\.weight) : nil, manifest: m,
                               studentVocabulary: sv, studentVocabularySize: svSize)
    }

    /// The student's ids of `<|teacher-k|>`, k = 0..<K: taken from the student's tokenizer when
    /// it has them, otherwise the ids `ControlTokens.install` would give them (the next ids
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

    /// An aggregator by name with this pool's static weights and control-token ids filled in.
    public func makeAggregator(name: String, options: AggregatorOptions = AggregatorOptions()) throws -> any Aggregator {
        var o = options
        if o.weights == nil { o.weights = weights }
        if o.controlTokenIds == nil { o.controlTokenIds = controlTokenIds() }
        return try AggregatorFactory.make(name: name, teacherCount: teachers.count, options: o)
    }

    /// Scores prompt groups with every active teacher and aggregates them into π_ref.
    ///
    /// For each group the aggregator's mixture at (progress, group.index) picks the weights;
    /// the teachers see `aggregator.teacherPrompt(group.prompt)`. Teachers with weight 0 are
    /// skipped unless `scoreInactive` (their per-teacher log-probs are then reported too).
    /// `keepDistribution` returns the (T, V) log π_ref rows.
    public func score(_ groups: [ScoringGroup], aggregator: any Aggregator, progress: Double,
                      scoreInactive: Bool = false, keepDistribution: Bool = false) throws -> [[ReferenceScores]] {
        if aggregator.teacherCount != teachers.count {
            throw PoolError.aggregatorSize(aggregator: aggregator.teacherCount, teachers: teachers.count)
        }
        return try groups.map { g in
            let mix = try aggregator.mixture(AggregationContext(progress: progress, group: g.index))
            var tg = g
            tg.prompt = aggregator.teacherPrompt(g.prompt)
            if tg.prompt.isEmpty { throw PoolError.badGroup("group \(g.index): the teachers' prompt is empty") }
            return try scoreGroup(tg, mixture: mix, scoreInactive: scoreInactive, keepDistribution: keepDistribution)
        }
    }

    /// Per-teacher rows for one group: a forward, or cached top-k scores per response.
    enum Source {
        case forward(TeacherForward)
        case records([[PositionScore]])
    }

    func scoreGroup(_ g: ScoringGroup, mixture mix: Mixture, scoreInactive: Bool, keepDistribution: Bool) throws -> [ReferenceScores] {
        let K = teachers.count, V = vocabularySize
        let scored = scoreInactive ? Array(0..<K) : mix.active
        var sources = [Source?](repeating: nil, count: K)
        for k in scored { sources[k] = try source(teacher: k, group: g) }

        var results: [ReferenceScores] = []
        let chunk = max(1, chunkRows)
        let buf = Tensor(shape: [K * chunk * V])
        let refRows = Tensor(shape: [chunk * V])
        for (r, resp) in g.responses.enumerated() {
            let T = resp.count
            var out = ReferenceScores(logprobs: [Float](repeating: 0, count: T), entropy: [Float](repeating: 0, count: T),
                                      weights: mix.weights, teacherLogprobs: [[Float]?](repeating: nil, count: K),
                                      distribution: keepDistribution ? Tensor(shape: [T, V]) : nil, approximate: false)
            for k in scored { out.teacherLogprobs[k] = [Float](repeating: 0, count: T) }
            for k in mix.active { if case .records = sources[k]! { out.approximate = true } }
            var t0 = 0
            while t0 < T {
                let m = min(chunk, T - t0)
                for k in scored {
                    let base = buf.data + k * chunk * V
                    switch sources[k]! {
                    case let .forward(f):
                        f.logProbabilities(rows: (f.offsets[r] + t0)..<(f.offsets[r] + t0 + m), into: base)
                    case let .records(recs):
                        for i in 0..<m { TopKApproximation.fillRow(recs[r][t0 + i], target: resp[t0 + i], count: V, into: base + i * V) }
                    }
                    for i in 0..<m { out.teacherLogprobs[k]![t0 + i] = base[i * V + resp[t0 + i]] }
                    // Cached targets are exact; keep them exact rather than reconstructed.
                    if case let .records(recs) = sources[k]! { for i in 0..<m { out.teacherLogprobs[k]![t0 + i] = recs[r][t0 + i].logprob } }
                }
                var ents = [Float](repeating: 0, count: m)
                ents.withUnsafeMutableBufferPointer { eb in
                    let e = eb.baseAddress!
                    parallelFor(m, costPerItem: V * 4 * mix.active.count) { a, b in
                        for i in a..<b {
                            let rows: [UnsafePointer<Float>?] = (0..<K).map { k in mix.weights[k] > 0 ? UnsafePointer(buf.data + k * chunk * V + i * V) : nil }
                            e[i] = MixtureKernel.combine(mix, rows: rows, count: V, into: refRows.data + i * V)
                        }
                    }
                }
                for i in 0..<m {
                    out.logprobs[t0 + i] = refRows.data[i * V + resp[t0 + i]]
                    out.entropy[t0 + i] = ents[i]
                }
                if mix.active.count == 1, case let .records(recs) = sources[mix.active[0]]! {
                    // One teacher: its recorded log-prob and entropy are exact.
                    for i in 0..<m {
                        out.logprobs[t0 + i] = recs[r][t0 + i].logprob
                        out.entropy[t0 + i] = recs[r][t0 + i].entropy
                    }
                }
                if let d = out.distribution { (d.data + t0 * V).update(from: refRows.data, count: m * V) }
                t0 += m
            }
            results.append(out)
        }
        return results
    }

    /// Cached records for every response of the group, or a forward (filling the cache).
    func source(teacher k: Int, group g: ScoringGroup) throws -> Source {
        let t = teachers[k]
        guard let store, t.isCacheable else { return .forward(try t.forward(g)) }
        let fp = try t.fingerprint()
        let ctx = try t.context(for: g)
        var recs: [[PositionScore]] = []
        for resp in g.responses {
            guard let r = store.lookup(teacher: t.name, fingerprint: fp, topK: cacheTopK, context: ctx, response: resp),
                  r.count == resp.count else { break }
            recs.append(r)
        }
        if recs.count == g.responses.count { return .records(recs) }
        let f = try t.forward(g)
        for (r, resp) in g.responses.enumerated() {
            let s = f.scores(rows: f.offsets[r]..<(f.offsets[r] + f.lengths[r]), topK: cacheTopK)
            try store.store(teacher: t.name, fingerprint: fp, topK: cacheTopK, context: ctx, response: resp, scores: s)
        }
        return .forward(f)
    }
}

/// A cache of teacher scores keyed by (teacher fingerprint, top-k, context ids, response ids).
/// `ChorusCache.ScoreCache` is adapted to it; tests may use an in-memory one.
public protocol TeacherScoreStore: AnyObject {
    func lookup(teacher: String, fingerprint: TeacherFingerprint, topK: Int, context: [Int], response: [Int]) -> [PositionScore]?
    func store(teacher: String, fingerprint: TeacherFingerprint, topK: Int, context: [Int], response: [Int], scores: [PositionScore]) throws
    /// Hits and misses per teacher name (for metrics).
    func hitsAndMisses() -> [String: (hits: Int, misses: Int)]
}

/// Rebuilding a full distribution from top-k scores (cache records, remote teachers).
///
/// The known entries (the top-k and the sampled token) keep their exact log-probs; the rest
/// of the mass, 1 − Σ known, is spread uniformly over the V − #known other tokens (a uniform
/// tail). The sampled token's log-prob under each teacher is therefore exact, and so are
/// log π_ref(y_t) for the arithmetic mean and every one-hot strategy; the geometric
/// normalizer and the mixture entropies are approximations (the tail's shape is unknown).
public enum TopKApproximation {
    public static func fillRow(_ s: PositionScore, target: Int, count V: Int, into out: UnsafeMutablePointer<Float>) {
        var known: [Int: Float] = [:]
        for (id, lp) in zip(s.topIds, s.topLogprobs) { known[Int(id)] = lp }
        known[target] = s.logprob
        var mass: Double = 0
        for lp in known.values { mass += Foundation.exp(Double(lp)) }
        let rest = V - known.count
        let tail = rest > 0 ? Float(Foundation.log(max(1 - mass, 1e-12) / Double(rest))) : -.infinity
        out.update(repeating: tail, count: V)
        for (id, lp) in known { out[id] = lp }
    }
}

/// `ChorusCache.ScoreCache` as the pool's score store. A record is keyed by the teacher's
/// fingerprint, the options (top-k, start = context length) and the whole context ids
/// (context + response), and holds one position per response token.
public final class ScoreCacheStore: TeacherScoreStore {
    public let cache: ScoreCache
    public init(cache: ScoreCache) { self.cache = cache }
    public convenience init(directory: URL) throws { self.init(cache: try ScoreCache(directory: directory)) }

    func key(_ fp: TeacherFingerprint, _ topK: Int, _ context: [Int], _ response: [Int]) -> CacheKey {
        CacheKey.make(fingerprint: fp, options: ScoringOptions(topK: topK, start: context.count),
                      tokens: (context + response).map { Int32(truncatingIfNeeded: $0) })
    }

    public func lookup(teacher: String, fingerprint: TeacherFingerprint, topK: Int, context: [Int], response: [Int]) -> [PositionScore]? {
        cache.lookup(key(fingerprint, topK, context, response), teacher: teacher)?.positions
    }

    public func store(teacher: String, fingerprint: TeacherFingerprint, topK: Int, context: [Int], response: [Int], scores: [PositionScore]) throws {
        let rec = ScoreRecord(positions: scores)
        _ = try cache.store(key(fingerprint, topK, context, response), rec, teacher: teacher)
    }

    public func hitsAndMisses() -> [String: (hits: Int, misses: Int)] {
        cache.counterSnapshot().mapValues { (hits: $0.hits, misses: $0.misses) }
    }
}
