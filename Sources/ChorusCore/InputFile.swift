import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A file that Chorus was asked to read (or write) and cannot: one line naming the path and the
/// real cause (no such file, permission denied, a directory or FIFO where a file belongs, not
/// UTF-8 text, a failed write). The one file-error type of `InputFile` and `AtomicFile`.
public struct InputFileError: Error, CustomStringConvertible, Equatable {
    /// The path as given.
    public let path: String
    /// What is wrong, e.g. "no such file" or "is a FIFO, not a regular file".
    public let problem: String
    public init(path: String, problem: String) {
        self.path = path
        self.problem = problem
    }

    /// The error of a failed system call on `path`: `errno` in words (`InputFile.problem`),
    /// after `context` when given ("cannot create a directory: permission denied").
    public init(path: String, errno e: Int32, context: String? = nil) {
        let words = InputFile.problem(errno: e)
        self.init(path: path, problem: context.map { "\($0): \(words)" } ?? words)
    }

    public var description: String { "\(path): \(problem)" }
}

/// Opening input files safely: only regular files are opened, and never in a way that can block.
///
/// A FIFO named `model.safetensors` would make a plain `open(O_RDONLY)` wait forever for a
/// writer, and a character device can stream without end. Every reader of user-named files goes
/// through here: the path is `stat`ed first, refused unless it is a regular file (symbolic
/// links are followed), then opened with `O_NONBLOCK` and checked again with `fstat`, so a file
/// swapped for a FIFO in between is refused too, never waited on.
public enum InputFile {
    /// The kind of a `stat` mode, for messages ("a directory", "a FIFO", ...).
    static func kindName(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a FIFO (named pipe)"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        case S_IFLNK: return "a symbolic link"
        case S_IFREG: return "a regular file"
        default: return "not a regular file"
        }
    }

    /// The message for an `errno` from `stat`/`open` of `path`.
    public static func problem(errno e: Int32) -> String {
        switch e {
        case ENOENT: return "no such file or directory"
        case EACCES, EPERM: return "permission denied"
        case ENOTDIR: return "no such file (a component of the path is not a directory)"
        case ELOOP: return "too many levels of symbolic links"
        case ENAMETOOLONG: return "file name too long"
        default: return String(cString: strerror(e))
        }
    }

    /// Throws unless `path` names a regular file (after following symbolic links).
    public static func checkRegularFile(_ path: String) throws {
        var st = stat()
        guard stat(path, &st) == 0 else { throw InputFileError(path: path, errno: errno) }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw InputFileError(path: path, problem: "is \(kindName(st.st_mode)), not a regular file")
        }
    }

    /// Throws unless `path` names a directory (after following symbolic links); `what` names it
    /// in the message ("model directory").
    public static func checkDirectory(_ path: String, what: String = "directory") throws {
        var st = stat()
        guard stat(path, &st) == 0 else { throw InputFileError(path: path, errno: errno, context: what) }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            throw InputFileError(path: path, problem: "\(what): is \(kindName(st.st_mode)), not a directory")
        }
    }

    /// Opens a regular file for reading without ever blocking; returns a descriptor the caller
    /// closes. Non-regular files are refused before and after opening.
    public static func open(_ path: String) throws -> Int32 {
        try checkRegularFile(path)
        let fd = Glibc.open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw InputFileError(path: path, errno: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            close(fd)
            throw InputFileError(path: path, errno: e)
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw InputFileError(path: path, problem: "is \(kindName(st.st_mode)), not a regular file")
        }
        // Regular files ignore O_NONBLOCK; clear it anyway so later reads behave as usual.
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
        return fd
    }

    /// The whole contents of a regular file. `limit` bounds the size read into memory (the
    /// input-sized allocation is checked against `ResourceLimits` first).
    public static func read(_ path: String, limit: Int? = nil) throws -> Data {
        let fd = try open(path)
        defer { close(fd) }
        var st = stat()
        _ = fstat(fd, &st)
        let size = Int(st.st_size)
        if let limit, size > limit {
            throw InputFileError(path: path, problem: "file of \(ResourceLimits.format(bytes: Double(size))) is larger than the \(ResourceLimits.format(bytes: Double(limit))) this file may have")
        }
        try ResourceLimits.check(bytes: Double(size), for: "reading \(path)")
        var data = Data(count: size)
        var done = 0
        try data.withUnsafeMutableBytes { (buf: UnsafeMutableRawBufferPointer) in
            while done < size {
                let n = Glibc.read(fd, buf.baseAddress! + done, size - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw InputFileError(path: path, errno: errno, context: "read failed")
                }
                if n == 0 { break }
                done += n
            }
        }
        if done < size { data.removeLast(size - done) }
        return data
    }

    /// The contents of a regular file as UTF-8 text; invalid UTF-8 is an error naming the line
    /// and byte offset of the first bad byte, never silently replaced.
    public static func readText(_ path: String) throws -> String {
        let data = try read(path)
        return try UTF8Text.decode(data, source: path)
    }
}

extension InputFile {
    /// Creates `path` and any missing parents (like `mkdir -p`); an existing directory is
    /// fine. Errors are one line with the real cause ("is a regular file, not a directory",
    /// "no such file or directory", "permission denied"), not Foundation's prose.
    public static func createDirectory(_ path: String) throws {
        var st = stat()
        if stat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFDIR else {
                throw InputFileError(path: path, problem: "cannot create a directory: it is \(kindName(st.st_mode)), not a directory")
            }
            return
        }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty && parent != path { try createDirectory(parent) }
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            throw InputFileError(path: path, errno: errno, context: "cannot create a directory")
        }
    }
}

/// Strict UTF-8 decoding: Swift's `String(decoding:as:)` replaces invalid bytes with U+FFFD,
/// which turns bad input into silently different text. Chorus refuses it instead.
public enum UTF8Text {
    /// The byte offset of the first invalid UTF-8 sequence in `bytes`, or nil when valid.
    public static func firstInvalidOffset<C: Collection>(_ bytes: C) -> Int? where C.Element == UInt8 {
        var it = bytes.makeIterator()
        var decoder = Unicode.UTF8()
        var offset = 0
        while true {
            switch decoder.decode(&it) {
            case let .scalarValue(s): offset += UTF8.width(s)
            case .emptyInput: return nil
            case .error: return offset
            }
        }
    }

    /// Decodes `data` as UTF-8 or throws `InputFileError` naming `source`, the line and the byte.
    public static func decode(_ data: Data, source: String) throws -> String {
        if let s = String(validating: data, as: UTF8.self) { return s }
        let offset = firstInvalidOffset(data) ?? 0
        let line = data.prefix(offset).reduce(1) { $0 + ($1 == 0x0A ? 1 : 0) }
        let byte = data[data.startIndex + offset]
        throw InputFileError(path: source, problem: "not valid UTF-8 text (byte 0x\(String(byte, radix: 16, uppercase: true)) at offset \(offset), line \(line))")
    }
}
