import ChorusCore
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
    /// The prompt's text, when known (the prompt file's): what a cross-tokenizer teacher
    /// renders with its own chat template and tokenizer. Nil: it decodes `prompt`.
    public var promptText: String?

    public init(prompt: [Int], responses: [[Int]], index: Int = 0, privileged: [String: String] = [:], promptText: String? = nil) {
        self.prompt = prompt
        self.responses = responses
        self.index = index
        self.privileged = privileged
        self.promptText = promptText
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
/// `rows(for:topK:)` scores every response of a prompt group and hands the result out as
/// `TeacherRows`: per response position a log-prob row over the vocabulary and the teacher's
/// score there, a few positions at a time, so a pool can combine several teachers' full
/// distributions without holding (T, V) per teacher in memory. A local checkpoint gives exact
/// rows from one forward (`LocalTeacher`); a teacher that only reports top-k log-probs (a
/// remote inference server) gives rows rebuilt from them (`TopKRows`).
public protocol Teacher: AnyObject {
    /// The name in the pool manifest.
    var name: String { get }
    /// Vocabulary size V of the teacher's distributions.
    var vocabularySize: Int { get }
    /// A stable identity of the scoring function for caches: a hash of the config, the weights
    /// file bytes and any privileged template. Computed on first use; `memo` (the cache
    /// directory's) remembers file hashes across runs so unchanged weights are not read again.
    func fingerprint(memo: FingerprintMemo?) throws -> TeacherFingerprint
    /// Whether scores may be cached (false for a self-teacher that follows the live student).
    var isCacheable: Bool { get }
    /// The context ids the teacher conditions on before the response (a self-teacher's rendered
    /// privileged template around the prompt; the prompt itself for a checkpoint).
    func context(for group: ScoringGroup) throws -> [Int]
    /// Scores every response of the group. The scores the rows hand out carry the `topK` most
    /// likely tokens (what a score cache records); 0 asks for none.
    func rows(for group: ScoringGroup, topK: Int) throws -> any TeacherRows
    /// Scores several prompt groups, one `TeacherRows` per group, in order. Local teachers run
    /// them in shared forwards (a training step's groups in one batch); the default asks group
    /// by group.
    func rows(for groups: [ScoringGroup], topK: Int) throws -> [any TeacherRows]
}

extension Teacher {
    public func rows(for groups: [ScoringGroup], topK: Int) throws -> [any TeacherRows] {
        try groups.map { try rows(for: $0, topK: topK) }
    }

    /// The fingerprint without a memo (hashes the weights files on first use).
    public func fingerprint() throws -> TeacherFingerprint { try fingerprint(memo: nil) }

    /// Scores each response of a group: per response token the log-prob, entropy and top-k,
    /// and the full (T, V) log-prob rows when `fullDistribution` is set.
    public func score(_ group: ScoringGroup, topK: Int = 0, fullDistribution: Bool = false) throws -> [SequenceScores] {
        let rows = try self.rows(for: group, topK: topK)
        return try group.responses.indices.map { r in
            let positions = 0..<group.responses[r].count
            guard fullDistribution else {
                return SequenceScores(positions: try rows.rows(response: r, positions: positions, into: nil), logProbabilities: nil)
            }
            let lp = Tensor(shape: [positions.count, vocabularySize])
            return SequenceScores(positions: try rows.rows(response: r, positions: positions, into: lp.data), logProbabilities: lp)
        }
    }
}

/// A teacher whose model runs in this process: one forward over a prompt group gives the hidden
/// state predicting every response token (`TeacherForward`), and from it exact full
/// distributions (`ForwardRows`).
public protocol LocalTeacher: Teacher {
    /// Runs the model over every response of the group (loading its weights on first use).
    func forward(_ group: ScoringGroup) throws -> TeacherForward
    /// Runs the model over every response of several groups, batched across groups.
    func forward(groups: [ScoringGroup]) throws -> [TeacherForward]
}

extension LocalTeacher {
    public func forward(groups: [ScoringGroup]) throws -> [TeacherForward] {
        try groups.map { try forward($0) }
    }

    public func rows(for group: ScoringGroup, topK: Int) throws -> any TeacherRows {
        ForwardRows(try forward(group), topK: topK)
    }

    public func rows(for groups: [ScoringGroup], topK: Int) throws -> [any TeacherRows] {
        try forward(groups: groups).map { ForwardRows($0, topK: topK) }
    }
}
