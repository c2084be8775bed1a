import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An allocation whose size comes from input and exceeds the stated limit: one line naming
/// what was asked for, its size and the limit.
public struct ResourceError: Error, CustomStringConvertible, Equatable {
    /// What the memory was for ("KV caches for 1000000000016 positions").
    public let what: String
    /// The requested size in bytes (a Double: requests may exceed Int).
    public let bytes: Double
    /// The limit in bytes.
    public let limit: Int
    /// Where the limit comes from ("physical memory" or "CHORUS_MEMORY_LIMIT").
    public let source: String
    public init(what: String, bytes: Double, limit: Int, source: String) {
        self.what = what; self.bytes = bytes; self.limit = limit; self.source = source
    }
    public var description: String {
        "\(what) needs \(ResourceLimits.format(bytes: bytes)), more than the memory limit of "
            + "\(ResourceLimits.format(bytes: Double(limit))) (\(source)); ask for less"
            + (source == "CHORUS_MEMORY_LIMIT" ? " or raise CHORUS_MEMORY_LIMIT" : " or set CHORUS_MEMORY_LIMIT")
    }
}

/// The stated cap on allocations whose size comes from input (command-line sizes, run files,
/// config.json, file headers).
///
/// The limit is the machine's memory: physical RAM, or the cgroup limit of the container when
/// that is lower. `CHORUS_MEMORY_LIMIT` (bytes, or with a K/M/G/T suffix, powers of 1024)
/// overrides it, up or down. Callers estimate what an operation will hold at once and call
/// `check` before allocating, so an absurd request fails with one line instead of a crash or
/// the OOM killer. Estimates err on the high side; they are not an accounting of every byte.
public enum ResourceLimits {
    /// Physical memory in bytes, or the cgroup (v2 or v1) memory limit when lower.
    public static let machineMemory: Int = {
        var bytes = Int(sysconf(Int32(_SC_PHYS_PAGES))) &* Int(sysconf(Int32(_SC_PAGESIZE)))
        if bytes <= 0 { bytes = Int.max }
        for file in ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"] {
            if let text = try? String(contentsOfFile: file, encoding: .utf8),
               let v = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), v > 0 {
                bytes = min(bytes, v)
            }
        }
        return bytes
    }()

    /// Parses a size: digits with an optional K, M, G or T suffix (powers of 1024) and an
    /// optional trailing "B"/"iB". Nil when it is not one.
    public static func parseSize(_ text: String) -> Int? {
        var s = text.trimmingCharacters(in: .whitespaces).uppercased()
        if s.hasSuffix("IB") { s.removeLast(2) } else if s.hasSuffix("B") { s.removeLast() }
        var scale = 1
        if let last = s.last, let i = "KMGT".firstIndex(of: last) {
            scale = 1 << (10 * ("KMGT".distance(from: "KMGT".startIndex, to: i) + 1))
            s.removeLast()
        }
        guard let v = Int(s), v > 0 else { return nil }
        let (r, overflow) = v.multipliedReportingOverflow(by: scale)
        return overflow ? nil : r
    }

    /// The limit in bytes and where it comes from, or an error when `CHORUS_MEMORY_LIMIT` is set
    /// but not a size.
    public static func current() throws -> (bytes: Int, source: String) {
        if let s = ProcessInfo.processInfo.environment["CHORUS_MEMORY_LIMIT"] {
            guard let v = parseSize(s) else { throw EnvironmentError(variable: "CHORUS_MEMORY_LIMIT", value: s, expected: "a size in bytes, e.g. 8G or 512M") }
            return (v, "CHORUS_MEMORY_LIMIT")
        }
        return (machineMemory, "physical memory")
    }

    /// Throws `ResourceError` when `bytes` exceeds the limit. `what` says what it is for.
    public static func check(bytes: Double, for what: String) throws {
        let (limit, source) = try current()
        if !(bytes <= Double(limit)) { throw ResourceError(what: what, bytes: bytes, limit: limit, source: source) }
    }

    /// Whether `bytes` fits the limit (an unparsable CHORUS_MEMORY_LIMIT counts as no fit).
    public static func fits(bytes: Double) -> Bool { (try? check(bytes: bytes, for: "")) != nil }

    /// "1.5 GiB"-style text for a byte count.
    public static func format(bytes: Double) -> String {
        guard bytes.isFinite else { return "an unbounded amount of memory" }
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var v = bytes, u = 0
        while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
        if u == 0 { return "\(Int(v)) bytes" }
        if v >= 1e6 { return String(format: "%.3g %@", v, units[u]) }   // beyond EiB
        return String(format: "%.1f %@", v, units[u])
    }
}

/// An environment variable Chorus reads with a value it cannot use.
public struct EnvironmentError: Error, CustomStringConvertible, Equatable {
    public let variable: String
    public let value: String
    public let expected: String
    public init(variable: String, value: String, expected: String) {
        self.variable = variable; self.value = value; self.expected = expected
    }
    public var description: String { "environment variable \(variable)='\(value)' is not \(expected)" }
}
