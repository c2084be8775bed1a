import ChorusModel
import ChorusTokenizer
import Foundation
import ChorusTestSupport
import XCTest

/// A tiny random Llama model with a byte-level BPE tokenizer trained on text that holds
/// multi-byte UTF-8 (accents, CJK, an emoji), saved as a Hugging Face directory.
struct TextModel {
    let dir: URL
    let tokenizer: Tokenizer

    init(_ test: XCTestCase, eos: Int? = nil) throws {
        dir = temporaryDirectory(test).appendingPathComponent("model")
        let texts = (0..<20).map { "héllo wörld \($0) 日本 🎉 the quick brown fox" }
        let tok = try BPETrainer(vocabSize: 300, specialTokens: ["<|endoftext|>", "<|im_end|>"]).train(texts: texts)
        tokenizer = tok
        let m = TransformerModel(config: ModelConfig(family: .llama, vocabSize: tok.vocabSize, hiddenSize: 32, intermediateSize: 64,
                                                      numLayers: 2, numHeads: 4, numKVHeads: 2, maxPositionEmbeddings: 512))
        m.initializeRandom(seed: 3, std: 0.3)
        if let eos { m.setSpecialTokenIds(eos: [eos]) }
        try m.save(directory: dir)
        try tok.write(to: dir.appendingPathComponent("tokenizer.json"))
    }
}

/// `--text` / `--text-file` on `chorus sample` and `chorus logprobs` (issue N).
final class TextCLITests: XCTestCase {
    /// Trained-on words (whole tokens) and unseen ones (split into bytes, mid-character).
    let multiByte = "héllo 日本 🎉 Grüße 東京 🚀"

    func json(_ s: String, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        try XCTUnwrap(JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any], "not one JSON object: \(s)", file: file, line: line)
    }

    func ok(_ args: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let (status, out, err) = try runChorus(args)
        XCTAssertEqual(status, 0, err, file: file, line: line)
        XCTAssertEqual(out.split(separator: "\n").count, 1, "one JSON line", file: file, line: line)
        return out
    }

    func fails(_ args: [String], containing fragments: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let (status, out, err) = try runChorus(args)
        XCTAssertNotEqual(status, 0, "expected failure: \(out)", file: file, line: line)
        XCTAssertEqual(out, "", "nothing on stdout", file: file, line: line)
        XCTAssertEqual(err.split(separator: "\n").count, 1, "one line: \(err)", file: file, line: line)
        for f in fragments { XCTAssertTrue(err.contains(f), "'\(err)' lacks '\(f)'", file: file, line: line) }
    }

    /// logprobs --text gives what --tokens gives for the tokenizer's ids, plus the text fields;
    /// the text decodes back to the input (multi-byte characters included).
    func testLogprobsTextMatchesTokens() throws {
        let m = try TextModel(self)
        let ids = m.tokenizer.encode(multiByte)
        XCTAssertGreaterThan(ids.count, 10)
        XCTAssertTrue(try ids.contains { try m.tokenizer.decode([$0]).contains("\u{FFFD}") }, "some token is part of a character")
        let byTokens = try json(try ok(["logprobs", "--model", m.dir.path, "--tokens", ids.map(String.init).joined(separator: ","), "--top-k", "3"]))
        XCTAssertEqual(Set(byTokens.keys), ["tokens", "logprobs", "entropy", "top"], "--tokens output is unchanged")
        let byText = try json(try ok(["logprobs", "--model", m.dir.path, "--text", multiByte, "--top-k", "3"]))
        XCTAssertEqual(byText["tokens"] as? [Int], ids)
        for k in ["logprobs", "entropy", "top"] {
            XCTAssertEqual((byText[k] as? NSArray), (byTokens[k] as? NSArray), k)
        }
        XCTAssertEqual(byText["text"] as? String, multiByte)
        let strings = try XCTUnwrap(byText["token_strings"] as? [String])
        XCTAssertEqual(strings, try ids.map { try m.tokenizer.decode([$0]) })
        let tops = try XCTUnwrap(byText["top_strings"] as? [Any])
        XCTAssertEqual(tops.count, ids.count)
        XCTAssertTrue(tops[0] is NSNull)
        XCTAssertEqual((tops[1] as? [String])?.count, 3)
    }

    /// sample --text samples what --tokens samples (same seed); "text" is the decoded
    /// completion, "full_text" prompt and completion.
    func testSampleTextMatchesTokens() throws {
        let m = try TextModel(self)
        let ids = m.tokenizer.encode(multiByte)
        let common = ["--max-tokens", "6", "--seed", "4", "--ignore-eos"]
        let byTokens = try json(try ok(["sample", "--model", m.dir.path, "--tokens", ids.map(String.init).joined(separator: ",")] + common))
        XCTAssertEqual(Set(byTokens.keys), ["tokens", "logprobs"], "--tokens output is unchanged")
        let byText = try json(try ok(["sample", "--model", m.dir.path, "--text", multiByte] + common))
        let all = try XCTUnwrap(byText["tokens"] as? [Int])
        XCTAssertEqual(all, byTokens["tokens"] as? [Int])
        XCTAssertEqual(byText["logprobs"] as? NSArray, byTokens["logprobs"] as? NSArray)
        XCTAssertEqual(all.count, ids.count + 6)
        XCTAssertEqual(byText["text"] as? String, try m.tokenizer.decode(Array(all.dropFirst(ids.count))))
        XCTAssertEqual(byText["full_text"] as? String, try m.tokenizer.decode(all))
        XCTAssertTrue((byText["full_text"] as? String)?.hasPrefix(multiByte) ?? false)
        XCTAssertEqual((byText["token_strings"] as? [String])?.count, all.count)
    }

    /// --text-file reads the file as is (a final newline is part of the text).
    func testTextFileEqualsText() throws {
        let m = try TextModel(self)
        let f = m.dir.deletingLastPathComponent().appendingPathComponent("prompt.txt")
        try Data((multiByte + "\n").utf8).write(to: f)
        let byFile = try json(try ok(["logprobs", "--model", m.dir.path, "--text-file", f.path]))
        let byText = try json(try ok(["logprobs", "--model", m.dir.path, "--text", multiByte + "\n"]))
        XCTAssertEqual(byFile as NSDictionary, byText as NSDictionary)
        XCTAssertEqual(byFile["tokens"] as? [Int], m.tokenizer.encode(multiByte + "\n"))
    }

    /// Both or neither of the inputs, empty text, an empty, non-UTF-8, huge or missing file,
    /// and a model directory without tokenizer.json: one line each, naming the cause.
    func testTextInputErrors() throws {
        let m = try TextModel(self)
        let base = m.dir.deletingLastPathComponent()
        let model = ["--model", m.dir.path]
        try fails(["sample"] + model + ["--max-tokens", "2", "--tokens", "1,2", "--text", "hi"], containing: ["only one of --tokens, --text and --text-file"])
        try fails(["logprobs"] + model + ["--text", "hi", "--text-file", "x.txt"], containing: ["only one of"])
        try fails(["logprobs"] + model, containing: ["--tokens, --text or --text-file"])
        try fails(["logprobs"] + model + ["--text", ""], containing: ["--text is empty"])
        let empty = base.appendingPathComponent("empty.txt")
        try Data().write(to: empty)
        try fails(["logprobs"] + model + ["--text-file", empty.path], containing: [empty.path, "empty"])
        let latin1 = base.appendingPathComponent("latin1.txt")
        try Data([0x68, 0xE9, 0x6C, 0x6C, 0x6F]).write(to: latin1)   // "héllo" in Latin-1
        try fails(["sample"] + model + ["--max-tokens", "2", "--text-file", latin1.path], containing: [latin1.path, "UTF-8", "offset 1"])
        let huge = base.appendingPathComponent("huge.txt")
        FileManager.default.createFile(atPath: huge.path, contents: nil)
        let h = try FileHandle(forWritingTo: huge)
        try h.truncate(atOffset: 17 << 20)   // sparse: 17 MiB of zeros without writing them
        try h.close()
        try fails(["logprobs"] + model + ["--text-file", huge.path], containing: [huge.path, "larger than"])
        try fails(["logprobs"] + model + ["--text-file", base.appendingPathComponent("nope.txt").path], containing: ["nope.txt", "no such file"])
        try FileManager.default.removeItem(at: m.dir.appendingPathComponent("tokenizer.json"))
        try fails(["sample"] + model + ["--max-tokens", "2", "--text", "hi"], containing: [m.dir.path, "no tokenizer.json"])
        // --tokens needs no tokenizer.json.
        _ = try ok(["sample"] + model + ["--max-tokens", "2", "--tokens", "1,2"])
    }

    /// A token the sampler writes is decoded in "text" (special tokens kept, as HF decode).
    func testSampleTextKeepsEOS() throws {
        let probe = try TextModel(self)
        let ids = probe.tokenizer.encode("the quick")
        let greedy = try json(try ok(["sample", "--model", probe.dir.path, "--tokens", ids.map(String.init).joined(separator: ","),
                                      "--max-tokens", "1", "--temperature", "0"]))
        let first = try XCTUnwrap((greedy["tokens"] as? [Int])?.last)
        // Make the greedy token the eos: sampling stops after it and the text ends with it.
        let m = try TextModel(self, eos: first)
        let o = try json(try ok(["sample", "--model", m.dir.path, "--text", "the quick", "--max-tokens", "5", "--temperature", "0"]))
        XCTAssertEqual((o["tokens"] as? [Int])?.count, ids.count + 1)
        XCTAssertEqual(o["text"] as? String, try m.tokenizer.decode([first]))
    }
}

/// `chorus info --model` and `chorus --version` (issue N).
final class InfoCLITests: XCTestCase {
    func run(_ args: [String]) throws -> (Int32, [String: Any]?, String) {
        let (status, out, err) = try runChorus(args)
        return (status, try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], err)
    }

    func checks(_ o: [String: Any]) -> [String: Bool] {
        Dictionary(uniqueKeysWithValues: ((o["checks"] as? [[String: Any]]) ?? []).map { ($0["name"] as! String, $0["ok"] as! Bool) })
    }

    func testInfoOnATextModel() throws {
        let m = try TextModel(self, eos: 1)
        let (status, o, err) = try run(["info", "--model", m.dir.path])
        XCTAssertEqual(status, 0, err)
        let info = try XCTUnwrap(o)
        XCTAssertEqual(info["architecture"] as? String, "llama")
        XCTAssertEqual(info["architectures"] as? [String], ["LlamaForCausalLM"])
        let loaded = try TransformerModel.load(directory: m.dir)
        XCTAssertEqual(info["parameters"] as? Int, loaded.config.parameterCount)
        XCTAssertEqual(info["parameters_on_disk"] as? Int, loaded.config.parameterCount)
        XCTAssertEqual(info["vocab_size"] as? Int, m.tokenizer.vocabSize)
        XCTAssertEqual(info["tokenizer_vocab_size"] as? Int, m.tokenizer.vocabSize)
        XCTAssertEqual(info["context_length"] as? Int, 512)
        XCTAssertEqual(info["tied_embeddings"] as? Bool, true)
        XCTAssertEqual((info["dtypes_on_disk"] as? [String: [String: Int]])?["F32"]?["parameters"], loaded.config.parameterCount)
        XCTAssertEqual(info["weight_files"] as? [String], ["model.safetensors"])
        let special = try XCTUnwrap(info["special_tokens"] as? [String: Any])
        let eos = try XCTUnwrap(special["eos"] as? [[String: Any]])
        XCTAssertEqual(eos.count, 1)
        XCTAssertEqual(eos.first?["id"] as? Int, 1)
        XCTAssertEqual(eos.first?["token"] as? String, "<|im_end|>")
        let added = try XCTUnwrap(special["added"] as? [[String: Any]])
        XCTAssertEqual(added.map { $0["content"] as? String }, ["<|endoftext|>", "<|im_end|>"])
        XCTAssertEqual(checks(info), ["weights": true, "vocab_size": true, "eos_token_id": true])
        XCTAssertEqual(info["ok"] as? Bool, true)
    }

    /// The committed fixtures (bf16 shards, f16, tied and untied) described from their headers;
    /// their vocab of 96 is smaller than any byte-level tokenizer, so the vocab check fails
    /// (exit status 1, the JSON still printed).
    func testInfoOnFixtures() throws {
        let tok = try TextModel(self).dir.appendingPathComponent("tokenizer.json")
        for (name, dtype, files) in [("qwen3_untied_bf16_sharded", "BF16", 7), ("qwen2_tied_f16", "F16", 1), ("llama_untied_f32", "F32", 1)] {
            let dir = copyFixture(name, self)
            try FileManager.default.copyItem(at: tok, to: dir.appendingPathComponent("tokenizer.json"))
            let (status, o, err) = try run(["info", "--model", dir.path])
            XCTAssertEqual(status, 1, "\(name): \(err)")
            XCTAssertTrue(err.contains("check failed"), err)
            let info = try XCTUnwrap(o, name)
            let config = try ModelConfig(contentsOf: dir.appendingPathComponent("config.json"))
            XCTAssertEqual(info["architecture"] as? String, config.family.rawValue, name)
            XCTAssertEqual(info["parameters"] as? Int, config.parameterCount, name)
            XCTAssertEqual(Array((info["dtypes_on_disk"] as? [String: Any] ?? [:]).keys), [dtype], name)
            XCTAssertEqual((info["weight_files"] as? [String])?.count, files, name)
            XCTAssertEqual(info["tied_embeddings"] as? Bool, config.tieWordEmbeddings, name)
            XCTAssertEqual(checks(info)["weights"], true, name)
            XCTAssertEqual(checks(info)["vocab_size"], false, name)
            XCTAssertEqual(info["ok"] as? Bool, false, name)
        }
    }

    /// Directories that cannot be described are one-line errors naming the file; weights that
    /// do not match the config are a failed check.
    func testInfoOnBadDirectories() throws {
        func fails(_ dir: URL, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) throws {
            let (status, out, err) = try runChorus(["info", "--model", dir.path])
            XCTAssertNotEqual(status, 0, file: file, line: line)
            XCTAssertEqual(out, "", file: file, line: line)
            XCTAssertEqual(err.split(separator: "\n").count, 1, err, file: file, line: line)
            for f in fragments { XCTAssertTrue(err.contains(f), "'\(err)' lacks '\(f)'", file: file, line: line) }
        }
        let noConfig = try TextModel(self).dir
        try FileManager.default.removeItem(at: noConfig.appendingPathComponent("config.json"))
        try fails(noConfig, [noConfig.appendingPathComponent("config.json").path, "no such file"])

        let truncated = try TextModel(self).dir
        let w = truncated.appendingPathComponent("model.safetensors")
        try Data(try Data(contentsOf: w).prefix(500)).write(to: w)
        try fails(truncated, [w.path])

        let noTokenizer = try TextModel(self).dir
        try FileManager.default.removeItem(at: noTokenizer.appendingPathComponent("tokenizer.json"))
        try fails(noTokenizer, [noTokenizer.path, "no tokenizer.json"])

        let badTokenizer = try TextModel(self).dir
        try Data("{\"model\": 1".utf8).write(to: badTokenizer.appendingPathComponent("tokenizer.json"))
        try fails(badTokenizer, [badTokenizer.appendingPathComponent("tokenizer.json").path])

        try fails(noConfig.deletingLastPathComponent().appendingPathComponent("absent"), ["absent", "model directory"])

        // A config that promises more layers than the file holds: described, check failed.
        let short = try TextModel(self).dir
        let cfgURL = short.appendingPathComponent("config.json")
        var cfg = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: cfgURL)) as? [String: Any])
        cfg["num_hidden_layers"] = 3
        cfg["eos_token_id"] = 5000
        try JSONSerialization.data(withJSONObject: cfg).write(to: cfgURL)
        let (status, o, _) = try run(["info", "--model", short.path])
        XCTAssertEqual(status, 1)
        let info = try XCTUnwrap(o)
        XCTAssertEqual(checks(info)["weights"], false)
        XCTAssertEqual(checks(info)["eos_token_id"], false)
        let detail = ((info["checks"] as? [[String: Any]]) ?? []).first { $0["name"] as? String == "weights" }?["detail"] as? String
        XCTAssertTrue(detail?.contains("model.layers.2.") ?? false, detail ?? "no detail")

        // Usage: exactly one of --model and --pool.
        let (both, _, bothErr) = try runChorus(["info", "--model", short.path, "--pool", "p.toml"])
        XCTAssertNotEqual(both, 0)
        XCTAssertTrue(bothErr.contains("exactly one of --model and --pool"), bothErr)
    }

    /// `chorus --version`: "MAJOR.MINOR.PATCH (revision R)", R 12 hex digits (optionally
    /// "-dirty") from make build, or "unknown" from a plain swift build.
    func testVersion() throws {
        let (status, out, err) = try runChorus(["--version"])
        XCTAssertEqual(status, 0, err)
        let line = out.trimmingCharacters(in: .newlines)
        let pattern = #"^[0-9]+\.[0-9]+\.[0-9]+ \(revision ([0-9a-f]{12}(-dirty)?|unknown)\)$"#
        XCTAssertNotNil(line.range(of: pattern, options: .regularExpression), "'\(line)'")
        XCTAssertEqual(out.split(separator: "\n").count, 1)
    }
}
