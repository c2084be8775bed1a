import Foundation
import TOMLKit

/// The kinds of teacher a manifest may declare.
public enum TeacherKind: String, Sendable, CaseIterable {
    /// A local Hugging Face checkpoint (`path` required).
    case checkpoint
    /// The student conditioned on privileged context (`privileged` required, `path` optional).
    case selfTeacher = "self"
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

    static let topLevelKeys = ["student", "teacher"]
    static let teacherKeys = ["name", "kind", "path", "weight", "privileged"]

    /// Reads and validates a manifest file.
    public static func load(contentsOf url: URL) throws -> PoolManifest {
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw ManifestError.unreadable(file: url.path, reason: "file not found or not UTF-8 text")
        }
        return try PoolManifest(toml: text, file: url)
    }

    /// Parses and validates manifest text; `file` locates relative paths and names errors.
    public init(toml text: String, file: URL) throws {
        self.file = file
        let path = file.path
        let base = file.deletingLastPathComponent()
        let root: TOMLTable
        do { root = try TOMLTable(string: text) } catch let e as TOMLParseError {
            throw ManifestError.unreadable(file: path, reason: "TOML syntax error at line \(e.source.begin.line), column \(e.source.begin.column): \(e.description)")
        } catch {
            throw ManifestError.unreadable(file: path, reason: "\(error)")
        }
        for k in root.keys where !PoolManifest.topLevelKeys.contains(k) {
            throw ManifestError.invalid(file: path, field: k, reason: "unknown key (allowed at top level: \(PoolManifest.topLevelKeys.joined(separator: ", ")))")
        }
        if let s = root["student"] {
            guard let p = s.string, !p.isEmpty else { throw ManifestError.invalid(file: path, field: "student", reason: "must be a non-empty string (a model directory)") }
            student = URL(fileURLWithPath: p, relativeTo: base).standardizedFileURL
        }
        guard let tv = root["teacher"] else {
            throw ManifestError.invalid(file: path, field: "teacher", reason: "no [[teacher]] entries")
        }
        guard let arr = tv.array, !arr.isEmpty else {
            throw ManifestError.invalid(file: path, field: "teacher", reason: "must be a non-empty array of tables ([[teacher]])")
        }
        var specs: [TeacherSpec] = []
        for i in 0..<arr.count {
            let at = "teacher[\(i)]"
            guard let t = arr[i].table else { throw ManifestError.invalid(file: path, field: at, reason: "must be a table") }
            for k in t.keys where !PoolManifest.teacherKeys.contains(k) {
                throw ManifestError.invalid(file: path, field: "\(at).\(k)", reason: "unknown key (allowed: \(PoolManifest.teacherKeys.joined(separator: ", ")))")
            }
            guard let nv = t["name"] else { throw ManifestError.invalid(file: path, field: "\(at).name", reason: "missing") }
            guard let name = nv.string, !name.isEmpty else { throw ManifestError.invalid(file: path, field: "\(at).name", reason: "must be a non-empty string") }
            let field = { (k: String) in "\(at).\(k) ('\(name)')" }
            if specs.contains(where: { $0.name == name }) {
                throw ManifestError.invalid(file: path, field: field("name"), reason: "duplicate teacher name '\(name)'")
            }
            var kind = TeacherKind.checkpoint
            if let kv = t["kind"] {
                guard let ks = kv.string, let k = TeacherKind(rawValue: ks) else {
                    throw ManifestError.invalid(file: path, field: field("kind"), reason: "unknown kind \(kv.debugDescription) (valid: \(TeacherKind.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                kind = k
            }
            var url: URL?
            if let pv = t["path"] {
                guard let p = pv.string, !p.isEmpty else { throw ManifestError.invalid(file: path, field: field("path"), reason: "must be a non-empty string") }
                url = URL(fileURLWithPath: p, relativeTo: base).standardizedFileURL
            } else if kind == .checkpoint {
                throw ManifestError.invalid(file: path, field: field("path"), reason: "missing (a checkpoint teacher needs a model directory)")
            }
            var weight = 1.0, given = false
            if let wv = t["weight"] {
                guard let w = wv.double ?? wv.int.map(Double.init) else {
                    throw ManifestError.invalid(file: path, field: field("weight"), reason: "must be a number")
                }
                if !(w >= 0) || !w.isFinite { throw ManifestError.invalid(file: path, field: field("weight"), reason: "must be a finite number >= 0 (got \(w))") }
                weight = w
                given = true
            }
            var privileged: String?
            if let tv = t["privileged"] {
                if kind != .selfTeacher {
                    throw ManifestError.invalid(file: path, field: field("privileged"), reason: "only allowed for kind = \"self\"")
                }
                guard let s = tv.string else { throw ManifestError.invalid(file: path, field: field("privileged"), reason: "must be a string") }
                do { _ = try PrivilegedTemplate(s, teacher: name) } catch {
                    throw ManifestError.invalid(file: path, field: field("privileged"), reason: "\(error)")
                }
                privileged = s
            } else if kind == .selfTeacher {
                throw ManifestError.invalid(file: path, field: field("privileged"), reason: "missing (a self-teacher needs a template with {prompt})")
            }
            specs.append(TeacherSpec(name: name, kind: kind, path: url, weight: weight, weightGiven: given, privileged: privileged))
        }
        if !(specs.map(\.weight).reduce(0, +) > 0) {
            throw ManifestError.invalid(file: path, field: "teacher[*].weight", reason: "weights sum to zero")
        }
        teachers = specs
    }
}

/// Errors in a pool manifest, naming the file and field.
public enum ManifestError: Error, CustomStringConvertible, Equatable {
    case unreadable(file: String, reason: String)
    case invalid(file: String, field: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(f, r): return "\(f): cannot read manifest: \(r)"
        case let .invalid(f, k, r): return "\(f): \(k): \(r)"
        }
    }
}
