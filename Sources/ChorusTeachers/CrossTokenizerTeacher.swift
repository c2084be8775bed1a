import ChorusCache
import ChorusCore
import ChorusModel
import ChorusTokenizer
import Foundation

/// A teacher's chat template: `{prompt}` (exactly once) marks where the prompt text goes, e.g.
/// `"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"`. The rendered text is
/// encoded with the teacher's tokenizer (special tokens written in it are recognised, and its
/// post-processor adds BOS as for any encoded text).
public struct ChatTemplate: Sendable, Equatable {
    public let text: String
    public let head: String, tail: String

    public init(_ text: String, teacher: String) throws {
        let parts = text.components(separatedBy: "{prompt}")
        if parts.count != 2 {
            throw TeacherError.badTemplate(teacher: teacher, reason: "(chat_template) must contain {prompt} exactly once (found \(parts.count - 1))")
        }
        self.text = text
        head = parts[0]
        tail = parts[1]
    }

    public func render(_ prompt: String) -> String { head + prompt + tail }
}

/// One student prompt group as a cross-tokenizer teacher sees it: its own token ids for the
/// (re-rendered) prompt and every response, and each response's chunk alignment.
public struct TranslatedGroup {
    /// The group in the teacher's tokens (prompt = the teacher's whole context).
    public var group: ScoringGroup
    /// Per response, the chunks of student and teacher tokens.
    public var alignments: [ChunkAlignment]
}

/// A teacher with its own tokenizer (a different vocabulary from the student's).
///
/// It scores the rollout's text re-tokenized with its tokenizer: the prompt text (rendered
/// with its `ChatTemplate` when it has one) is encoded as a whole, each response separately
/// (`TokenAligner`), so the prompt/response boundary is a chunk boundary. As a `Teacher` it
/// works on groups in its own tokens (`translate` makes them): `rows` are over its own
/// vocabulary V_teacher and positions, and the score cache keys its scores by its own context
/// and response ids, as for any teacher. The pool turns its token log-probs into chunk
/// log-probs (`TeacherPool.score`).
public final class CrossTokenizerTeacher: Teacher {
    /// The model, scoring token ids of the teacher's vocabulary.
    public let inner: any Teacher
    public let aligner: TokenAligner
    public let template: ChatTemplate?

    public init(inner: any Teacher, aligner: TokenAligner, template: ChatTemplate? = nil) {
        self.inner = inner
        self.aligner = aligner
        self.template = template
    }

    public var name: String { inner.name }
    /// The teacher's own vocabulary size (not the student's).
    public var vocabularySize: Int { inner.vocabularySize }
    public var isCacheable: Bool { inner.isCacheable }
    public func fingerprint(memo: FingerprintMemo?) throws -> TeacherFingerprint { try inner.fingerprint(memo: memo) }
    /// `group` is already in the teacher's tokens: its prompt is the whole context.
    public func context(for group: ScoringGroup) throws -> [Int] { group.prompt }
    public func rows(for group: ScoringGroup, topK: Int) throws -> any TeacherRows { try inner.rows(for: group, topK: topK) }
    public func rows(for groups: [ScoringGroup], topK: Int) throws -> [any TeacherRows] { try inner.rows(for: groups, topK: topK) }

    /// The group in the teacher's tokens. The prompt text is `group.promptText` when given,
    /// else the student prompt ids decoded without special tokens; it is rendered with the
    /// chat template and encoded with the teacher's post-processor (its BOS). `group.prompt`
    /// holds student ids (control tokens already removed).
    public func translate(_ group: ScoringGroup) throws -> TranslatedGroup {
        let text = try group.promptText ?? aligner.studentText(group.prompt)
        let prompt = aligner.teacherTokenizer.encode(template?.render(text) ?? text, addSpecialTokens: true)
        if prompt.isEmpty { throw TeacherError.emptyPrompt(teacher: name) }
        var responses: [[Int]] = [], alignments: [ChunkAlignment] = []
        for r in group.responses {
            let (ids, chunks) = try aligner.align(response: r)
            responses.append(ids)
            alignments.append(chunks)
        }
        return TranslatedGroup(group: ScoringGroup(prompt: prompt, responses: responses, index: group.index,
                                                   privileged: group.privileged, promptText: group.promptText),
                               alignments: alignments)
    }
}

/// Whether a teacher scores the student's text in its own tokens (per chunk, not per token).
func isCrossVocabulary(_ t: any Teacher) -> Bool { t is CrossTokenizerTeacher }
