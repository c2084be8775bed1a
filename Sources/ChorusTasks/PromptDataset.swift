import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One problem of a prompt file: its text, the reference answer (if any), every string field of
/// its JSONL line (what a self-teacher's privileged template may name) and where it came from.
public struct PromptRecord: Sendable, Equatable {
    /// The prompt text, never empty.
    public var prompt: String
    /// The reference answer, when the line has one.
    public var answer: String?
    /// Every string-valued field of the line, `prompt` and `answer` included.
    public var fields: [String: String]
    /// The 1-based line of the file it was read from (for error messages).
    public var line: Int

    public init(prompt: String, answer: String? = nil, fields: [String: String] = [:], line: Int = 0) {
        self.prompt = prompt
        self.answer = answer
        var f = fields
        f["prompt"] = prompt
        if let answer { f["answer"] = answer }
        self.fields = f
        self.line = line
    }
}

/// A prompt file that cannot be used. Every case is one line naming the file (and the line and
/// field where there is one) and the real cause.
public enum DatasetError: Error, CustomStringConvertible, Equatable {
    case notRegularFile(path: String, kind: String)
    case unreadable(path: String, reason: String)
    case tooLarge(path: String, bytes: Int, limit: Int)
    case tooManyLines(path: String, limit: Int)
    case notUTF8(path: String, line: Int)
    case empty(path: String)
    case badLine(path: String, line: Int, field: String?, reason: String)

    public var description: String {
        switch self {
        case let .notRegularFile(p, kind): return "\(p): not a regular file (\(kind)); a prompt file must be a JSONL file"
        case let .unreadable(p, why): return "\(p): cannot read file: \(why)"
        case let .tooLarge(p, bytes, limit):
            return "\(p): " + (bytes >= 0 ? "\(bytes) bytes, over" : "grew while being read to over") + " the \(limit)-byte limit for a prompt file"
        case let .tooManyLines(p, limit): return "\(p): more than \(limit) lines, the limit for a prompt file"
        case let .notUTF8(p, l): return "\(p):\(l): not valid UTF-8"
        case let .empty(p): return "\(p): no problems (the file is empty or holds only blank lines)"
        case let .badLine(p, l, field, why): return "\(p):\(l): " + (field.map { "field \"\($0)\": " } ?? "") + why
        }
    }
}

/// A JSONL prompt file: one object per line, `{"prompt": "...", "answer": "...", ...}`.
///
/// `prompt` is required and non-empty; `answer` is optional but must be a string; other
/// string fields are kept (a self-teacher's privileged template may name them) and fields of
/// other types are ignored. Blank lines are skipped; a UTF-8 byte-order mark and CRLF line ends
/// are accepted. The file must be a regular file (a FIFO or device is refused before it is
/// read, so a mistyped path cannot hang the run) of at most `Limits.maxBytes` bytes and
/// `Limits.maxLines` lines.
public struct PromptDataset: Sendable {
    /// Caps on what is read, so a wrong path (a disk image, a log) fails at once rather than
    /// exhausting memory.
    public struct Limits: Sendable, Equatable {
        /// Largest file accepted, in bytes.
        public var maxBytes: Int
        /// Most lines accepted (blank ones included).
        public var maxLines: Int
        /// Deepest JSON nesting accepted inside a line.
        public var maxDepth: Int
        public init(maxBytes: Int, maxLines: Int, maxDepth: Int = 64) {
            self.maxBytes = maxBytes
            self.maxLines = maxLines
            self.maxDepth = maxDepth
        }
        /// 256 MiB and one million lines: far above any prompt set, far below a mistake.
        public static let standard = Limits(maxBytes: 256 << 20, maxLines: 1_000_000)
    }

    /// The file as given (used in messages).
    public let path: String
    /// The problems, in file order.
    public let records: [PromptRecord]

    /// The file name without its extension: the benchmark's name in eval output.
    public var name: String { URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent }
    /// Number of problems.
    public var count: Int { records.count }

    /// Reads and validates a prompt file.
    public init(contentsOf url: URL, limits: Limits = .standard) throws {
        let bytes = try readRegularFile(url.path, maxBytes: limits.maxBytes)
        try self.init(bytes: bytes, path: url.path, limits: limits)
    }

    /// Parses prompt-file bytes; `path` names them in errors.
    public init(bytes: [UInt8], path: String, limits: Limits = .standard) throws {
        self.path = path
        if bytes.count > limits.maxBytes { throw DatasetError.tooLarge(path: path, bytes: bytes.count, limit: limits.maxBytes) }
        var out: [PromptRecord] = []
        var start = 0, lineNo = 0
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { start = 3 }   // a UTF-8 byte-order mark
        while start < bytes.count {
            lineNo += 1
            if lineNo > limits.maxLines { throw DatasetError.tooManyLines(path: path, limit: limits.maxLines) }
            var end = start
            while end < bytes.count && bytes[end] != 0x0A { end += 1 }
            let line = bytes[start..<end]
            start = end + 1
            if let r = try Self.parseLine(line, path: path, line: lineNo, maxDepth: limits.maxDepth) { out.append(r) }
        }
        if out.isEmpty { throw DatasetError.empty(path: path) }
        records = out
    }

    /// Builds a dataset from records already in memory (tests, built-in tasks).
    public init(records: [PromptRecord], path: String) throws {
        if records.isEmpty { throw DatasetError.empty(path: path) }
        for r in records where r.prompt.isEmpty {
            throw DatasetError.badLine(path: path, line: r.line, field: "prompt", reason: "is empty")
        }
        self.path = path
        self.records = records
    }

    /// One line: nil when blank, else the record; throws naming the line and the field.
    static func parseLine(_ bytes: ArraySlice<UInt8>, path: String, line: Int, maxDepth: Int) throws -> PromptRecord? {
        guard String(validating: bytes, as: UTF8.self) != nil else { throw DatasetError.notUTF8(path: path, line: line) }
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
        guard let first = bytes.firstIndex(where: { !isSpace($0) }) else { return nil }
        func bad(_ field: String?, _ why: String) -> DatasetError { .badLine(path: path, line: line, field: field, reason: why) }
        guard bytes[first] == UInt8(ascii: "{") else { throw bad(nil, "not a JSON object") }
        // Foundation's parser recurses per nesting level: bound the depth before it runs.
        if nestingDepth(bytes) > maxDepth { throw bad(nil, "JSON nested deeper than \(maxDepth) levels") }
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(bytes), options: [])
        } catch {
            throw bad(nil, "not valid JSON")
        }
        guard let obj = parsed as? [String: Any] else { throw bad(nil, "not a JSON object") }
        guard let p = obj["prompt"] else { throw bad("prompt", "missing") }
        guard let prompt = p as? String else { throw bad("prompt", "must be a string, got \(jsonKind(p))") }
        if prompt.isEmpty { throw bad("prompt", "is empty") }
        var answer: String?
        if let a = obj["answer"] {
            guard let s = a as? String else { throw bad("answer", "must be a string, got \(jsonKind(a))") }
            answer = s
        }
        var fields: [String: String] = [:]
        for (k, v) in obj { if let s = v as? String { fields[k] = s } }
        return PromptRecord(prompt: prompt, answer: answer, fields: fields, line: line)
    }
}

/// The deepest nesting of `[`/`{` outside JSON strings.
func nestingDepth(_ bytes: ArraySlice<UInt8>) -> Int {
    var depth = 0, deepest = 0, inString = false, escaped = false
    for b in bytes {
        if inString {
            if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") { inString = false }
            continue
        }
        switch b {
        case UInt8(ascii: "\""): inString = true
        case UInt8(ascii: "["), UInt8(ascii: "{"): depth += 1; deepest = max(deepest, depth)
        case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
        default: break
        }
    }
    return deepest
}

/// What a JSON value is, for messages ("number", "null", ...).
func jsonKind(_ v: Any) -> String {
    switch v {
    case is NSNull: return "null"
    case is String: return "a string"
    case is [Any]: return "an array"
    case is [String: Any]: return "an object"
    case let n as NSNumber: return "the number or boolean \(n)"
    default: return "\(type(of: v))"
    }
}

/// Reads a whole regular file of at most `maxBytes` bytes. The file is opened non-blocking and
/// checked with fstat before any read, so a FIFO or a device is refused instead of blocking
/// (and the check applies to the file actually opened, not to a path that may change).
func readRegularFile(_ path: String, maxBytes: Int) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    guard fd >= 0 else { throw DatasetError.unreadable(path: path, reason: String(cString: strerror(errno))) }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw DatasetError.unreadable(path: path, reason: String(cString: strerror(errno))) }
    let type = st.st_mode & S_IFMT
    guard type == S_IFREG else {
        let kind: String
        switch type {
        case S_IFDIR: kind = "a directory"
        case S_IFIFO: kind = "a FIFO"
        case S_IFCHR: kind = "a character device"
        case S_IFBLK: kind = "a block device"
        case S_IFSOCK: kind = "a socket"
        default: kind = "not a regular file"
        }
        throw DatasetError.notRegularFile(path: path, kind: kind)
    }
    let size = Int(st.st_size)
    if size > maxBytes { throw DatasetError.tooLarge(path: path, bytes: size, limit: maxBytes) }
    if size == 0 { throw DatasetError.empty(path: path) }
    // Read up to one byte past the limit: a file that grew since fstat is still caught.
    var out = [UInt8](repeating: 0, count: min(size, maxBytes) + 1)
    var n = 0
    while n < out.count {
        let got = out.withUnsafeMutableBytes { read(fd, $0.baseAddress! + n, $0.count - n) }
        if got < 0 {
            if errno == EINTR { continue }
            throw DatasetError.unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        if got == 0 { break }
        n += got
        if n == out.count && n <= maxBytes { out += [UInt8](repeating: 0, count: min(out.count, maxBytes + 1 - n)) }
    }
    if n > maxBytes { throw DatasetError.tooLarge(path: path, bytes: -1, limit: maxBytes) }
    out.removeSubrange(n...)
    if out.isEmpty { throw DatasetError.empty(path: path) }
    return out
}
