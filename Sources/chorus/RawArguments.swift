import ChorusCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The command line as the kernel handed it over, before Swift turns it into strings.
///
/// Swift's `CommandLine.arguments` decodes each argument as UTF-8 and replaces invalid bytes
/// with U+FFFD, so a path containing byte 0xFF would silently become a different path (and an
/// output written under the rewritten name). Chorus uses such paths byte for byte instead: the
/// deepest part of the path that exists and holds the non-UTF-8 bytes is opened with `O_PATH`
/// (which never blocks and reads nothing) and replaced by `/proc/self/fd/N`, which the kernel
/// resolves to exactly that file or directory; the UTF-8 rest of the path follows it. A name
/// that does not exist yet must itself be UTF-8 (Chorus could not create it byte for byte), and
/// text arguments (`--text`, `--string`, ...) must be UTF-8: both are refused with one line.
enum RawArguments {
    /// Linux's `O_PATH` (open for path resolution only; reads nothing, never blocks), which
    /// Glibc's Swift overlay does not export.
    static let oPath: Int32 = 0o10000000

    /// Options whose values are text, never paths: invalid UTF-8 there is refused.
    static let textOptions: Set<String> = [
        "--text", "--string", "--privileged", "--set", "--special-token", "--tokens", "--ids", "--aggregator",
        "--shape", "--dtype", "--boundaries",
    ]

    /// The arguments after the program name, with non-UTF-8 paths replaced by stand-ins.
    static func prepare() throws -> [String] {
        var out: [String] = []
        var previous: String?
        for i in 1..<Int(CommandLine.argc) {
            guard let p = CommandLine.unsafeArgv[i] else { continue }
            let bytes = Array(UnsafeBufferPointer(start: UnsafeRawPointer(p).assumingMemoryBound(to: UInt8.self), count: strlen(p)))
            if let s = String(validating: bytes, as: UTF8.self) {
                out.append(s)
                previous = s
                continue
            }
            // `--option=value` carries its value inside the argument.
            var option = previous ?? "argument \(i)"
            var prefix = "", value = bytes[...]
            if bytes.starts(with: Array("--".utf8)), let eq = bytes.firstIndex(of: UInt8(ascii: "=")),
               let name = String(validating: bytes[..<eq], as: UTF8.self) {
                option = name
                prefix = name + "="
                value = bytes[(eq + 1)...]
            }
            if textOptions.contains(option) || (prefix.isEmpty && bytes.first == UInt8(ascii: "-")) {
                throw CLIError("\(option): '\(display(bytes[...]))' is not valid UTF-8 (\(firstBadByte(bytes[...]))); text must be UTF-8")
            }
            let arg = prefix + (try standIn(forPath: Array(value)))
            out.append(arg)
            previous = arg
        }
        return out
    }

    /// "byte 0xFF at offset 3" for the first invalid byte.
    static func firstBadByte(_ bytes: ArraySlice<UInt8>) -> String {
        let offset = UTF8Text.firstInvalidOffset(bytes) ?? 0
        return "byte 0x\(String(bytes[bytes.startIndex + offset], radix: 16, uppercase: true)) at offset \(offset)"
    }

    /// The bytes as text, each invalid byte written as \xNN.
    static func display(_ bytes: ArraySlice<UInt8>) -> String {
        var out = "", rest = bytes
        while !rest.isEmpty {
            if let bad = UTF8Text.firstInvalidOffset(rest) {
                let cut = rest.startIndex + bad
                out += String(decoding: rest[..<cut], as: UTF8.self)
                out += "\\x" + String(rest[cut], radix: 16, uppercase: true)
                rest = rest[(cut + 1)...]
            } else {
                out += String(decoding: rest, as: UTF8.self)
                break
            }
        }
        return out
    }

    /// The stand-in for a non-UTF-8 path (see the type's documentation).
    static func standIn(forPath path: [UInt8]) throws -> String {
        let shown = display(path[...])
        guard access("/proc/self/fd", F_OK) == 0 else {
            throw CLIError("\(shown): the path is not valid UTF-8, and using it byte for byte needs /proc, which is not mounted")
        }
        // Components; the last one holding invalid bytes is where the stand-in ends.
        let slash = UInt8(ascii: "/")
        let components = path.split(separator: slash, omittingEmptySubsequences: false)
        guard let last = components.lastIndex(where: { String(validating: $0, as: UTF8.self) == nil }) else {
            return String(decoding: path, as: UTF8.self)   // unreachable: the caller found invalid bytes
        }
        let head = Array(components[...last].joined(separator: [slash]))
        let tail = components[(last + 1)...].map { String(decoding: $0, as: UTF8.self) }
        let fd = head.withUnsafeBufferPointer { buf -> Int32 in
            var z = Array(buf); z.append(0)
            return z.withUnsafeBufferPointer { open(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self), oPath | O_CLOEXEC) }
        }
        guard fd >= 0 else {
            let e = errno
            if e == ENOENT {
                throw CLIError("\(shown): no such file or directory (a name that is not valid UTF-8 must already exist; Chorus does not create one)")
            }
            throw CLIError("\(shown): \(InputFile.problem(errno: e))")
        }
        let standIn = (["/proc/self/fd/\(fd)"] + tail).joined(separator: "/")
        // A stand-in for a file (its own name not UTF-8): relative paths inside it (a run file's
        // model, data, pool) resolve against its directory, which is not /proc/self/fd.
        var parent: String?
        if tail.isEmpty, last > 0 {
            var st = stat()
            if fstat(fd, &st) == 0, (st.st_mode & S_IFMT) != S_IFDIR {
                let dirBytes = Array(components[..<last].joined(separator: [slash]))
                if dirBytes.isEmpty {
                    parent = "/"
                } else if let plain = String(validating: dirBytes, as: UTF8.self) {
                    parent = plain
                } else {
                    parent = try Self.standIn(forPath: dirBytes)
                }
            }
        }
        PathStandIns.register(standIn: "/proc/self/fd/\(fd)", display: display(head[...]), parent: parent)
        return standIn
    }

    /// `text` with every stand-in replaced by the path it stands for.
    static func restorePaths(_ text: String) -> String { PathStandIns.restore(text) }
}

/// Checks the environment variables Chorus reads, so a bad value is refused with one line
/// instead of being ignored.
enum EnvironmentCheck {
    static func validate() throws {
        let env = ProcessInfo.processInfo.environment
        if let s = env["CHORUS_THREADS"] {
            guard let n = Int(s), n >= 1 else {
                throw EnvironmentError(variable: "CHORUS_THREADS", value: s, expected: "a positive integer (worker threads)")
            }
            _ = n
        }
        _ = try ResourceLimits.current()
    }
}

/// One line for any error, naming the file and the cause: Foundation's file errors
/// (`NSCocoaErrorDomain` dumps) become "PATH: no such file or directory" and the like, and
/// `/proc/self/fd/N` stand-ins are replaced by the paths the user gave.
func describeError(_ error: Error) -> String {
    var text: String
    if let c = error as? CocoaError {
        text = describeCocoa(code: c.code.rawValue, userInfo: c.userInfo)
    } else if let p = error as? POSIXError {
        text = InputFile.problem(errno: p.code.rawValue)
    } else if type(of: error) is NSError.Type {
        let ns = error as NSError
        if ns.domain == NSCocoaErrorDomain {
            text = describeCocoa(code: ns.code, userInfo: ns.userInfo)
        } else if ns.domain == NSPOSIXErrorDomain {
            text = InputFile.problem(errno: Int32(ns.code))
        } else {
            text = ns.localizedDescription
        }
    } else if let d = error as? DecodingError {
        text = "malformed JSON: \(d)"
    } else {
        text = "\(error)"
    }
    text = RawArguments.restorePaths(text)
    return text.replacingOccurrences(of: "\r\n", with: " ").replacingOccurrences(of: "\n", with: " ")
}

/// "PATH: cause" for a Foundation file error.
private func describeCocoa(code: Int, userInfo: [String: Any]) -> String {
    let path = (userInfo[NSFilePathErrorKey] as? String) ?? (userInfo[NSURLErrorKey] as? URL)?.path
    var reason: String
    if let under = userInfo[NSUnderlyingErrorKey] as? NSError, under.domain == NSPOSIXErrorDomain {
        reason = InputFile.problem(errno: Int32(under.code))
    } else {
        switch CocoaError.Code(rawValue: code) {
        case .fileNoSuchFile, .fileReadNoSuchFile: reason = "no such file or directory"
        case .fileReadNoPermission, .fileWriteNoPermission: reason = "permission denied"
        case .fileWriteOutOfSpace: reason = "no space left on device"
        case .fileWriteFileExists: reason = "already exists"
        case .fileWriteVolumeReadOnly: reason = "read-only file system"
        case .fileReadInapplicableStringEncoding, .fileWriteInapplicableStringEncoding: reason = "not valid UTF-8 text"
        case .fileReadCorruptFile: reason = "unreadable or malformed"
        case .fileReadTooLarge: reason = "file too large"
        default: reason = "file operation failed (Foundation error \(code))"
        }
    }
    return (path.map { "\($0): " } ?? "") + reason
}
