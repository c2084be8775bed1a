import ChorusCore
import ChorusConfig
import Foundation

/// The kinds of teacher a manifest may declare.
public enum TeacherKind: String, Sendable, CaseIterable {
    /// A local Hugging Face checkpoint (`path` required).
    case checkpoint
    /// The student conditioned on privileged context (`privileged` required, `path` optional).
    case selfTeacher = "self"
    /// A model behind a vLLM server (`/v1/completions` with `prompt_logprobs`); see `RemoteSpec`.
    case vllm
    /// A model behind an SGLang server (`/generate` with `return_logprob`); see `RemoteSpec`.
    case sglang
}

/// One `[[teacher]]` entry of a pool manifest, validated, with paths resolved.
public struct TeacherSpec: Sendable, Equatable {
    public var name: String
    public var kind: TeacherKind
    /// The model directory (absolute). For a self-teacher without `path`: nil (the student).
    public var path: URL?
    /// The static mixture weight before normalization (1 when omitted).
    public var weight: Double
    /// Whether `weight` was written in the manifest.
    public var weightGiven: Bool
    /// The privileged template (self-teachers only).
    public var privileged: String?
    /// The server settings of a remote teacher (`kind = "vllm"` or `"sglang"`), else nil.
    public var remote: RemoteSpec? = nil
    /// `cross_tokenizer = true`: the checkpoint may have its own tokenizer.json; when its
    /// content differs from the student's, it scores the re-tokenized text per chunk
    /// (docs/cross-tokenizer.md). Checkpoint teachers only.
    public var crossTokenizer = false
    /// `chat_template`: the teacher's prompt rendering, `{prompt}` exactly once (cross-tokenizer
    /// teachers only).
    public var chatTemplate: String? = nil
}

/// A teacher pool manifest (TOML), teachers listed weakest first (curriculum order).
///
/// ```toml
/// student = "demo/student"        # optional: the student model directory
/// [[teacher]]
/// name = "small"
/// path = "demo/small"             # a Hugging Face model directory
/// weight = 1.0                    # optional (default: uniform)
/// [[teacher]]
/// name = "self"
/// kind = "self"                   # optional; default "checkpoint"
/// privileged = "Solution: {answer}\n{prompt}"
/// [[teacher]]
/// name = "other-family"
/// path = "demo/other"
/// cross_tokenizer = true          # may have its own tokenizer.json (docs/cross-tokenizer.md)
/// chat_template = "User: {prompt}\nAssistant:"   # optional, cross-tokenizer teachers only
///
/// [curriculum]                    # optional: the pool's curriculum (docs/curricula.md), used
/// transition = "linear"           # by runs with aggregator = "curriculum" that give none
/// [[curriculum.stage]]
/// at = 0.0
/// weights = { small = 1, self = 0, other-family = 0 }
/// ```
/// Paths are relative to the manifest file. A self-teacher with `path` is a frozen copy of
/// that checkpoint; without `path` it is the pool's student (`student =` here, overridden by
/// the caller, e.g. `chorus score --student`).
public struct PoolManifest: Sendable, Equatable {
    /// The manifest file (for error messages and relative paths).
    public var file: URL
    /// The student directory named by the manifest, if any (absolute).
    public var student: URL?
    public var teachers: [TeacherSpec]
    /// The `[curriculum]` table over these teachers, if any (the `curriculum` aggregator's
    /// stages when the run file has none; a run file may not give a second one).
    public var curriculum: Curriculum?

    /// Reads and validates a manifest file.
    public static func load(contentsOf url: URL) throws -> PoolManifest {
        let text: String
        do { text = try InputFile.readText(url.path) } catch let e as InputFileError {
            throw ConfigFileError(url.path, "cannot read manifest: \(e.problem)")
        }
        return try PoolManifest(toml: text, file: url)
    }

    /// Parses and validates manifest text; `file` locates relative paths and names errors
    /// (`ConfigFileError`: `FILE: teacher[i].field ('name'): reason`).
    public init(toml text: String, file: URL) throws {
        self.file = file
        let base = PathStandIns.directory(of: file)
        let root = try ConfigTable(string: text, file: file.path)
        if let p = try root.string("student") {
            if p.isEmpty { throw root.error("student", "must be a non-empty string (a model directory)") }
            student = URL(fileURLWithPath: p, relativeTo: base).standardizedFileURL
        }
        let entries = try root.tables("teacher")
        if entries.isEmpty { throw root.error("teacher", "no [[teacher]] entries") }
        var specs: [TeacherSpec] = []
        for t in entries {
            let name = try t.required("name", try t.string("name"))
            if name.isEmpty { throw t.error("name", "must be a non-empty string") }
            // The score cache labels each record with its teacher's name in at most 255 UTF-8
            // bytes: refuse a longer name here, not after the first scoring.
            if name.utf8.count > 255 {
                throw t.error("name", "is \(name.utf8.count) bytes long; a teacher name may have at most 255 UTF-8 bytes")
            }
            if name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                throw t.error("name", "contains a control character; names appear in metrics and messages")
            }
            t.label = "('\(name)')"
            if specs.contains(where: { $0.name == name }) { throw t.error("name", "duplicate teacher name '\(name)'") }
            var kind = TeacherKind.checkpoint
            if let ks = try t.string("kind") {
                guard let k = TeacherKind(rawValue: ks) else {
                    throw t.error("kind", "unknown kind \"\(ks)\" (valid: \(TeacherKind.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                kind = k
            }
            var url: URL?
            if let p = try t.string("path") {
                if p.isEmpty { throw t.error("path", "must be a non-empty string") }
                url = URL(fileURLWithPath: p, relativeTo: base).standardizedFileURL
            } else if kind == .checkpoint {
                throw t.error("path", "missing (a checkpoint teacher needs a model directory)")
            }
            let remote = try RemoteSpec(table: t, kind: kind, base: base)
            if remote != nil, url != nil { throw t.error("path", "not allowed for kind = \"\(kind.rawValue)\" (the model is on the server)") }
            let weight = try t.double("weight", min: 0)
            let privileged = try t.string("privileged")
            if let s = privileged {
                if kind != .selfTeacher { throw t.error("privileged", "only allowed for kind = \"self\"") }
                do { _ = try PrivilegedTemplate(s, teacher: name) } catch { throw t.error("privileged", "\(error)") }
            } else if kind == .selfTeacher {
                throw t.error("privileged", "missing (a self-teacher needs a template with {prompt})")
            }
            let cross = try t.bool("cross_tokenizer") ?? false
            if cross, kind != .checkpoint { throw t.error("cross_tokenizer", "only allowed for kind = \"checkpoint\"") }
            let chat = try t.string("chat_template")
            if let c = chat {
                if !cross { throw t.error("chat_template", "only allowed with cross_tokenizer = true (a same-tokenizer teacher sees the student's prompt ids)") }
                do { _ = try ChatTemplate(c, teacher: name) } catch { throw t.error("chat_template", "\(error)") }
            }
            try t.finish()
            specs.append(TeacherSpec(name: name, kind: kind, path: url, weight: weight ?? 1, weightGiven: weight != nil,
                                     privileged: privileged, remote: remote, crossTokenizer: cross, chatTemplate: chat))
        }
        // After the teachers: stage weights are checked against their names.
        if let c = try root.table("curriculum") {
            curriculum = try CurriculumSpec(table: c).resolve(teacherNames: specs.map(\.name))
        }
        try root.finish()
        // The largest weight, not the sum: 1e308 + 1e308 overflows but is a fine pair of weights.
        if !((specs.map(\.weight).max() ?? 0) > 0) {
            throw ConfigFileError(file: file.path, key: "teacher[*].weight", reason: "all weights are 0; at least one must be positive")
        }
        teachers = specs
    }
}
