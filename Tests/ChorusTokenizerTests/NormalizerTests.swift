import Foundation
import XCTest
@testable import ChorusTokenizer

/// The NFC fast path (Foundation only on stretches that may change) equals plain NFC.
final class NormalizerTests: XCTestCase {
    func testNFCFastPathEqualsFoundation() throws {
        var texts = try Fixtures.golden()["qwen2"]!.map(\.text)
        texts += [
            "\u{AC00}\u{11A8}",              // Hangul LV + T jamo compose
            "\u{1100}\u{1161}x\u{1100}",     // L + V compose
            "か\u{3099}き\u{309A}",          // kana + voicing marks
            "a\u{301}\u{323}b",              // marks reordered by ccc, then composed
            "\u{2000}\u{2001}\u{212B}\u{2126}",  // singleton decompositions
            "e\u{301}",
            "\u{301}e",
            "ABC\u{30A}",
            "\u{0627}\u{0653}",              // Arabic alef + madda
            "中文\u{301}😀\u{1F3FD}\u{301}",
        ]
        for t in texts {
            let fast = String(decoding: Normalizer.nfc.apply(Array(t.utf8)), as: UTF8.self)
            let slow = t.precomposedStringWithCanonicalMapping
            XCTAssertEqual(Array(fast.unicodeScalars), Array(slow.unicodeScalars), t.debugDescription)
        }
    }
}
