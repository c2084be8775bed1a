import Foundation
import XCTest
@testable import ChorusTokenizer

/// The Swift trainer is deterministic, writes the committed file byte for byte, and HF
/// `tokenizers` loading that file produced the ids Swift produces (swift_trained_golden.json).
final class TrainerTests: XCTestCase {
    private func trainFixture() throws -> Tokenizer {
        let trainer = BPETrainer(vocabSize: 700, specialTokens: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        return try trainer.train(files: [try Fixtures.url("train_corpus.txt")])
    }

    func testRetrainingReproducesCommittedFile() throws {
        let committed = String(decoding: try Fixtures.data("swift_trained.json"), as: UTF8.self)
        let first = try trainFixture().jsonString()
        let second = try trainFixture().jsonString()
        XCTAssertEqual(first, second, "training is not deterministic")
        XCTAssertEqual(first, committed, "trainer output differs from Fixtures/swift_trained.json")
    }

    func testTrainedTokenizerMatchesHFIds() throws {
        let tok = try trainFixture()
        XCTAssertEqual(tok.vocabSize, 700)
        let cases = try JSONDecoder().decode([GoldenCase].self, from: try Fixtures.data("swift_trained_golden.json"))
        XCTAssertGreaterThan(cases.count, 100)
        for c in cases {
            XCTAssertEqual(tok.encode(c.text), c.ids, "ids differ for \(c.text.debugDescription)")
            XCTAssertEqual(try tok.decode(c.ids), c.decoded)
            XCTAssertEqual(try tok.decode(tok.encode(c.text)), c.text.precomposedStringWithCanonicalMapping)
        }
    }

    func testTrainerMergesMostFrequentPairFirst() throws {
        let tok = try BPETrainer(vocabSize: 258).train(texts: ["ab ab ab cd"])
        // "ab" occurs 3 times (as "ab" and " ab"); it must be the first merge, id 256.
        XCTAssertEqual(tok.idToToken(256), "ab")
        XCTAssertEqual(tok.encode("ab"), [256])
        XCTAssertEqual(tok.vocabSize, 258)
    }

    func testTrainerRefusesTooSmallVocab() {
        XCTAssertThrowsTokenizerError(.invalidTrainingRequest(reason: "vocab size 100 is below 256 byte symbols + 1 special tokens")) {
            try BPETrainer(vocabSize: 100, specialTokens: ["<s>"]).train(texts: ["x"])
        }
    }
}
