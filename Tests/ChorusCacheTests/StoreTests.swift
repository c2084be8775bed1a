import ChorusTestSupport
import XCTest
@testable import ChorusCache

final class StoreTests: XCTestCase {
    func item(_ i: Int, seed: UInt64 = 1) -> (key: CacheKey, record: ScoreRecord, teacher: String) {
        CacheStress.item(seed: seed, index: i)
    }

    func testStoreLookupReopenAndCounters() throws {
        let dir = cacheDirectory(self)
        let (cache, problems) = try openCache(dir)
        for i in 0..<10 { XCTAssertTrue(try cache.store(item(i).key, item(i).record, teacher: item(i).teacher)) }
        XCTAssertFalse(try cache.store(item(3).key, item(3).record, teacher: item(3).teacher), "same key stored twice")
        for i in 0..<10 {
            XCTAssertEqual(cache.lookup(item(i).key), try CacheStress.expected(item(i).key, item(i).record))
        }
        XCTAssertNil(cache.lookup(item(10).key, teacher: "stress-1"))
        let counters = cache.counterSnapshot()["stress-1"]
        XCTAssertEqual(counters?.hits, 10)
        XCTAssertEqual(counters?.misses, 1)
        XCTAssertEqual(counters?.stores, 10)
        // Reading back (counted: false) returns the record and leaves the counters alone.
        XCTAssertEqual(cache.lookup(item(2).key, teacher: "stress-1", counted: false), try CacheStress.expected(item(2).key, item(2).record))
        XCTAssertNil(cache.lookup(item(10).key, teacher: "stress-1", counted: false))
        XCTAssertEqual(cache.counterSnapshot()["stress-1"]?.hits, 10)
        XCTAssertEqual(cache.counterSnapshot()["stress-1"]?.misses, 1)

        // A second instance (as another process would) sees everything, and sees later stores.
        let (other, _) = try openCache(dir, readOnly: true)
        XCTAssertEqual(other.lookup(item(4).key), try CacheStress.expected(item(4).key, item(4).record))
        try cache.store(item(11).key, item(11).record, teacher: "stress-1")
        XCTAssertNotNil(other.lookup(item(11).key), "a reader must pick up records appended after it opened")
        let stats = try other.stats()
        XCTAssertEqual(stats.records, 11)
        XCTAssertEqual(stats.teachers["stress-1"]?.records, 11)
        XCTAssertGreaterThan(stats.ratioToFloat32, 1)
        XCTAssertTrue(problems.all.isEmpty, "\(problems.all)")
        XCTAssertTrue(try other.verify().isClean)
        // storeReadingBack gives what a lookup gives: the new frame decoded, or the stored record.
        let fresh = try cache.storeReadingBack(item(12).key, item(12).record, teacher: "stress-1")
        XCTAssertTrue(fresh.stored)
        XCTAssertEqual(fresh.record, try CacheStress.expected(item(12).key, item(12).record))
        let again = try cache.storeReadingBack(item(12).key, item(12).record, teacher: "stress-1")
        XCTAssertFalse(again.stored)
        XCTAssertEqual(again.record, fresh.record, "read back from the cache")
    }

    func testSegmentsRollOverAndIndexRebuilds() throws {
        let dir = cacheDirectory(self)
        let (cache, _) = try openCache(dir, maxSegmentBytes: 6000)
        for i in 0..<30 { try cache.store(item(i).key, item(i).record, teacher: "t") }
        XCTAssertGreaterThan(segmentFiles(dir).count, 3)
        try cache.rebuildIndex()
        for i in 0..<30 { XCTAssertNotNil(cache.lookup(item(i).key)) }
        let report = try cache.verify()
        XCTAssertEqual(report.goodRecords, 30)
        XCTAssertTrue(report.isClean)
    }

    func testFlippedBytesAreDetectedReportedAndMissed() throws {
        let dir = cacheDirectory(self)
        do {
            let (cache, _) = try openCache(dir)
            for i in 0..<12 { try cache.store(item(i).key, item(i).record, teacher: "t") }
        }
        let segment = segmentFiles(dir)[0]
        var bytes = [UInt8](try Data(contentsOf: segment))
        // Flip one byte in the middle of a frame body, one in a frame header, one in the last frame.
        let (cache0, _) = try openCache(dir, readOnly: true)
        let locations = cache0.index.values.sorted { $0.offset < $1.offset }
        let victims = [locations[2], locations[6], locations[11]]
        bytes[victims[0].offset + victims[0].length / 2] ^= 0x01
        bytes[victims[1].offset + 5] ^= 0x80
        bytes[victims[2].offset + victims[2].length - 1] ^= 0xff
        try Data(bytes).write(to: segment)

        let (cache, problems) = try openCache(dir, readOnly: true)
        var missed = 0
        for i in 0..<12 {
            let it = item(i)
            if let got = cache.lookup(it.key) {
                XCTAssertEqual(got, try CacheStress.expected(it.key, it.record), "a lookup returned a damaged value")
            } else {
                missed += 1
            }
        }
        XCTAssertEqual(missed, 3)
        XCTAssertFalse(problems.all.isEmpty, "corruption must be reported")
        let report = try cache.verify()
        XCTAssertFalse(report.isClean)
        XCTAssertEqual(report.goodRecords, 9)
        XCTAssertEqual(report.corrupt.count, 3, "\(report.corrupt)")
        XCTAssertTrue(report.tornTails.isEmpty, "a damaged complete final frame is corruption, not a torn tail")

        // Re-scoring after the miss stores a fresh copy that is used from then on.
        let (writer, _) = try openCache(dir)
        let victim = item(2)
        XCTAssertNil(writer.lookup(victim.key))
        XCTAssertTrue(try writer.store(victim.key, victim.record, teacher: "t"))
        XCTAssertEqual(writer.lookup(victim.key), try CacheStress.expected(victim.key, victim.record))
    }

    func testTornTailIsReportedNotFailedThenCutOnOpen() throws {
        let dir = cacheDirectory(self)
        do {
            let (cache, _) = try openCache(dir)
            for i in 0..<5 { try cache.store(item(i).key, item(i).record, teacher: "t") }
        }
        let segment = segmentFiles(dir)[0]
        let full = [UInt8](try Data(contentsOf: segment))
        let (probe, _) = try openCache(dir, readOnly: true)
        let last = probe.index.values.max { $0.offset < $1.offset }!
        for cut in [1, 10, 16, 40, last.length - 1] {
            try Data(full[0..<(last.offset + cut)]).write(to: segment)
            let (reader, _) = try openCache(dir, readOnly: true)
            let report = try reader.verify()
            XCTAssertTrue(report.isClean, "cut \(cut): \(report.corrupt)")
            XCTAssertEqual(report.tornTails.count, 1, "cut \(cut)")
            XCTAssertEqual(report.goodRecords, 4)
        }
        let (writer, problems) = try openCache(dir)
        XCTAssertTrue(problems.all.contains { $0.contains("cut a torn record") }, "\(problems.all)")
        XCTAssertEqual(try Data(contentsOf: segment).count, last.offset)
        let report = try writer.verify()
        XCTAssertTrue(report.isClean && report.tornTails.isEmpty && report.goodRecords == 4)
        for i in 0..<4 { XCTAssertEqual(writer.lookup(item(i).key), try CacheStress.expected(item(i).key, item(i).record)) }
        XCTAssertNil(writer.lookup(item(4).key))
        try writer.store(item(4).key, item(4).record, teacher: "t")
        XCTAssertTrue(try writer.verify().isClean)
    }

    func testGCEvictsLeastRecentlyUsedFirst() throws {
        let dir = cacheDirectory(self)
        let (cache, _) = try openCache(dir, maxSegmentBytes: 8000)
        var sizes: [Int] = []
        for i in 0..<8 {
            try cache.store(item(i).key, item(i).record, teacher: "t")
            sizes.append(cache.index[item(i).key.digest]!.length)
            Thread.sleep(forTimeInterval: 0.003)  // distinct millisecond store times
        }
        Thread.sleep(forTimeInterval: 0.003)
        XCTAssertNotNil(cache.lookup(item(0).key))  // the oldest store becomes the most recent use
        Thread.sleep(forTimeInterval: 0.003)
        XCTAssertNotNil(cache.lookup(item(1).key))
        // Room for items 1, 0 and 7 (the three most recently used), not a fourth.
        let budget = sizes[1] + sizes[0] + sizes[7] + min(sizes[6], sizes[5]) - 1
        let report = try cache.gc(maxBytes: budget)
        XCTAssertEqual(report.keptRecords, 3)
        XCTAssertEqual(report.evictedRecords, 5)
        XCTAssertLessThanOrEqual(report.keptBytes, budget)
        for i in 0..<8 {
            let present = cache.lookup(item(i).key) != nil
            XCTAssertEqual(present, [0, 1, 7].contains(i), "item \(i)")
        }
        XCTAssertTrue(try cache.verify().isClean)
        let (fresh, _) = try openCache(dir, readOnly: true)
        XCTAssertEqual(try fresh.stats().records, 3)
        XCTAssertEqual(try cache.gc(maxBytes: 0).keptRecords, 0)
        XCTAssertEqual(try fresh.stats().records, 0, "a reader notices another instance's gc")
    }

    func testExportImportRoundTripAndBadLines() throws {
        let src = cacheDirectory(self, "src"), dst = src.deletingLastPathComponent().appendingPathComponent("dst")
        let (cache, _) = try openCache(src)
        for i in 0..<6 { try cache.store(item(i, seed: 2).key, item(i, seed: 2).record, teacher: "teacher-a") }
        let jsonl = src.deletingLastPathComponent().appendingPathComponent("out.jsonl")
        XCTAssertEqual(try cache.export(to: jsonl).records, 6)
        let (copy, _) = try openCache(dst)
        XCTAssertEqual(try copy.importJSONL(from: jsonl).records, 6)
        XCTAssertEqual(try copy.importJSONL(from: jsonl).alreadyPresent, 6)
        for i in 0..<6 {
            let it = item(i, seed: 2)
            XCTAssertEqual(copy.lookup(it.key), try CacheStress.expected(it.key, it.record), "import of export must be lossless")
        }
        XCTAssertEqual(try copy.stats().teachers["teacher-a"]?.records, 6)

        // A server's prompt log-probs: no entropy, no top-k.
        let server = src.deletingLastPathComponent().appendingPathComponent("server.jsonl")
        try Data(("{\"teacher\":\"srv\",\"fingerprint\":\"abcd\",\"tokens\":[5,6,7,8],\"start\":1,\"logprobs\":[-0.5,-1.25,-3]}\n"
            + "\n{\"teacher\":\"srv\",\"fingerprint\":\"abcd\",\"tokens\":[5,6],\"start\":1,\"logprobs\":[-0.5],"
            + "\"entropy\":[null],\"top\":[[[6,-0.5],[9,-1.5]]]}\n").utf8).write(to: server)
        XCTAssertEqual(try copy.importJSONL(from: server).records, 2)
        let key = CacheKey.make(fingerprint: TeacherFingerprint(hex: "abcd")!, options: ScoringOptions(topK: 0, start: 1), tokens: [5, 6, 7, 8])
        let got = copy.lookup(key)
        XCTAssertEqual(got?.positions.map(\.logprob), [-0.5, -1.25, -3])
        XCTAssertTrue(got?.positions[0].entropy.isNaN ?? false)

        let bad = src.deletingLastPathComponent().appendingPathComponent("bad.jsonl")
        let badLines = [
            "{\"teacher\":\"x\",\"fingerprint\":\"zz\",\"tokens\":[1],\"start\":0,\"logprobs\":[-1]}",
            "{\"teacher\":\"x\",\"fingerprint\":\"ab\",\"tokens\":[1],\"start\":0,\"logprobs\":[-1, -2]}",
            "{\"teacher\":\"x\",\"fingerprint\":\"ab\",\"tokens\":[1],\"start\":0,\"logprobs\":[1.5]}",
            "{\"teacher\":\"x\",\"fingerprint\":\"ab\",\"tokens\":[1],\"start\":0,\"logprobs\":[-1],\"top\":[[[1]]]}",
            "{\"teacher\":\"x\",\"tokens\":[1],\"start\":0,\"logprobs\":[-1]}",
            "not json",
        ]
        for line in badLines {
            try Data(("{\"teacher\":\"x\",\"fingerprint\":\"ab\",\"tokens\":[1,2],\"start\":1,\"logprobs\":[-1]}\n" + line + "\n").utf8).write(to: bad)
            XCTAssertThrowsError(try copy.importJSONL(from: bad), line) { error in
                guard case let CacheError.badImportLine(file, lineNumber, _) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(file, bad.path)
                XCTAssertEqual(lineNumber, 2)
            }
        }
    }

    func testNotACacheDirectory() throws {
        let dir = cacheDirectory(self)
        XCTAssertThrowsError(try ScoreCache(directory: dir, readOnly: true)) {
            guard case CacheError.badFormat = $0 else { return XCTFail("\($0)") }
        }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data("something else\n".utf8).write(to: dir.appendingPathComponent("FORMAT"))
        XCTAssertThrowsError(try ScoreCache(directory: dir)) {
            guard case CacheError.badFormat = $0 else { return XCTFail("\($0)") }
        }
    }
}
