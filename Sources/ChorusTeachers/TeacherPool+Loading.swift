import ChorusCache
import ChorusModel
import ChorusTokenizer
import Foundation

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

extension TeacherPool {
    /// Loads a pool from a manifest: checks that every model directory exists, that all
    /// teachers and the student share one vocabulary (`VocabularyCheck`), then makes the
    /// teachers; a teacher reads its weights only when it first has something to score (not
    /// at all when the cache holds every score). `student` overrides the manifest's `student`
    /// key. `encoderLoader` turns a tokenizer.json into the encoder of self-teacher templates.
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
        for (i, t) in m.teachers.enumerated() {
            if let p = t.path {
                if !isDir(p) { throw PoolError.modelNotFound(file: file, field: "teacher[\(i)].path ('\(t.name)')", path: p.path) }
            } else if let r = t.remote {
                if !fm.fileExists(atPath: r.tokenizer.path) {
                    throw PoolError.modelNotFound(file: file, field: "teacher[\(i)].tokenizer ('\(t.name)')", path: r.tokenizer.path)
                }
            } else if studentDir == nil {
                throw PoolError.noStudent(file: file, teacher: t.name)
            }
        }
        // A cross_tokenizer teacher whose tokenizer.json has the student's content (SHA-256)
        // is an ordinary teacher; otherwise it is aligned through both tokenizers.
        var crossTokenizers: [String: (student: URL, teacher: URL)] = [:]
        for (i, t) in m.teachers.enumerated() where t.crossTokenizer {
            let own = t.path!.appendingPathComponent("tokenizer.json")
            guard fm.fileExists(atPath: own.path) else {
                throw PoolError.tokenizerNotFound(file: file, field: "teacher[\(i)].path ('\(t.name)')", path: own.path)
            }
            let stu = (studentDir ?? own.deletingLastPathComponent()).appendingPathComponent("tokenizer.json")
            guard studentDir != nil, fm.fileExists(atPath: stu.path) else {
                throw PoolError.tokenizerNotFound(file: file, field: studentDir == nil ? "student" : "student ('\(t.name)')", path: stu.path)
            }
            if try fileHash(own) != fileHash(stu) { crossTokenizers[t.name] = (stu, own) }
        }
        let (members, remoteVocabularySize) = try vocabularyMembers(m, studentDirectory: studentDir, excluding: Set(crossTokenizers.keys))
        let vocabularies = try VocabularyCheck.check(members)

        var teachers: [any Teacher] = []
        for t in m.teachers {
            switch t.kind {
            case .checkpoint:
                let inner = try CheckpointTeacher(name: t.name, directory: t.path!)
                if let files = crossTokenizers[t.name] {
                    let st = try Tokenizer(contentsOf: files.student), tt = try Tokenizer(contentsOf: files.teacher)
                    let studentEOS = try ModelConfig(contentsOf: studentDir!.appendingPathComponent("config.json")).eosTokenIds
                    let aligner = try TokenAligner(teacher: t.name, studentTokenizer: st, teacherTokenizer: tt, studentEOS: studentEOS,
                                                   teacherEOS: inner.source.config.eosTokenIds, studentFile: files.student.path,
                                                   teacherFile: files.teacher.path)
                    teachers.append(CrossTokenizerTeacher(inner: inner, aligner: aligner,
                                                          template: try t.chatTemplate.map { try ChatTemplate($0, teacher: t.name) }))
                } else {
                    teachers.append(inner)
                }
            case .selfTeacher:
                let template = try PrivilegedTemplate(t.privileged!, teacher: t.name)
                let dir = t.path ?? studentDir!
                let encoder = try encoderLoader(dir.appendingPathComponent("tokenizer.json"))
                if t.path == nil, let live = student?.liveModel {
                    teachers.append(SelfTeacher(name: t.name, model: live, template: template, encoder: encoder, followsStudent: true))
                } else {
                    teachers.append(try SelfTeacher(name: t.name, directory: dir, template: template, encoder: encoder))
                }
            case .vllm, .sglang:
                teachers.append(try RemoteTeacher(name: t.name, wire: t.kind == .vllm ? .vllm : .sglang, spec: t.remote!,
                                                  vocabularySize: remoteVocabularySize[t.name]!))
            }
        }
        var sv: TokenVocabulary?, svSize: Int?
        if let s = studentDir {
            let tok = s.appendingPathComponent("tokenizer.json")
            // Read by the check above (the student is one of its members); parsed here only if not.
            if fm.fileExists(atPath: tok.path) { sv = try vocabularies[tok.standardizedFileURL.path] ?? TokenVocabulary(contentsOf: tok) }
            svSize = try ModelConfig(contentsOf: s.appendingPathComponent("config.json")).vocabSize
        }
        let given = m.teachers.contains { $0.weightGiven }
        return try TeacherPool(teachers: teachers, weights: given ? m.teachers.map(\.weight) : nil, manifest: m,
                               studentVocabulary: sv, studentVocabularySize: svSize)
    }

    /// The models whose vocabularies must agree (`VocabularyCheck`), teachers first so the
    /// teachers' V is the reference (the student may add control rows), and the V of each
    /// remote teacher by name (read from the manifest or local files; no server is contacted).
    /// Teachers named in `cross` (cross-tokenizer teachers) are left out: they keep their own vocabulary.
    static func vocabularyMembers(_ m: PoolManifest, studentDirectory studentDir: URL?, excluding cross: Set<String> = []) throws
        -> ([VocabularyCheck.Member], [String: Int]) {
        var members: [VocabularyCheck.Member] = []
        if let s = studentDir {
            let cfg = try ModelConfig(contentsOf: s.appendingPathComponent("config.json"))
            members.append(.init(directory: s, vocabSize: cfg.vocabSize, isStudent: true))
        }
        var remoteVocabularySize: [String: Int] = [:]
        for t in m.teachers where !cross.contains(t.name) {
            if let r = t.remote {
                let v = try RemoteTeacher.vocabularySize(r)
                remoteVocabularySize[t.name] = v
                members.append(.init(directory: r.tokenizer.deletingLastPathComponent(), vocabSize: v, isStudent: false,
                                     tokenizerFile: r.tokenizer))
                continue
            }
            guard let p = t.path else { continue }
            let cfg = try ModelConfig(contentsOf: p.appendingPathComponent("config.json"))
            members.append(.init(directory: p, vocabSize: cfg.vocabSize, isStudent: false))
        }
        members.sort { !$0.isStudent && $1.isStudent }
        return (members, remoteVocabularySize)
    }
}

/// SHA-256 of a file's bytes (tokenizer.json identity: content, not path).
func fileHash(_ url: URL) throws -> [UInt8] {
    guard let d = FileManager.default.contents(atPath: url.path) else {
        throw VocabularyError.unreadable(file: url.path, reason: "file not found or unreadable")
    }
    return SHA256.hash(d)
}
