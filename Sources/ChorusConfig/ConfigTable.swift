import ChorusCore
import Foundation
import TOMLKit

/// A configuration file error (run file, pool manifest); one line naming the file, the key
/// (dotted, e.g. `teacher[1].weight`) and the problem: `FILE: KEY: REASON`.
public struct ConfigFileError: Error, CustomStringConvertible, Equatable {
    public let file: String
    /// The dotted key, nil for an error about the whole file.
    public let key: String?
    public let reason: String
    public init(file: String, key: String?, reason: String) {
        self.file = file
        self.key = key
        self.reason = reason
    }
    /// An error about the file (or one whose message names its keys itself).
    public init(_ file: String, _ message: String) { self.init(file: file, key: nil, reason: message) }
    public var description: String { key.map { "\(file): \($0): \(reason)" } ?? "\(file): \(reason)" }
}

/// Strict, typed access to one TOML table: every read names its dotted key in errors, and
/// `finish()` rejects keys nobody read (a misspelt option is an error, never ignored). The one
/// TOML reader of Chorus: run files and teacher-pool manifests.
public final class ConfigTable {
    let table: TOMLTable
    /// The file, as errors name it.
    public let file: String
    /// The dotted path of this table ("" for the root).
    public let path: String
    /// Shown after every key of this table in errors, e.g. "('small')" for a named entry.
    public var label: String?
    private var used = Set<String>()
    /// Keys a reader asked for, present or not: the allowed keys `finish()` lists.
    private var asked: [String] = []

    /// Parses a TOML file.
    public convenience init(contentsOf url: URL) throws {
        // A regular UTF-8 file only; the message says why not (missing, a directory, ...).
        let text: String
        do { text = try InputFile.readText(url.path) } catch let e as InputFileError { throw ConfigFileError(url.path, e.problem) }
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

    /// The dotted key of `k` in this table, as errors name it.
    public func key(_ k: String) -> String {
        (path.isEmpty ? k : path + "." + k) + (label.map { " " + $0 } ?? "")
    }

    /// An error about key `k` of this table.
    public func error(_ k: String, _ reason: String) -> ConfigFileError {
        ConfigFileError(file: file, key: key(k), reason: reason)
    }

    /// Whether the key is present.
    public func has(_ k: String) -> Bool { table[k] != nil }

    /// The keys present in this table, sorted: for tables whose keys are names the reader
    /// does not know in advance (a curriculum stage's weight per teacher). Reading a key
    /// still marks it used; `finish()` still rejects the ones nobody read.
    public var keys: [String] { table.keys.sorted() }

    /// The value of `k`, recording that it was asked for and, when present, used.
    private func value(_ k: String) -> TOMLValueConvertible? {
        if !asked.contains(k) { asked.append(k) }
        guard let v = table[k] else { return nil }
        used.insert(k)
        return v
    }

    /// A sub-table (`[name]`), or nil when absent.
    public func table(_ k: String) throws -> ConfigTable? {
        guard let v = value(k) else { return nil }
        guard let t = v.table else { throw error(k, "must be a table") }
        return ConfigTable(table: t, file: file, path: key(k))
    }

    /// An array of tables (`[[name]]`), empty when absent.
    public func tables(_ k: String) throws -> [ConfigTable] {
        guard let v = value(k) else { return [] }
        guard let a = v.array else { throw error(k, "must be an array of tables") }
        return try a.enumerated().map { i, e in
            guard let t = e.table else { throw ConfigFileError(file: file, key: "\(key(k))[\(i)]", reason: "must be a table") }
            return ConfigTable(table: t, file: file, path: "\(key(k))[\(i)]")
        }
    }

    /// A string value.
    public func string(_ k: String) throws -> String? {
        guard let v = value(k) else { return nil }
        guard let s = v.string else { throw error(k, "must be a string") }
        return s
    }

    /// An integer value, optionally range-checked.
    public func int(_ k: String, min lo: Int? = nil, max hi: Int? = nil) throws -> Int? {
        guard let v = value(k) else { return nil }
        guard let i = v.int else { throw error(k, "must be an integer") }
        if let lo, i < lo { throw error(k, "must be >= \(lo), got \(i)") }
        if let hi, i > hi { throw error(k, "must be <= \(hi), got \(i)") }
        return i
    }

    /// A number (integers accepted), optionally range-checked.
    public func double(_ k: String, min lo: Double? = nil, max hi: Double? = nil) throws -> Double? {
        guard let v = value(k) else { return nil }
        guard let d = v.double ?? v.int.map(Double.init) else { throw error(k, "must be a number") }
        if !d.isFinite { throw error(k, "must be finite") }
        if let lo, d < lo { throw error(k, "must be >= \(lo), got \(d)") }
        if let hi, d > hi { throw error(k, "must be <= \(hi), got \(d)") }
        return d
    }

    /// An array of finite numbers (integers accepted).
    public func doubles(_ k: String) throws -> [Double]? {
        guard let v = value(k) else { return nil }
        guard let a = v.array else { throw error(k, "must be an array of numbers") }
        return try a.enumerated().map { i, e in
            guard let d = e.double ?? e.int.map(Double.init), d.isFinite else { throw error(k, "element \(i) must be a finite number") }
            return d
        }
    }

    /// An array of strings.
    public func strings(_ k: String) throws -> [String]? {
        guard let v = value(k) else { return nil }
        guard let a = v.array else { throw error(k, "must be an array of strings") }
        return try a.enumerated().map { i, e in
            guard let s = e.string else { throw error(k, "element \(i) must be a string") }
            return s
        }
    }

    /// A boolean value.
    public func bool(_ k: String) throws -> Bool? {
        guard let v = value(k) else { return nil }
        guard let b = v.bool else { throw error(k, "must be true or false") }
        return b
    }

    /// A string that must be one of `choices`.
    public func choice(_ k: String, _ choices: [String]) throws -> String? {
        guard let s = try string(k) else { return nil }
        if !choices.contains(s) {
            throw error(k, "\"\(s)\" is not one of: \(choices.joined(separator: ", "))")
        }
        return s
    }

    /// Throws if the table has keys that were never read.
    public func finish() throws {
        for k in table.keys.sorted() where !used.contains(k) {
            throw error(k, "unknown key" + (asked.isEmpty ? "" : " (allowed: \(asked.joined(separator: ", ")))"))
        }
    }

    /// A required value: throws naming the key when absent.
    public func required<T>(_ k: String, _ value: T?) throws -> T {
        guard let v = value else { throw error(k, "missing required key") }
        return v
    }
}
