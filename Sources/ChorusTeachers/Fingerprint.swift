import ChorusModel
import Foundation

/// Teacher fingerprints: SHA-256 over everything that decides a teacher's scores.
///
/// A checkpoint's fingerprint covers its kind, config.json bytes and the bytes of every
/// weights file (model.safetensors, or the index and its shards, in name order); a
/// self-teacher's adds its privileged template. Two teachers with equal fingerprints give
/// equal scores for equal contexts, which is what a content-addressed score cache needs.
public enum TeacherFingerprint {
    /// The fingerprint of a model directory plus extra identifying strings, as hex.
    public static func checkpoint(directory: URL, kind: String, extra: [String] = []) throws -> String {
        var h = FingerprintSHA256()
        h.update("chorus-teacher-fingerprint-v1\u{0}kind=\(kind)\u{0}")
        for s in extra { h.update("\(s.utf8.count):\(s)\u{0}") }
        var files = ["config.json"]
        let fm = FileManager.default
        let index = directory.appendingPathComponent("model.safetensors.index.json")
        if fm.fileExists(atPath: index.path) {
            let names = try fm.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".safetensors") }.sorted()
            files += ["model.safetensors.index.json"] + names
        } else {
            files.append("model.safetensors")
        }
        for f in files {
            h.update("file=\(f)\u{0}")
            try hashFile(directory.appendingPathComponent(f), into: &h)
        }
        return hexDigest(h.finalize())
    }

    /// The fingerprint of in-memory parameters (a frozen snapshot without files) plus extras.
    public static func parameters(_ model: TransformerModel, kind: String, extra: [String] = []) -> String {
        var h = FingerprintSHA256()
        h.update("chorus-teacher-fingerprint-v1\u{0}kind=\(kind)\u{0}")
        for s in extra { h.update("\(s.utf8.count):\(s)\u{0}") }
        if let cfg = try? JSONSerialization.data(withJSONObject: model.config.jsonObject(), options: [.sortedKeys]) {
            h.update(Array(cfg))
        }
        let raw = UnsafeRawBufferPointer(start: model.parameters.data, count: model.layout.totalCount * 4)
        h.update(raw)
        return hexDigest(h.finalize())
    }

    static func hashFile(_ url: URL, into h: inout FingerprintSHA256) throws {
        guard let fh = FileHandle(forReadingAtPath: url.path) else {
            throw CheckpointError.fileNotFound(path: url.path)
        }
        defer { try? fh.close() }
        while true {
            let d = fh.readData(ofLength: 4 << 20)
            if d.isEmpty { break }
            d.withUnsafeBytes { h.update($0) }
        }
    }

    static func hexDigest(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
}

/// A streaming SHA-256 (FIPS 180-4), local to fingerprinting.
struct FingerprintSHA256 {
    private var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
    private var buffer: [UInt8] = []
    private var total: UInt64 = 0
    private static let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]

    mutating func update(_ s: String) { update(Array(s.utf8)) }

    mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        total &+= UInt64(bytes.count)
        var i = 0
        if !buffer.isEmpty {
            while i < bytes.count && buffer.count < 64 { buffer.append(bytes[i]); i += 1 }
            if buffer.count == 64 { buffer.withUnsafeBytes { block($0.baseAddress!) }; buffer.removeAll(keepingCapacity: true) }
        }
        while i + 64 <= bytes.count { block(bytes.baseAddress! + i); i += 64 }
        while i < bytes.count { buffer.append(bytes[i]); i += 1 }
    }

    mutating func finalize() -> [UInt8] {
        let bits = total &* 8
        var pad: [UInt8] = [0x80]
        while (Int(total % 64) + pad.count) % 64 != 56 { pad.append(0) }
        for s in stride(from: 56, through: 0, by: -8) { pad.append(UInt8((bits >> UInt64(s)) & 0xff)) }
        let saved = total
        update(pad)
        total = saved
        var out: [UInt8] = []
        for w in h { out += [UInt8(w >> 24), UInt8((w >> 16) & 0xff), UInt8((w >> 8) & 0xff), UInt8(w & 0xff)] }
        return out
    }

    private mutating func block(_ p: UnsafeRawPointer) {
        var w = [UInt32](repeating: 0, count: 64)
        for t in 0..<16 {
            w[t] = UInt32(p.load(fromByteOffset: 4 * t, as: UInt8.self)) << 24
                | UInt32(p.load(fromByteOffset: 4 * t + 1, as: UInt8.self)) << 16
                | UInt32(p.load(fromByteOffset: 4 * t + 2, as: UInt8.self)) << 8
                | UInt32(p.load(fromByteOffset: 4 * t + 3, as: UInt8.self))
        }
        func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
        for t in 16..<64 {
            let s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
            let s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
            w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
        }
        var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7]
        for t in 0..<64 {
            let S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
            let ch = (e & f) ^ (~e & g)
            let t1 = hh &+ S1 &+ ch &+ FingerprintSHA256.k[t] &+ w[t]
            let S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
            let maj = (a & b) ^ (a & c) ^ (b & c)
            let t2 = S0 &+ maj
            hh = g; g = f; f = e; e = d &+ t1; d = c; c = b; b = a; a = t1 &+ t2
        }
        h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d; h[4] &+= e; h[5] &+= f; h[6] &+= g; h[7] &+= hh
    }
}
