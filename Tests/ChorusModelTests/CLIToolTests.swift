import ChorusModel
import ChorusTensor
import ChorusTokenizer
import Foundation
import ChorusTestSupport
import XCTest

/// Sampling options, `convert` and the tokenizer commands through the `chorus` binary.
final class CLIToolTests: XCTestCase {
    func json(_ s: String) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any], "not one JSON object: \(s)")
    }

    /// `chorus sample ARGS` → the generated token ids (prompt included).
    func sample(_ model: URL, _ extra: [String], file: StaticString = #filePath, line: UInt = #line) throws -> [Int] {
        let (status, out, err) = try runChorus(["sample", "--model", model.path, "--tokens", "1,2,3"] + extra, file: file, line: line)
        XCTAssertEqual(status, 0, err, file: file, line: line)
        return try XCTUnwrap(try json(out)["tokens"] as? [Int], file: file, line: line)
    }

    /// A nucleus narrower than the top token's probability is greedy decoding; the full
    /// nucleus at temperature 1 is not (for these seeds): top-p changes what is sampled.
    func testTopPChangesWhatIsSampled() throws {
        let m = Fixtures.model("qwen3_tied_f32")
        let greedy = try sample(m, ["--max-tokens", "12", "--temperature", "0"])
        XCTAssertEqual(greedy.count, 15)
        var differ = 0
        for seed in [1, 2, 3] {
            let narrow = try sample(m, ["--max-tokens", "12", "--temperature", "1", "--top-p", "0.000001", "--seed", "\(seed)"])
            XCTAssertEqual(narrow, greedy, "top-p 1e-6 keeps only the most likely token (seed \(seed))")
            let full = try sample(m, ["--max-tokens", "12", "--temperature", "1", "--top-p", "1", "--seed", "\(seed)"])
            XCTAssertEqual(full.count, 15)
            if full != greedy { differ += 1 }
        }
        XCTAssertGreaterThan(differ, 0, "top-p 1 should sample away from the argmax somewhere")
    }

    /// Sampling stops right after an end-of-sequence token (config `eos_token_id`), which is
    /// kept; `--ignore-eos` runs to `--max-tokens`.
    func testSamplingStopsAtEOSUnlessIgnored() throws {
        let src = Fixtures.model("qwen3_tied_f32")
        let greedy = Array(try sample(src, ["--max-tokens", "10", "--temperature", "0"]).dropFirst(3))
        XCTAssertEqual(greedy.count, 10)
        // The first generated token, after the first, that did not occur before it.
        let stop = try XCTUnwrap((1..<greedy.count).first { !greedy[..<$0].contains(greedy[$0]) }, "greedy output \(greedy)")
        let m = copyFixture("qwen3_tied_f32", self)
        let cfgURL = m.appendingPathComponent("config.json")
        var cfg = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: cfgURL)) as? [String: Any])
        cfg["eos_token_id"] = greedy[stop]
        try JSONSerialization.data(withJSONObject: cfg).write(to: cfgURL)

        let stopped = try sample(m, ["--max-tokens", "10", "--temperature", "0"])
        XCTAssertEqual(stopped, [1, 2, 3] + greedy[...stop], "stops after the EOS token (id \(greedy[stop]))")
        let ignored = try sample(m, ["--max-tokens", "10", "--temperature", "0", "--ignore-eos"])
        XCTAssertEqual(ignored, [1, 2, 3] + greedy)
    }

    /// `chorus convert`: f16 → f32 is exact (the same log-probs), f32 → bf16 rounds every
    /// weight to bf16; tokenizer.json is copied byte for byte.
    func testConvertThroughTheCLI() throws {
        let tmp = temporaryDirectory(self)
        let src = copyFixture("qwen2_tied_f16", self)
        let tokText = "{\"version\":\"1.0\",\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}"
        try tokText.write(to: src.appendingPathComponent("tokenizer.json"), atomically: true, encoding: .utf8)
        let f32 = tmp.appendingPathComponent("f32"), bf16 = tmp.appendingPathComponent("bf16")
        for (dst, dtype) in [(f32, "f32"), (bf16, "bf16")] {
            let (status, out, err) = try runChorus(["convert", "--model", src.path, "--output", dst.path, "--dtype", dtype])
            XCTAssertEqual(status, 0, err)
            XCTAssertTrue(out.isEmpty, out)
            XCTAssertEqual(try Data(contentsOf: dst.appendingPathComponent("tokenizer.json")), Data(tokText.utf8))
        }
        let orig = try TransformerModel.load(directory: src), a = try TransformerModel.load(directory: f32)
        XCTAssertEqual(a.config.dtype, "float32")
        var origConfig = orig.config
        origConfig.dtype = a.config.dtype
        XCTAssertEqual(a.config, origConfig, "only torch_dtype changes")
        XCTAssertEqual(a.parameters.array, orig.parameters.array, "f16 → f32 is exact")
        let (tokens, expected) = try Fixtures.expected("qwen2_tied_f16")[0]
        let ws = ForwardWorkspace()   // holds the hidden states h points into
        let h = try a.forwardHidden([PackedSequence(tokens: tokens)], workspace: ws)
        let lp = withExtendedLifetime(ws) { a.logProbabilities(hidden: h, rows: Array(0..<tokens.count), scratch: a.makeHeadScratch()).array }
        XCTAssertLessThan(maxAbsDiff(lp, expected), 1e-4)
        let b = try TransformerModel.load(directory: bf16)
        XCTAssertEqual(b.parameters.array, orig.parameters.array.map { HalfConversion.bf16ToFloat(HalfConversion.floatToBF16($0)) })
        let header = try SafeTensorsFile(path: bf16.appendingPathComponent("model.safetensors").path)
        XCTAssertFalse(header.tensors.isEmpty)
        XCTAssertTrue(header.tensors.values.allSatisfy { $0.dtype == .bf16 }, "every tensor stored as bf16")
        // Refused: an unknown dtype, a missing source.
        for (args, fragment) in [(["convert", "--model", src.path, "--output", tmp.appendingPathComponent("x").path, "--dtype", "f8"], "dtype"),
                                 (["convert", "--model", tmp.appendingPathComponent("nope").path, "--output", tmp.appendingPathComponent("y").path], "nope")] {
            let (status, _, err) = try runChorus(args)
            XCTAssertNotEqual(status, 0)
            XCTAssertTrue(err.contains(fragment), err)
        }
    }

    /// `tokenizer train` writes what the library's trainer writes for the same settings;
    /// `tokenize` and `detokenize` round-trip text through it, special tokens included.
    func testTokenizerTrainTokenizeDetokenizeThroughTheCLI() throws {
        let tmp = temporaryDirectory(self)
        let corpus = tmp.appendingPathComponent("corpus.txt")
        var lines: [String] = []
        for i in 0..<200 { lines.append("The \(i % 7) quick brown foxes jumped over \(i * 13 % 101) lazy dogs, again and again.") }
        try lines.joined(separator: "\n").write(to: corpus, atomically: true, encoding: .utf8)
        let out = tmp.appendingPathComponent("tokenizer.json")
        let (s, o, e) = try runChorus(["tokenizer", "train", "--input", corpus.path, "--vocab-size", "300",
                                       "--special-token", "<|endoftext|>", "--special-token", "<|pad|>",
                                       "--min-frequency", "3", "--output", out.path])
        XCTAssertEqual(s, 0, e)
        XCTAssertTrue(o.isEmpty, o)
        let lib = try BPETrainer(vocabSize: 300, specialTokens: ["<|endoftext|>", "<|pad|>"], minFrequency: 3).train(files: [corpus])
        let libURL = tmp.appendingPathComponent("lib.json")
        try lib.write(to: libURL)
        XCTAssertEqual(try Data(contentsOf: out), try Data(contentsOf: libURL), "the CLI passes every setting through")
        let tok = try Tokenizer(contentsOf: out)
        XCTAssertEqual(tok.vocabSize, 300)
        XCTAssertEqual(tok.tokenToId("<|endoftext|>"), 0)
        XCTAssertEqual(tok.tokenToId("<|pad|>"), 1)

        let text = "The 3 quick foxes, again.<|endoftext|> ünïcödé 🦊"
        let (ts, tout, terr) = try runChorus(["tokenize", "--tokenizer", out.path, "--text", text])
        XCTAssertEqual(ts, 0, terr)
        let ids = try XCTUnwrap(try json(tout)["ids"] as? [Int])
        XCTAssertEqual(ids, tok.encode(text))
        XCTAssertTrue(ids.contains(0), "the special token is one id")
        XCTAssertLessThan(ids.count, text.utf8.count, "merges are used")
        let list = ids.map(String.init).joined(separator: ",")
        let (ds, dout, derr) = try runChorus(["detokenize", "--tokenizer", out.path, "--ids", list])
        XCTAssertEqual(ds, 0, derr)
        XCTAssertEqual(try json(dout)["text"] as? String, text)
        let (ks, kout, kerr) = try runChorus(["detokenize", "--tokenizer", out.path, "--ids", list, "--skip-special-tokens"])
        XCTAssertEqual(ks, 0, kerr)
        XCTAssertEqual(try json(kout)["text"] as? String, text.replacingOccurrences(of: "<|endoftext|>", with: ""))
        // Refused with a one-line error: an id outside the vocabulary, a vocabulary too small.
        let (bs, _, berr) = try runChorus(["detokenize", "--tokenizer", out.path, "--ids", "5,300"])
        XCTAssertNotEqual(bs, 0)
        XCTAssertTrue(berr.contains("300"), berr)
        let (vs, _, verr) = try runChorus(["tokenizer", "train", "--input", corpus.path, "--vocab-size", "100", "--output", out.path])
        XCTAssertNotEqual(vs, 0)
        XCTAssertTrue(verr.contains("vocab-size"), verr)
    }
}
