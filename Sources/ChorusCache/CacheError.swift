import Foundation

/// Everything the score cache can report. Each case names the file (and, where there is one, the
/// record offset) so a one-line message is enough to find the damage.
public enum CacheError: Error, CustomStringConvertible, Equatable {
    /// A system call on `path` failed with `errno`.
    case io(path: String, operation: String, errno: Int32)
    /// `path` is not a cache directory of a format this build understands.
    case badFormat(path: String, detail: String)
    /// A record failed its checksum or did not decode; `offset` is the frame start in `segment`.
    case corruptRecord(segment: String, offset: Int, detail: String)
    /// The caller handed in a record that cannot be stored (`detail` says which field).
    case invalidRecord(detail: String)
    /// zstd reported an error.
    case compression(detail: String)
    /// A JSONL line in `file` (1-based `line`) could not be imported.
    case badImportLine(file: String, line: Int, detail: String)

    public var description: String {
        switch self {
        case let .io(path, operation, errno):
            return "\(path): \(operation) failed: \(String(cString: strerror(errno)))"
        case let .badFormat(path, detail):
            return "\(path): not a chorus score cache: \(detail)"
        case let .corruptRecord(segment, offset, detail):
            return "\(segment) @\(offset): corrupt record: \(detail)"
        case let .invalidRecord(detail):
            return "invalid score record: \(detail)"
        case let .compression(detail):
            return "zstd: \(detail)"
        case let .badImportLine(file, line, detail):
            return "\(file):\(line): \(detail)"
        }
    }
}
