import ChorusConfig
import Foundation

/// One `chorus compare --sweep KEY=V1,V2,...` axis: a run-file key and the values it takes,
/// each against the default recipe (the run file after `--set`, every other key at its value).
///
/// A value whose run file parses to the same configuration as the default recipe (the run
/// file's own value, or the built-in default when the run file leaves the key out) is the
/// default run itself: it is not trained again, and its row in the axis's table block is the
/// default's, marked. docs/compare.md, "Sweeps".
public struct SweepAxis: Sendable, Equatable {
    /// One row of the axis's block.
    public struct Row: Sendable, Equatable {
        /// The value as given (nil: the default recipe's row when no listed value is the default).
        public var value: String?
        /// The run label whose runs the row shows (`Comparison.defaultSweepLabel` for the default).
        public var label: String
        /// Whether the row is the default recipe.
        public var isDefault: Bool
    }

    /// The run-file key as given, e.g. `rollout.group_size` or `curriculum.stage[1].at`.
    public var key: String
    /// The values as given (trimmed), in order.
    public var values: [String]
    /// The run file's own value of the key as text (a string without its quotes), nil when the
    /// run file leaves the key to its built-in default (or holds a value with no short text, a table).
    public var runFileValue: String?
    /// The rows of the axis's block: each value in the given order, the one that is the default
    /// recipe marked; when none is, the default first.
    public var rows: [Row]

    /// The row name shown in the table: the value, `VALUE (default)`, or for a default not among
    /// the values `default (VALUE)` / `default (not set)`.
    public func rowName(_ r: Row) -> String {
        guard let v = r.value else { return "default (" + (runFileValue ?? "not set") + ")" }
        return r.isDefault ? v + " (default)" : v
    }
}

extension Comparison {
    /// The label (and directory name) of the default recipe's runs in a sweep.
    public static let defaultSweepLabel = "default"
    /// Most runs of a sweep (seeds × (1 + every listed value)), checked before any run file is built.
    public static let maxSweepRuns = 500
    /// Keys a sweep may not vary: `chorus compare` sets them for every run itself.
    static let reservedSweepKeys: [String: String] = [
        "train.seed": "the seeds are --seeds (run i uses the run file's train.seed + i, the same for every axis)",
        "output.dir": "every run's directory is OUTPUT/LABEL/seed-S",
        "teachers.cache": "every run shares one score cache (the run file's teachers.cache, else OUTPUT/cache)",
    ]

    /// Splits `KEY=V1,V2,...` into the key and the values (trimmed). Commas inside quotes or
    /// brackets do not split, so strings and arrays can be values
    /// (`teachers.boundaries=[0.3,0.6],[0.5,0.8]`).
    /// - Throws: `ComparisonError.sweep` naming the argument: no `=`, a key that is not
    ///   `SECTION.KEY` (letters, digits, `_`, `-`, and `[N]` after an array of tables), an empty
    ///   list or value, an unbalanced quote or bracket, a value listed twice.
    static func parseSweep(_ argument: String) throws -> (key: String, values: [String]) {
        func bad(_ why: String) -> ComparisonError { .sweep(argument, why) }
        guard let eq = argument.firstIndex(of: "=") else { throw bad("expected KEY=V1,V2,... (e.g. rollout.group_size=2,4,8)") }
        let key = argument[..<eq].trimmingCharacters(in: .whitespaces)
        guard let dot = key.lastIndex(of: "."), dot != key.startIndex, key.index(after: dot) != key.endIndex,
              key.allSatisfy({ $0.isLetter || $0.isNumber || "_-.[]".contains($0) }),
              key[key.index(after: dot)...].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }) else {
            throw bad("the key must be SECTION.KEY of the run file (letters, digits, '_', '-', and [N] after an array of tables), e.g. rollout.group_size")
        }
        let list = String(argument[argument.index(after: eq)...])
        if list.trimmingCharacters(in: .whitespaces).isEmpty { throw bad("no values after '=' (give at least one: \(key)=V1,V2,...)") }
        var values: [String] = [], current = "", depth = 0, quote: Character?
        for c in list {
            if let q = quote {
                if c == q { quote = nil }
            } else if c == "\"" || c == "'" {
                quote = c
            } else if c == "[" || c == "{" {
                depth += 1
            } else if c == "]" || c == "}" {
                depth -= 1
                if depth < 0 { throw bad("unbalanced '\(c)'") }
            } else if c == "," && depth == 0 {
                values.append(current.trimmingCharacters(in: .whitespaces)); current = ""; continue
            }
            current.append(c)
        }
        if quote != nil { throw bad("unbalanced quote") }
        if depth != 0 { throw bad("unbalanced bracket") }
        values.append(current.trimmingCharacters(in: .whitespaces))
        if let i = values.firstIndex(where: \.isEmpty) { throw bad("value \(i + 1) is empty") }
        var seen = Set<String>()
        for v in values where !seen.insert(v).inserted { throw bad("the value \(v) is listed twice") }
        return (key, values)
    }

    /// A directory name for a run label: letters, digits and `._=+-` kept, every other
    /// character `_`; a name over 100 characters, or one an earlier label already took, gets
    /// `~N` (N = its position) so two values never share a directory.
    static func directoryName(_ label: String, index: Int, taken: Set<String>) -> String {
        var name = String(label.map { $0.isASCII && ($0.isLetter || $0.isNumber || "._=+-".contains($0)) ? $0 : "_" })
        if name.count > 100 { name = String(name.prefix(90)) + "~\(index)" }
        if taken.contains(name) || name == "." || name == ".." { name += "~\(index)" }
        return name
    }

    /// The run file's value of `key` (`SECTION.KEY`, `SECTION[N].KEY`) as short text: a
    /// string without quotes, a number, a boolean or an array of them; nil when absent (or a table).
    static func runFileValue(of key: String, text: String) -> String? {
        guard var table = try? ConfigTable(string: text, file: "") else { return nil }
        var parts = key.split(separator: ".").map(String.init)
        let last = parts.removeLast()
        for p in parts {
            if p.hasSuffix("]"), let open = p.firstIndex(of: "["), let n = Int(p[p.index(after: open)..<p.index(before: p.endIndex)]) {
                guard let all = try? table.tables(String(p[..<open])), n >= 0, n < all.count else { return nil }
                table = all[n]
            } else {
                guard let t = (try? table.table(p)) ?? nil else { return nil }
                table = t
            }
        }
        guard table.has(last) else { return nil }
        func number(_ d: Double) -> String { d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : "\(d)" }
        if let s = try? table.string(last) { return s }
        if let b = try? table.bool(last) { return b ? "true" : "false" }
        if let i = try? table.int(last) { return String(i) }
        if let d = try? table.double(last) { return "\(d)" }
        if let a = try? table.strings(last) { return "[" + a.joined(separator: ", ") + "]" }
        if let a = try? table.doubles(last) { return "[" + a.map(number).joined(separator: ", ") + "]" }
        return nil
    }
}

/// A canonical text of a parsed configuration, for "does this value change anything": every
/// stored property (recursively, in declaration order; dictionaries sorted, since two equal
/// dictionaries need not iterate alike; URLs as standardized paths), leaving out the
/// properties named in `ignoring` at the top level (the run file's own text).
func configurationFingerprint(_ value: Any, ignoring: Set<String> = []) -> String {
    if let u = value as? URL { return "url(" + u.standardizedFileURL.path + ")" }
    let m = Mirror(reflecting: value)
    switch m.displayStyle {
    case .optional:
        return m.children.first.map { "some(" + configurationFingerprint($0.value) + ")" } ?? "nil"
    case .dictionary:
        let entries = m.children.map { entry -> String in
            let pair = Array(Mirror(reflecting: entry.value).children)
            return pair.count == 2 ? configurationFingerprint(pair[0].value) + ":" + configurationFingerprint(pair[1].value) : configurationFingerprint(entry.value)
        }
        return "[" + entries.sorted().joined(separator: ",") + "]"
    case .collection, .set:
        let items = m.children.map { configurationFingerprint($0.value) }
        return "[" + (m.displayStyle == .set ? items.sorted() : items).joined(separator: ",") + "]"
    default:
        if m.children.isEmpty { return String(reflecting: value) }
        let fields = m.children.filter { !ignoring.contains($0.label ?? "") }.map { ($0.label ?? "_") + "=" + configurationFingerprint($0.value) }
        return "\(type(of: value))(" + fields.joined(separator: ",") + ")"
    }
}
