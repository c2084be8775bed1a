import ChorusCore
import ChorusCache
import ChorusModel
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Teacher fingerprints remembered across runs, so that a warm cache does not read every
/// weights file again (16 GB of hashing per run for a large teacher).
///
/// An entry is keyed by the identity of every file that enters the fingerprint — absolute
/// path, device, inode, size, modification and change times (ns) — and by the identifying
/// strings; any change to a file gives another key, so the weights are hashed again. A file
/// modified less than `racyInterval` before it was hashed is not remembered (a later write in
/// the same timestamp tick could keep its identity).
///
/// The memo is one small text file (`DIR/fingerprints` of a score cache), replaced atomically:
///
///     chorus-fingerprint-memo 1
///     <key, 64 hex> <fingerprint hex> <CRC-32C of "<key> <fingerprint>", 8 hex>
///
/// A line that does not parse or fails its checksum is ignored (and the fingerprint
/// recomputed), so a damaged memo costs time, never a wrong fingerprint. Concurrent processes
/// each replace the whole file; one may drop the other's new entry, which is recomputed later.
/// Saving is best effort: a memo that cannot be written (read-only directory) only costs time.
public final class FingerprintMemo {
    /// The memo's file name inside a cache directory.
    public static let fileName = "fingerprints"
    static let header = "chorus-fingerprint-memo 1"
    /// Entries kept (the most recent); older ones are dropped when the file is rewritten.
    static let capacity = 512
    /// Files modified this recently (seconds) before hashing are not remembered.
    static let racyInterval: Double = 2

    /// The memo file.
    public let url: URL
    /// Fingerprints answered from the memo since it was opened.
    public private(set) var hits = 0
    /// Fingerprints computed by hashing the files since it was opened.
    public private(set) var computed = 0

    /// The memo of a cache directory (`DIR/fingerprints`); the file need not exist.
    public init(directory: URL) {
        url = directory.appendingPathComponent(FingerprintMemo.fileName)
    }

    /// `TeacherFingerprint.make(files:strings:)`, from the memo when no file changed since it
    /// was last computed.
    public func fingerprint(files: [URL], strings: [String]) throws -> TeacherFingerprint {
        let before = try files.map(FileIdentity.init)
        let key = FingerprintMemo.key(before, strings: strings)
        if let hex = load()[key], let f = TeacherFingerprint(hex: hex) {
            hits += 1
            return f
        }
        let f = try TeacherFingerprint.make(files: files, strings: strings)
        computed += 1
        // Remember it only if no file changed while it was hashed and none is racily new.
        let after = try? files.map(FileIdentity.init)
        let now = Date().timeIntervalSince1970
        if after == before, before.allSatisfy({ now - $0.modificationSeconds >= FingerprintMemo.racyInterval }) {
            save(key: key, fingerprint: f.hex)
        }
        return f
    }

    /// SHA-256 over the file identities and the strings, as hex.
    static func key(_ files: [FileIdentity], strings: [String]) -> String {
        var h = SHA256()
        h.update("chorus-fingerprint-memo-key-v1")
        for f in files { h.update("\n\(f.path.utf8.count):\(f.path) \(f.device) \(f.inode) \(f.size) \(f.modified) \(f.changed)") }
        for s in strings { h.update("\n\(s.utf8.count):\(s)") }
        return hexString(h.finalize())
    }

    /// The entries in file order (later lines win); an unreadable or foreign file reads as empty.
    func entries() -> [(key: String, fingerprint: String)] {
        guard let data = try? Data(contentsOf: url) else { return [] }
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.first == Substring(FingerprintMemo.header) else { return [] }
        var out: [(String, String)] = []
        for line in lines.dropFirst() {
            let parts = line.split(separator: " ")
            guard parts.count == 3, parts[0].count == 64, let crc = UInt32(parts[2], radix: 16), parts[2].count == 8,
                  CRC32C.checksum(Array("\(parts[0]) \(parts[1])".utf8)) == crc,
                  bytesFromHex(String(parts[0])) != nil, bytesFromHex(String(parts[1])) != nil else { continue }
            out.append((String(parts[0]), String(parts[1])))
        }
        return out
    }

    func load() -> [String: String] {
        var d: [String: String] = [:]
        for e in entries() { d[e.key] = e.fingerprint }
        return d
    }

    /// Adds an entry (best effort: errors are ignored).
    func save(key: String, fingerprint: String) {
        var kept = entries().filter { $0.key != key }
        kept.append((key, fingerprint))
        kept = Array(kept.suffix(FingerprintMemo.capacity))
        var text = FingerprintMemo.header + "\n"
        for e in kept {
            let body = "\(e.key) \(e.fingerprint)"
            let crc = String(CRC32C.checksum(Array(body.utf8)), radix: 16)
            text += body + " " + String(repeating: "0", count: 8 - crc.count) + crc + "\n"
        }
        try? AtomicFile.write(Data(text.utf8), to: url)
    }
}

/// What identifies a file's contents without reading them: stat(2) fields.
struct FileIdentity: Equatable {
    var path: String
    var device: UInt64
    var inode: UInt64
    var size: Int64
    /// Modification and status-change times, nanoseconds since 1970.
    var modified: Int64
    var changed: Int64

    init(_ url: URL) throws {
        path = url.standardizedFileURL.path
        var st = stat()
        guard stat(path, &st) == 0 else { throw CacheError.io(path: path, operation: "stat", errno: errno) }
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
        size = Int64(st.st_size)
        modified = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        changed = Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec)
    }

    var modificationSeconds: Double { Double(modified) / 1e9 }
}
