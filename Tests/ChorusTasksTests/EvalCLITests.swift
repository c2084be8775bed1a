import ChorusTasks
import ChorusTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `chorus eval`: the output line and the one-line errors.
final class EvalCLITests: XCTestCase {
    /// One line, exactly `{"NAME":{"mean_at_k":x,"best_at_k":y,"k":K,"problems":N}}`, NAME the
    /// file name without extension; greedy results equal the in-process evaluator's (answers
    /// built so that half are right); a fixed seed repeats.
    func testOutputLine() throws {
        let t = try TinyTask(self)
        var answers: [String] = []
        for (i, p) in t.prompts.enumerated() {
            let ids = try greedyContinuation(model: t.model, prompt: t.tokenizer.encode(p), stops: [t.eos], maxTokens: t.maxTokens)
            let text = try t.tokenizer.decode(Array(ids.prefix { $0 != t.eos }))
            answers.append(i < 2 ? text : "never")
        }
        let data = try t.writeData("arith-test.v2.jsonl", answers: answers)
        let (status, out, err) = try runChorus(["eval", "--model", t.modelDir.path, "--data", data.path, "--k", "2",
                                                "--temperature", "0", "--max-tokens", "\(t.maxTokens)", "--problems", "4"])
        XCTAssertEqual(status, 0, err)
        XCTAssertEqual(out, "{\"arith-test.v2\":{\"mean_at_k\":0.5,\"best_at_k\":0.5,\"k\":2,\"problems\":4}}\n")

        let sampled = ["eval", "--model", t.modelDir.path, "--data", data.path, "--seed", "5", "--top-p", "0.9"]
        let (s1, o1, e1) = try runChorus(sampled)
        XCTAssertEqual(s1, 0, e1)
        let (_, o2, _) = try runChorus(sampled)
        XCTAssertEqual(o1, o2, "same seed, same output")
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(o1.utf8)) as? [String: [String: Any]])
        XCTAssertEqual(Array(obj.keys), ["arith-test.v2"])
        let inner = try XCTUnwrap(obj["arith-test.v2"])
        XCTAssertEqual(Set(inner.keys), ["mean_at_k", "best_at_k", "k", "problems"])
        XCTAssertEqual(inner["k"] as? Int, 8)
        XCTAssertEqual(inner["problems"] as? Int, 6)
        let mean = try XCTUnwrap((inner["mean_at_k"] as? NSNumber)?.doubleValue), best = try XCTUnwrap((inner["best_at_k"] as? NSNumber)?.doubleValue)
        XCTAssertTrue((0...1).contains(mean) && (0...1).contains(best) && best >= mean - 1e-12, o1)
    }

    /// Bad options and bad data: non-zero status, nothing on stdout, one line on stderr naming
    /// the option or the file (and line).
    func testBadInputIsOneLineError() throws {
        let t = try TinyTask(self)
        let data = try t.writeData("d.jsonl", answers: Array(repeating: "1", count: 6))
        let bad = t.dir.appendingPathComponent("bad.jsonl")
        try "{\"prompt\": \"1 + 1 =\", \"answer\": \"2\"}\n{\"prompt\": 5}\n".write(to: bad, atomically: true, encoding: .utf8)
        let fifo = t.dir.appendingPathComponent("fifo.jsonl")
        XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
        let empty = t.dir.appendingPathComponent("empty.jsonl")
        XCTAssertTrue(FileManager.default.createFile(atPath: empty.path, contents: Data()))
        let base = ["eval", "--model", t.modelDir.path, "--data", data.path]
        let cases: [([String], String)] = [
            (base + ["--k", "0"], "--k"), (base + ["--k", "1025"], "--k"), (base + ["--problems", "0"], "--problems"),
            (base + ["--problems", "7"], "7"), (base + ["--temperature", "-0.5"], "--temperature"),
            (base + ["--temperature=-0.5"], "--temperature"), (base + ["--k", "-1"], "--k"), (base + ["--problems", "-2"], "--problems"),
            (base + ["--max-tokens", "-4"], "--max-tokens"), (base + ["--top-p", "-0.1"], "--top-p"),
            (base + ["--temperature", "nan"], "--temperature"), (base + ["--temperature", "inf"], "--temperature"),
            (base + ["--top-p", "0"], "--top-p"), (base + ["--top-p", "1.01"], "--top-p"),
            (base + ["--max-tokens", "0"], "--max-tokens"), (base + ["--max-tokens", "1000000"], "--max-tokens"),
            (["eval", "--model", t.modelDir.path, "--data", bad.path], "\(bad.path):2:"),
            (["eval", "--model", t.modelDir.path, "--data", fifo.path], "FIFO"),
            (["eval", "--model", t.modelDir.path, "--data", empty.path], "empty.jsonl"),
            (["eval", "--model", t.modelDir.path, "--data", t.dir.appendingPathComponent("nope.jsonl").path], "nope.jsonl"),
            (["eval", "--model", t.dir.appendingPathComponent("nomodel").path, "--data", data.path], "nomodel"),
        ]
        for (args, fragment) in cases {
            let (status, out, err) = try runChorus(args)
            XCTAssertNotEqual(status, 0, "\(args)")
            XCTAssertLessThan(status, 128, "terminated by a signal: \(args)")
            XCTAssertTrue(out.isEmpty, "no stdout on error: \(out)")
            let lines = err.split(separator: "\n").filter { !$0.isEmpty }
            XCTAssertEqual(lines.count, 1, "one-line error for \(args): \(err)")
            XCTAssertTrue(err.contains(fragment), "error for \(args) should name '\(fragment)': \(err)")
        }
    }
}
