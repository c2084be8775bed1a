import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A file that could not be written; names the file.
public struct FileWriteError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let detail: String
    public init(file: String, detail: String) {
        self.file = file
        self.detail = detail
    }
    public var description: String { "\(file): write failed: \(detail)" }
}

/// Crash-safe file replacement: write a temporary sibling, fsync it, rename over the target,
/// fsync the directory. A reader sees the old file or the complete new one, never a torn one.
public enum AtomicFile {
    /// Atomically replaces `url` with `data` (Data, [UInt8] or any contiguous bytes).
    public static func write<Bytes: ContiguousBytes>(_ data: Bytes, to url: URL) throws {
        let dir = url.deletingLastPathComponent().path
        let tmp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())"
        func failed(_ detail: String) -> FileWriteError { FileWriteError(file: url.path, detail: detail) }
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if fd < 0 { throw failed("cannot create \(tmp) (errno \(errno))") }
        var ok = false
        defer { if !ok { close(fd); unlink(tmp) } }
        try data.withUnsafeBytes { buf in
            var off = 0
            while off < buf.count {
                let w = Glibc.write(fd, buf.baseAddress! + off, buf.count - off)
                if w <= 0 { throw failed("write error (errno \(errno))") }
                off += w
            }
        }
        if fsync(fd) != 0 { throw failed("fsync failed") }
        close(fd)
        ok = true
        if rename(tmp, url.path) != 0 {
            unlink(tmp)
            throw failed("rename failed (errno \(errno))")
        }
        let dfd = open(dir, O_RDONLY)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }
}
