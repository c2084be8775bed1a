import ChorusCache
import ChorusModel
import ChorusTensor
import Foundation

/// One prompt and the responses sampled for it (a prompt group). Teachers score every
/// response in the context prompt + response; only response tokens get a score.
public struct ScoringGroup: Sendable {
    /// The prompt token ids (at least one token: it predicts the first response token).
    public var prompt: [Int]
    /// The sampled responses, token ids.
    public var responses: [[Int]]
    /// The prompt-group index (routing aggregators choose a teacher per group).
    public var index: Int
    /// Values for a self-teacher's privileged template, e.g. `["answer": "42"]`.
    public var privileged: [String: String]

    public init(prompt: [Int], responses: [[Int]], index: Int = 0, privileged: [String: String] = [:]) {
        self.prompt = prompt
        self.responses = responses
        self.index = index
        self.privileged = privileged
    }
}

/// What a teacher says about one response: per response token the log-prob of the token,
/// the entropy and top-k of the teacher's next-token distribution, and (when asked) the full
/// log-prob vectors.
public struct SequenceScores {
    /// One entry per response token, in order.
    public var positions: [PositionScore]
    /// (T, V) log-softmax rows, row t predicting response token t; nil unless requested.
    public var logProbabilities: Tensor?
}

/// Errors from teachers and their inputs.
public enum TeacherError: Error, CustomStringConvertible, Equatable {
    case emptyPrompt(teacher: String)
    case tokenOutOfRange(teacher: String, token: Int, vocabSize: Int)
    case missingPrivilegedValue(teacher: String, placeholder: String)
    case badTemplate(teacher: String, reason: String)
    case tokenizerUnavailable(teacher: String, reason: String)

    public var description: String {
        switch self {
        case let .emptyPrompt(t): return "teacher '\(t)': the prompt is empty (at least one token must precede the response)"
        case let .tokenOutOfRange(t, tok, v): return "teacher '\(t)': token id \(tok) is outside the vocabulary [0, \(v))"
        case let .missingPrivilegedValue(t, p): return "teacher '\(t)': no value for placeholder {\(p)} of the privileged template"
        case let .badTemplate(t, r): return "teacher '\(t)': privileged template \(r)"
        case let .tokenizerUnavailable(t, r): return "teacher '\(t)': no tokenizer for the privileged template: \(r)"
        }
    }
}

/// A model that scores token sequences for distillation.
///
/// `forward` runs the model once over a prompt group; the returned `TeacherForward` then hands
/// out log-prob rows for the response positions in chunks, so a pool can combine several
/// teachers' full distributions without holding (T, V) per teacher in memory.
public protocol Teacher: AnyObject {
    /// The name in the pool manifest.
    var name: String { get }
    /// Vocabulary size V of the teacher's distributions.
    var vocabularySize: Int { get }
    /// A stable identity of the scoring function for caches: a hash of the config, the weights
    /// file bytes and any privileged template. Computed on first use (it reads the weights).
    func fingerprint() throws -> TeacherFingerprint
    /// Whether scores may be cached (false for a self-teacher that follows the live student).
    var isCacheable: Bool { get }
    /// The context ids the teacher conditions on before the response (a self-teacher's rendered
    /// privileged template around the prompt; the prompt itself for a checkpoint).
    func context(for group: ScoringGroup) throws -> [Int]
    /// Runs the teacher over every response of the group.
    func forward(_ group: ScoringGroup) throws -> TeacherForward
}

extension Teacher {
    /// Scores each response of a group: per response token the log-prob, entropy and top-k,
    /// and the full (T, V) log-prob rows when `fullDistribution` is set.
    public func score(_ group: ScoringGroup, topK: Int = 0, fullDistribution: Bool = false) throws -> [SequenceScores] {
        let f = try forward(group)
        return f.sequenceScores(topK: topK, fullDistribution: fullDistribution)
    }
}

/// The result of one teacher forward over a prompt group: the final hidden states of every
/// response position (row i predicts target i), packed response after response.
public final class TeacherForward {
    /// The model whose LM head turns hidden rows into distributions.
    public let model: TransformerModel
    /// First packed row of each response; `offsets[r] ..< offsets[r] + lengths[r]`.
    public let offsets: [Int]
    /// Tokens per response.
    public let lengths: [Int]
    /// The response tokens, packed (the targets of the rows).
    public let targets: [Int]
    /// (N, C) final-normed hidden states.
    let hidden: Tensor
    let scratch: Tensor

    init(model: TransformerModel, hidden: Tensor, lengths: [Int], targets: [Int]) {
        self.model = model
        self.hidden = hidden
        self.lengths = lengths
        self.targets = targets
        var o: [Int] = [], s = 0
        for n in lengths { o.append(s); s += n }
        offsets = o
        scratch = model.makeHeadScratch()
    }

    /// Vocabulary size V.
    public var vocabularySize: Int { model.config.vocabSize }
    /// Total response positions N.
    public var count: Int { targets.count }

    /// Writes log-softmax rows for packed positions `rows` into `out`, (rows.count, V).
    public func logProbabilities(rows: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let V = vocabularySize
        model.headChunks(hidden: hidden.data, rows: Array(rows), scratch: scratch) { s, m, logits, _ in
            (out + s * V).update(from: logits, count: m * V)
            logSoftmaxInPlace(out + s * V, rows: m, cols: V)
        }
    }

    /// Scores of packed positions `rows` (log-prob of the target, entropy, top-k).
    public func scores(rows: Range<Int>, topK: Int) -> [PositionScore] {
        model.score(hidden: hidden.data, rows: Array(rows), targets: Array(targets[rows]), topK: topK, scratch: scratch)
    }

    /// Per-response scores (see `Teacher.score`).
    public func sequenceScores(topK: Int, fullDistribution: Bool) -> [SequenceScores] {
        (0..<lengths.count).map { r in
            let rows = offsets[r]..<(offsets[r] + lengths[r])
            var lp: Tensor?
            if fullDistribution {
                let t = Tensor(shape: [lengths[r], vocabularySize])
                logProbabilities(rows: rows, into: t.data)
                lp = t
            }
            return SequenceScores(positions: scores(rows: rows, topK: topK), logProbabilities: lp)
        }
    }
}
