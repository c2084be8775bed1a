import Foundation
import ChorusTestSupport
import XCTest
@testable import ChorusCache

/// `chorus cache verify` is where record bodies are checked in bulk (the index scan reads only
/// headers and summaries; lookups and verify decode, checksum first).
final class VerifyTests: XCTestCase {
    func testVerifyNamesADamagedBodyByKeyAndExitsOne() throws {
        guard let exe = chorusExecutable() else { return }
        let dir = cacheDirectory(self)
        do {
            let (cache, _) = try openCache(dir)
            for i in 0..<5 { try cache.store(CacheStress.item(seed: 4, index: i).key, CacheStress.item(seed: 4, index: i).record, teacher: "t") }
        }
        var (status, out, err) = try runChorus(exe, ["cache", "verify", dir.path])
        XCTAssertEqual(status, 0, err)
        XCTAssertTrue(err.isEmpty, err)

        // Flip one bit in the compressed payload at the end of record 3's body: the header and
        // summary still parse, so only the body checksum can tell.
        let (reader, _) = try openCache(dir, readOnly: true)
        let victim = try XCTUnwrap(reader.index.values.sorted { $0.offset < $1.offset }.dropFirst(3).first)
        let segment = segmentFiles(dir)[0]
        var bytes = [UInt8](try Data(contentsOf: segment))
        bytes[victim.offset + victim.length - 2] ^= 0x10
        try Data(bytes).write(to: segment)

        (status, out, err) = try runChorus(exe, ["cache", "verify", dir.path])
        XCTAssertEqual(status, 1, "\(out)\(err)")
        let lines = err.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, err)
        let key = victim.summary.digest.map { String(format: "%02x", $0) }.joined()
        XCTAssertTrue(err.contains("key \(key)"), "the damaged record is named by its key: \(err)")
        XCTAssertTrue(err.contains("body checksum mismatch"), err)
        XCTAssertTrue(err.contains("@\(victim.offset)"), err)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], out)
        XCTAssertEqual(report["good_records"] as? Int, 4, out)
    }
}
