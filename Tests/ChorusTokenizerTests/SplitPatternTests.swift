import Foundation
import XCTest
@testable import ChorusTokenizer

/// The hand-written matchers agree with the same regexes run by ICU (NSRegularExpression),
/// on the golden texts and on seeded random strings of tricky characters.
final class SplitPatternTests: XCTestCase {
    private func matches(_ pattern: SplitPattern, _ text: String) -> [Range<Int>] {
        let bytes = Array(text.utf8)
        var out: [Range<Int>] = []
        bytes.withUnsafeBufferPointer { p in pattern.forEachMatch(in: p, 0..<p.count) { out.append($0) } }
        return out
    }

    func testHandWrittenMatchersAgreeWithICU() throws {
        var texts = try Fixtures.golden()["qwen2"]!.map(\.text)
        // Random strings from a fixed LCG, so a failure reproduces.
        let palette: [String] = ["a", "Z", "7", " ", "  ", "\t", "\n", "\r", "\r\n", "'", "'s", "'LL", "'Re", "ſ", "é",
                                 "e\u{301}", "中", "١", "Ⅻ", "²", "😀", "\u{200D}", "\u{A0}", "\u{3000}", "\u{2028}",
                                 "\u{85}", "\u{0B}", "\u{1C}", ".", "!", "-", "_", "{", "\"", "ǅ"]
        var state: UInt64 = 0x9E3779B97F4A7C15
        for _ in 0..<400 {
            var s = ""
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let n = Int(state >> 59) + 1
            for _ in 0..<n {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                s += palette[Int(state >> 33) % palette.count]
            }
            texts.append(s)
        }
        for (known, source) in [(SplitPattern.gpt2, KnownPattern.gpt2), (.qwen2, KnownPattern.qwen2), (.llama3, KnownPattern.llama3)] {
            let icu = SplitPattern.regex(try NSRegularExpression(pattern: source))
            for t in texts {
                XCTAssertEqual(matches(known, t), matches(icu, t), "pattern \(source) on \(t.debugDescription)")
            }
        }
    }

    func testSplitBehaviors() {
        let text = "a--b-c"
        let bytes = Array(text.utf8)
        func pieces(_ b: SplitBehavior, invert: Bool = false) -> [String] {
            bytes.withUnsafeBufferPointer { p in
                splitPieces(p, 0..<p.count, pattern: .literal(Array("-".utf8)), behavior: b, invert: invert)
            }.map { String(decoding: bytes[$0], as: UTF8.self) }
        }
        // Expected values are HF's documented examples for the delimiter "-".
        XCTAssertEqual(pieces(.removed), ["a", "b", "c"])
        XCTAssertEqual(pieces(.isolated), ["a", "-", "-", "b", "-", "c"])
        XCTAssertEqual(pieces(.mergedWithPrevious), ["a-", "-", "b-", "c"])
        XCTAssertEqual(pieces(.mergedWithNext), ["a", "-", "-b", "-c"])
        XCTAssertEqual(pieces(.contiguous), ["a", "--", "b", "-", "c"])
        // invert flips which pieces count as delimiters (recorded from HF tokenizers 0.23.3).
        XCTAssertEqual(pieces(.removed, invert: true), ["-", "-", "-"])
        XCTAssertEqual(pieces(.isolated, invert: true), ["a", "-", "-", "b", "-", "c"])
        XCTAssertEqual(pieces(.mergedWithPrevious, invert: true), ["a", "-", "-b", "-c"])
        XCTAssertEqual(pieces(.mergedWithNext, invert: true), ["a-", "-", "b-", "c"])
        XCTAssertEqual(pieces(.contiguous, invert: true), ["a", "--", "b", "-", "c"])
    }
}
