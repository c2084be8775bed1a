import ChorusCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One line of the JSONL exchange format (schema in docs/cache-format.md).
struct JSONLRecord: Codable {
    struct Options: Codable {
        var topK: Int?
        var template: String?
        var extra: [String: String]?
        enum CodingKeys: String, CodingKey { case template, extra, topK = "top_k" }
    }
    var teacher: String
    var fingerprint: String
    var options: Options?
    var tokens: [Int32]
    var start: Int
    var logprobs: [Float]
    /// Optional; null entries are unknown entropies.
    var entropy: [Float?]?
    /// Per position, [[id, logprob], ...] highest first; optional or empty.
    var top: [[[Double]]]?
}

/// What an export or import did.
public struct TransferReport: Codable, Equatable, Sendable {
    /// Records written (export) or newly stored (import).
    public var records = 0
    /// Import: lines whose key was already stored.
    public var alreadyPresent = 0
    /// Export: corrupt records skipped (each also reported through `onProblem`).
    public var corrupt = 0

    enum CodingKeys: String, CodingKey { case records, corrupt, alreadyPresent = "already_present" }
}

extension ScoreCache {
    /// Writes every live record as one JSON line to `output` (a file descriptor open for
    /// writing, e.g. standard output = 1). Corrupt records are reported and counted, not written.
    public func export(toFileDescriptor output: Int32) throws -> TransferReport {
        mutex.lock()
        defer { mutex.unlock() }
        try refresh(writersExcluded: false)
        var report = TransferReport()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let out = FileDescriptor(borrowing: output, path: output == 1 ? "<stdout>" : "fd \(output)")
        for l in index.values.sorted(by: { ($0.segment, $0.offset) < ($1.segment, $1.offset) }) {
            let decoded: (summary: FrameSummary, key: CacheKey, record: ScoreRecord)
            do {
                decoded = try RecordFrame.decode(try readFrame(l), from: 0, segment: segmentName(l.segment))
            } catch {
                onProblem("\(segmentName(l.segment)) @\(l.offset): \(error); not exported")
                report.corrupt += 1
                continue
            }
            let k = decoded.key, r = decoded.record
            let line = JSONLRecord(
                teacher: decoded.summary.teacher, fingerprint: k.fingerprint.hex,
                options: .init(topK: k.options.topK, template: k.options.template, extra: k.options.extra),
                tokens: k.tokens, start: k.options.start, logprobs: r.positions.map(\.logprob),
                entropy: r.positions.map { $0.entropy.isNaN ? nil : $0.entropy },
                top: r.positions.map { p in zip(p.topIds, p.topLogprobs).map { [Double($0), Double($1)] } })
            var bytes = [UInt8](try encoder.encode(line))
            bytes.append(0x0a)
            try out.writeAll(bytes)
            report.records += 1
        }
        return report
    }

    /// Writes the export to the file at `url` (created or truncated).
    public func export(to url: URL) throws -> TransferReport {
        let file = try FileDescriptor(path: url.path, flags: O_WRONLY | O_CREAT | O_TRUNC)
        return try export(toFileDescriptor: file.fd)
    }

    /// Stores every line of the JSONL file at `url`. Stops at the first bad line with
    /// `CacheError.badImportLine` naming file and line; lines before it stay stored (re-running
    /// is harmless: keys already present are skipped).
    public func importJSONL(from url: URL) throws -> TransferReport {
        // A regular file only: a FIFO or device would block or never end.
        let fd = try InputFile.open(url.path)
        guard let file = fdopen(fd, "r") else {
            close(fd)
            throw CacheError.io(path: url.path, operation: "open", errno: errno)
        }
        defer { fclose(file) }
        var report = TransferReport()
        let decoder = JSONDecoder()
        var linePointer: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(linePointer) }
        var lineNumber = 0
        while true {
            let n = getline(&linePointer, &capacity, file)
            if n < 0 { break }
            lineNumber += 1
            let data = Data(bytes: linePointer!, count: n)
            if data.allSatisfy({ $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }) { continue }
            func bad(_ detail: String) -> CacheError { .badImportLine(file: url.path, line: lineNumber, detail: detail) }
            if let offset = UTF8Text.firstInvalidOffset(data) {
                throw bad("not valid UTF-8 (byte 0x\(String(data[offset], radix: 16, uppercase: true)) at column \(offset + 1))")
            }
            let line: JSONLRecord
            do { line = try decoder.decode(JSONLRecord.self, from: data) } catch {
                throw bad("not a valid score line: \(Self.describe(error))")
            }
            let (key, record) = try Self.keyAndRecord(line, bad: bad)
            do {
                if try store(key, record, teacher: line.teacher) { report.records += 1 } else { report.alreadyPresent += 1 }
            } catch let CacheError.invalidRecord(detail) {
                throw bad(detail)
            }
        }
        if ferror(file) != 0 { throw CacheError.io(path: url.path, operation: "read", errno: errno) }
        return report
    }

    static func keyAndRecord(_ line: JSONLRecord, bad: (String) -> CacheError) throws -> (CacheKey, ScoreRecord) {
        guard let fingerprint = TeacherFingerprint(hex: line.fingerprint) else {
            throw bad("fingerprint is not a non-empty hex string")
        }
        let n = line.logprobs.count
        if let e = line.entropy, e.count != n { throw bad("\(e.count) entropies for \(n) log-probs") }
        if let t = line.top, t.count != n, !t.isEmpty { throw bad("\(t.count) top lists for \(n) log-probs") }
        var positions: [PositionScore] = []
        positions.reserveCapacity(n)
        var maxK = 0
        for i in 0..<n {
            var ids: [Int32] = [], lps: [Float] = []
            if let t = line.top, !t.isEmpty {
                for (j, pair) in t[i].enumerated() {
                    guard pair.count == 2, let id = Int32(exactly: pair[0]), id >= 0 else {
                        throw bad("top[\(i)][\(j)] is not [non-negative integer id, log-prob]")
                    }
                    ids.append(id)
                    lps.append(Float(pair[1]))
                }
            }
            maxK = max(maxK, ids.count)
            let entropy: Float = line.entropy.flatMap { $0[i] } ?? .nan
            positions.append(PositionScore(logprob: line.logprobs[i], entropy: entropy, topIds: ids, topLogprobs: lps))
        }
        if let k = line.options?.topK, k < 0 || k > RecordCodec.maxTopK {
            throw bad("options.top_k \(k) is outside [0, \(RecordCodec.maxTopK)]")
        }
        let options = ScoringOptions(topK: line.options?.topK ?? maxK, start: line.start,
                                     template: line.options?.template ?? "", extra: line.options?.extra ?? [:])
        guard line.start >= 0, line.start + n <= line.tokens.count else {
            throw bad("\(n) log-probs from start \(line.start) do not fit in \(line.tokens.count) tokens")
        }
        return (CacheKey.make(fingerprint: fingerprint, options: options, tokens: line.tokens), ScoreRecord(positions: positions))
    }

    /// A one-line description of a JSON decoding error (field path + reason).
    static func describe(_ error: Error) -> String {
        guard let e = error as? DecodingError else { return "\(error)" }
        func path(_ c: DecodingError.Context) -> String {
            let p = c.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return p.isEmpty ? c.debugDescription : "\(p): \(c.debugDescription)"
        }
        switch e {
        case let .keyNotFound(key, c): return "missing field \(path(c)).\(key.stringValue)"
        case let .typeMismatch(_, c), let .valueNotFound(_, c), let .dataCorrupted(c): return path(c)
        @unknown default: return "\(e)"
        }
    }
}
