import ChorusTasks
import ChorusTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `PromptDataset`: what it accepts, and a one-line error naming FILE:LINE and the field for
/// everything it refuses.
final class PromptDatasetTests: XCTestCase {
    func write(_ text: String, _ name: String = "p.jsonl") throws -> URL {
        let u = temporaryDirectory(self).appendingPathComponent(name)
        try Data(text.utf8).write(to: u)
        return u
    }

    func testReadsPromptsAnswersAndStringFields() throws {
        let text = "\u{FEFF}{\"prompt\": \"1 + 1 =\", \"answer\": \" 2\", \"hint\": \"small\", \"id\": 7}\r\n\n"
            + "  \n{\"prompt\": \"héllo ✓\"}\n"
        let url = try write(text, "arith-test.jsonl")
        let d = try PromptDataset(contentsOf: url)
        XCTAssertEqual(d.name, "arith-test")
        XCTAssertEqual(d.count, 2)
        XCTAssertEqual(d.records[0].prompt, "1 + 1 =")
        XCTAssertEqual(d.records[0].answer, " 2")
        XCTAssertEqual(d.records[0].fields, ["prompt": "1 + 1 =", "answer": " 2", "hint": "small"])   // the number is ignored
        XCTAssertEqual(d.records[0].line, 1)
        XCTAssertEqual(d.records[1].prompt, "héllo ✓")
        XCTAssertNil(d.records[1].answer)
        XCTAssertEqual(d.records[1].line, 4, "blank lines count in line numbers")
    }

    func testMalformedLinesNameFileLineAndField() throws {
        let good = "{\"prompt\": \"a\", \"answer\": \"b\"}\n"
        let cases: [(String, [String])] = [
            ("{\"prompt\": \"x\"", [":2:", "not valid JSON"]),
            ("[1, 2]", [":2:", "not a JSON object"]),
            ("\"just a string\"", [":2:", "not a JSON object"]),
            ("{\"answer\": \"1\"}", [":2:", "\"prompt\"", "missing"]),
            ("{\"prompt\": 3}", [":2:", "\"prompt\"", "must be a string", "3"]),
            ("{\"prompt\": null}", [":2:", "\"prompt\"", "null"]),
            ("{\"prompt\": \"\"}", [":2:", "\"prompt\"", "empty"]),
            ("{\"prompt\": \"x\", \"answer\": 12}", [":2:", "\"answer\"", "must be a string"]),
            ("{\"prompt\": \"x\", \"answer\": [\"12\"]}", [":2:", "\"answer\"", "an array"]),
            ("{\"prompt\": \"x\", \"answer\": null}", [":2:", "\"answer\"", "null"]),
            ("{\"prompt\": \"x\"} trailing", [":2:", "not valid JSON"]),
        ]
        for (line, fragments) in cases {
            let url = try write(good + line + "\n" + good)
            assertThrows(try PromptDataset(contentsOf: url), containing: [url.path] + fragments)
        }
    }

    func testEmptyFilesAreRefused() throws {
        for text in ["", "\n\n  \n", "\u{FEFF}"] {
            let url = try write(text)
            assertThrows(try PromptDataset(contentsOf: url), containing: [url.path, "no problems"])
        }
        assertThrows(try PromptDataset(records: [], path: "mem"), containing: ["mem", "no problems"])
    }

    func testNonUTF8IsRefusedNamingTheLine() throws {
        let u = temporaryDirectory(self).appendingPathComponent("bad.jsonl")
        var bytes = Array("{\"prompt\": \"ok\"}\n{\"prompt\": \"".utf8)
        bytes += [0xC3, 0x28]   // an invalid two-byte sequence
        bytes += Array("\"}\n".utf8)
        try Data(bytes).write(to: u)
        assertThrows(try PromptDataset(contentsOf: u), containing: ["\(u.path):2:", "not valid UTF-8"])
    }

    /// The real 256 MiB cap, on a sparse file (no data written), is refused from its size
    /// before anything is read; smaller caps apply to bytes and lines alike.
    func testHugeFilesAreRefusedNamingTheSize() throws {
        let u = temporaryDirectory(self).appendingPathComponent("huge.jsonl")
        XCTAssertTrue(FileManager.default.createFile(atPath: u.path, contents: Data("{\"prompt\": \"x\"}\n".utf8)))
        let h = try FileHandle(forWritingTo: u)
        try h.truncate(atOffset: UInt64(PromptDataset.Limits.standard.maxBytes) + 1)
        try h.close()
        assertThrows(try PromptDataset(contentsOf: u), containing: [u.path, "\(PromptDataset.Limits.standard.maxBytes + 1) bytes", "limit"])

        let lines = String(repeating: "{\"prompt\": \"x\"}\n", count: 10)
        let small = try write(lines)
        XCTAssertEqual(try PromptDataset(contentsOf: small, limits: .init(maxBytes: 1000, maxLines: 10)).count, 10)
        assertThrows(try PromptDataset(contentsOf: small, limits: .init(maxBytes: 100, maxLines: 100)),
                     containing: [small.path, "\(lines.utf8.count) bytes", "100-byte limit"])
        assertThrows(try PromptDataset(contentsOf: small, limits: .init(maxBytes: 1000, maxLines: 9)),
                     containing: [small.path, "more than 9 lines"])
        // Nesting that would make Foundation's recursive parser overflow is refused first.
        let deep = try write("{\"prompt\": \"x\", \"a\": " + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "}\n")
        assertThrows(try PromptDataset(contentsOf: deep), containing: ["\(deep.path):1:", "nested deeper than 64"])
    }

    /// A FIFO (which would block a plain read forever), a directory and a missing path are
    /// refused at once, naming the path and what it is.
    func testNonRegularFilesAreRefused() throws {
        let dir = temporaryDirectory(self)
        let fifo = dir.appendingPathComponent("fifo.jsonl")
        XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
        assertThrows(try PromptDataset(contentsOf: fifo), containing: [fifo.path, "not a regular file", "FIFO"])
        assertThrows(try PromptDataset(contentsOf: dir), containing: [dir.path, "a directory"])
        let missing = dir.appendingPathComponent("missing.jsonl")
        assertThrows(try PromptDataset(contentsOf: missing), containing: [missing.path, "cannot read"])
        // A symbolic link to a regular file is read through.
        let real = try write("{\"prompt\": \"x\"}\n")
        let link = dir.appendingPathComponent("link.jsonl")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: real)
        XCTAssertEqual(try PromptDataset(contentsOf: link).count, 1)
    }
}
