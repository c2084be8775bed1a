@preconcurrency import Crypto
import Foundation

// SHA-256 is the content address of every record and of every teacher fingerprint. It comes
// from swift-crypto (BoringSSL on Linux), which uses the CPU's SHA extensions where there are
// some: hashing a 16 GB checkpoint is bound by the disk, not the hash. The tests check it against
// the NIST vectors, including the multi-block and million-'a' ones.

/// An incremental SHA-256 hasher: `update` any number of times, then `finalize` once.
public struct SHA256: Sendable {
    private var inner = Crypto.SHA256()

    /// A hasher with the standard initial state.
    public init() {}

    /// Feeds `bytes` into the hash.
    public mutating func update<D: DataProtocol>(_ bytes: D) { inner.update(data: bytes) }

    /// Feeds raw memory (a file chunk, a parameter buffer) without copying it.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) { inner.update(bufferPointer: bytes) }

    /// Feeds the UTF-8 bytes of `string`.
    public mutating func update(_ string: String) { update(Array(string.utf8)) }

    /// Returns the 32-byte digest.
    public func finalize() -> [UInt8] { Array(inner.finalize()) }

    /// One-shot digest of `bytes`.
    public static func hash<D: DataProtocol>(_ bytes: D) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(bytes)
        return hasher.finalize()
    }
}

/// Lower-case hexadecimal of `bytes` ("00ff…").
public func hexString<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 15)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// Parses lower- or upper-case hexadecimal; nil on odd length or a non-hex character.
public func bytesFromHex(_ hex: String) -> [UInt8]? {
    let chars = Array(hex.utf8)
    guard chars.count % 2 == 0 else { return nil }
    func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: return c - 48
        case 97...102: return c - 87
        case 65...70: return c - 55
        default: return nil
        }
    }
    var out = [UInt8]()
    out.reserveCapacity(chars.count / 2)
    var i = 0
    while i < chars.count {
        guard let hi = nibble(chars[i]), let lo = nibble(chars[i + 1]) else { return nil }
        out.append(hi << 4 | lo)
        i += 2
    }
    return out
}
