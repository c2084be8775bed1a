/// The one JSON writer: compact JSON text built from already-encoded pieces, so numbers print in
/// Swift's shortest round-trip form and keys keep the caller's order (metrics rows, CLI output).
/// Strings get every escape JSON requires; non-finite numbers become `null`.
public enum JSONText {
    /// A float, or `null` when it is not finite.
    public static func number(_ x: Float) -> String { x.isFinite ? "\(x)" : "null" }
    /// A double, or `null` when it is not finite.
    public static func number(_ x: Double) -> String { x.isFinite ? "\(x)" : "null" }

    /// `[a,b,c]` of already-encoded items.
    public static func array<S: Sequence>(_ items: S) -> String where S.Element == String {
        "[" + items.joined(separator: ",") + "]"
    }

    /// `{"k":v,...}` of already-encoded values, in the given order.
    public static func object(_ pairs: [(String, String)]) -> String {
        "{" + pairs.map { "\(string($0.0)):\($0.1)" }.joined(separator: ",") + "}"
    }

    /// A JSON string literal.
    public static func string(_ s: String) -> String {
        var out = ""
        quote(s, into: &out)
        return out
    }

    /// Appends `s` as a JSON string literal: `"` and `\` escaped, control characters as `\n`,
    /// `\r`, `\t`, `\b`, `\f` or `\u00xx`, everything else (non-ASCII and `/` included) as is
    /// — what serde_json writes, so a tokenizer.json round-trips byte for byte.
    public static func quote(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}

/// One JSON object on one line with keys in the given order (a metrics row), written by
/// `JSONText`.
public struct JSONLine: Sendable {
    /// A field value: integers and strings as such, doubles as numbers (`null` when not finite),
    /// `raw` for an already-encoded JSON value.
    public enum Value: Sendable { case int(Int), double(Double), string(String), raw(String) }
    /// The object's text, without a newline.
    public let text: String
    public init(_ pairs: [(String, Value)]) {
        text = JSONText.object(pairs.map { key, value in
            switch value {
            case let .int(i): return (key, "\(i)")
            case let .double(d): return (key, JSONText.number(d))
            case let .string(s): return (key, JSONText.string(s))
            case let .raw(r): return (key, r)
            }
        })
    }
}
