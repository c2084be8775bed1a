import Foundation
import XCTest
@testable import ChorusTokenizer

/// Malformed or unsupported files fail with a specific, one-line error naming the problem.
final class ErrorTests: XCTestCase {
    /// The qwen2 fixture with `edit` applied to its parsed document.
    private func load(editing edit: (inout JSONValue) -> Void) throws -> Tokenizer {
        var doc = try JSONParser.parse(try Fixtures.data("qwen2.json"))
        edit(&doc)
        return try Tokenizer(data: Data(doc.serialized().utf8))
    }

    private func setModel(_ doc: inout JSONValue, _ key: String, _ value: JSONValue) {
        var model = doc["model"]!
        model.set(key, value)
        doc.set("model", model)
    }

    func testMalformedJSON() {
        XCTAssertThrowsTokenizerError(.malformedJSON(offset: 12, reason: "expected ',' or '}'")) {
            try Tokenizer(data: Data("{\"model\": 1 2}".utf8))
        }
        XCTAssertThrowsTokenizerError(.malformedJSON(offset: 1, reason: "unexpected end of input")) {
            try Tokenizer(data: Data("[".utf8))
        }
        XCTAssertThrowsTokenizerError(.invalidField(field: "(root)", reason: "expected a JSON object")) {
            try Tokenizer(data: Data("[]".utf8))
        }
    }

    func testMissingFile() {
        do {
            _ = try Tokenizer(contentsOf: URL(fileURLWithPath: "/nonexistent/tokenizer.json"))
            XCTFail("expected an error")
        } catch let TokenizerError.unreadableFile(path, _) {
            XCTAssertEqual(path, "/nonexistent/tokenizer.json")
        } catch {
            XCTFail("unexpected \(error)")
        }
    }

    func testErrorsFromAFileNameIt() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("chorus-bad-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: url) }
        try Data("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}".utf8).write(to: url)
        XCTAssertThrowsTokenizerError(.inFile(path: url.path, .unsupportedComponent(field: "model", type: "Unigram"))) {
            try Tokenizer(contentsOf: url)
        }
    }

    func testUnknownPreTokenizer() {
        XCTAssertThrowsTokenizerError(.unsupportedComponent(field: "pre_tokenizer.pretokenizers[1]", type: "Whitespace")) {
            try self.load { doc in
                var pre = doc["pre_tokenizer"]!
                pre.set("pretokenizers", .array([pre["pretokenizers"]!.arrayValue![0], .object([("type", .string("Whitespace"))])]))
                doc.set("pre_tokenizer", pre)
            }
        }
    }

    func testUnknownModelType() {
        XCTAssertThrowsTokenizerError(.unsupportedComponent(field: "model", type: "WordPiece")) {
            try self.load { self.setModel(&$0, "type", .string("WordPiece")) }
        }
    }

    func testUnknownNormalizerDecoderPostProcessor() {
        XCTAssertThrowsTokenizerError(.unsupportedComponent(field: "normalizer", type: "Lowercase")) {
            try self.load { $0.set("normalizer", .object([("type", .string("Lowercase"))])) }
        }
        XCTAssertThrowsTokenizerError(.unsupportedComponent(field: "decoder", type: "Metaspace")) {
            try self.load { $0.set("decoder", .object([("type", .string("Metaspace"))])) }
        }
        XCTAssertThrowsTokenizerError(.unsupportedComponent(field: "post_processor", type: "BertProcessing")) {
            try self.load { $0.set("post_processor", .object([("type", .string("BertProcessing"))])) }
        }
    }

    func testRefusedOptions() {
        XCTAssertThrowsTokenizerError(.unsupportedOption(field: "model", option: "byte_fallback", reason: "byte fallback is not supported")) {
            try self.load { self.setModel(&$0, "byte_fallback", .bool(true)) }
        }
        XCTAssertThrowsTokenizerError(.unsupportedOption(field: "(root)", option: "truncation", reason: "only null is supported")) {
            try self.load { $0.set("truncation", .object([("max_length", .number("8"))])) }
        }
        XCTAssertThrowsTokenizerError(.unsupportedOption(
            field: "pre_tokenizer", option: "ByteLevel",
            reason: "exactly one ByteLevel pre-tokenizer, last in the sequence, is required for byte-level BPE")) {
            try self.load { $0.set("pre_tokenizer", .null) }
        }
    }

    func testMergeWithUnknownToken() {
        XCTAssertThrowsTokenizerError(.mergeTokenNotInVocab(merge: "zz@@ q", token: "zz@@")) {
            try self.load { self.setModel(&$0, "merges", .array([.string("zz@@ q")])) }
        }
        XCTAssertThrowsTokenizerError(.invalidField(field: "model.merges[0]", reason: "expected \"left right\", got \"abc\"")) {
            try self.load { self.setModel(&$0, "merges", .array([.string("abc")])) }
        }
    }

    func testMissingVocab() {
        XCTAssertThrowsTokenizerError(.missingField(field: "model.vocab")) {
            try self.load { doc in
                doc.set("model", .object([("type", .string("BPE")), ("merges", .array([]))]))
            }
        }
    }

    func testDecodeUnknownId() throws {
        let tok = try Fixtures.tokenizer("qwen2.json")
        XCTAssertThrowsTokenizerError(.unknownId(tok.vocabSize)) { try tok.decode([5, tok.vocabSize]) }
        XCTAssertThrowsTokenizerError(.unknownId(-1)) { try tok.decode([-1]) }
    }
}
