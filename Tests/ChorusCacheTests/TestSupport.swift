import Foundation
import ChorusTestSupport
import XCTest
@testable import ChorusCache

/// A cache directory path (not yet created) inside a fresh temporary directory.
func cacheDirectory(_ test: XCTestCase, _ name: String = "cache") -> URL {
    temporaryDirectory(test).appendingPathComponent(name)
}

/// Collects the problems a cache reports instead of printing them.
final class ProblemLog: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [String] = []
    func add(_ s: String) { lock.lock(); items.append(s); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return items }
}

func openCache(_ url: URL, readOnly: Bool = false, maxSegmentBytes: Int = 64 << 20) throws -> (ScoreCache, ProblemLog) {
    let log = ProblemLog()
    let cache = try ScoreCache(directory: url, readOnly: readOnly, maxSegmentBytes: maxSegmentBytes, onProblem: { log.add($0) })
    return (cache, log)
}

/// Segment files of a cache, ascending.
func segmentFiles(_ url: URL) -> [URL] {
    let dir = url.appendingPathComponent("segments")
    let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
    return names.filter { $0.hasSuffix(".seg") }.sorted().map { dir.appendingPathComponent($0) }
}

/// A child process whose stdout lines are collected as they arrive.
final class Child: @unchecked Sendable {
    let process = Process()
    private let lock = NSLock()
    private var buffer = Data()
    private var errBuffer = Data()

    init(_ exe: URL, _ arguments: [String]) throws {
        process.executableURL = exe
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        out.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self else { return }
            self.lock.lock(); self.buffer.append(d); self.lock.unlock()
        }
        err.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self else { return }
            self.lock.lock(); self.errBuffer.append(d); self.lock.unlock()
        }
        try process.run()
    }

    var output: String { lock.lock(); defer { lock.unlock() }; return String(decoding: buffer, as: UTF8.self) }
    var errorOutput: String { lock.lock(); defer { lock.unlock() }; return String(decoding: errBuffer, as: UTF8.self) }

    /// Indices acknowledged with "stored I" lines (complete lines only).
    var storedIndices: [Int] {
        output.split(separator: "\n", omittingEmptySubsequences: true).compactMap { line in
            line.hasPrefix("stored ") ? Int(line.dropFirst(7)) : nil
        }
    }

    /// Waits for exit, then a moment for the pipes to drain.
    func wait() {
        process.waitUntilExit()
        Thread.sleep(forTimeInterval: 0.05)
    }
}

/// Runs the chorus executable to completion; returns (status, stdout, stderr).
func runChorus(_ exe: URL, _ arguments: [String]) throws -> (Int32, String, String) {
    let child = try Child(exe, arguments)
    child.wait()
    return (child.process.terminationStatus, child.output, child.errorOutput)
}
