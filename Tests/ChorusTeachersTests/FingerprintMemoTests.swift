import ChorusCache
import ChorusModel
import ChorusTeachers
import Foundation
import ChorusTestSupport
import XCTest

/// Sets the modification time of every file under `dir` to `secondsAgo` in the past (the memo
/// does not remember files written in the last two seconds).
func age(_ dir: URL, secondsAgo: Double = 3600) throws {
    let fm = FileManager.default
    for name in try fm.contentsOfDirectory(atPath: dir.path) {
        try fm.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -secondsAgo)],
                             ofItemAtPath: dir.appendingPathComponent(name).path)
    }
}

final class FingerprintMemoTests: XCTestCase {
    /// A model directory `m` written `secondsAgo` in the past and an empty cache directory.
    func agedModelAndCache(secondsAgo: Double = 3600) throws -> (model: URL, cache: URL) {
        let dir = temporaryDirectory(self)
        let model = dir.appendingPathComponent("m"), cache = dir.appendingPathComponent("cache")
        try writeModel(model, seed: 1)
        try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
        try age(model, secondsAgo: secondsAgo)
        return (model, cache)
    }

    func testUnchangedFilesAreNotHashedAgain() throws {
        let (model, cache) = try agedModelAndCache()
        let strings = ["kind=checkpoint"]
        let direct = try Fingerprints.checkpoint(directory: model, strings: strings)

        let first = FingerprintMemo(directory: cache)
        XCTAssertEqual(try Fingerprints.checkpoint(directory: model, strings: strings, memo: first), direct)
        XCTAssertEqual(first.computed, 1)
        XCTAssertEqual(first.hits, 0)
        // A later run (a new memo on the same directory) reads the memo, not the weights.
        let second = FingerprintMemo(directory: cache)
        XCTAssertEqual(try Fingerprints.checkpoint(directory: model, strings: strings, memo: second), direct)
        XCTAssertEqual(second.hits, 1)
        XCTAssertEqual(second.computed, 0)
        // Other strings (a self-teacher's template) are another entry.
        let other = try Fingerprints.checkpoint(directory: model, strings: ["kind=self"], memo: second)
        XCTAssertEqual(second.computed, 1)
        XCTAssertEqual(other, try Fingerprints.checkpoint(directory: model, strings: ["kind=self"]))
    }

    func testChangedFilesAreHashedAgain() throws {
        let (model, cache) = try agedModelAndCache(secondsAgo: 7200)
        let old = try Fingerprints.checkpoint(directory: model, strings: [], memo: FingerprintMemo(directory: cache))

        // Same size, other bytes and another modification time: new weights of the same shape.
        try tinyModel(seed: 2).save(directory: model)
        try age(model, secondsAgo: 3600)
        let memo = FingerprintMemo(directory: cache)
        let new = try Fingerprints.checkpoint(directory: model, strings: [], memo: memo)
        XCTAssertEqual(memo.computed, 1)
        XCTAssertNotEqual(new, old)
        XCTAssertEqual(new, try Fingerprints.checkpoint(directory: model, strings: []))

        // A size change with the modification time kept (config.json gains a newline) is seen too.
        let config = model.appendingPathComponent("config.json")
        let attributes = try FileManager.default.attributesOfItem(atPath: config.path)
        try (try Data(contentsOf: config) + Data("\n".utf8)).write(to: config)
        try FileManager.default.setAttributes([.modificationDate: attributes[.modificationDate]!], ofItemAtPath: config.path)
        let memo2 = FingerprintMemo(directory: cache)
        let resized = try Fingerprints.checkpoint(directory: model, strings: [], memo: memo2)
        XCTAssertEqual(memo2.computed, 1)
        XCTAssertNotEqual(resized, new)
        XCTAssertEqual(resized, try Fingerprints.checkpoint(directory: model, strings: []))

        // A file written just now is not remembered (a second write in the same tick could
        // keep size and time), so the next run hashes it again.
        try tinyModel(seed: 3).save(directory: model)
        _ = try Fingerprints.checkpoint(directory: model, strings: [], memo: FingerprintMemo(directory: cache))
        let memo3 = FingerprintMemo(directory: cache)
        _ = try Fingerprints.checkpoint(directory: model, strings: [], memo: memo3)
        XCTAssertEqual(memo3.computed, 1)
    }

    func testDamagedMemoIsRecomputedNeverTrusted() throws {
        let (model, cache) = try agedModelAndCache()
        let direct = try Fingerprints.checkpoint(directory: model, strings: [])
        let file = cache.appendingPathComponent(FingerprintMemo.fileName)

        // Garbage instead of a memo.
        try Data((0..<300).map { UInt8(truncatingIfNeeded: $0 &* 37) }).write(to: file)
        let a = FingerprintMemo(directory: cache)
        XCTAssertEqual(try Fingerprints.checkpoint(directory: model, strings: [], memo: a), direct)
        XCTAssertEqual(a.computed, 1)
        let b = FingerprintMemo(directory: cache)
        XCTAssertEqual(try Fingerprints.checkpoint(directory: model, strings: [], memo: b), direct)
        XCTAssertEqual(b.hits, 1, "the recomputed entry replaced the garbage")

        // One changed digit in the remembered fingerprint fails the line's checksum.
        var text = try String(contentsOf: file, encoding: .utf8)
        let hex = direct.hex
        let flipped = String(hex.prefix(10)) + (hex[hex.index(hex.startIndex, offsetBy: 10)] == "0" ? "1" : "0") + String(hex.dropFirst(11))
        text = text.replacingOccurrences(of: hex, with: flipped)
        try text.write(to: file, atomically: true, encoding: .utf8)
        let c = FingerprintMemo(directory: cache)
        XCTAssertEqual(try Fingerprints.checkpoint(directory: model, strings: [], memo: c), direct)
        XCTAssertEqual(c.computed, 1)

        // A truncated memo (a torn copy) loses its last entry only.
        let full = try Data(contentsOf: file)
        try full.prefix(full.count - 5).write(to: file)
        let d = FingerprintMemo(directory: cache)
        XCTAssertEqual(try Fingerprints.checkpoint(directory: model, strings: [], memo: d), direct)
        XCTAssertEqual(d.computed, 1)
    }

    func testPoolWhoseScoresAreCachedLoadsNoWeights() throws {
        let dir = temporaryDirectory(self)
        for (name, seed) in [("teacher", 1), ("frozen", 4)] {
            try writeModel(dir.appendingPathComponent(name), seed: UInt64(seed))
            try age(dir.appendingPathComponent(name))
        }
        // A checkpoint teacher and a frozen self-teacher, each with its own directory.
        let f = dir.appendingPathComponent("pool.toml")
        try "[[teacher]]\nname = \"t\"\npath = \"teacher\"\n[[teacher]]\nname = \"self\"\nkind = \"self\"\npath = \"frozen\"\nprivileged = \"Answer {answer}: {prompt}\"\n"
            .write(to: f, atomically: true, encoding: .utf8)
        let enc = CharEncoder(vocab: 64)
        let cache = dir.appendingPathComponent("cache")
        var g = sampleGroup()
        g.privileged = ["answer": "9"]

        func run() throws -> (TeacherPool, ScoreCacheStore, [ReferenceScores]) {
            let pool = try TeacherPool.load(manifest: f, encoderLoader: { _ in enc })
            let store = try ScoreCacheStore(directory: cache)
            pool.store = store
            return (pool, store, try pool.score([g], aggregator: pool.makeAggregator(name: "arithmetic"), progress: 0)[0])
        }
        func loaded(_ pool: TeacherPool) -> [Bool] {
            [(pool.teachers[0] as! CheckpointTeacher).model != nil, (pool.teachers[1] as! SelfTeacher).model != nil]
        }
        let (cold, coldStore, a) = try run()
        XCTAssertEqual(loaded(cold), [true, true])
        XCTAssertEqual(coldStore.fingerprintMemo?.computed, 2)

        let (warm, warmStore, b) = try run()
        XCTAssertEqual(loaded(warm), [false, false], "every score was cached: no weights read")
        XCTAssertEqual(warmStore.fingerprintMemo?.hits, 2)
        XCTAssertEqual(warmStore.fingerprintMemo?.computed, 0)
        for (x, y) in zip(a, b) {
            XCTAssertTrue(y.approximate)
            XCTAssertLessThan(maxDiff(x.logprobs, y.logprobs), 1e-3)
        }

        // A new response is a miss: only then are the weights loaded.
        g.responses.append([9, 9, 9])
        let pool = try TeacherPool.load(manifest: f, encoderLoader: { _ in enc })
        pool.store = try ScoreCacheStore(directory: cache)
        _ = try pool.score([g], aggregator: pool.makeAggregator(name: "arithmetic"), progress: 0)
        XCTAssertEqual(loaded(pool), [true, true])
    }
}
