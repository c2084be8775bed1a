import Foundation
import XCTest
@testable import ChorusTokenizer

/// One golden case recorded by Fixtures/make_fixtures.py with HF `tokenizers`.
struct GoldenCase: Decodable {
    let text: String
    let ids: [Int]
    let decoded: String
    let decoded_skip_special: String
}

/// Test helpers: fixture access.
enum Fixtures {
    static func url(_ name: String) throws -> URL {
        let parts = name.split(separator: ".", maxSplits: 1).map(String.init)
        guard let url = Bundle.module.url(forResource: parts[0], withExtension: parts.count > 1 ? parts[1] : nil,
                                          subdirectory: "Fixtures") else {
            // A missing fixture is a failure, never a skip.
            throw TokenizerError.unreadableFile(path: "Fixtures/\(name)", reason: "not in the test bundle")
        }
        return url
    }

    static func data(_ name: String) throws -> Data { try Data(contentsOf: try url(name)) }

    static func tokenizer(_ name: String) throws -> Tokenizer { try Tokenizer(contentsOf: try url(name)) }

    /// golden.json: tokenizer name -> cases.
    static func golden() throws -> [String: [GoldenCase]] {
        try JSONDecoder().decode([String: [GoldenCase]].self, from: try data("golden.json"))
    }
}

/// Asserts that `body` throws exactly `expected`.
func XCTAssertThrowsTokenizerError<T>(_ expected: TokenizerError, file: StaticString = #filePath, line: UInt = #line,
                                      _ body: () throws -> T) {
    do {
        _ = try body()
        XCTFail("expected \(expected), nothing was thrown", file: file, line: line)
    } catch let error as TokenizerError {
        XCTAssertEqual(error, expected, file: file, line: line)
        XCTAssertFalse(error.description.contains("\n"), "error description must be one line", file: file, line: line)
    } catch {
        XCTFail("expected \(expected), got \(error)", file: file, line: line)
    }
}
