import ChorusCore
import ChorusConfig
import ChorusModel
import ChorusTokenizer
import Foundation

extension PoolManifest {
    /// The tokenizer that turns text into the pool's token ids (`chorus score --text`): the
    /// student's tokenizer.json (`studentDirectory`, else the manifest's `student`), since the
    /// student writes the sequences a pool scores and is the one whose vocabulary may carry
    /// control tokens; without a student, the first teacher's (a checkpoint or self-teacher
    /// directory's tokenizer.json, or a remote teacher's `tokenizer` file). The pool's
    /// vocabulary check makes all of them agree id by id. A directory without tokenizer.json
    /// is `CheckpointError.missingTokenizer` naming it; a pool naming no model, a
    /// `ConfigFileError` naming the manifest.
    public func loadTextTokenizer(studentDirectory: URL? = nil) throws -> Tokenizer {
        if let s = studentDirectory ?? student { return try CheckpointTokenizer.load(directory: s) }
        for t in teachers {
            if let p = t.path { return try CheckpointTokenizer.load(directory: p) }
            if let r = t.remote { return try Tokenizer(contentsOf: r.tokenizer) }
        }
        throw ConfigFileError(file.path, "the pool names no student or teacher model whose tokenizer could encode text")
    }
}

/// What `chorus info --pool FILE` reports: each teacher described (a local model as
/// `ModelInfo`, a remote one by its manifest entry — no server is contacted), the student, and
/// the checks the pool needs (a student where a self-teacher needs one, one shared
/// vocabulary, every model directory describable).
///
/// A manifest that cannot be read or parsed throws (naming the file and key); a model that
/// cannot be described becomes a failed check naming it, so the other teachers still show.
public struct PoolInfo {
    /// One teacher: its manifest entry, its normalized weight, and its model's description
    /// (nil for a remote teacher and a self-teacher without `path`, which is the student) or
    /// the error describing it gave.
    public struct Entry {
        public var spec: TeacherSpec
        public var weight: Double
        public var model: ModelInfo?
        public var error: String?
        /// A remote teacher's V (manifest `vocab_size`, config.json beside its tokenizer, or
        /// the tokenizer's ids).
        public var remoteVocabSize: Int?
    }

    /// The manifest file.
    public var file: String
    /// The student directory in use (the override, else the manifest's), and its description.
    public var studentDirectory: URL?
    public var student: ModelInfo?
    public var studentError: String?
    public var teachers: [Entry]
    /// The pool's checks (each teacher's own checks are in its `model`).
    public var checks: [InfoCheck]

    /// Whether every check holds, the teachers' and the student's own included.
    public var ok: Bool {
        checks.allSatisfy(\.ok) && (student?.ok ?? true) && teachers.allSatisfy { $0.model?.ok ?? true }
    }

    /// Describes the pool of `manifest`; `student` overrides the manifest's `student` key.
    public static func inspect(manifest url: URL, student override: URL? = nil) throws -> PoolInfo {
        let m = try PoolManifest.load(contentsOf: url)
        let studentDir = override ?? m.student
        var checks: [InfoCheck] = []
        func describe(_ dir: URL) -> (ModelInfo?, String?) {
            do { return (try ModelInfo.inspect(directory: dir), nil) } catch { return (nil, "\(error)") }
        }
        var studentInfo: ModelInfo?, studentError: String?
        if let s = studentDir { (studentInfo, studentError) = describe(s) }
        if let e = studentError { checks.append(InfoCheck(name: "student", ok: false, detail: e)) }

        let total = m.teachers.map(\.weight).reduce(0, +)
        var entries: [Entry] = []
        for (i, t) in m.teachers.enumerated() {
            var e = Entry(spec: t, weight: total > 0 ? t.weight / total : 0)
            if let p = t.path {
                (e.model, e.error) = describe(p)
            } else if let r = t.remote {
                do { e.remoteVocabSize = try RemoteTeacher.vocabularySize(r) } catch { e.error = "\(error)" }
            } else if studentDir == nil {
                e.error = "\(PoolError.noStudent(file: url.path, teacher: t.name))"
            }
            if let err = e.error {
                checks.append(InfoCheck(name: "teacher[\(i)] ('\(t.name)')", ok: false, detail: err))
            }
            entries.append(e)
        }
        checks.insert(InfoCheck(name: "names", ok: true,
                                detail: "\(m.teachers.count) teacher\(m.teachers.count == 1 ? "" : "s"), names unique"), at: 0)
        // The check TeacherPool.load runs, on the same members.
        do {
            let (members, _) = try TeacherPool.vocabularyMembers(m, studentDirectory: studentDir)
            _ = try VocabularyCheck.check(members)
            checks.append(InfoCheck(name: "vocabulary", ok: true,
                                    detail: "the student and every teacher give each token the same id" + (studentDir == nil ? " (no student)" : "")))
        } catch {
            checks.append(InfoCheck(name: "vocabulary", ok: false, detail: "\(error)"))
        }
        return PoolInfo(file: url.path, studentDirectory: studentDir, student: studentInfo, studentError: studentError,
                        teachers: entries, checks: checks)
    }

    /// One JSON object: `{"manifest", "student": ModelInfo JSON or null, "teachers": [{"name",
    /// "kind", "weight", "path", "model": ModelInfo JSON or null, "remote": {...} or null,
    /// "error"}], "checks", "ok"}`.
    public var json: String {
        JSONText.object([
            ("manifest", JSONText.string(file)),
            ("student_directory", studentDirectory.map { JSONText.string($0.path) } ?? "null"),
            ("student", student?.json ?? "null"),
            ("teachers", JSONText.array(teachers.map { e in
                let s = e.spec
                return JSONText.object([
                    ("name", JSONText.string(s.name)),
                    ("kind", JSONText.string(s.kind.rawValue)),
                    ("weight", JSONText.number(e.weight)),
                    ("path", s.path.map { JSONText.string($0.path) } ?? (s.kind == .selfTeacher ? JSONText.string("(the student)") : "null")),
                    ("privileged", s.privileged.map(JSONText.string) ?? "null"),
                    ("remote", s.remote.map { r in
                        JSONText.object([
                            ("url", JSONText.string(r.url)),
                            ("model", r.model.map(JSONText.string) ?? "null"),
                            ("tokenizer", JSONText.string(r.tokenizer.path)),
                            ("top_k", "\(r.topK)"),
                            ("vocab_size", e.remoteVocabSize.map(String.init) ?? "null"),
                        ])
                    } ?? "null"),
                    ("model", e.model?.json ?? "null"),
                    ("error", e.error.map(JSONText.string) ?? "null"),
                ])
            })),
            ("checks", JSONText.array(checks.map(\.json))),
            ("ok", ok ? "true" : "false"),
        ])
    }
}
