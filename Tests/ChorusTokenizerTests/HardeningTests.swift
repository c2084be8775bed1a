import ChorusTestSupport
import Foundation
import XCTest
@testable import ChorusTokenizer
#if canImport(Glibc)
import Glibc
#endif

/// Issue 10 (hardening), class 9: tokenizer edge cases are refused by name instead of encoding
/// differently from Hugging Face or writing a useless file.
final class TokenizerHardeningTests: XCTestCase {
    /// The qwen2 fixture with `edit` applied to its parsed document.
    private func load(editing edit: (inout JSONValue) -> Void) throws -> Tokenizer {
        var doc = try JSONParser.parse(try Fixtures.data("qwen2.json"))
        edit(&doc)
        return try Tokenizer(data: Data(doc.serialized().utf8))
    }

    /// Sets `added_tokens[index].key = value`.
    private func setAdded(_ doc: inout JSONValue, _ index: Int, _ key: String, _ value: JSONValue) {
        var items = doc["added_tokens"]!.arrayValue!
        items[index].set(key, value)
        doc.set("added_tokens", .array(items))
    }

    /// An added token whose id is another token's (in the vocabulary or among the added
    /// tokens), or whose content has another vocabulary id, is refused: HF would not use that id.
    func testAddedTokenIdCollisionsAreRefused() throws {
        let doc = try JSONParser.parse(try Fixtures.data("qwen2.json"))
        let vocab = doc["model"]!["vocab"]!.objectValue!
        let (plain, plainId) = try XCTUnwrap(vocab.first { !$0.0.hasPrefix("<|") })
        let plainIdInt = try XCTUnwrap(plainId.intValue)
        // 1. the id of an ordinary vocabulary entry, for other content
        assertThrows(try load { setAdded(&$0, 1, "id", .number("\(plainIdInt)")) }, containing: ["added_tokens[1].id", "\(plainIdInt)", plain])
        // 2. content in the vocabulary under another id
        assertThrows(try load { setAdded(&$0, 1, "id", .number("5000")) }, containing: ["added_tokens[1].id", "<|im_start|>", "vocabulary id 1"])
        // 3. two added tokens with one id, neither in the vocabulary
        assertThrows(try load { d in
            var items = d["added_tokens"]!.arrayValue!
            var a = items[0], b = items[0]
            a.set("content", .string("<|new-a|>")); a.set("id", .number("5000"))
            b.set("content", .string("<|new-b|>")); b.set("id", .number("5000"))
            items += [a, b]
            d.set("added_tokens", .array(items))
        }, containing: ["added_tokens[", ".id", "5000", "<|new-a|>"])
        // The unmodified file and a fresh id past the vocabulary still load.
        XCTAssertNoThrow(try load { _ in })
        let t = try load { d in
            var items = d["added_tokens"]!.arrayValue!
            var a = items[0]
            a.set("content", .string("<|fresh|>")); a.set("id", .number("1000"))
            items.append(a)
            d.set("added_tokens", .array(items))
        }
        XCTAssertEqual(t.encode("<|fresh|>"), [1000])
    }

    /// Two vocabulary tokens with one id are refused (the decode would be arbitrary).
    func testVocabularyIdCollisionIsRefused() throws {
        assertThrows(try load { d in
            var model = d["model"]!
            var vocab = model["vocab"]!.objectValue!
            vocab.append(("zzq-collide", .number("7")))
            model.set("vocab", .object(vocab))
            d.set("model", model)
        }, containing: ["model.vocab.zzq-collide", "id 7", "also the id"])
    }

    /// Training refuses empty input and invalid UTF-8, naming the file and the first bad byte.
    func testTrainingInputEdgeCases() throws {
        let dir = temporaryDirectory(self)
        let empty = dir.appendingPathComponent("empty.txt")
        try Data().write(to: empty)
        let trainer = BPETrainer(vocabSize: 300, specialTokens: ["<|endoftext|>"])
        assertThrows(try trainer.train(files: [empty]), containing: ["no text to train on", "empty.txt"])
        assertThrows(try trainer.train(texts: []), containing: ["no text to train on"])
        assertThrows(try trainer.train(texts: ["", ""]), containing: ["no text to train on"])
        let bad = dir.appendingPathComponent("bad.txt")
        try Data(Array("first line\nsecond ".utf8) + [0xFF] + Array(" rest".utf8)).write(to: bad)
        assertThrows(try trainer.train(files: [bad]), containing: ["bad.txt", "not valid UTF-8", "0xFF", "line 2"])
        let fifo = dir.appendingPathComponent("fifo.txt")
        XCTAssertEqual(mkfifo(fifo.path, 0o644), 0)
        assertThrows(try trainer.train(files: [fifo]), containing: ["fifo.txt", "FIFO"])
        XCTAssertGreaterThanOrEqual(try trainer.train(texts: ["ab ab ab ab"]).vocabSize, 257, "a tiny input still trains")
    }

    /// A tokenizer.json that is not UTF-8, or is a FIFO, is refused by name.
    func testTokenizerFileEdgeCases() throws {
        let dir = temporaryDirectory(self)
        let fifo = dir.appendingPathComponent("tokenizer.json")
        XCTAssertEqual(mkfifo(fifo.path, 0o644), 0)
        assertThrows(try Tokenizer(contentsOf: fifo), containing: ["tokenizer.json", "FIFO"])
        let bad = dir.appendingPathComponent("bad.json")
        try Data(Array("{\"model\": \"".utf8) + [0xC0, 0xAF] + Array("\"}".utf8)).write(to: bad)
        assertThrows(try Tokenizer(contentsOf: bad), containing: ["bad.json"])
    }
}
