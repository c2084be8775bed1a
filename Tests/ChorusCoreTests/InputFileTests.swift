import ChorusCore
import ChorusTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `InputFile`, `UTF8Text` and `ResourceLimits`: the shared readers of user-named files and
/// the stated memory limit (issue 10, classes 4, 5, 9 and 11).
final class InputFileTests: XCTestCase {
    /// Missing files, directories, FIFOs and dangling links are refused by name, at once.
    func testNonRegularFilesAreRefused() throws {
        let dir = temporaryDirectory(self)
        let missing = dir.appendingPathComponent("missing.json").path
        assertThrows(try InputFile.read(missing), containing: ["missing.json", "no such file"])
        assertThrows(try InputFile.read(dir.path), containing: ["is a directory"])
        let fifo = dir.appendingPathComponent("pipe").path
        XCTAssertEqual(mkfifo(fifo, 0o644), 0)
        let t0 = Date()
        assertThrows(try InputFile.read(fifo), containing: ["pipe", "FIFO"])
        assertThrows(try InputFile.open(fifo), containing: ["FIFO"])
        XCTAssertLessThan(Date().timeIntervalSince(t0), 5, "must not block on a FIFO")
        assertThrows(try InputFile.read("/dev/zero"), containing: ["/dev/zero", "character device"])
        let link = dir.appendingPathComponent("dangling").path
        XCTAssertEqual(symlink("/nonexistent/chorus", link), 0)
        assertThrows(try InputFile.read(link), containing: ["dangling", "no such file"])
        let notDir = dir.appendingPathComponent("file").path
        try Data("x".utf8).write(to: URL(fileURLWithPath: notDir))
        assertThrows(try InputFile.read(notDir + "/inner"), containing: ["component of the path is not a directory"])
        assertThrows(try InputFile.checkDirectory(notDir, what: "model directory"), containing: ["model directory", "not a directory"])
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
        let dir = temporaryDirectory(self)
        let big = dir.appendingPathComponent("big.json").path
        let fd = open(big, O_WRONLY | O_CREAT, 0o644)
        XCTAssertEqual(ftruncate(fd, 64 << 30), 0)   // sparse: 64 GiB of holes, no disk used
        close(fd)
        assertThrows(try InputFile.read(big, limit: 16 << 20), containing: ["big.json", "64.0 GiB", "16.0 MiB"])
        setenv("CHORUS_MEMORY_LIMIT", "1G", 1)
        defer { unsetenv("CHORUS_MEMORY_LIMIT") }
        assertThrows(try InputFile.read(big), containing: ["big.json", "64.0 GiB", "1.0 GiB", "CHORUS_MEMORY_LIMIT"])
    }

    /// Invalid UTF-8 is an error naming the byte, offset and line; never replaced.
    func testInvalidUTF8IsRefusedNotReplaced() throws {
        let dir = temporaryDirectory(self)
        let f = dir.appendingPathComponent("text.txt")
        try Data("ok\nline two \u{e9}\nthird ".utf8 + [0xC3, 0x28] + Array(" end".utf8)).write(to: f)
        assertThrows(try InputFile.readText(f.path), containing: ["text.txt", "not valid UTF-8", "0xC3", "line 3"])
        XCTAssertEqual(UTF8Text.firstInvalidOffset(Array("h\u{e9}llo".utf8)), nil)
        XCTAssertEqual(UTF8Text.firstInvalidOffset([0x61, 0xFF]), 1)
        XCTAssertEqual(UTF8Text.firstInvalidOffset([0x61, 0xE2, 0x82]), 1, "a truncated sequence at the end")
        XCTAssertEqual(UTF8Text.firstInvalidOffset([0xED, 0xA0, 0x80]), 0, "an encoded surrogate")
        try Data("h\u{e9}llo \u{1F600}".utf8).write(to: f)
        XCTAssertEqual(try InputFile.readText(f.path), "h\u{e9}llo \u{1F600}")
    }

    /// `AtomicFile.write` replaces a file whole; a failed write is an `InputFileError` naming
    /// the target, the step and the cause in words, and leaves no temporary file behind.
    func testAtomicWriteReplacesOrFailsNamingTheCause() throws {
        let dir = temporaryDirectory(self)
        let good = dir.appendingPathComponent("good.bin")
        try AtomicFile.write(Data([1, 2, 3]), to: good)
        try AtomicFile.write([UInt8]([4, 5]), to: good)
        XCTAssertEqual(try InputFile.read(good.path), Data([4, 5]))
        assertThrows(try AtomicFile.write(Data([1]), to: dir.appendingPathComponent("missing/out.json")),
                     containing: ["missing/out.json", "write failed: cannot create", "no such file or directory"])
        let taken = dir.appendingPathComponent("taken")
        try FileManager.default.createDirectory(at: taken.appendingPathComponent("inner"), withIntermediateDirectories: true)
        assertThrows(try AtomicFile.write(Data([1]), to: taken), containing: ["taken", "write failed: rename", "directory"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), ["good.bin", "taken"])
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
        assertThrows(try ResourceLimits.check(bytes: 5e12, for: "KV caches"), containing: ["KV caches", "4.5 TiB", "1.0 MiB", "CHORUS_MEMORY_LIMIT"])
        assertThrows(try ResourceLimits.check(bytes: .infinity, for: "x"), containing: ["unbounded"])
        assertThrows(try ResourceLimits.check(bytes: .nan, for: "x"), containing: ["x"])
        setenv("CHORUS_MEMORY_LIMIT", "abc", 1)
        assertThrows(try ResourceLimits.current(), containing: ["CHORUS_MEMORY_LIMIT", "abc"])
    }
}
