import ChorusCache
import ChorusModel
import ChorusTensor
import Foundation

/// Turns template text into token ids (the student's tokenizer, for the self-teacher).
public protocol TextEncoder: AnyObject {
    func encode(_ text: String) -> [Int]
}

/// A local Hugging Face checkpoint as a teacher.
public final class CheckpointTeacher: LocalTeacher {
    public let name: String
    /// The model directory (nil for a model built in memory).
    public var directory: URL? { source.directory }
    /// The forward's options (prefix sharing, KV budget).
    public let runner = HiddenStateRunner()
    let source: LazyModel
    private var cachedFingerprint: TeacherFingerprint?

    /// A teacher over a model directory: reads config.json now, the weights on first forward.
    public init(name: String, directory: URL) throws {
        self.name = name
        source = try LazyModel(directory: directory)
    }

    /// A teacher over a model in memory; `directory`, when given, is what the fingerprint hashes.
    public init(name: String, model: TransformerModel, directory: URL? = nil) {
        self.name = name
        source = LazyModel(model, directory: directory)
    }

    /// The model, once its weights are loaded (nil before the first forward of a directory teacher).
    public var model: TransformerModel? { source.loaded }
    public var vocabularySize: Int { source.config.vocabSize }
    public var isCacheable: Bool { true }

    public func fingerprint(memo: FingerprintMemo?) throws -> TeacherFingerprint {
        if let f = cachedFingerprint { return f }
        let f = try directory.map { try Fingerprints.checkpoint(directory: $0, strings: ["kind=checkpoint"], memo: memo) }
            ?? Fingerprints.parameters(try source.model(), strings: ["kind=checkpoint"])
        cachedFingerprint = f
        return f
    }

    public func context(for group: ScoringGroup) throws -> [Int] { group.prompt }

    public func forward(_ group: ScoringGroup) throws -> TeacherForward {
        try runner.forward(model: try source.model(), prefix: group.prompt, continuations: group.responses, teacher: name)
    }

    public func forward(groups: [ScoringGroup]) throws -> [TeacherForward] {
        try runner.forward(model: try source.model(), groups: groups.map { .init(prefix: $0.prompt, continuations: $0.responses) },
                           teacher: name)
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
public final class SelfTeacher: LocalTeacher {
    public let name: String
    public let template: PrivilegedTemplate
    public let encoder: TextEncoder
    /// The forward's options (prefix sharing, KV budget).
    public let runner = HiddenStateRunner()
    /// The checkpoint directory the weights come from (frozen copy), if any.
    public var directory: URL? { source.directory }
    /// True when the teacher shares the student's live parameters (scores follow training).
    public let followsStudent: Bool
    let source: LazyModel
    private var cachedFingerprint: TeacherFingerprint?

    /// A self-teacher over `model`. Pass the student itself with `followsStudent: true` for the
    /// current student, or a frozen copy (`model.copy()`, or a model loaded from `directory`).
    public init(name: String, model: TransformerModel, template: PrivilegedTemplate, encoder: TextEncoder,
                directory: URL? = nil, followsStudent: Bool = false) {
        self.name = name
        self.template = template
        self.encoder = encoder
        source = LazyModel(model, directory: directory)
        self.followsStudent = followsStudent
    }

    /// A frozen self-teacher over the checkpoint in `directory`: reads config.json now, the
    /// weights on first forward.
    public init(name: String, directory: URL, template: PrivilegedTemplate, encoder: TextEncoder) throws {
        self.name = name
        self.template = template
        self.encoder = encoder
        source = try LazyModel(directory: directory)
        followsStudent = false
    }

    /// The model, once its weights are loaded (nil before the first forward of a directory teacher).
    public var model: TransformerModel? { source.loaded }
    public var vocabularySize: Int { source.config.vocabSize }
    public var isCacheable: Bool { !followsStudent }

    public func fingerprint(memo: FingerprintMemo?) throws -> TeacherFingerprint {
        if let f = cachedFingerprint, !followsStudent { return f }
        let strings = ["kind=self", "privileged=" + template.text]
        let f = try directory.map { try Fingerprints.checkpoint(directory: $0, strings: strings, memo: memo) }
            ?? Fingerprints.parameters(try source.model(), strings: strings)
        cachedFingerprint = f
        return f
    }

    public func context(for group: ScoringGroup) throws -> [Int] {
        if group.prompt.isEmpty { throw TeacherError.emptyPrompt(teacher: name) }
        return try template.render(prompt: group.prompt, values: group.privileged, encoder: encoder,
                                   bos: source.config.bosTokenId, teacher: name)
    }

    public func forward(_ group: ScoringGroup) throws -> TeacherForward {
        try runner.forward(model: try source.model(), prefix: try context(for: group), continuations: group.responses, teacher: name)
    }

    public func forward(groups: [ScoringGroup]) throws -> [TeacherForward] {
        try runner.forward(model: try source.model(),
                           groups: try groups.map { .init(prefix: try context(for: $0), continuations: $0.responses) }, teacher: name)
    }
}
