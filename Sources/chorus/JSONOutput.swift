import Foundation

/// Parses "5,17,3" into token ids. An empty list is an error unless `allowEmpty`.
func parseTokenList(_ s: String, option: String = "--tokens", allowEmpty: Bool = false) throws -> [Int] {
    let trimmed = s.trimmingCharacters(in: .whitespaces)
    if trimmed.isEmpty {
        if allowEmpty { return [] }
        throw CLIError("\(option): no token ids given")
    }
    return try trimmed.split(separator: ",", omittingEmptySubsequences: false).map { part in
        let p = part.trimmingCharacters(in: .whitespaces)
        guard let v = Int(p) else { throw CLIError("\(option): '\(p)' is not an integer token id") }
        return v
    }
}

/// A one-line error for the command line.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Writes one line to standard output and flushes (JSON contracts are read by other programs).
func emit(_ line: String) {
    FileHandle.standardOutput.write((line + "\n").data(using: .utf8)!)
}
