import Foundation
import XCTest

// Helpers shared by every test target: temporary directories and running the built `chorus`
// executable (tests of the command-line contracts, crash and concurrency tests).

/// A fresh, created temporary directory, removed at the end of the test.
public func temporaryDirectory(_ test: XCTestCase) -> URL {
    let u = FileManager.default.temporaryDirectory.appendingPathComponent("chorus-test-\(getpid())-\(UUID().uuidString)")
    try! FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: u) }
    return u
}

/// The `chorus` executable, which `swift build --build-tests` (and so `make test`) builds next
/// to the test bundle. Fails the test, naming the places searched, when it is missing.
public func chorusExecutable(file: StaticString = #filePath, line: UInt = #line) -> URL? {
    var candidates = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(), Bundle.main.bundleURL]
    if let exe = Bundle.main.executableURL { candidates.append(exe.deletingLastPathComponent()) }
    for dir in candidates {
        for d in [dir, dir.deletingLastPathComponent()] {
            let exe = d.appendingPathComponent("chorus")
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: exe.path, isDirectory: &isDir), !isDir.boolValue { return exe }
        }
    }
    XCTFail("chorus executable not found next to the test bundle (looked in \(candidates.map(\.path))); "
            + "build it with `swift build --build-tests` (make test does)", file: file, line: line)
    return nil
}

/// Runs `chorus ARGS` to completion and returns (exit status, stdout, stderr). Both pipes are
/// drained concurrently, so a chatty stderr cannot block the child. `environment` entries are
/// added to the inherited environment; by default CHORUS_THREADS=2 so results do not depend on
/// the machine's core count.
public func runChorus(_ args: [String], environment: [String: String] = ["CHORUS_THREADS": "2"],
                      file: StaticString = #filePath, line: UInt = #line) throws -> (Int32, String, String) {
    guard let exe = chorusExecutable(file: file, line: line) else { throw CocoaError(.fileNoSuchFile) }
    let p = Process()
    p.executableURL = exe
    p.arguments = args
    if !environment.isEmpty {
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    final class Box: @unchecked Sendable { var data = Data() }   // written once, read after wait()
    let errBox = Box()
    let drained = DispatchSemaphore(value: 0)
    DispatchQueue.global().async {
        errBox.data = err.fileHandleForReading.readDataToEndOfFile()
        drained.signal()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    drained.wait()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errBox.data, as: UTF8.self))
}

/// Asserts that `body` throws an error whose description contains every fragment and is one
/// line (the CLI prints errors as a single line).
public func assertThrows<T>(_ body: @autoclosure () throws -> T, containing fragments: [String],
                            file: StaticString = #filePath, line: UInt = #line) {
    do {
        _ = try body()
        XCTFail("expected an error containing \(fragments)", file: file, line: line)
    } catch {
        let msg = "\(error)"
        for f in fragments { XCTAssertTrue(msg.contains(f), "error '\(msg)' lacks '\(f)'", file: file, line: line) }
        XCTAssertFalse(msg.contains("\n"), "error message must be one line: \(msg)", file: file, line: line)
    }
}

/// Largest absolute difference of two arrays, asserting equal lengths first (a `zip` over
/// arrays of different lengths would silently compare only the common prefix). Returns
/// infinity on a length mismatch or where exactly one side is NaN.
public func maxAbsDiff(_ a: [Float], _ b: [Float], file: StaticString = #filePath, line: UInt = #line) -> Float {
    XCTAssertEqual(a.count, b.count, "length mismatch", file: file, line: line)
    if a.count != b.count { return .infinity }
    var m: Float = 0
    for (x, y) in zip(a, b) { m = max(m, abs(x - y)); if x.isNaN != y.isNaN { return .infinity } }
    return m
}

/// A committed fixture that holds no cases (an empty expected file must not pass).
public enum FixtureError: Error, CustomStringConvertible {
    case noCases(String)
    public var description: String {
        switch self { case let .noCases(p): return "\(p): the fixture holds no cases (regenerate it with its make_fixtures.py)" }
    }
}
