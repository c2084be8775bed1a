import ChorusTokenizer
import Foundation

/// Two tokenizations of one text cut into chunks whose byte boundaries coincide.
///
/// Chunk c covers student tokens `student[c]` and teacher tokens `teacher[c]`; both lists are
/// contiguous, in order, and cover 0..<Ts and 0..<Tt. A chunk ends at every byte offset that
/// is a token boundary in both sequences, so chunks are as small as the two tokenizations
/// allow (one token each where they agree). A chunk's log-prob under a model is the sum of
/// that model's log-probs over its own tokens of the chunk.
public struct ChunkAlignment: Sendable, Equatable {
    /// Per chunk, the student token range (C chunks).
    public var student: [Range<Int>]
    /// Per chunk, the teacher token range (C chunks).
    public var teacher: [Range<Int>]

    public init(student: [Range<Int>] = [], teacher: [Range<Int>] = []) {
        self.student = student
        self.teacher = teacher
    }

    public var count: Int { student.count }

    /// Appends the chunks of two token sequences of the same bytes, given each token's byte
    /// length (`studentLengths` (Ts), `teacherLengths` (Tt), every length > 0, equal sums);
    /// token indices are offset by `studentBase` and `teacherBase`. Two pointers over the
    /// running byte offsets: O(Ts + Tt), no allocation beyond the chunk lists.
    mutating func appendChunks(studentLengths ls: UnsafeBufferPointer<Int>, teacherLengths lt: UnsafeBufferPointer<Int>,
                               studentBase: Int, teacherBase: Int) {
        var i = 0, j = 0
        while i < ls.count, j < lt.count {
            let i0 = i, j0 = j
            var es = ls[i], et = lt[j]
            i += 1; j += 1
            while es != et {
                if es < et { es += ls[i]; i += 1 } else { et += lt[j]; j += 1 }
            }
            student.append((studentBase + i0)..<(studentBase + i))
            teacher.append((teacherBase + j0)..<(teacherBase + j))
        }
        precondition(i == ls.count && j == lt.count, "the two tokenizations cover different bytes")
    }

    /// Appends a chunk of one student token and one teacher token (a special token).
    mutating func appendPair(student s: Int, teacher t: Int) {
        student.append(s..<(s + 1))
        teacher.append(t..<(t + 1))
    }
}

/// Errors of re-tokenizing a student's text for a teacher with its own tokenizer.
public enum CrossTokenizerError: Error, CustomStringConvertible, Equatable {
    /// A student token id that names no token of the student's tokenizer.
    case unknownStudentToken(teacher: String, token: Int)
    /// The teacher's tokens of a text do not spell the same bytes (a normalizer that rewrites
    /// the text, a byte with no token): the chunks cannot be aligned.
    case unencodable(teacher: String, text: String, reason: String)
    /// A special token of the student (other than EOS) that the teacher's tokenizer lacks.
    case noTeacherToken(teacher: String, token: String)
    /// A tokenizer whose decoder is not ByteLevel (its tokens have no byte spans).
    case notByteLevel(file: String)

    public var description: String {
        switch self {
        case let .unknownStudentToken(t, id):
            return "teacher '\(t)': student token id \(id) is not in the student's tokenizer"
        case let .unencodable(t, text, r):
            return "teacher '\(t)': cannot re-tokenize the student's text \(text.debugDescription.prefix(80)) with the teacher's tokenizer: \(r)"
        case let .noTeacherToken(t, tok):
            return "teacher '\(t)': the teacher's tokenizer has no special token '\(tok)' for the student's"
        case let .notByteLevel(f): return "\(f): cross-tokenizer teachers need a ByteLevel decoder (token byte spans)"
        }
    }
}

/// Re-tokenizes student token sequences with a teacher's tokenizer and aligns the two.
///
/// A student response is cut at its special tokens (EOS, chat markers): each run of ordinary
/// tokens between them is decoded to bytes and encoded by the teacher's tokenizer on its own
/// (so every special token, like the prompt/response boundary, is a chunk boundary); each
/// special token maps to the teacher's token of the same content, or, for a student EOS id,
/// to the teacher's first EOS id, and forms a chunk of its own.
public struct TokenAligner {
    public let teacher: String
    public let studentTokenizer: Tokenizer
    public let teacherTokenizer: Tokenizer
    let studentBytes: TokenByteTable
    let teacherBytes: TokenByteTable
    /// Student EOS ids and the teacher's EOS id they map to (when their contents differ).
    let studentEOS: Set<Int>
    let teacherEOS: Int?

    public init(teacher: String, studentTokenizer: Tokenizer, teacherTokenizer: Tokenizer,
                studentEOS: [Int] = [], teacherEOS: [Int] = [], studentFile: String = "student tokenizer",
                teacherFile: String = "teacher tokenizer") throws {
        self.teacher = teacher
        self.studentTokenizer = studentTokenizer
        self.teacherTokenizer = teacherTokenizer
        guard let sb = studentTokenizer.byteTable() else { throw CrossTokenizerError.notByteLevel(file: studentFile) }
        guard let tb = teacherTokenizer.byteTable() else { throw CrossTokenizerError.notByteLevel(file: teacherFile) }
        studentBytes = sb
        teacherBytes = tb
        self.studentEOS = Set(studentEOS)
        self.teacherEOS = teacherEOS.first
    }

    /// The text of student ids with special tokens left out (a prompt's text when the caller
    /// has no original text).
    public func studentText(_ ids: [Int]) throws -> String {
        var bytes: [UInt8] = []
        for id in ids {
            guard studentBytes.contains(id) else { throw CrossTokenizerError.unknownStudentToken(teacher: teacher, token: id) }
            if !studentBytes.special[id] { bytes += studentBytes.span(id) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The teacher's ids for a student response (Ts ids) and the chunk alignment of the two.
    public func align(response ids: [Int]) throws -> (teacherIds: [Int], chunks: ChunkAlignment) {
        var out: [Int] = [], chunks = ChunkAlignment()
        out.reserveCapacity(ids.count)
        var run: [UInt8] = [], runStart = 0
        var ls: [Int] = [], lt: [Int] = []
        // Encodes the pending run of ordinary student tokens (bytes `run`, byte lengths `ls`,
        // first token `runStart`) with the teacher's tokenizer and appends its chunks.
        func flush() throws {
            defer { run.removeAll(keepingCapacity: true); ls.removeAll(keepingCapacity: true) }
            if run.isEmpty { return }
            guard let t = teacherTokenizer.encode(bytes: run) else {
                throw CrossTokenizerError.unencodable(teacher: teacher, text: String(decoding: run, as: UTF8.self),
                                                      reason: "a byte has no token")
            }
            // The teacher's tokens must spell exactly the student's bytes.
            lt.removeAll(keepingCapacity: true)
            var at = 0
            for id in t {
                guard teacherBytes.contains(id) else {
                    throw CrossTokenizerError.unencodable(teacher: teacher, text: String(decoding: run, as: UTF8.self),
                                                          reason: "the teacher's tokenizer produced unknown id \(id)")
                }
                let n = teacherBytes.length(id)
                if n == 0 || at + n > run.count || !teacherBytes.span(id).elementsEqual(run[at..<(at + n)]) {
                    throw CrossTokenizerError.unencodable(teacher: teacher, text: String(decoding: run, as: UTF8.self),
                                                          reason: "its tokens do not spell the same bytes (a normalizer or added token rewrites the text)")
                }
                lt.append(n)
                at += n
            }
            if at != run.count {
                throw CrossTokenizerError.unencodable(teacher: teacher, text: String(decoding: run, as: UTF8.self),
                                                      reason: "its tokens spell \(at) of \(run.count) bytes")
            }
            let base = out.count
            out += t
            ls.withUnsafeBufferPointer { sp in
                lt.withUnsafeBufferPointer { tp in
                    chunks.appendChunks(studentLengths: sp, teacherLengths: tp, studentBase: runStart, teacherBase: base)
                }
            }
        }
        for (i, id) in ids.enumerated() {
            guard studentBytes.contains(id) else { throw CrossTokenizerError.unknownStudentToken(teacher: teacher, token: id) }
            let n = studentBytes.length(id)
            if !studentBytes.special[id] && n > 0 {
                if run.isEmpty { runStart = i }
                run += studentBytes.span(id)
                ls.append(n)
                continue
            }
            try flush()
            // A special (or empty) token: the teacher's token of the same content, or its EOS.
            let content = String(decoding: studentBytes.span(id), as: UTF8.self)
            let mapped: Int
            if let t = teacherTokenizer.tokenToId(content), teacherBytes.contains(t), teacherBytes.special[t] || studentEOS.contains(id) {
                mapped = t
            } else if studentEOS.contains(id), let e = teacherEOS {
                mapped = e
            } else {
                throw CrossTokenizerError.noTeacherToken(teacher: teacher, token: content)
            }
            chunks.appendPair(student: i, teacher: out.count)
            out.append(mapped)
        }
        try flush()
        return (out, chunks)
    }
}
