import Foundation

/// What a frame header says about the frame at some offset of a segment.
struct FrameHeader {
    /// Bytes of body after the 16-byte header.
    var bodyLength: Int
    var bodyCRC: UInt32
    var totalLength: Int { RecordFrame.headerSize + bodyLength }
}

/// The uncompressed start of a frame body: enough to index, count and age a record without
/// decompressing it.
struct FrameSummary {
    var digest: [UInt8]
    /// Milliseconds since 1970 when the record was stored.
    var storedAt: UInt64
    var positions: Int
    /// Sum of top-k sizes over positions.
    var topEntries: Int
    var teacher: String

    /// Raw float32-equivalent size (see `ScoreRecord.rawFloat32Bytes`).
    var rawFloat32Bytes: Int { 8 * positions + 8 * topEntries }
}

/// One record as it sits in a segment: a 16-byte self-checking header, then the body (summary
/// fields, then the zstd-compressed payload). See docs/cache-format.md.
enum RecordFrame {
    /// "CSR1": chorus score record, frame version 1.
    static let magic: [UInt8] = [0x43, 0x53, 0x52, 0x31]
    static let headerSize = 16
    /// Body bytes before the teacher name: digest 32, storedAt 8, positions 4, top entries 4,
    /// raw payload length 4, teacher name length 1.
    static let fixedPrefixSize = 53
    /// Bytes an index scan reads per record: header, fixed prefix and the longest teacher name.
    static let scanSize = headerSize + fixedPrefixSize + 255
    /// The largest body a frame may declare (a corrupt length must not look plausible).
    static let maxBodyLength = 1 << 30
    /// zstd level: with payload version 1 levels 1-19 landed within 1% of each other in size
    /// (measured: 52.9 / 52.9 / 53.0 / 52.6 bytes per position at 1 / 3 / 9 / 19); version 2 is
    /// range-coded, which leaves zstd little redundancy (levels not re-measured). 3 is the
    /// fastest of the good ones.
    static let defaultLevel: Int32 = 3

    /// Encodes and compresses a full frame.
    static func encode(key: CacheKey, record: ScoreRecord, teacher: String, storedAt: UInt64,
                       level: Int32 = defaultLevel) throws -> [UInt8] {
        try encodeReadingBack(key: key, record: record, teacher: teacher, storedAt: storedAt, level: level).frame
    }

    /// Encodes and compresses a full frame, and returns with it the record as a reader decodes
    /// it (what every later lookup returns: the storage precision), from the readability check.
    static func encodeReadingBack(key: CacheKey, record: ScoreRecord, teacher: String, storedAt: UInt64,
                                  level: Int32 = defaultLevel) throws -> (frame: [UInt8], readBack: ScoreRecord) {
        let name = Array(teacher.utf8)
        guard name.count <= 255 else {
            throw CacheError.invalidRecord(detail: "teacher name of \(name.count) bytes exceeds 255")
        }
        let payload = try RecordCodec.encodePayload(key: key, record: record)
        let compressed = try Zstd.compress(payload, level: level)
        let topEntries = record.positions.reduce(0) { $0 + $1.topIds.count }
        var body = ByteWriter(capacity: fixedPrefixSize + name.count + compressed.count)
        body.raw(key.digest)
        body.u64(storedAt)
        body.u32(UInt32(record.positions.count))
        body.u32(UInt32(topEntries))
        body.u32(UInt32(payload.count))
        body.u8(UInt8(name.count))
        body.raw(name)
        body.raw(compressed)
        guard body.bytes.count <= maxBodyLength else {
            throw CacheError.invalidRecord(detail: "record of \(body.bytes.count) bytes exceeds the \(maxBodyLength)-byte limit")
        }
        var frame = ByteWriter(capacity: headerSize + body.bytes.count)
        frame.raw(magic)
        frame.u32(UInt32(body.bytes.count))
        frame.u32(CRC32C.checksum(body.bytes))
        frame.u32(CRC32C.checksum(frame.bytes))
        frame.raw(body.bytes)
        let readBack = try checkReadable(frame.bytes, key: key, record: record, teacher: teacher)
        return (frame.bytes, readBack)
    }

    /// A frame is only written (and a store acknowledged) after the reader accepts it: it is
    /// decoded with exactly the code `verify` and lookups use, and must give back the key and
    /// the positions it was made from. Whatever rule the reader has, the writer therefore has
    /// too, so a record that was acknowledged is never called corrupt later.
    /// Returns the decoded record.
    @discardableResult
    static func checkReadable(_ frame: [UInt8], key: CacheKey, record: ScoreRecord, teacher: String) throws -> ScoreRecord {
        let decoded: (summary: FrameSummary, key: CacheKey, record: ScoreRecord)
        do {
            decoded = try decode(frame, from: 0, segment: "(new record)")
        } catch let CacheError.corruptRecord(_, _, detail) {
            throw CacheError.invalidRecord(detail: "the record would not read back (\(detail))")
        }
        guard decoded.key.digest == key.digest, decoded.key.options == key.options, decoded.key.tokens == key.tokens,
              decoded.key.fingerprint == key.fingerprint else {
            throw CacheError.invalidRecord(detail: "the record's key would not read back as written (options \(key.options))")
        }
        guard decoded.summary.teacher == teacher, decoded.record.positions.count == record.positions.count else {
            throw CacheError.invalidRecord(detail: "the record's summary would not read back as written")
        }
        for (i, (a, b)) in zip(decoded.record.positions, record.positions).enumerated() where a.topIds.sorted() != b.topIds.sorted() {
            throw CacheError.invalidRecord(detail: "position \(i): the top-k ids would not read back as written")
        }
        return decoded.record
    }

    /// Parses and checks a header from the 16 bytes at `offset`; nil when they are not a valid
    /// header (wrong magic or header checksum, or an impossible length).
    static func parseHeader(_ bytes: [UInt8], at offset: Int) -> FrameHeader? {
        guard offset >= 0, offset + headerSize <= bytes.count else { return nil }
        for i in 0..<4 where bytes[offset + i] != magic[i] { return nil }
        var r = ByteReader(bytes, from: offset + 4, to: offset + headerSize)
        guard let length = try? r.fixed(UInt32.self), let bodyCRC = try? r.fixed(UInt32.self),
              let headerCRC = try? r.fixed(UInt32.self) else { return nil }
        let computed = bytes.withUnsafeBytes { CRC32C.update(0, UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + 12)])) }
        guard computed == headerCRC, Int(length) >= fixedPrefixSize, Int(length) <= maxBodyLength else { return nil }
        return FrameHeader(bodyLength: Int(length), bodyCRC: bodyCRC)
    }

    /// Reads the summary at the start of a body (not checksummed yet: callers that act on it
    /// beyond indexing must check the body CRC first).
    static func parseSummary(_ bytes: [UInt8], bodyStart: Int, bodyEnd: Int) throws -> FrameSummary {
        var r = ByteReader(bytes, from: bodyStart, to: min(bodyEnd, bytes.count))
        let digest = Array(try r.take(32))
        let storedAt = try r.fixed(UInt64.self)
        let positions = Int(try r.fixed(UInt32.self))
        let topEntries = Int(try r.fixed(UInt32.self))
        _ = try r.fixed(UInt32.self)
        let nameLength = Int(try r.u8())
        let name = String(decoding: try r.take(nameLength), as: UTF8.self)
        return FrameSummary(digest: digest, storedAt: storedAt, positions: positions, topEntries: topEntries, teacher: name)
    }

    /// Checks the body checksum of the frame at `offset` (which `bytes` must hold whole).
    static func bodyChecksumMatches(_ bytes: [UInt8], at offset: Int, header: FrameHeader) -> Bool {
        let bodyStart = offset + headerSize
        guard bodyStart + header.bodyLength <= bytes.count else { return false }
        let crc = bytes.withUnsafeBytes {
            CRC32C.update(0, UnsafeRawBufferPointer(rebasing: $0[bodyStart..<(bodyStart + header.bodyLength)]))
        }
        return crc == header.bodyCRC
    }

    /// Fully checks and decodes the frame starting at `offset` of `bytes` (which must hold all of
    /// it): header, body checksum, decompression, payload structure, and finally that the key
    /// re-derived from the decoded fingerprint, options and tokens equals the stored digest and
    /// that the summary agrees with the payload. Any failure is a `CacheError.corruptRecord`
    /// naming `segment` and `offset`.
    static func decode(_ bytes: [UInt8], from offset: Int, segment: String) throws
        -> (summary: FrameSummary, key: CacheKey, record: ScoreRecord) {
        func corrupt(_ detail: String) -> CacheError { .corruptRecord(segment: segment, offset: offset, detail: detail) }
        guard let header = parseHeader(bytes, at: offset) else { throw corrupt("bad frame header") }
        let bodyStart = offset + headerSize
        let bodyEnd = bodyStart + header.bodyLength
        guard bodyEnd <= bytes.count else { throw corrupt("frame runs past the end of the data") }
        guard bodyChecksumMatches(bytes, at: offset, header: header) else { throw corrupt("body checksum mismatch") }
        do {
            let summary = try parseSummary(bytes, bodyStart: bodyStart, bodyEnd: bodyEnd)
            var r = ByteReader(bytes, from: bodyStart + 48, to: bodyEnd)
            let rawLength = Int(try r.fixed(UInt32.self))
            _ = try r.take(Int(try r.u8()))
            let compressed = try r.take(r.remaining)
            let payload = try RecordCodec.decodePayload(try Zstd.decompress(compressed, expectedSize: rawLength))
            let key = CacheKey.make(fingerprint: payload.fingerprint, options: payload.options, tokens: payload.tokens)
            guard key.digest == summary.digest else { throw corrupt("stored digest does not match the decoded key") }
            let top = payload.record.positions.reduce(0) { $0 + $1.topIds.count }
            guard payload.record.positions.count == summary.positions, top == summary.topEntries else {
                throw corrupt("summary counts disagree with the payload")
            }
            return (summary, key, payload.record)
        } catch let e as TruncatedField {
            throw corrupt(e.detail)
        } catch let e as CacheError {
            if case .compression(let detail) = e { throw corrupt(detail) }
            throw e
        }
    }
}
