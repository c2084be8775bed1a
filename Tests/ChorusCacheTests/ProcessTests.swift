import ChorusCore
import ChorusTestSupport
import XCTest
@testable import ChorusCache

/// Tests that run the real `chorus` binary as separate processes: crash safety under kill -9,
/// concurrent writers, and the CLI's exit codes.
final class ProcessTests: XCTestCase {
    /// Waits (up to `timeout` s) until `child` has acknowledged at least `count` records.
    func waitForStored(_ child: Child, _ count: Int, timeout: Double = 20) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if child.storedIndices.count >= count { return true }
            if !child.process.isRunning { return child.storedIndices.count >= count }
            Thread.sleep(forTimeInterval: 0.002)
        }
        return false
    }

    func testKillDashNineLosesAtMostTheRecordBeingWritten() throws {
        guard let exe = chorusExecutable() else { return }
        let dir = cacheDirectory(self)
        var acknowledged = Set<Int>()
        var tornRounds = 0
        var next = 0
        var rng = ChorusRNG(seed: 2024)
        for round in 0..<8 {
            // Odd rounds append each frame in 256-byte pieces so the kill usually lands inside a
            // frame (a torn tail); even rounds use whole-frame writes as in real use. The pause is
            // long against encoding a frame (which also decodes it once to check it reads back),
            // so most of a round is spent inside a frame.
            let chunking = round % 2 == 1 ? ["--chunk-bytes", "256", "--chunk-pause-us", "2000"] : []
            let child = try Child(exe, ["cache", "stress-write", dir.path, "--count", "100000", "--seed", "7",
                                        "--first", String(next), "--segment-bytes", "60000"] + chunking)
            let target = 3 + Int(rng.next() % 12)
            XCTAssertTrue(waitForStored(child, target), "round \(round): writer acknowledged nothing; stderr: \(child.errorOutput)")
            // Let it run on a little so the kill lands at a random point of a store.
            Thread.sleep(forTimeInterval: rng.uniformDouble() * 0.01)
            kill(child.process.processIdentifier, SIGKILL)
            child.wait()
            XCTAssertEqual(child.process.terminationReason, .uncaughtSignal, "round \(round): the writer was not killed")
            let stored = child.storedIndices
            acknowledged.formUnion(stored)
            // Resume from the record that may have been mid-write: it is rewritten (or skipped
            // as already present), exercising repair of a torn tail by the next writer.
            next = (stored.max() ?? next - 1) + 1

            // Between crashes: nothing but (at most) one torn tail; every acknowledged record exact.
            let (reader, _) = try openCache(dir, readOnly: true)
            let report = try reader.verify()
            XCTAssertTrue(report.isClean, "round \(round): corruption after kill -9: \(report.corrupt)")
            XCTAssertLessThanOrEqual(report.tornTails.count, 1, "round \(round)")
            if !report.tornTails.isEmpty { tornRounds += 1 }
            for i in acknowledged.sorted() {
                let it = CacheStress.item(seed: 7, index: i)
                XCTAssertEqual(reader.lookup(it.key), try CacheStress.expected(it.key, it.record), "round \(round): record \(i) lost or damaged")
            }
        }
        XCTAssertGreaterThan(acknowledged.count, 24)
        XCTAssertGreaterThan(tornRounds, 0, "no kill landed inside a frame: the torn-tail path went untested")
        // A writable open cuts any torn tail; afterwards the cache is fully clean.
        let (writer, _) = try openCache(dir)
        let final = try writer.verify()
        XCTAssertTrue(final.isClean && final.tornTails.isEmpty, "\(final)")
        XCTAssertGreaterThan(segmentFiles(dir).count, 1, "the run should have crossed segment boundaries")
    }

    func testConcurrentWritersAndReaderShareOneDirectory() throws {
        guard let exe = chorusExecutable() else { return }
        let dir = cacheDirectory(self)
        // Two disjoint streams and one overlapping the first (same keys written twice at once).
        let jobs: [(seed: UInt64, first: Int, count: Int)] = [(11, 0, 80), (12, 0, 80), (11, 40, 80)]
        let children = try jobs.map { job in
            try Child(exe, ["cache", "stress-write", dir.path, "--count", String(job.count), "--seed", String(job.seed),
                            "--first", String(job.first), "--segment-bytes", "50000"])
        }
        // Read concurrently in this process while they write: every hit must be exact.
        Thread.sleep(forTimeInterval: 0.2)
        let (reader, problems) = try openCache(dir, readOnly: true)
        var hits = 0
        while children.contains(where: { $0.process.isRunning }) {
            for i in stride(from: 0, to: 120, by: 7) {
                let it = CacheStress.item(seed: 11, index: i)
                if let got = reader.lookup(it.key) {
                    hits += 1
                    XCTAssertEqual(got, try CacheStress.expected(it.key, it.record))
                }
            }
        }
        for (child, job) in zip(children, jobs) {
            child.wait()
            XCTAssertEqual(child.process.terminationStatus, 0, "writer \(job): \(child.errorOutput)")
            XCTAssertEqual(child.storedIndices.count, job.count)
        }
        XCTAssertTrue(problems.all.isEmpty, "reader saw problems: \(problems.all)")
        let report = try reader.verify()
        XCTAssertTrue(report.isClean && report.tornTails.isEmpty, "\(report)")
        XCTAssertEqual(report.goodRecords, 200, "overlapping keys must be stored once (duplicates: \(report.duplicates))")
        for (seed, range) in [(UInt64(11), 0..<120), (UInt64(12), 0..<80)] {
            for i in range {
                let it = CacheStress.item(seed: seed, index: i)
                XCTAssertEqual(reader.lookup(it.key), try CacheStress.expected(it.key, it.record), "seed \(seed) record \(i)")
            }
        }
        let (status, out, err) = try runChorus(exe, ["cache", "verify", dir.path])
        XCTAssertEqual(status, 0, "\(out)\(err)")
        _ = hits  // how many reads overlapped the writes depends on scheduling; exactness is what is asserted
    }

    func testCLIExitCodesAndMessages() throws {
        guard let exe = chorusExecutable() else { return }
        let dir = cacheDirectory(self)
        var (status, out, err) = try runChorus(exe, ["cache", "stress-write", dir.path, "--count", "6", "--seed", "3"])
        XCTAssertEqual(status, 0, err)
        (status, out, err) = try runChorus(exe, ["cache", "stats", dir.path])
        XCTAssertEqual(status, 0, err)
        let stats = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]
        XCTAssertEqual(stats?["records"] as? Int, 6)
        XCTAssertNotNil(stats?["bytes_per_position"])
        XCTAssertNotNil((stats?["teachers"] as? [String: Any])?["stress-3"])

        // Torn tail: reported, exit 0.
        let segment = segmentFiles(dir).last!
        let full = try Data(contentsOf: segment)
        try full.prefix(full.count - 7).write(to: segment)
        (status, out, err) = try runChorus(exe, ["cache", "verify", dir.path])
        XCTAssertEqual(status, 0, "a torn tail is not corruption: \(err)")
        XCTAssertTrue(err.contains("torn tail"), err)

        // A flipped byte in an earlier record: listed, exit 1, no stack trace.
        var bytes = [UInt8](full)
        bytes[SegmentFile.headerSize + 100] ^= 0x10
        try Data(bytes).write(to: segment)
        (status, out, err) = try runChorus(exe, ["cache", "verify", dir.path])
        XCTAssertEqual(status, 1)
        XCTAssertTrue(err.contains("corrupt: segments/00000001.seg @16"), err)
        XCTAssertFalse(err.contains("Fatal error") || err.contains("Stack dump"), err)

        // Export reports the corrupt record and fails; the other five are still written.
        (status, out, err) = try runChorus(exe, ["cache", "export", dir.path])
        XCTAssertEqual(status, 1)
        XCTAssertEqual(out.split(separator: "\n").count, 5)

        // Bad input: one line naming the file, non-zero exit.
        (status, _, err) = try runChorus(exe, ["cache", "verify", dir.appendingPathComponent("nope").path])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(err.contains("nope"), err)
        let badJSONL = dir.deletingLastPathComponent().appendingPathComponent("bad.jsonl")
        try Data("{\"teacher\":1}\n".utf8).write(to: badJSONL)
        (status, _, err) = try runChorus(exe, ["cache", "import", dir.path, badJSONL.path])
        XCTAssertEqual(status, 1)
        XCTAssertTrue(err.contains("bad.jsonl:1:"), err)
        XCTAssertEqual(err.split(separator: "\n").count, 1, err)

        // gc to zero leaves an empty, clean cache.
        (status, out, err) = try runChorus(exe, ["cache", "gc", dir.path, "--max-bytes", "0"])
        XCTAssertEqual(status, 0, err)
        (status, out, err) = try runChorus(exe, ["cache", "verify", dir.path])
        XCTAssertEqual(status, 0, err)
    }
}
