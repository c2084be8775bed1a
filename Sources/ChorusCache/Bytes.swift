// Little-endian byte writing/reading and LEB128 varints: the primitives of every on-disk field.

/// Little-endian bytes of a fixed-width integer.
@inline(__always) func littleEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    var out = [UInt8]()
    out.reserveCapacity(T.bitWidth / 8)
    var v = value.littleEndian
    withUnsafeBytes(of: &v) { out.append(contentsOf: $0) }
    return out
}

/// An append-only byte buffer with little-endian and varint writers.
struct ByteWriter {
    var bytes: [UInt8] = []

    init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    /// Unsigned LEB128: 7 bits per byte, high bit set on all but the last.
    @inline(__always) mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u32(_ v: UInt32) { bytes.append(contentsOf: littleEndianBytes(v)) }
    mutating func u64(_ v: UInt64) { bytes.append(contentsOf: littleEndianBytes(v)) }
    mutating func raw<C: Collection>(_ b: C) where C.Element == UInt8 { bytes.append(contentsOf: b) }

    /// Varint length, then the UTF-8 bytes.
    mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        varint(UInt64(utf8.count))
        bytes.append(contentsOf: utf8)
    }

    /// Varint length, then the bytes.
    mutating func blob(_ b: [UInt8]) {
        varint(UInt64(b.count))
        bytes.append(contentsOf: b)
    }
}

/// Thrown by `ByteReader` when a field runs past the end or a varint is malformed; callers turn
/// it into a `CacheError` naming the file and record.
struct TruncatedField: Error {
    let detail: String
}

/// A bounds-checked cursor over bytes. Every read checks the remaining length, because the bytes
/// may come from a damaged file: a bad length must give an error, never a trap.
struct ByteReader {
    let bytes: [UInt8]
    var position: Int
    let end: Int

    init(_ bytes: [UInt8], from start: Int = 0, to end: Int? = nil) {
        self.bytes = bytes
        self.position = start
        self.end = end ?? bytes.count
    }

    var remaining: Int { end - position }

    @inline(__always) mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard position < end else { throw TruncatedField(detail: "varint runs past the end") }
            let b = bytes[position]
            position += 1
            guard shift < 64 else { throw TruncatedField(detail: "varint longer than 64 bits") }
            result |= UInt64(b & 0x7f) << shift
            if b < 0x80 { return result }
            shift += 7
        }
    }

    /// A varint that must fit in `limit` (a count or length field): guards allocations against
    /// corrupted sizes.
    mutating func count(limit: Int) throws -> Int {
        let v = try varint()
        guard v <= UInt64(limit) else { throw TruncatedField(detail: "count \(v) exceeds \(limit)") }
        return Int(v)
    }

    mutating func u8() throws -> UInt8 {
        guard position < end else { throw TruncatedField(detail: "byte past the end") }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func fixed<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let n = T.bitWidth / 8
        guard remaining >= n else { throw TruncatedField(detail: "\(n)-byte field past the end") }
        var v: T = 0
        for i in 0..<n { v |= T(bytes[position + i]) << (8 * i) }
        position += n
        return v
    }

    mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, remaining >= n else { throw TruncatedField(detail: "\(n)-byte field past the end") }
        defer { position += n }
        return bytes[position..<(position + n)]
    }

    mutating func string() throws -> String {
        let n = try count(limit: remaining)
        return String(decoding: try take(n), as: UTF8.self)
    }

    mutating func blob() throws -> [UInt8] {
        let n = try count(limit: remaining)
        return Array(try take(n))
    }
}
