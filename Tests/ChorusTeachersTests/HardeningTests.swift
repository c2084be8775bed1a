import ChorusTeachers
import Foundation
import ChorusTestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Issue 10 (hardening), class 11 on the teacher side: messages name the real cause, and a
/// manifest that cannot work is refused when it is read, not after scoring.
final class TeacherHardeningTests: XCTestCase {
    func manifest(_ text: String) throws -> PoolManifest {
        try PoolManifest(toml: text, file: URL(fileURLWithPath: "/pools/teachers/x.toml"))
    }

    /// Huge finite weights are fine ratios (1e308 + 1e308 overflows the sum, not the mixture);
    /// all-zero weights are named as such.
    func testHugeWeightsNormalizeAndZeroWeightsAreNamed() throws {
        XCTAssertEqual(try normalizedWeights([1e308, 1e308], count: 2), [0.5, 0.5])
        XCTAssertEqual(try normalizedWeights([1e308, 0, 1e308, 1e308], count: 4), [1.0 / 3, 0, 1.0 / 3, 1.0 / 3])
        let tiny = try normalizedWeights([5e-324, 5e-324], count: 2)
        XCTAssertEqual(tiny, [0.5, 0.5])
        assertThrows(try normalizedWeights([0, 0], count: 2), containing: ["all weights are 0"])
        assertThrows(try normalizedWeights([.infinity, 1], count: 2), containing: ["not a finite number"])
        let m = try manifest("[[teacher]]\nname = \"a\"\npath = \"x\"\nweight = 1e308\n[[teacher]]\nname = \"b\"\npath = \"y\"\nweight = 1e308")
        XCTAssertEqual(m.teachers.map(\.weight), [1e308, 1e308])
        assertThrows(try manifest("[[teacher]]\nname = \"a\"\npath = \"x\"\nweight = 0\n[[teacher]]\nname = \"b\"\npath = \"y\"\nweight = 0"),
                     containing: ["x.toml", "weight", "all weights are 0"])
    }

    /// A teacher name the score cache could not store is refused in the manifest, naming the
    /// entry and the limit; 255 bytes is fine.
    func testTeacherNamesTheCacheCannotStoreAreRefusedEarly() throws {
        let long = String(repeating: "n", count: 300)
        assertThrows(try manifest("[[teacher]]\nname = \"\(long)\"\npath = \"x\""), containing: ["x.toml", "teacher[0].name", "300 bytes", "255"])
        let multibyte = String(repeating: "é", count: 128)   // 256 bytes
        assertThrows(try manifest("[[teacher]]\nname = \"\(multibyte)\"\npath = \"x\""), containing: ["teacher[0].name", "256 bytes"])
        assertThrows(try manifest("[[teacher]]\nname = \"a\\u0007b\"\npath = \"x\""), containing: ["teacher[0].name", "control character"])
        XCTAssertNoThrow(try manifest("[[teacher]]\nname = \"\(String(repeating: "n", count: 255))\"\npath = \"x\""))
    }

    /// A manifest that is missing, a directory, a FIFO or not UTF-8 says which.
    func testUnreadableManifestsSayWhy() throws {
        let dir = temporaryDirectory(self)
        assertThrows(try PoolManifest.load(contentsOf: dir.appendingPathComponent("none.toml")), containing: ["none.toml", "no such file"])
        assertThrows(try PoolManifest.load(contentsOf: dir), containing: ["is a directory"])
        let fifo = dir.appendingPathComponent("fifo.toml")
        XCTAssertEqual(mkfifo(fifo.path, 0o644), 0)
        assertThrows(try PoolManifest.load(contentsOf: fifo), containing: ["fifo.toml", "FIFO"])
        let bad = dir.appendingPathComponent("bad.toml")
        try Data(Array("[[teacher]]\nname = \"".utf8) + [0xFF] + Array("\"\n".utf8)).write(to: bad)
        assertThrows(try PoolManifest.load(contentsOf: bad), containing: ["bad.toml", "not valid UTF-8", "line 2"])
    }
}
