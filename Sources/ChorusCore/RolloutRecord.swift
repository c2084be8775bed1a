import Foundation

/// One sampled response of a training step as the trainer saw it, token by token: what
/// `[output] rollouts_every` records under RUN_DIR/rollouts/ and `chorus inspect` shows.
/// Every per-token array has the response's length T; `teacherLogprobs` is (K) of (T) or null.
/// Here (ChorusCore) because the trainer writes it and the report reads it.
public struct RolloutRecord: Codable, Sendable, Equatable {
    /// The 1-based step whose update used this rollout (the metrics row's `step`).
    public var step: Int
    /// Index in the step's batch, prompt-major: response g of prompt group j is j·G + g.
    public var sample: Int
    /// The prompt group within the step (0 ..< prompts_per_step).
    public var group: Int
    /// The prompt text.
    public var prompt: String
    /// The prompt ids as the student saw them (with a control token when routed).
    public var promptIds: [Int]
    /// The sampled ids (T).
    public var responseIds: [Int]
    /// Each response token's own text (T); the bytes of a byte-level token that are not whole
    /// UTF-8 characters (part of a multi-byte character) are written <0xAB>.
    public var tokens: [String]
    /// log π of each token under the sampler (rollout.precision) (T).
    public var rolloutLogprob: [Float]
    /// log π_θ of each token under the f32 learner (T).
    public var learnerLogprob: [Float]
    /// The student's entropy (nats) at each position (T).
    public var studentEntropy: [Float]
    /// log π_ref of each token (T); with `chunks`, the chunk's log-prob on its last token, 0 on the others.
    public var referenceLogprob: [Float]
    /// The reference's entropy (nats) at each position (T); NaN where not computed (chunks).
    public var referenceEntropy: [Float]
    /// The pool's teacher names (K).
    public var teachers: [String]
    /// log π_k of each token per teacher (K × T), null for a teacher not scored this step.
    public var teacherLogprobs: [[Float]?]
    /// The aggregator's teacher weights for this sample's group (K).
    public var teacherWeights: [Double]
    /// Masked by the rollout correction (mask mode: ρ outside [lo, hi]) (T).
    public var masked: [Bool]
    /// Kept by the token filter (false also for masked tokens) (T).
    public var kept: [Bool]
    /// The final per-token weight of the loss: the factor on ∇log π_θ(y_t) (sampled-token
    /// estimate: normaliser · correction weight · advantage), or on D_f at position t
    /// (full-vocabulary objective: normaliser · correction weight · coefficient) (T).
    public var weight: [Float]
    /// The reference's top-1 token at each student prefix (the "virtual rollout") (T); nil
    /// when the response was scored per chunk (a cross-tokenizer teacher).
    public var referenceTop1: [Int]?
    /// `referenceTop1` decoded one by one (T).
    public var referenceTop1Tokens: [String]?
    /// log π_ref of `referenceTop1` (T).
    public var referenceTop1Logprob: [Float]?
    /// The chunks as [start, end) student token ranges when scored per chunk.
    public var chunks: [[Int]]?
    /// The prompt's reference answer, when it has one.
    public var answer: String?
    /// The response decoded up to the first stop token.
    public var completion: String?
    /// The reward checker's reward of `completion` (exact match against `answer`); nil without an answer.
    public var reward: Double?

    /// A record from its fields (per-token arrays of length T; see each property).
    public init(step: Int, sample: Int, group: Int, prompt: String, promptIds: [Int], responseIds: [Int], tokens: [String], rolloutLogprob: [Float], learnerLogprob: [Float], studentEntropy: [Float], referenceLogprob: [Float], referenceEntropy: [Float], teachers: [String], teacherLogprobs: [[Float]?], teacherWeights: [Double], masked: [Bool], kept: [Bool], weight: [Float], referenceTop1: [Int]? = nil, referenceTop1Tokens: [String]? = nil, referenceTop1Logprob: [Float]? = nil, chunks: [[Int]]? = nil, answer: String? = nil, completion: String? = nil, reward: Double? = nil) {
        self.step = step
        self.sample = sample
        self.group = group
        self.prompt = prompt
        self.promptIds = promptIds
        self.responseIds = responseIds
        self.tokens = tokens
        self.rolloutLogprob = rolloutLogprob
        self.learnerLogprob = learnerLogprob
        self.studentEntropy = studentEntropy
        self.referenceLogprob = referenceLogprob
        self.referenceEntropy = referenceEntropy
        self.teachers = teachers
        self.teacherLogprobs = teacherLogprobs
        self.teacherWeights = teacherWeights
        self.masked = masked
        self.kept = kept
        self.weight = weight
        self.referenceTop1 = referenceTop1
        self.referenceTop1Tokens = referenceTop1Tokens
        self.referenceTop1Logprob = referenceTop1Logprob
        self.chunks = chunks
        self.answer = answer
        self.completion = completion
        self.reward = reward
    }

    /// The response length T.
    public var length: Int { responseIds.count }

    /// Throws naming the first per-token field whose length is not T (a hand-edited or foreign file).
    public func validate() throws {
        let t = responseIds.count
        var fields: [(String, Int)] = [("tokens", tokens.count), ("rollout_logprob", rolloutLogprob.count),
                                       ("learner_logprob", learnerLogprob.count), ("student_entropy", studentEntropy.count),
                                       ("reference_logprob", referenceLogprob.count), ("reference_entropy", referenceEntropy.count),
                                       ("masked", masked.count), ("kept", kept.count), ("weight", weight.count)]
        for (k, row) in teacherLogprobs.enumerated() { if let row { fields.append(("teacher_logprobs[\(k)]", row.count)) } }
        if let r = referenceTop1 { fields.append(("reference_top1", r.count)) }
        if let r = referenceTop1Tokens { fields.append(("reference_top1_tokens", r.count)) }
        if let r = referenceTop1Logprob { fields.append(("reference_top1_logprob", r.count)) }
        for (name, n) in fields where n != t {
            throw RolloutLogError.badRecord(reason: "field \(name) has \(n) entries for \(t) response tokens")
        }
        if teacherLogprobs.count != teachers.count {
            throw RolloutLogError.badRecord(reason: "teacher_logprobs has \(teacherLogprobs.count) rows for \(teachers.count) teachers")
        }
    }
}

/// Errors of the rollout files (`RolloutLog`), one line each.
public enum RolloutLogError: Error, CustomStringConvertible, Equatable {
    /// The run directory holds no rollouts/ files.
    case noRollouts(run: String)
    /// No file for `step`; `available` lists the steps that have one.
    case noStep(run: String, step: Int, available: [Int])
    /// A line of a rollouts file does not decode.
    case badLine(file: String, line: Int, reason: String)
    /// A record's arrays disagree (wrapped with the file and line by `RolloutLog.read`).
    case badRecord(reason: String)
    /// `--sample` outside the step's batch.
    case sampleOutOfRange(step: Int, sample: Int, count: Int)

    public var description: String {
        switch self {
        case let .noRollouts(r):
            return "\(r): no rollouts recorded (rollouts/ is empty or missing); set [output] rollouts_every = N in the run file to record them"
        case let .noStep(r, s, a):
            return "\(r): no rollouts recorded for step \(s); steps with rollouts: \(RolloutLog.describe(steps: a))"
        case let .badLine(f, l, why): return "\(f):\(l): \(why)"
        case let .badRecord(why): return why
        case let .sampleOutOfRange(s, i, n): return "--sample \(i) is out of range: step \(s) has \(n) samples (0...\(n - 1))"
        }
    }
}

/// The rollout files of a run directory: RUN_DIR/rollouts/step-SSSSSSSS.jsonl, one
/// `RolloutRecord` per line (snake_case keys; non-finite numbers as the strings "NaN",
/// "Infinity", "-Infinity"). Each file is written whole and atomically (`AtomicFile`), so a
/// kill leaves the previous set of files and at most a hidden temporary that `removeSteps`
/// clears.
public enum RolloutLog {
    /// RUN_DIR/rollouts.
    public static func directory(run: URL) -> URL { run.appendingPathComponent("rollouts") }

    /// The file of `step`.
    public static func fileURL(run: URL, step: Int) -> URL {
        directory(run: run).appendingPathComponent(String(format: "step-%08d.jsonl", step))
    }

    static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return e
    }

    static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return d
    }

    /// Writes `records` (one step's) as the file of `step`, atomically, creating rollouts/.
    public static func write(_ records: [RolloutRecord], step: Int, run: URL) throws {
        let dir = directory(run: run)
        do { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) } catch {
            throw InputFileError(path: dir.path, problem: "cannot create the rollouts directory")
        }
        let enc = encoder()
        var data = Data()
        for r in records {
            data.append(try enc.encode(r))
            data.append(0x0A)
        }
        try AtomicFile.write(data, to: fileURL(run: run, step: step))
    }

    /// The steps that have a rollouts file, ascending (empty without rollouts/).
    public static func steps(run: URL) -> [Int] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory(run: run).path)) ?? []
        return names.compactMap { n -> Int? in
            guard n.hasPrefix("step-"), n.hasSuffix(".jsonl") else { return nil }
            return Int(n.dropFirst(5).dropLast(6))
        }.sorted()
    }

    /// The records of `step`. Throws `noRollouts` / `noStep` (listing the steps that exist) or
    /// `badLine` naming the file and line of a record that does not decode or whose arrays disagree.
    public static func read(run: URL, step: Int) throws -> [RolloutRecord] {
        let available = steps(run: run)
        if available.isEmpty { throw RolloutLogError.noRollouts(run: run.path) }
        guard available.contains(step) else { throw RolloutLogError.noStep(run: run.path, step: step, available: available) }
        let url = fileURL(run: run, step: step)
        let text = try InputFile.readText(url.path)
        let dec = decoder()
        var out: [RolloutRecord] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            do {
                let r = try dec.decode(RolloutRecord.self, from: Data(line.utf8))
                try r.validate()
                out.append(r)
            } catch let e as RolloutLogError {
                throw RolloutLogError.badLine(file: url.path, line: i + 1, reason: e.description)
            } catch {
                throw RolloutLogError.badLine(file: url.path, line: i + 1, reason: "not a rollout record (\(decodingProblem(error)))")
            }
        }
        return out
    }

    /// Removes the files of steps after `step` and leftovers of interrupted writes (a resumed
    /// run redoes those steps); `step` 0 removes every file.
    public static func removeSteps(after step: Int, run: URL) {
        let dir = directory(run: run)
        let fm = FileManager.default
        for n in (try? fm.contentsOfDirectory(atPath: dir.path)) ?? [] {
            let stale = n.hasPrefix(".") || (n.hasPrefix("step-") && n.hasSuffix(".jsonl") && (Int(n.dropFirst(5).dropLast(6)) ?? Int.max) > step)
            if stale { try? fm.removeItem(at: dir.appendingPathComponent(n)) }
        }
    }

    /// "1, 10, 20, …, 500" (the first and last few of a long list).
    public static func describe(steps: [Int]) -> String {
        if steps.isEmpty { return "none" }
        if steps.count <= 12 { return steps.map(String.init).joined(separator: ", ") }
        return (steps.prefix(6).map(String.init) + ["…"] + steps.suffix(4).map(String.init)).joined(separator: ", ")
            + " (\(steps.count) steps)"
    }

    /// A decoding error in one line of words (the key path and what was wrong).
    static func decodingProblem(_ error: Error) -> String {
        func path(_ c: DecodingError.Context) -> String {
            let p = c.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
            return p.isEmpty ? c.debugDescription : "\(p): \(c.debugDescription)"
        }
        switch error as? DecodingError {
        case let .keyNotFound(k, c)?: return "missing field \(k.stringValue)" + (c.codingPath.isEmpty ? "" : " in \(path(c))")
        case let .typeMismatch(_, c)?, let .valueNotFound(_, c)?, let .dataCorrupted(c)?: return path(c)
        default: return "\(error)".split(whereSeparator: \.isNewline).joined(separator: " ")
        }
    }
}
