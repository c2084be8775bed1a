import ChorusModel
import ChorusTeachers
import ChorusTokenizer
import Foundation
import ChorusTestSupport
import XCTest

/// `chorus score --text` and `chorus info --pool` (issue N), on a pool whose models carry a
/// real byte-level BPE tokenizer.json.
final class TextPoolTests: XCTestCase {
    var dir: URL!
    var tokenizer: Tokenizer!
    let text = "héllo 日本 🎉 Grüße"

    /// Writes a random tiny model of the tokenizer's vocabulary with that tokenizer.json.
    func writeTextModel(_ name: String, seed: UInt64, vocab: Int? = nil) throws {
        let m = tinyModel(seed: seed, vocab: vocab ?? tokenizer.vocabSize)
        let d = dir.appendingPathComponent(name)
        try m.save(directory: d)
        try tokenizer.write(to: d.appendingPathComponent("tokenizer.json"))
    }

    override func setUpWithError() throws {
        dir = temporaryDirectory(self)
        tokenizer = try BPETrainer(vocabSize: 290, specialTokens: ["<|endoftext|>"])
            .train(texts: (0..<10).map { "héllo wörld \($0) 日本 🎉" })
        try writeTextModel("student", seed: 1)
        try writeTextModel("a", seed: 2)
        try writeTextModel("b", seed: 3)
        try "student = \"student\"\n[[teacher]]\nname = \"small\"\npath = \"a\"\n[[teacher]]\nname = \"big\"\npath = \"b\"\nweight = 3\n"
            .write(to: dir.appendingPathComponent("pool.toml"), atomically: true, encoding: .utf8)
    }

    func json(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let (status, out, err) = try runChorus(args)
        XCTAssertEqual(status, 0, err, file: file, line: line)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], out, file: file, line: line)
    }

    /// score --text scores what --tokens scores for the student tokenizer's ids; the text
    /// fields cover the response (positions L..n-1).
    func testScoreTextMatchesTokens() throws {
        let pool = dir.appendingPathComponent("pool.toml").path
        let ids = tokenizer.encode(text)
        XCTAssertGreaterThan(ids.count, 3)
        let common = ["score", "--pool", pool, "--aggregator", "arithmetic", "--prompt-length", "2"]
        let byTokens = try json(common + ["--tokens", ids.map(String.init).joined(separator: ",")])
        XCTAssertEqual(Set(byTokens.keys), ["positions", "teachers", "reference", "reference_entropy", "weights"], "--tokens output is unchanged")
        let byText = try json(common + ["--text", text])
        for k in byTokens.keys { XCTAssertEqual(byText[k] as? NSObject, byTokens[k] as? NSObject, k) }
        XCTAssertEqual(byText["full_text"] as? String, text)
        XCTAssertEqual(byText["text"] as? String, try tokenizer.decode(Array(ids.dropFirst(2))))
        XCTAssertEqual(byText["token_strings"] as? [String], try ids.dropFirst(2).map { try tokenizer.decode([$0]) })

        // Without a student in the manifest, the first teacher's tokenizer encodes the text.
        try "[[teacher]]\nname = \"small\"\npath = \"a\"\n".write(to: dir.appendingPathComponent("nostudent.toml"), atomically: true, encoding: .utf8)
        let o = try json(["score", "--pool", dir.appendingPathComponent("nostudent.toml").path, "--aggregator", "arithmetic", "--text", text])
        XCTAssertEqual(o["full_text"] as? String, text)

        // A --student without tokenizer.json: the error names that directory.
        try FileManager.default.copyItem(at: dir.appendingPathComponent("a"), to: dir.appendingPathComponent("bare"))
        try FileManager.default.removeItem(at: dir.appendingPathComponent("bare/tokenizer.json"))
        let (status, _, err) = try runChorus(common + ["--student", dir.appendingPathComponent("bare").path, "--text", text])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(err.contains("bare") && err.contains("no tokenizer.json"), err)
        let (both, _, bothErr) = try runChorus(common + ["--tokens", "1,2,3", "--text", text])
        XCTAssertNotEqual(both, 0)
        XCTAssertTrue(bothErr.contains("only one of --tokens, --text and --text-file"), bothErr)
    }

    /// info --pool describes the student and each teacher and checks the shared vocabulary.
    func testInfoPool() throws {
        let pool = dir.appendingPathComponent("pool.toml").path
        let o = try json(["info", "--pool", pool])
        XCTAssertEqual(o["ok"] as? Bool, true)
        let teachers = try XCTUnwrap(o["teachers"] as? [[String: Any]])
        XCTAssertEqual(teachers.map { $0["name"] as? String }, ["small", "big"])
        XCTAssertEqual(teachers.map { ($0["weight"] as? NSNumber)?.doubleValue }, [0.25, 0.75])
        for t in teachers {
            let model = try XCTUnwrap(t["model"] as? [String: Any])
            XCTAssertEqual(model["vocab_size"] as? Int, tokenizer.vocabSize)
            XCTAssertEqual(model["architecture"] as? String, "qwen3")
        }
        XCTAssertEqual(((o["student"] as? [String: Any])?["tokenizer_vocab_size"]) as? Int, tokenizer.vocabSize)
        let checks = try XCTUnwrap(o["checks"] as? [[String: Any]])
        XCTAssertEqual(checks.map { $0["name"] as? String }, ["names", "vocabulary"])
        XCTAssertTrue(checks.allSatisfy { $0["ok"] as? Bool == true })

        // A teacher with another vocabulary, and one whose directory is missing: both failed
        // checks naming them; the JSON still describes the rest; exit status 1.
        try writeTextModel("wide", seed: 4, vocab: tokenizer.vocabSize + 8)
        try "student = \"student\"\n[[teacher]]\nname = \"wide\"\npath = \"wide\"\n[[teacher]]\nname = \"gone\"\npath = \"gone\"\n"
            .write(to: dir.appendingPathComponent("bad.toml"), atomically: true, encoding: .utf8)
        let (status, out, err) = try runChorus(["info", "--pool", dir.appendingPathComponent("bad.toml").path])
        XCTAssertEqual(status, 1, err)
        let bad = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        XCTAssertEqual(bad["ok"] as? Bool, false)
        let badChecks = try XCTUnwrap(bad["checks"] as? [[String: Any]])
        let failed = badChecks.filter { $0["ok"] as? Bool == false }.map { "\($0["name"]!): \($0["detail"]!)" }
        XCTAssertTrue(failed.contains { $0.contains("teacher[1] ('gone')") && $0.contains("gone") }, "\(failed)")
        XCTAssertTrue(failed.contains { $0.hasPrefix("vocabulary") }, "\(failed)")
        let wide = try XCTUnwrap((bad["teachers"] as? [[String: Any]])?.first?["model"] as? [String: Any])
        XCTAssertEqual(wide["vocab_size"] as? Int, tokenizer.vocabSize + 8)

        // An unreadable manifest is a one-line error naming it.
        let (missing, _, missingErr) = try runChorus(["info", "--pool", dir.appendingPathComponent("none.toml").path])
        XCTAssertNotEqual(missing, 0)
        XCTAssertTrue(missingErr.contains("none.toml"), missingErr)
    }
}
