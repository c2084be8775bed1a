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

/// Runs `chorus` with raw byte-string arguments (which `Process` cannot pass: it takes Swift
/// strings, which are always valid UTF-8), for the tests of non-UTF-8 paths. Returns (exit
/// status, stdout, stderr); stdout and stderr go through temporary files.
public func runChorusRaw(_ args: [[UInt8]], file: StaticString = #filePath, line: UInt = #line) throws -> (Int32, String, String) {
    guard let exe = chorusExecutable(file: file, line: line) else { throw CocoaError(.fileNoSuchFile) }
    let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("chorus-raw-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: tmp) }
    let outPath = tmp.appendingPathComponent("out").path, errPath = tmp.appendingPathComponent("err").path
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    let all = [Array(exe.path.utf8)] + args
    let cArgs: [UnsafeMutablePointer<CChar>?] = all.map { bytes in
        let p = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
        for (i, b) in bytes.enumerated() { p[i] = CChar(bitPattern: b) }
        p[bytes.count] = 0
        return p
    } + [nil]
    defer { for p in cArgs { p?.deallocate() } }
    var env = ProcessInfo.processInfo.environment
    env["CHORUS_THREADS"] = "2"
    let cEnv: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer { for p in cEnv { free(p) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, exe.path, &actions, nil, cArgs, cEnv)
    guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EINVAL) }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    let err = String(decoding: (try? Data(contentsOf: URL(fileURLWithPath: errPath))) ?? Data(), as: UTF8.self)
    return (code, out, err)
}

/// Asserts a failed `chorus` run: non-zero exit by status (not a signal), nothing on stdout,
/// exactly one line on stderr containing every fragment.
public func assertOneLineFailure(_ result: (Int32, String, String), containing fragments: [String], _ what: String = "",
                                 file: StaticString = #filePath, line: UInt = #line) {
    let (status, out, err) = result
    XCTAssertNotEqual(status, 0, "\(what) should fail: \(err)", file: file, line: line)
    XCTAssertLessThan(status, 128, "\(what) terminated by a signal: \(err)", file: file, line: line)
    XCTAssertTrue(out.isEmpty, "\(what): no stdout on error: \(out)", file: file, line: line)
    let lines = err.split(separator: "\n").filter { !$0.isEmpty }
    XCTAssertEqual(lines.count, 1, "\(what): one-line error expected: \(err)", file: file, line: line)
    for f in fragments { XCTAssertTrue(err.contains(f), "\(what): error should contain '\(f)': \(err)", file: file, line: line) }
}

/// Starts `chorus` again and again, killing each start with SIGKILL after a random pause, until
/// the run directory `runDirectory` holds `final/model.safetensors` (the kill tests of `chorus
/// sft` and `chorus train`). `arguments(resume)` gives each start's arguments: `resume` is true
/// once `runDirectory/run.toml` records the run (a start killed before writing it starts afresh).
/// The pause is `pause.base + random(0..<pause.jitter) + attempt · 100 ms` microseconds, growing
/// so the run finishes even on a loaded machine. `environment` entries are added to the
/// inherited environment (nil: inherited as is). Returns the number of kills, or nil after failing the test when
/// the run has not finished after `maxAttempts` starts.
public func killAndResumeUntilFinished(runDirectory: URL, environment: [String: String]? = nil,
                                       pause: (base: Int, jitter: Int), maxAttempts: Int = 60,
                                       file: StaticString = #filePath, line: UInt = #line,
                                       arguments: (_ resume: Bool) -> [String]) throws -> Int? {
    guard let exe = chorusExecutable(file: file, line: line) else { return nil }
    let finished = runDirectory.appendingPathComponent("final/model.safetensors").path
    var kills = 0, attempt = 0
    while !FileManager.default.fileExists(atPath: finished) {
        attempt += 1
        if attempt >= maxAttempts {
            XCTFail("run never finished (\(maxAttempts - 1) starts, \(kills) kills)", file: file, line: line)
            return nil
        }
        let p = Process()
        p.executableURL = exe
        p.arguments = arguments(FileManager.default.fileExists(atPath: runDirectory.appendingPathComponent("run.toml").path))
        // Added to this process's environment, not instead of it: OpenBLAS picks its kernels
        // from OPENBLAS_CORETYPE when set (else by CPU), and the resumed runs are compared bit
        // for bit with an in-process run that saw the same variables.
        if let environment { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        p.standardError = FileHandle.nullDevice
        try p.run()
        usleep(UInt32(pause.base + Int.random(in: 0..<pause.jitter) + attempt * 100_000))
        if p.isRunning { kill(p.processIdentifier, SIGKILL); kills += 1 }
        p.waitUntilExit()
    }
    return kills
}

/// A value in a test's teacher-pool manifest: a string (written as a TOML basic string, with
/// `\`, `"`, newline and tab escaped) or a number (written as given).
public enum ManifestValue: ExpressibleByStringInterpolation, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral {
    case string(String)
    case number(String)

    public init(stringLiteral value: String) { self = .string(value) }
    public init(stringInterpolation: DefaultStringInterpolation) { self = .string(String(stringInterpolation: stringInterpolation)) }
    public init(integerLiteral value: Int) { self = .number(String(value)) }
    public init(floatLiteral value: Double) { self = .number(String(value)) }

    /// The value as TOML.
    public var toml: String {
        switch self {
        case let .number(n): return n
        case let .string(s):
            var out = "\""
            for c in s {
                switch c {
                case "\\": out += "\\\\"
                case "\"": out += "\\\""
                case "\n": out += "\\n"
                case "\t": out += "\\t"
                default: out.append(c)
                }
            }
            return out + "\""
        }
    }
}

/// Writes a teacher-pool manifest (docs/teachers.md) to `url`: `student = "…"` when given, then
/// one `[[teacher]]` table per entry, its keys in the order given. Returns `url`.
@discardableResult
public func writePoolManifest(_ url: URL, student: String? = nil,
                              teachers: [KeyValuePairs<String, ManifestValue>]) throws -> URL {
    var lines: [String] = []
    if let student { lines.append("student = \(ManifestValue.string(student).toml)") }
    for table in teachers {
        lines.append("[[teacher]]")
        for (key, value) in table { lines.append("\(key) = \(value.toml)") }
    }
    try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
    return url
}
