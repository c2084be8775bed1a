import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Crash-safe file replacement: write a temporary sibling, fsync it, rename over the target,
/// fsync the directory. A reader sees the old file or the complete new one, never a torn one.
/// Failures throw `InputFileError` naming the target and the step ("write failed: fsync: …").
public enum AtomicFile {
    /// Atomically replaces `url` with `data` (Data, [UInt8] or any contiguous bytes).
    public static func write<Bytes: ContiguousBytes>(_ data: Bytes, to url: URL) throws {
        let dir = url.deletingLastPathComponent().path
        let tmp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())"
        // "PATH: write failed: STEP: the errno in words", the shape of every `InputFileError`.
        func failed(_ step: String) -> InputFileError { InputFileError(path: url.path, errno: errno, context: "write failed: \(step)") }
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if fd < 0 { throw failed("cannot create \(tmp)") }
        var ok = false
        defer { if !ok { close(fd); unlink(tmp) } }
        try data.withUnsafeBytes { buf in
            var off = 0
            while off < buf.count {
                let w = Glibc.write(fd, buf.baseAddress! + off, buf.count - off)
                if w <= 0 { throw failed("write error") }
                off += w
            }
        }
        if fsync(fd) != 0 { throw failed("fsync") }
        close(fd)
        ok = true
        if rename(tmp, url.path) != 0 {
            let error = failed("rename")   // before unlink can change errno
            unlink(tmp)
            throw error
        }
        let dfd = open(dir, O_RDONLY)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }
}
