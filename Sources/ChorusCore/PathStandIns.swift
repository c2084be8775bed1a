import Foundation

/// Paths that stand in for non-UTF-8 paths given on the command line.
///
/// Swift strings cannot hold a path such as `run-\xFF.toml` byte for byte, so the `chorus`
/// command line opens such a path with `O_PATH` and uses `/proc/self/fd/N` in its place
/// (`RawArguments` in the executable). Two things then need to know the original: messages,
/// which must name the path the user gave, and relative paths inside a run file or manifest,
/// which resolve against the file's directory — and the directory of `/proc/self/fd/N` is not
/// `/proc/self/fd`. This registry keeps both mappings.
public enum PathStandIns {
    nonisolated(unsafe) private static var displays: [(standIn: String, display: String)] = []
    nonisolated(unsafe) private static var parents: [String: String] = [:]
    private static let lock = NSLock()

    /// Records that `standIn` (`/proc/self/fd/N`) stands for the path shown as `display`
    /// (invalid bytes written as `\xNN`), and, when it stands for a file rather than a
    /// directory, the path (plain or itself a stand-in) of the directory holding it.
    public static func register(standIn: String, display: String, parent: String?) {
        lock.lock(); defer { lock.unlock() }
        displays.append((standIn, display))
        if let parent { parents[standIn] = parent }
    }

    /// The directory that relative paths inside the file `url` resolve against: the registered
    /// parent when `url` is (or starts with) a stand-in for a file, else the usual
    /// `url.deletingLastPathComponent()`.
    public static func directory(of url: URL) -> URL {
        lock.lock(); defer { lock.unlock() }
        if let p = parents[url.path] { return URL(fileURLWithPath: p, isDirectory: true) }
        return url.deletingLastPathComponent()
    }

    /// `text` with every stand-in replaced by the path it stands for.
    public static func restore(_ text: String) -> String {
        lock.lock(); defer { lock.unlock() }
        var t = text
        // Longest first, so /proc/self/fd/12 is not taken for /proc/self/fd/1.
        for s in displays.sorted(by: { $0.standIn.count > $1.standIn.count }) {
            t = t.replacingOccurrences(of: s.standIn, with: s.display)
        }
        return t
    }
}
