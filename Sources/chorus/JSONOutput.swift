import Foundation

/// Compact JSON text for the CLI contracts, built by hand so numbers print in Swift's
/// shortest round-trip form and key order is exactly as documented.
enum JSONText {
    /// A float, or `null` when it is not finite.
    static func number(_ x: Float) -> String { x.isFinite ? "\(x)" : "null" }
    static func number(_ x: Double) -> String { x.isFinite ? "\(x)" : "null" }

    /// `[a,b,c]` of already-encoded items.
    static func array<S: Sequence>(_ items: S) -> String where S.Element == String {
        "[" + items.joined(separator: ",") + "]"
    }

    /// `{"k":v,...}` of already-encoded values, in the given order.
    static func object(_ pairs: [(String, String)]) -> String {
        "{" + pairs.map { "\(string($0.0)):\($0.1)" }.joined(separator: ",") + "}"
    }

    /// A JSON string literal with the mandatory escapes.
    static func string(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}

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
