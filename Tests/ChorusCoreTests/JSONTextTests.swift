import ChorusCore
import Foundation
import XCTest

final class JSONTextTests: XCTestCase {
    /// A metrics row whose string field holds every character JSON must escape parses back to
    /// the same string (a raw newline used to split the row in metrics.jsonl).
    func testMetricsLineEscapesControlCharactersQuotesAndBackslashes() throws {
        let nasty = "line1\nline2\ttab \"quoted\" back\\slash \u{01} bell\u{07} cr\r ff\u{0C} bs\u{08} é / ∑ 🎵"
        let line = JSONLine([("step", .int(3)), ("note", .string(nasty)), ("loss", .double(.nan)),
                             ("lr", .double(0.25)), ("key \"with\" quote\n", .string("x")), ("raw", .raw("[1,2]"))])
        XCTAssertFalse(line.text.contains("\n"), "a metrics row must stay on one line: \(line.text)")
        XCTAssertFalse(line.text.unicodeScalars.contains { $0.value < 0x20 }, "no raw control characters: \(line.text)")
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.text.utf8)) as? [String: Any])
        XCTAssertEqual(obj["note"] as? String, nasty)
        XCTAssertEqual(obj["step"] as? Int, 3)
        XCTAssertTrue(obj["loss"] is NSNull, "non-finite numbers are written as null")
        XCTAssertEqual(obj["lr"] as? Double, 0.25)
        XCTAssertEqual(obj["key \"with\" quote\n"] as? String, "x")
        XCTAssertEqual(obj["raw"] as? [Int], [1, 2])
    }

    func testEscapesAreTheShortFormsThenUnicode() {
        XCTAssertEqual(JSONText.string("a\"b\\c\nd\re\tf\u{08}g\u{0C}h\u{01}i\u{1F}/é"),
                       "\"a\\\"b\\\\c\\nd\\re\\tf\\bg\\fh\\u0001i\\u001f/é\"")
        XCTAssertEqual(JSONText.number(Float.infinity), "null")
        XCTAssertEqual(JSONText.number(-Double.infinity), "null")
        XCTAssertEqual(JSONText.number(Float(0.5)), "0.5")
        XCTAssertEqual(JSONText.object([("a", JSONText.array(["1", "null"]))]), "{\"a\":[1,null]}")
    }
}
