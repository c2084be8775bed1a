import Foundation
import TOMLKit

/// A configuration file error; one line naming the file, the key and the problem.
public struct ConfigFileError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ file: String, _ message: String) { description = "\(file): \(message)" }
}

/// Strict, typed access to one TOML table: every read names its dotted key in errors, and
/// `finish()` rejects keys nobody read (a misspelt option is an error, never ignored).
public final class ConfigTable {
    let table: TOMLTable
    let file: String
    let path: String
    private var used = Set<String>()

    /// Parses a TOML file.
    public convenience init(contentsOf url: URL) throws {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw ConfigFileError(url.path, "cannot read file")
        }
        try self.init(string: text, file: url.path)
    }

    /// Parses TOML text; `file` names it in errors.
    public init(string: String, file: String) throws {
        do { table = try TOMLTable(string: string) } catch let e as TOMLParseError {
            throw ConfigFileError(file, "TOML syntax error at line \(e.source.begin.line), column \(e.source.begin.column): \(e.description)")
        } catch { throw ConfigFileError(file, "invalid TOML") }
        self.file = file
        self.path = ""
    }

    init(table: TOMLTable, file: String, path: String) {
        self.table = table; self.file = file; self.path = path
    }

    func key(_ k: String) -> String { path.isEmpty ? k : path + "." + k }

    /// Whether the key is present.
    public func has(_ k: String) -> Bool { table[k] != nil }

    /// A sub-table (`[name]`), or nil when absent.
    public func table(_ k: String) throws -> ConfigTable? {
        guard let v = table[k] else { return nil }
        used.insert(k)
        guard let t = v.table else { throw ConfigFileError(file, "'\(key(k))' must be a table") }
        return ConfigTable(table: t, file: file, path: key(k))
    }

    /// An array of tables (`[[name]]`), empty when absent.
    public func tables(_ k: String) throws -> [ConfigTable] {
        guard let v = table[k] else { return [] }
        used.insert(k)
        guard let a = v.array else { throw ConfigFileError(file, "'\(key(k))' must be an array of tables") }
        return try a.enumerated().map { i, e in
            guard let t = e.table else { throw ConfigFileError(file, "'\(key(k))[\(i)]' must be a table") }
            return ConfigTable(table: t, file: file, path: "\(key(k))[\(i)]")
        }
    }

    /// A string value.
    public func string(_ k: String) throws -> String? {
        guard let v = table[k] else { return nil }
        used.insert(k)
        guard let s = v.string else { throw ConfigFileError(file, "'\(key(k))' must be a string") }
        return s
    }

    /// An integer value, optionally range-checked.
    public func int(_ k: String, min lo: Int? = nil, max hi: Int? = nil) throws -> Int? {
        guard let v = table[k] else { return nil }
        used.insert(k)
        guard let i = v.int else { throw ConfigFileError(file, "'\(key(k))' must be an integer") }
        if let lo, i < lo { throw ConfigFileError(file, "'\(key(k))' must be >= \(lo), got \(i)") }
        if let hi, i > hi { throw ConfigFileError(file, "'\(key(k))' must be <= \(hi), got \(i)") }
        return i
    }

    /// A number (integers accepted), optionally range-checked.
    public func double(_ k: String, min lo: Double? = nil, max hi: Double? = nil) throws -> Double? {
        guard let v = table[k] else { return nil }
        used.insert(k)
        guard let d = v.double ?? v.int.map(Double.init) else { throw ConfigFileError(file, "'\(key(k))' must be a number") }
        if !d.isFinite { throw ConfigFileError(file, "'\(key(k))' must be finite") }
        if let lo, d < lo { throw ConfigFileError(file, "'\(key(k))' must be >= \(lo), got \(d)") }
        if let hi, d > hi { throw ConfigFileError(file, "'\(key(k))' must be <= \(hi), got \(d)") }
        return d
    }

    /// A boolean value.
    public func bool(_ k: String) throws -> Bool? {
        guard let v = table[k] else { return nil }
        used.insert(k)
        guard let b = v.bool else { throw ConfigFileError(file, "'\(key(k))' must be true or false") }
        return b
    }

    /// A string that must be one of `choices`.
    public func choice(_ k: String, _ choices: [String]) throws -> String? {
        guard let s = try string(k) else { return nil }
        if !choices.contains(s) {
            throw ConfigFileError(file, "'\(key(k))' = \"\(s)\" is not one of: \(choices.joined(separator: ", "))")
        }
        return s
    }

    /// Throws if the table has keys that were never read.
    public func finish() throws {
        for k in table.keys.sorted() where !used.contains(k) {
            throw ConfigFileError(file, "unknown key '\(key(k))'")
        }
    }

    /// A required value: throws naming the key when absent.
    public func required<T>(_ k: String, _ value: T?) throws -> T {
        guard let v = value else { throw ConfigFileError(file, "missing required key '\(key(k))'") }
        return v
    }
}
