import ChorusCore
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `InputFile`, `UTF8Text` and `ResourceLimits`: the shared readers of user-named files and
/// the stated memory limit (issue 10, classes 4, 5, 9 and 11).
final class InputFileTests: XCTestCase {
    func tempDir() throws -> URL {
        let u = FileManager.default.temporaryDirectory.appendingPathComponent("chorus-core-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: u) }
        return u
    }

    func assertProblem(_ body: @autoclosure () throws -> Any, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try body()
            XCTFail("expected an error containing \(fragments)", file: file, line: line)
        } catch {
            let m = "\(error)"
            for f in fragments { XCTAssertTrue(m.contains(f), "'\(m)' lacks '\(f)'", file: file, line: line) }
            XCTAssertFalse(m.contains("\n"), file: file, line: line)
        }
    }

    /// Missing files, directories, FIFOs and dangling links are refused by name, at once.
    func testNonRegularFilesAreRefused() throws {
        let dir = try tempDir()
        let missing = dir.appendingPathComponent("missing.json").path
        assertProblem(try InputFile.read(missing), ["missing.json", "no such file"])
        assertProblem(try InputFile.read(dir.path), ["is a directory"])
        let fifo = dir.appendingPathComponent("pipe").path
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        let t0 = Date()
        assertProblem(try InputFile.read(fifo), ["pipe", "FIFO"])
        assertProblem(try InputFile.open(fifo), ["FIFO"])
        XCTAssertLessThan(Date().timeIntervalSince(t0), 5, "must not block on a FIFO")
        assertProblem(try InputFile.read("/dev/zero"), ["/dev/zero", "character device"])
        let link = dir.appendingPathComponent("dangling").path
        XCTAssertEqual(symlink("/nonexistent/chorus", link), 0)
        assertProblem(try InputFile.read(link), ["dangling", "no such file"])
        let notDir = dir.appendingPathComponent("file").path
        try Data("x".utf8).write(to: URL(fileURLWithPath: notDir))
        assertProblem(try InputFile.read(notDir + "/inner"), ["component of the path is not a directory"])
        assertProblem(try InputFile.checkDirectory(notDir, what: "model directory"), ["model directory", "not a directory"])
        // A regular file reads back exactly, through a link too.
        let good = dir.appendingPathComponent("good").path
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: good))
        XCTAssertEqual(try InputFile.read(good), Data([1, 2, 3]))
        XCTAssertEqual(symlink(good, dir.appendingPathComponent("link").path), 0)
        XCTAssertEqual(try InputFile.read(dir.appendingPathComponent("link").path), Data([1, 2, 3]))
        let empty = dir.appendingPathComponent("empty").path
        try Data().write(to: URL(fileURLWithPath: empty))
        XCTAssertEqual(try InputFile.read(empty), Data())
    }

    /// A file larger than the stated bound is refused with both sizes, before it is read.
    func testHugeFilesAreRefusedBeforeReading() throws {
        let dir = try tempDir()
        let big = dir.appendingPathComponent("big.json").path
        let fd = open(big, O_WRONLY | O_CREAT, 0o644)
        XCTAssertEqual(ftruncate(fd, 64 << 30), 0)   // sparse: 64 GiB of holes, no disk used
        close(fd)
        assertProblem(try InputFile.read(big, limit: 16 << 20), ["big.json", "64.0 GiB", "16.0 MiB"])
        setenv("CHORUS_MEMORY_LIMIT", "1G", 1)
        defer { unsetenv("CHORUS_MEMORY_LIMIT") }
        assertProblem(try InputFile.read(big), ["big.json", "64.0 GiB", "1.0 GiB", "CHORUS_MEMORY_LIMIT"])
    }

    /// Invalid UTF-8 is an error naming the byte, offset and line; never replaced.
    func testInvalidUTF8IsRefusedNotReplaced() throws {
        let dir = try tempDir()
        let f = dir.appendingPathComponent("text.txt")
        try Data("ok\nline two \u{e9}\nthird ".utf8 + [0xC3, 0x28] + Array(" end".utf8)).write(to: f)
        assertProblem(try InputFile.readText(f.path), ["text.txt", "not valid UTF-8", "0xC3", "line 3"])
        XCTAssertEqual(UTF8Text.firstInvalidOffset(Array("h\u{e9}llo".utf8)), nil)
        XCTAssertEqual(UTF8Text.firstInvalidOffset([0x61, 0xFF]), 1)
        XCTAssertEqual(UTF8Text.firstInvalidOffset([0x61, 0xE2, 0x82]), 1, "a truncated sequence at the end")
        XCTAssertEqual(UTF8Text.firstInvalidOffset([0xED, 0xA0, 0x80]), 0, "an encoded surrogate")
        try Data("h\u{e9}llo \u{1F600}".utf8).write(to: f)
        XCTAssertEqual(try InputFile.readText(f.path), "h\u{e9}llo \u{1F600}")
    }

    /// The memory limit: parsed sizes, the environment override, and one-line refusals.
    func testResourceLimits() throws {
        XCTAssertEqual(ResourceLimits.parseSize("512"), 512)
        XCTAssertEqual(ResourceLimits.parseSize("8G"), 8 << 30)
        XCTAssertEqual(ResourceLimits.parseSize("3MiB"), 3 << 20)
        XCTAssertEqual(ResourceLimits.parseSize("2tb"), 2 << 40)
        for bad in ["", "0", "-5", "lots", "1.5G", "99999999999T"] { XCTAssertNil(ResourceLimits.parseSize(bad), bad) }
        XCTAssertGreaterThan(ResourceLimits.machineMemory, 1 << 20)
        unsetenv("CHORUS_MEMORY_LIMIT")
        XCTAssertEqual(try ResourceLimits.current().source, "physical memory")
        setenv("CHORUS_MEMORY_LIMIT", "1M", 1)
        defer { unsetenv("CHORUS_MEMORY_LIMIT") }
        XCTAssertEqual(try ResourceLimits.current().bytes, 1 << 20)
        XCTAssertNoThrow(try ResourceLimits.check(bytes: 1000, for: "small"))
        assertProblem(try ResourceLimits.check(bytes: 5e12, for: "KV caches"), ["KV caches", "4.5 TiB", "1.0 MiB", "CHORUS_MEMORY_LIMIT"])
        assertProblem(try ResourceLimits.check(bytes: .infinity, for: "x"), ["unbounded"])
        assertProblem(try ResourceLimits.check(bytes: .nan, for: "x"), ["x"])
        setenv("CHORUS_MEMORY_LIMIT", "abc", 1)
        assertProblem(try ResourceLimits.current(), ["CHORUS_MEMORY_LIMIT", "abc"])
    }
}
