import ChorusCore
import Foundation

/// The scores of one context: one `PositionScore` per scored token, in order, starting at the
/// options' first scored position (`ScoringOptions.start`).
public struct ScoreRecord: Equatable, Sendable {
    /// Per scored position, in context order.
    public var positions: [PositionScore]

    /// A record of `positions`.
    public init(positions: [PositionScore]) { self.positions = positions }

    /// Bytes the same data takes as plain float32/int32 arrays: 4 (log-prob) + 4 (entropy) +
    /// 8 per top-k entry (int32 id + float32 log-prob). The yardstick for compression ratios.
    public var rawFloat32Bytes: Int {
        positions.reduce(0) { $0 + 8 + 8 * $1.topIds.count }
    }
}

/// How a context was scored. Part of the cache key: the same tokens scored with another top-k,
/// start or template are a different record.
public struct ScoringOptions: Codable, Hashable, Sendable {
    /// Number of top entries requested per position (0 = log-prob and entropy only).
    public var topK: Int
    /// Index of the first scored token in the context (usually the prompt length).
    public var start: Int
    /// Chat template or prompt format identifier ("" when the tokens are already final).
    public var template: String
    /// Anything else that changes the scores (temperature, system prompt hash, …).
    public var extra: [String: String]

    /// Options with the given fields; `template` and `extra` default to empty.
    public init(topK: Int, start: Int, template: String = "", extra: [String: String] = [:]) {
        self.topK = topK
        self.start = start
        self.template = template
        self.extra = extra
    }

    /// A canonical byte encoding (length-prefixed fields, `extra` sorted by key), so that equal
    /// options always hash equally whatever the dictionary order.
    var canonicalBytes: [UInt8] {
        var w = ByteWriter()
        w.varint(UInt64(max(0, topK)))
        w.varint(UInt64(max(0, start)))
        w.string(template)
        w.varint(UInt64(extra.count))
        for key in extra.keys.sorted() {
            w.string(key)
            w.string(extra[key]!)
        }
        return w.bytes
    }

    /// Inverse of `canonicalBytes`.
    static func decode(_ r: inout ByteReader) throws -> ScoringOptions {
        let topK = Int(try r.varint())
        let start = Int(try r.varint())
        let template = try r.string()
        let count = Int(try r.varint())
        var extra: [String: String] = [:]
        for _ in 0..<count {
            let key = try r.string()
            extra[key] = try r.string()
        }
        return ScoringOptions(topK: topK, start: start, template: template, extra: extra)
    }
}

/// A teacher's identity for caching: a digest that must change whenever the teacher's scores
/// could (weights, config, tokenizer, privileged context). The caller decides what goes in.
public struct TeacherFingerprint: Hashable, Sendable {
    /// The fingerprint bytes (32 for fingerprints made here; imported ones may differ).
    public let bytes: [UInt8]

    /// Wraps existing fingerprint bytes.
    public init(bytes: [UInt8]) { self.bytes = bytes }

    /// Parses a hexadecimal fingerprint; nil if `hex` is not hexadecimal.
    public init?(hex: String) {
        guard let b = bytesFromHex(hex), !b.isEmpty else { return nil }
        bytes = b
    }

    /// Lower-case hex of `bytes`.
    public var hex: String { hexString(bytes) }

    /// SHA-256 over the contents of `files` (in the given order) and then `strings`, each
    /// length-prefixed so that moving bytes between parts changes the result. File names do not
    /// enter: the same weights at another path are the same teacher.
    public static func make(files: [URL] = [], strings: [String] = []) throws -> TeacherFingerprint {
        var hasher = SHA256()
        hasher.update(Array("chorus-teacher-fingerprint-v1".utf8))
        for url in files { try hashFile(url.path, into: &hasher) }
        for s in strings {
            let utf8 = Array(s.utf8)
            hasher.update(littleEndianBytes(UInt64(utf8.count)))
            hasher.update(utf8)
        }
        return TeacherFingerprint(bytes: hasher.finalize())
    }

    /// Feeds u64 size ‖ contents of the file at `path`, streamed through a 4 MiB buffer (a
    /// 16 GB checkpoint is never held in memory).
    static func hashFile(_ path: String, into hasher: inout SHA256) throws {
        let file = try FileDescriptor(readingRegularFile: path)
        let size = try file.size()
        hasher.update(littleEndianBytes(UInt64(size)))
        let chunk = 4 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
        defer { buffer.deallocate() }
        var seen = 0
        while true {
            let n = pread(file.fd, buffer.baseAddress!, chunk, off_t(seen))
            if n < 0 {
                if errno == EINTR { continue }
                throw CacheError.io(path: path, operation: "read", errno: errno)
            }
            if n == 0 { break }
            hasher.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            seen += n
        }
        // A file that changes while we hash it would give a fingerprint of neither version.
        guard seen == size else {
            throw CacheError.io(path: path, operation: "read (file changed while hashing)", errno: EIO)
        }
    }
}

/// The content address of a record: SHA-256 of (fingerprint, options, context tokens). It keeps
/// its inputs so a stored record can be exported and its key re-derived when verified.
public struct CacheKey: Hashable, Sendable {
    /// SHA-256 digest, 32 bytes.
    public let digest: [UInt8]
    /// The teacher's fingerprint.
    public let fingerprint: TeacherFingerprint
    /// How the context was scored.
    public let options: ScoringOptions
    /// The full context (prompt + response) token ids.
    public let tokens: [Int32]

    /// The key of `tokens` scored by the teacher `fingerprint` with `options`.
    public static func make(fingerprint: TeacherFingerprint, options: ScoringOptions, tokens: [Int32]) -> CacheKey {
        CacheKey(digest: digest(fingerprint: fingerprint, options: options, tokens: tokens),
                 fingerprint: fingerprint, options: options, tokens: tokens)
    }

    /// Lower-case hex of the digest: the record's name in reports.
    public var hex: String { hexString(digest) }

    /// SHA-256("chorus-score-key-v1", len ‖ fingerprint, len ‖ options, count ‖ tokens as int32 LE).
    static func digest(fingerprint: TeacherFingerprint, options: ScoringOptions, tokens: [Int32]) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(Array("chorus-score-key-v1".utf8))
        hasher.update(littleEndianBytes(UInt64(fingerprint.bytes.count)))
        hasher.update(fingerprint.bytes)
        let opts = options.canonicalBytes
        hasher.update(littleEndianBytes(UInt64(opts.count)))
        hasher.update(opts)
        hasher.update(littleEndianBytes(UInt64(tokens.count)))
        var tokenBytes = [UInt8]()
        tokenBytes.reserveCapacity(tokens.count * 4)
        for t in tokens { tokenBytes.append(contentsOf: littleEndianBytes(UInt32(bitPattern: t))) }
        hasher.update(tokenBytes)
        return hasher.finalize()
    }

    private init(digest: [UInt8], fingerprint: TeacherFingerprint, options: ScoringOptions, tokens: [Int32]) {
        self.digest = digest
        self.fingerprint = fingerprint
        self.options = options
        self.tokens = tokens
    }

    public static func == (a: CacheKey, b: CacheKey) -> Bool { a.digest == b.digest }
    public func hash(into hasher: inout Hasher) { hasher.combine(digest) }
}
