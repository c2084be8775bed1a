import ChorusCore
import Foundation
import ChorusTestSupport
import XCTest
@testable import ChorusCache
#if canImport(Glibc)
import Glibc
#endif

/// Issue 10 (hardening), class 2: what the cache acknowledges is readable. The writer checks
/// each record with exactly the reader's rules, so `verify` never calls an accepted record
/// corrupt; import reads only regular UTF-8 files.
final class CacheHardeningTests: XCTestCase {
    func line(teacher: String = "t", topK: Int? = nil, tokens: [Int] = [5, 6, 7], start: Int = 1,
              logprobs: [Double] = [-0.5, -1.5], top: String? = nil) -> String {
        let opts = topK.map { ",\"options\":{\"top_k\":\($0)}" } ?? ""
        let topText = top.map { ",\"top\":\($0)" } ?? ""
        return "{\"teacher\":\(JSONText.string(teacher)),\"fingerprint\":\"abcd\"\(opts),\"tokens\":\(tokens),\"start\":\(start),\"logprobs\":\(logprobs)\(topText)}"
    }

    /// Lines the reader would call corrupt are refused at import, naming file and line; a
    /// refused import leaves a cache that verifies clean.
    func testImportRefusesWhatTheReaderWouldNotRead() throws {
        let dir = cacheDirectory(self)
        let (cache, _) = try openCache(dir)
        let file = dir.deletingLastPathComponent().appendingPathComponent("in.jsonl")
        let bad: [(String, String)] = [
            (line(topK: -1), "top_k -1"),
            (line(topK: 1 << 20), "top_k 1048576"),
            (line(teacher: String(repeating: "n", count: 300)), "255"),
            (line(tokens: [5, -6, 7]), "negative"),
            (line(start: -1), "start"),
            (line(start: 2), "fit"),
        ]
        for (text, fragment) in bad {
            try Data((line() + "\n" + text + "\n").utf8).write(to: file)
            do {
                _ = try cache.importJSONL(from: file)
                XCTFail("accepted: \(text)")
            } catch {
                let m = "\(error)"
                XCTAssertTrue(m.contains(file.path) && m.contains("2") && m.contains(fragment), "\(fragment): \(m)")
                XCTAssertFalse(m.contains("\n"))
            }
        }
        // Invalid UTF-8 on a line is named, not replaced.
        try Data(Array((line() + "\n").utf8) + Array("{\"teacher\":\"".utf8) + [0xFF] + Array("\"}\n".utf8)).write(to: file)
        XCTAssertThrowsError(try cache.importJSONL(from: file)) { XCTAssertTrue("\($0)".contains("UTF-8"), "\($0)") }
        // A FIFO is refused without blocking.
        let fifo = dir.deletingLastPathComponent().appendingPathComponent("fifo.jsonl")
        XCTAssertEqual(mkfifo(fifo.path, 0o644), 0)
        XCTAssertThrowsError(try cache.importJSONL(from: fifo)) { XCTAssertTrue("\($0)".contains("FIFO"), "\($0)") }
        let report = try cache.verify()
        XCTAssertTrue(report.isClean, "\(report.corrupt)")
        XCTAssertEqual(report.goodRecords, 1, "only the good first line is stored (once)")
    }

    /// The API refuses the same keys the importer does.
    func testStoreRefusesUnreadableKeys() throws {
        let (cache, _) = try openCache(cacheDirectory(self))
        let fp = TeacherFingerprint(hex: "abcd")!
        let record = ScoreRecord(positions: [PositionScore(logprob: -1, entropy: 0.5, topIds: [], topLogprobs: [])])
        for k in [-1, -100, (1 << 16) + 1] {
            let key = CacheKey.make(fingerprint: fp, options: ScoringOptions(topK: k, start: 0), tokens: [1])
            XCTAssertThrowsError(try cache.store(key, record, teacher: "t"), "top_k \(k)") {
                guard case CacheError.invalidRecord = $0 else { return XCTFail("\($0)") }
            }
        }
        let key = CacheKey.make(fingerprint: fp, options: ScoringOptions(topK: 0, start: 0), tokens: [1])
        XCTAssertThrowsError(try cache.store(key, record, teacher: String(repeating: "é", count: 130)))
        XCTAssertTrue(try cache.store(key, record, teacher: "t"))
        XCTAssertTrue(try cache.verify().isClean)
    }

    /// Random lines around every boundary: whatever import acknowledges, verify reads back.
    func testEveryAcknowledgedRecordVerifies() throws {
        let dir = cacheDirectory(self)
        let (cache, _) = try openCache(dir)
        let file = dir.deletingLastPathComponent().appendingPathComponent("fuzz.jsonl")
        var rng = ChorusRNG(seed: 17)
        var accepted = 0
        for i in 0..<150 {
            let n = 1 + rng.int(below: 3)
            let tokens = (0..<(n + 1 + rng.int(below: 2))).map { _ in rng.int(below: 3) == 0 ? -rng.int(below: 3) : rng.int(below: 1000) + i * 1000 }
            let topK = [nil, -1, 0, 1, 3, 65536, 65537][rng.int(below: 7)]
            let teacher = String(repeating: "x", count: [1, 254, 255, 256, 300][rng.int(below: 5)])
            let start = rng.int(below: 3) - 1
            let lps = (0..<n).map { _ in [-0.5, 0, -100, 0.25][rng.int(below: 4)] }
            try Data((line(teacher: teacher, topK: topK, tokens: tokens, start: start, logprobs: lps) + "\n").utf8).write(to: file)
            if let r = try? cache.importJSONL(from: file) { accepted += r.records }
        }
        XCTAssertGreaterThan(accepted, 5, "the fuzz should accept some lines")
        let report = try cache.verify()
        XCTAssertTrue(report.isClean, "acknowledged but unreadable: \(report.corrupt)")
        XCTAssertEqual(report.goodRecords, accepted)
    }

    /// `cache export --output` never truncates a file inside the cache (its own segments) and
    /// never replaces an existing file without --force.
    func testExportNeverDestroysTheCache() throws {
        let dir = cacheDirectory(self)
        let (cache, _) = try openCache(dir)
        let fp = TeacherFingerprint(hex: "abcd")!
        let key = CacheKey.make(fingerprint: fp, options: ScoringOptions(topK: 0, start: 0), tokens: [1, 2])
        XCTAssertTrue(try cache.store(key, ScoreRecord(positions: [PositionScore(logprob: -1, entropy: 0.5), PositionScore(logprob: -2, entropy: 0.5)]), teacher: "t"))
        let segment = try XCTUnwrap(segmentFiles(dir).first)
        let before = try Data(contentsOf: segment)
        for force in [false, true] {
            assertOneLineFailure(try runChorus(["cache", "export", dir.path, "--output", segment.path] + (force ? ["--force"] : [])),
                                 containing: ["inside the cache directory"], "export over a segment")
            assertOneLineFailure(try runChorus(["cache", "export", dir.path, "--output", dir.appendingPathComponent("new.jsonl").path] + (force ? ["--force"] : [])),
                                 containing: ["inside the cache directory"], "export into the cache")
        }
        XCTAssertEqual(try Data(contentsOf: segment), before)
        let out = dir.deletingLastPathComponent().appendingPathComponent("out.jsonl")
        try Data("keep".utf8).write(to: out)
        assertOneLineFailure(try runChorus(["cache", "export", dir.path, "--output", out.path]), containing: ["already exists", "--force"])
        XCTAssertEqual(try String(contentsOf: out, encoding: .utf8), "keep")
        let (status, _, err) = try runChorus(["cache", "export", dir.path, "--output", out.path, "--force"])
        XCTAssertEqual(status, 0, err)
        XCTAssertTrue(try String(contentsOf: out, encoding: .utf8).contains("\"teacher\":\"t\""))
    }

    /// The read-back check itself: a frame that decodes to another key, or does not decode,
    /// is refused as an invalid record (today's explicit rules leave no record that reaches it;
    /// it is the guard for rules added to the reader later).
    func testReadBackCheckRefusesFramesThatDoNotReadBack() throws {
        let fp = TeacherFingerprint(hex: "abcd")!
        let key = CacheKey.make(fingerprint: fp, options: ScoringOptions(topK: 0, start: 0), tokens: [1, 2])
        let other = CacheKey.make(fingerprint: fp, options: ScoringOptions(topK: 0, start: 0), tokens: [1, 3])
        let record = ScoreRecord(positions: [PositionScore(logprob: -1, entropy: 0.5), PositionScore(logprob: -2, entropy: 0.25)])
        let frame = try RecordFrame.encode(key: key, record: record, teacher: "t", storedAt: 1)
        XCTAssertNoThrow(try RecordFrame.checkReadable(frame, key: key, record: record, teacher: "t"))
        XCTAssertThrowsError(try RecordFrame.checkReadable(frame, key: other, record: record, teacher: "t")) {
            XCTAssertTrue("\($0)".contains("would not read back"), "\($0)")
        }
        XCTAssertThrowsError(try RecordFrame.checkReadable(frame, key: key, record: record, teacher: "u")) {
            XCTAssertTrue("\($0)".contains("would not read back"), "\($0)")
        }
        var damaged = frame
        damaged[damaged.count - 3] ^= 0x5A
        XCTAssertThrowsError(try RecordFrame.checkReadable(damaged, key: key, record: record, teacher: "t")) {
            guard case CacheError.invalidRecord = $0 else { return XCTFail("\($0)") }
        }
    }

    /// Maintenance commands on a path that holds no cache are refused and create nothing.
    func testMaintenanceOfAMissingCacheCreatesNothing() throws {
        let missing = cacheDirectory(self, "typo")
        for args in [["cache", "gc", missing.path, "--max-bytes", "10"], ["cache", "stats", missing.path], ["cache", "verify", missing.path]] {
            assertOneLineFailure(try runChorus(args), containing: ["typo", "not a chorus score cache"], "\(args)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: missing.path), "a maintenance command created a cache")
    }
}
