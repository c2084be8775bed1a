import ChorusModel
import ChorusTokenizer
import Foundation
import ChorusTestSupport
import XCTest

/// The self-teacher through the CLI with a real tokenizer.json: its scores are the model's own
/// log-probs of the response after "Solution: {answer}\n" + prompt, as `chorus logprobs` gives
/// for that spliced context.
final class SelfTeacherEndToEndTests: XCTestCase {
    func testSelfTeacherScoresTheRenderedContext() throws {
        let dir = temporaryDirectory(self)
        let texts = (0..<40).map { "Q: \($0) + \($0 % 7) =\nA: \($0 + $0 % 7)\nSolution: \($0)" }
        let tok = try BPETrainer(vocabSize: 300, specialTokens: ["<|endoftext|>"]).train(texts: texts)
        let modelDir = dir.appendingPathComponent("student")
        let m = TransformerModel(config: ModelConfig(family: .qwen3, vocabSize: tok.vocabSize, hiddenSize: 32, intermediateSize: 64,
                                                     numLayers: 2, numHeads: 2, numKVHeads: 1, headDim: 16))
        m.initializeRandom(seed: 3, std: 0.5)
        try m.save(directory: modelDir)
        try tok.write(to: modelDir.appendingPathComponent("tokenizer.json"))
        let manifest = dir.appendingPathComponent("pool.toml")
        try """
        [[teacher]]
        name = "self"
        kind = "self"
        path = "student"
        privileged = "Solution: {answer}\\n{prompt}"
        """.write(to: manifest, atomically: true, encoding: .utf8)

        let prompt = tok.encode("Q: 3 + 4 =\nA:"), response = tok.encode(" 7")
        let tokens = prompt + response
        let (status, out, err) = try runChorus(["score", "--pool", manifest.path, "--aggregator", "arithmetic",
                                                "--prompt-length", "\(prompt.count)", "--privileged", "answer=7",
                                                "--tokens", tokens.map(String.init).joined(separator: ",")])
        XCTAssertEqual(status, 0, err)
        let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
        let got = try XCTUnwrap((o["teachers"] as? [String: Any])?["self"] as? [Double])
        XCTAssertEqual(o["positions"] as? [Int], Array(prompt.count..<tokens.count))

        let context = tok.encode("Solution: 7\n") + prompt + response
        let (s2, lout, e2) = try runChorus(["logprobs", "--model", modelDir.path, "--tokens", context.map(String.init).joined(separator: ","), "--top-k", "0"])
        XCTAssertEqual(s2, 0, e2)
        let full = try XCTUnwrap((JSONSerialization.jsonObject(with: Data(lout.utf8)) as? [String: Any])?["logprobs"] as? [Any])
        let expected = full.suffix(response.count).map { ($0 as! NSNumber).doubleValue }
        XCTAssertEqual(got.count, expected.count)
        for (g, e) in zip(got, expected) { XCTAssertEqual(g, e, accuracy: 1e-4) }
        // Without the privileged value the template cannot be rendered: a one-line error.
        let (s3, _, e3) = try runChorus(["score", "--pool", manifest.path, "--aggregator", "arithmetic",
                                         "--prompt-length", "\(prompt.count)", "--tokens", tokens.map(String.init).joined(separator: ",")])
        XCTAssertNotEqual(s3, 0)
        XCTAssertTrue(e3.contains("answer"), e3)
    }
}
