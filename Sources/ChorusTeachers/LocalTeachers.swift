import ChorusCache
import ChorusModel
import ChorusTensor
import Foundation

/// Turns template text into token ids (the student's tokenizer, for the self-teacher).
public protocol TextEncoder: AnyObject {
    func encode(_ text: String) -> [Int]
}

/// A local Hugging Face checkpoint as a teacher.
public final class CheckpointTeacher: Teacher {
    public let name: String
    /// The model directory (nil for a model built in memory).
    public let directory: URL?
    public let scorer: ContextScorer
    private var cachedFingerprint: TeacherFingerprint?

    /// Loads a teacher from a model directory.
    public convenience init(name: String, directory: URL) throws {
        self.init(name: name, model: try TransformerModel.load(directory: directory), directory: directory)
    }

    /// A teacher over a model in memory; `directory`, when given, is what the fingerprint hashes.
    public init(name: String, model: TransformerModel, directory: URL? = nil) {
        self.name = name
        self.directory = directory
        self.scorer = ContextScorer(model: model)
    }

    public var model: TransformerModel { scorer.model }
    public var vocabularySize: Int { model.config.vocabSize }
    public var isCacheable: Bool { true }

    public func fingerprint() throws -> TeacherFingerprint {
        if let f = cachedFingerprint { return f }
        let f = try directory.map { try Fingerprints.checkpoint(directory: $0, strings: ["kind=checkpoint"]) }
            ?? Fingerprints.parameters(model, strings: ["kind=checkpoint"])
        cachedFingerprint = f
        return f
    }

    public func context(for group: ScoringGroup) throws -> [Int] { group.prompt }

    public func forward(_ group: ScoringGroup) throws -> TeacherForward {
        try scorer.forward(prefix: group.prompt, continuations: group.responses, teacher: name)
    }
}

/// A privileged-context template such as `"Solution: {answer}\n{prompt}"`.
///
/// `{prompt}` must occur exactly once; it marks where the prompt's token ids are spliced in.
/// Every other `{name}` is filled from the group's privileged values before encoding. The
/// text before `{prompt}` and the text after it are encoded separately (so the prompt keeps
/// exactly the ids the student saw); the response follows the rendered context directly.
public struct PrivilegedTemplate: Sendable, Equatable {
    public let text: String
    /// Text before and after `{prompt}`.
    public let head: String, tail: String
    /// Placeholder names other than `prompt`, in order of first appearance.
    public let placeholders: [String]

    public init(_ text: String, teacher: String) throws {
        self.text = text
        let parts = text.components(separatedBy: "{prompt}")
        if parts.count != 2 {
            throw TeacherError.badTemplate(teacher: teacher, reason: "must contain {prompt} exactly once (found \(parts.count - 1))")
        }
        head = parts[0]
        tail = parts[1]
        var names: [String] = []
        for part in parts {
            var rest = Substring(part)
            while let open = rest.firstIndex(of: "{") {
                guard let close = rest[open...].firstIndex(of: "}") else {
                    throw TeacherError.badTemplate(teacher: teacher, reason: "has an unclosed '{'")
                }
                let n = String(rest[rest.index(after: open)..<close])
                if n.isEmpty || n.contains(where: { !($0.isLetter || $0.isNumber || $0 == "_") }) {
                    throw TeacherError.badTemplate(teacher: teacher, reason: "has a bad placeholder '{\(n)}'")
                }
                if !names.contains(n) { names.append(n) }
                rest = rest[rest.index(after: close)...]
            }
        }
        placeholders = names
    }

    /// Fills the placeholders of a text piece.
    func fill(_ piece: String, values: [String: String], teacher: String) throws -> String {
        var s = piece
        for n in placeholders where s.contains("{\(n)}") {
            guard let v = values[n] else { throw TeacherError.missingPrivilegedValue(teacher: teacher, placeholder: n) }
            s = s.replacingOccurrences(of: "{\(n)}", with: v)
        }
        return s
    }

    /// The context ids: encode(head) + prompt + encode(tail). A leading BOS id of the prompt
    /// stays first (it is moved in front of the template text).
    public func render(prompt: [Int], values: [String: String], encoder: TextEncoder, bos: Int?, teacher: String) throws -> [Int] {
        let h = try fill(head, values: values, teacher: teacher), t = try fill(tail, values: values, teacher: teacher)
        var out: [Int] = []
        var p = prompt[...]
        if let b = bos, p.first == b { out.append(b); p = p.dropFirst() }
        if !h.isEmpty { out += encoder.encode(h) }
        out += p
        if !t.isEmpty { out += encoder.encode(t) }
        return out
    }
}

/// The self-teacher: the student itself (a frozen copy, or the live model) conditioned on
/// privileged context rendered from a template, scoring only the response positions.
public final class SelfTeacher: Teacher {
    public let name: String
    public let template: PrivilegedTemplate
    public let encoder: TextEncoder
    public let scorer: ContextScorer
    /// The checkpoint directory the weights came from (frozen copy), if any.
    public let directory: URL?
    /// True when the teacher shares the student's live parameters (scores follow training).
    public let followsStudent: Bool
    private var cachedFingerprint: TeacherFingerprint?

    /// A self-teacher over `model`. Pass the student itself with `followsStudent: true` for the
    /// current student, or a frozen copy (`model.copy()`, or a model loaded from `directory`).
    public init(name: String, model: TransformerModel, template: PrivilegedTemplate, encoder: TextEncoder,
                directory: URL? = nil, followsStudent: Bool = false) {
        self.name = name
        self.template = template
        self.encoder = encoder
        self.scorer = ContextScorer(model: model)
        self.directory = directory
        self.followsStudent = followsStudent
    }

    public var model: TransformerModel { scorer.model }
    public var vocabularySize: Int { model.config.vocabSize }
    public var isCacheable: Bool { !followsStudent }

    public func fingerprint() throws -> TeacherFingerprint {
        if let f = cachedFingerprint, !followsStudent { return f }
        let strings = ["kind=self", "privileged=" + template.text]
        let f = try directory.map { try Fingerprints.checkpoint(directory: $0, strings: strings) }
            ?? Fingerprints.parameters(model, strings: strings)
        cachedFingerprint = f
        return f
    }

    public func context(for group: ScoringGroup) throws -> [Int] {
        if group.prompt.isEmpty { throw TeacherError.emptyPrompt(teacher: name) }
        return try template.render(prompt: group.prompt, values: group.privileged, encoder: encoder,
                                   bos: model.config.bosTokenId, teacher: name)
    }

    public func forward(_ group: ScoringGroup) throws -> TeacherForward {
        try scorer.forward(prefix: try context(for: group), continuations: group.responses, teacher: name)
    }
}
