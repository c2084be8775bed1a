import Foundation
import XCTest
@testable import ChorusTokenizer

/// `addSpecialTokens` (used for `<|teacher-k|>` control tokens) and `write(to:)`.
final class SpecialTokenTests: XCTestCase {
    func testAddSpecialTokensAppendsFreshIds() throws {
        let tok = try Fixtures.tokenizer("qwen2.json")
        let before = tok.vocabSize
        let plain = tok.encode("<|teacher-0|>hi")
        XCTAssertGreaterThan(plain.count, 2, "unknown control token must be split before it is added")

        let ids = try tok.addSpecialTokens(["<|teacher-0|>", "<|teacher-1|>", "<|endoftext|>", "<|teacher-0|>"])
        XCTAssertEqual(ids, [before, before + 1, try XCTUnwrap(tok.tokenToId("<|endoftext|>")), before])
        XCTAssertEqual(tok.vocabSize, before + 2)
        XCTAssertEqual(tok.tokenToId("<|teacher-1|>"), before + 1)
        XCTAssertEqual(tok.idToToken(before), "<|teacher-0|>")

        let encoded = tok.encode("<|teacher-0|>hi")
        XCTAssertEqual(encoded.first, before)
        XCTAssertEqual(Array(encoded.dropFirst()), tok.encode("hi"))
        XCTAssertEqual(try tok.decode(encoded), "<|teacher-0|>hi")
        XCTAssertEqual(try tok.decode(encoded, skipSpecialTokens: true), "hi")
    }

    func testExistingVocabularyEntryKeepsItsId() throws {
        let tok = try Fixtures.tokenizer("qwen2.json")
        let id = try XCTUnwrap(tok.tokenToId("er"))
        let size = tok.vocabSize
        XCTAssertEqual(try tok.addSpecialTokens(["er"]), [id])
        XCTAssertEqual(tok.vocabSize, size)
        // Now a special token, "er" is cut out of the raw text before pre-tokenization.
        XCTAssertEqual(tok.encode("otherwise"), tok.encode("oth") + [id] + tok.encode("wise"))
    }

    func testAddedTokensSurviveWriteAndReload() throws {
        let tok = try Fixtures.tokenizer("llama3.json")
        let ids = try tok.addSpecialTokens(["<|teacher-0|>", "<|teacher-1|>"])
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("chorus-tok-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: url) }
        try tok.write(to: url)
        let reloaded = try Tokenizer(contentsOf: url)
        let text = "<|teacher-1|>Solve 12+30.<|teacher-0|>"
        XCTAssertEqual(reloaded.encode(text), tok.encode(text))
        XCTAssertEqual(reloaded.tokenToId("<|teacher-1|>"), ids[1])
        XCTAssertEqual(reloaded.vocabSize, tok.vocabSize)
    }

    func testEmptySpecialTokenIsRefused() throws {
        let tok = try Fixtures.tokenizer("qwen2.json")
        XCTAssertThrowsTokenizerError(.invalidField(field: "added_tokens", reason: "a special token cannot be empty")) {
            try tok.addSpecialTokens([""])
        }
    }

    /// Loading and writing back changes nothing: keys keep their order, values their spelling.
    func testWriteRoundTripsDocument() throws {
        for name in ["qwen2.json", "llama3.json", "gpt2.json", "swift_trained.json"] {
            let original = try JSONParser.parse(try Fixtures.data(name))
            let tok = try Tokenizer(data: try Fixtures.data(name))
            XCTAssertEqual(try JSONParser.parse(Data(tok.jsonString().utf8)), original, name)
        }
    }
}
