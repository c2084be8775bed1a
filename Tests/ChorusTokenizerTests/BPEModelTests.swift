import Foundation
import XCTest
@testable import ChorusTokenizer

/// Hand-made tiny models for BPE details the trained fixtures cannot pin down. Expected ids
/// were recorded from HF `tokenizers` 0.23.3 loading the same JSON.
final class BPEModelTests: XCTestCase {
    private func tiny(ignoreMerges: Bool) throws -> Tokenizer {
        let json = """
        {"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
         "pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},
         "post_processor":null,"decoder":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true},
         "model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,"end_of_word_suffix":null,
          "fuse_unk":false,"byte_fallback":false,"ignore_merges":\(ignoreMerges),
          "vocab":{"a":0,"b":1,"c":2,"bc":3,"ab":4,"abc":5,"Ġ":6},"merges":["b c","a b","ab c"]}}
        """
        return try Tokenizer(data: Data(json.utf8))
    }

    /// Lowest rank first: "b c" (rank 0) beats "a b" (rank 1), so "abc" never reaches "ab c".
    func testLowestRankFirst() throws {
        let tok = try tiny(ignoreMerges: false)
        XCTAssertEqual(tok.encode("abc"), [0, 3])
        XCTAssertEqual(tok.encode("abc abcc"), [0, 3, 6, 0, 3, 2])
    }

    /// ignore_merges: a word that is a vocabulary entry is emitted whole.
    func testIgnoreMerges() throws {
        let tok = try tiny(ignoreMerges: true)
        XCTAssertEqual(tok.encode("abc"), [5])
        XCTAssertEqual(tok.encode("abc abcc"), [5, 6, 0, 3, 2])
    }

    /// A byte with no vocabulary entry and no unk_token is dropped, as HF does.
    func testMissingByteWithoutUnkIsDropped() throws {
        XCTAssertEqual(try tiny(ignoreMerges: false).encode("abx"), [4])
    }

    /// Leftmost on equal ranks: "aaa" with the single merge "a a" gives "aa" + "a".
    func testLeftmostOnTies() throws {
        let json = """
        {"model":{"type":"BPE","vocab":{"a":0,"aa":1},"merges":[["a","a"]]},
         "pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"use_regex":false,"trim_offsets":false},
         "decoder":{"type":"ByteLevel","add_prefix_space":false,"use_regex":false,"trim_offsets":false}}
        """
        let tok = try Tokenizer(data: Data(json.utf8))
        XCTAssertEqual(tok.encode("aaa"), [1, 0])
        XCTAssertEqual(tok.encode("aaaaa"), [1, 1, 0])
        XCTAssertEqual(try tok.decode([1, 0]), "aaa")
    }
}
