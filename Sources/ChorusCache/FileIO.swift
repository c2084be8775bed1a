import ChorusCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

// Small POSIX wrappers that turn errno into `CacheError.io` naming the path. The store uses raw
// file descriptors because it needs pread, O_APPEND, ftruncate and flock, none of which
// FileHandle exposes with usable error reporting.

/// An open file descriptor that closes itself.
final class FileDescriptor {
    let fd: Int32
    let path: String

    /// Opens `path` with `flags` (and `mode` when creating).
    init(path: String, flags: Int32, mode: mode_t = 0o644) throws {
        let fd = open(path, flags | O_CLOEXEC, mode)
        guard fd >= 0 else { throw CacheError.io(path: path, operation: "open", errno: errno) }
        self.fd = fd
        self.path = path
    }

    /// Opens a user-named input for reading: a regular file only, never opened in a way that
    /// blocks (see `InputFile`).
    init(readingRegularFile path: String) throws {
        fd = try InputFile.open(path)
        self.path = path
    }

    /// Wraps a descriptor someone else owns (standard output); it is not closed on deinit.
    init(borrowing fd: Int32, path: String) {
        self.fd = fd
        self.path = path
        owned = false
    }

    private var owned = true

    deinit { if owned { close(fd) } }

    /// Current size in bytes.
    func size() throws -> Int {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw CacheError.io(path: path, operation: "fstat", errno: errno) }
        return Int(st.st_size)
    }

    /// Reads exactly `count` bytes at `offset`, or fewer only if the file ends first.
    func read(at offset: Int, count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = out.withUnsafeMutableBytes { buf in
                pread(fd, buf.baseAddress! + done, count - done, off_t(offset + done))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw CacheError.io(path: path, operation: "read", errno: errno)
            }
            if n == 0 { break }
            done += n
        }
        out.removeLast(count - done)
        return out
    }

    /// Writes all of `bytes` (at the end, for O_APPEND descriptors), retrying short writes.
    func writeAll(_ bytes: [UInt8]) throws {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { buf in
                Glibc.write(fd, buf.baseAddress! + done, bytes.count - done)
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw CacheError.io(path: path, operation: "write", errno: errno)
            }
            done += n
        }
    }

    func truncate(to length: Int) throws {
        guard ftruncate(fd, off_t(length)) == 0 else {
            throw CacheError.io(path: path, operation: "truncate", errno: errno)
        }
    }

    func sync() throws {
        guard fsync(fd) == 0 else { throw CacheError.io(path: path, operation: "fsync", errno: errno) }
    }

    /// flock(2): whole-file advisory lock, released on unlock or when the process dies (which is
    /// what makes a kill -9 of a writer safe: its lock does not outlive it).
    func lock(exclusive: Bool) throws {
        while flock(fd, exclusive ? LOCK_EX : LOCK_SH) != 0 {
            if errno == EINTR { continue }
            throw CacheError.io(path: path, operation: "flock", errno: errno)
        }
    }

    func unlock() { _ = flock(fd, LOCK_UN) }
}

/// Reads a whole file; nil if it does not exist.
func readWholeFile(_ path: String) throws -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 {
        if errno == ENOENT { return nil }
        throw CacheError.io(path: path, operation: "open", errno: errno)
    }
    close(fd)
    let file = try FileDescriptor(path: path, flags: O_RDONLY)
    return try file.read(at: 0, count: try file.size())
}
