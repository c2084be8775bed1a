import ChorusModel
import ChorusTensor
import Foundation
import ChorusTestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Issue 10 (hardening), the model side: hostile checkpoints, configs, sizes and paths are
/// refused with one line naming the file, field or tensor and the real cause; nothing hangs,
/// crashes, or destroys its input.
final class HardeningTests: XCTestCase {
    func weights(_ dir: URL) -> URL { dir.appendingPathComponent("model.safetensors") }

    /// Replaces the header JSON text of a safetensors file through `edit` (raw text, so the
    /// test can write what JSONSerialization would not: 1.5 in a shape, a number as metadata).
    func rewriteHeaderText(_ url: URL, _ edit: (String) -> String) throws {
        let data = try Data(contentsOf: url)
        let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let text = edit(String(decoding: data.subdata(in: 8..<(8 + n)), as: UTF8.self))
        var json = Data(text.utf8)
        while json.count % 8 != 0 { json.append(0x20) }
        var out = withUnsafeBytes(of: UInt64(json.count).littleEndian) { Data($0) }
        out.append(json)
        out.append(data.subdata(in: (8 + n)..<data.count))
        try out.write(to: url)
    }

    /// Edits config.json of a model directory as text.
    func editConfig(_ dir: URL, _ edit: (String) -> String) throws {
        let u = dir.appendingPathComponent("config.json")
        try edit(try String(contentsOf: u, encoding: .utf8)).write(to: u, atomically: true, encoding: .utf8)
    }

    // MARK: 1. Data loss

    /// `convert` never destroys its input: the same directory, one inside it, one above it and
    /// an existing output (without --force) are refused, and the input stays byte-identical.
    func testConvertNeverDestroysItsInput() throws {
        let src = copyFixture("qwen3_tied_f32", self)
        try Data("{\"marker\": 1}".utf8).write(to: src.appendingPathComponent("tokenizer.json"))
        func snapshot() throws -> [String: Data] {
            var d: [String: Data] = [:]
            for name in try FileManager.default.contentsOfDirectory(atPath: src.path) {
                d[name] = try Data(contentsOf: src.appendingPathComponent(name))
            }
            return d
        }
        let before = try snapshot()
        let cases: [(String, String)] = [
            (src.path, "input directory"),
            (src.path + "/", "input directory"),
            (src.path + "/../" + src.lastPathComponent, "input directory"),
            (src.appendingPathComponent("sub").path, "inside"),
            (src.deletingLastPathComponent().path, "contains the input"),
        ]
        for (out, fragment) in cases {
            for force in [false, true] {
                let r = try runChorus(["convert", "--model", src.path, "--output", out] + (force ? ["--force"] : []))
                assertOneLineFailure(r, containing: [fragment], "convert --output \(out) force=\(force)")
            }
        }
        // A symbolic link to the input is the input.
        let link = temporaryDirectory(self).appendingPathComponent("link")
        try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: src.path)
        assertOneLineFailure(try runChorus(["convert", "--model", src.path, "--output", link.path, "--force"]), containing: ["input directory"])
        XCTAssertEqual(try snapshot(), before, "convert changed its input")
        assertOneLineFailure(try runChorus(["convert", "--model", src.path, "--output", "/dev/null", "--force"]), containing: ["/dev/null", "not a directory"])

        // An existing output needs --force; with it, the files are replaced and others kept.
        let out = temporaryDirectory(self).appendingPathComponent("out")
        XCTAssertEqual(try runChorus(["convert", "--model", src.path, "--output", out.path]).0, 0)
        try Data("keep".utf8).write(to: out.appendingPathComponent("notes.txt"))
        assertOneLineFailure(try runChorus(["convert", "--model", src.path, "--output", out.path]), containing: ["already exists", "--force"])
        let (s, _, e) = try runChorus(["convert", "--model", src.path, "--output", out.path, "--dtype", "bf16", "--force"])
        XCTAssertEqual(s, 0, e)
        XCTAssertEqual(try String(contentsOf: out.appendingPathComponent("notes.txt"), encoding: .utf8), "keep")
        XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("tokenizer.json")), before["tokenizer.json"])
        XCTAssertNoThrow(try TransformerModel.load(directory: out))
        XCTAssertEqual(try snapshot(), before, "convert changed its input")
    }

    // MARK: 4. Resource bombs

    /// Sizes from the command line or config.json are checked against the memory limit before
    /// anything is allocated: one line naming the size, never a crash.
    func testResourceBombsAreRefusedByName() throws {
        let model = Fixtures.model("qwen3_tied_f32").path
        assertOneLineFailure(try runChorus(["sample", "--model", model, "--tokens", "1,2", "--max-tokens", "1000000000000"]),
                             containing: ["sampling 1000000000000 tokens", "memory limit"], "sample --max-tokens 1e12")
        assertOneLineFailure(try runChorus(["bench", "--model", model, "--batch", "100000", "--seq", "100000", "--decode-steps", "1"]),
                             containing: ["memory limit"], "bench --batch 100000 --seq 100000")
        assertOneLineFailure(try runChorus(["bench", "--model", model, "--batch", "4611686018427387904", "--seq", "4"]),
                             containing: ["--batch"], "bench overflowing batch × seq")
        // A consistent config with a 16M-token vocabulary: refused from config.json alone.
        let big = copyFixture("qwen3_tied_f32", self)
        try editConfig(big) { $0.replacingOccurrences(of: "\"vocab_size\": 96", with: "\"vocab_size\": 16777216")
            .replacingOccurrences(of: "\"hidden_size\": 48", with: "\"hidden_size\": 64") }
        assertOneLineFailure(try runChorus(["logprobs", "--model", big.path, "--tokens", "1,2"], environment: ["CHORUS_MEMORY_LIMIT": "1G", "CHORUS_THREADS": "2"]),
                             containing: ["parameters", "GiB", "CHORUS_MEMORY_LIMIT"], "16M vocabulary")
        // The limit is stated and can be lowered: a small request over it is refused too.
        assertOneLineFailure(try runChorus(["sample", "--model", model, "--tokens", "1,2", "--max-tokens", "100000"], environment: ["CHORUS_MEMORY_LIMIT": "1M"]),
                             containing: ["1.0 MiB", "CHORUS_MEMORY_LIMIT"], "sample under a 1 MiB limit")
        assertOneLineFailure(try runChorus(["logprobs", "--model", model, "--tokens", "1,2"], environment: ["CHORUS_MEMORY_LIMIT": "lots"]),
                             containing: ["CHORUS_MEMORY_LIMIT", "lots"], "bad CHORUS_MEMORY_LIMIT")
    }

    // MARK: 5. Files that are not files

    /// A FIFO, a directory or a dangling link where a file belongs is refused at once, never
    /// opened blocking (a FIFO would make `open` wait forever for a writer).
    func testNonRegularFilesAreRefusedWithoutBlocking() throws {
        let dir = copyFixture("qwen3_tied_f32", self)
        try FileManager.default.removeItem(at: weights(dir))
        XCTAssertEqual(mkfifo(weights(dir).path, 0o644), 0)
        let t0 = Date()
        assertOneLineFailure(try runChorus(["logprobs", "--model", dir.path, "--tokens", "1,2"]), containing: ["model.safetensors", "FIFO"], "FIFO weights")
        XCTAssertLessThan(Date().timeIntervalSince(t0), 30, "must not wait on the FIFO")
        assertThrows(try TransformerModel.load(directory: dir), containing: ["model.safetensors", "FIFO"])

        let cfgFifo = copyFixture("qwen3_tied_f32", self)
        try FileManager.default.removeItem(at: cfgFifo.appendingPathComponent("config.json"))
        XCTAssertEqual(mkfifo(cfgFifo.appendingPathComponent("config.json").path, 0o644), 0)
        assertThrows(try TransformerModel.load(directory: cfgFifo), containing: ["config.json", "FIFO"])

        let dirAsFile = copyFixture("qwen3_tied_f32", self)
        try FileManager.default.removeItem(at: weights(dirAsFile))
        try FileManager.default.createDirectory(at: weights(dirAsFile), withIntermediateDirectories: false)
        assertThrows(try TransformerModel.load(directory: dirAsFile), containing: ["model.safetensors", "directory"])

        let dangling = copyFixture("qwen3_tied_f32", self)
        try FileManager.default.removeItem(at: weights(dangling))
        try FileManager.default.createSymbolicLink(atPath: weights(dangling).path, withDestinationPath: "/nonexistent/chorus/weights")
        assertThrows(try TransformerModel.load(directory: dangling), containing: ["model.safetensors", "not found"])

        // A file where the model directory belongs.
        assertOneLineFailure(try runChorus(["logprobs", "--model", weights(Fixtures.model("qwen3_tied_f32")).path, "--tokens", "1,2"]),
                             containing: ["not a directory"], "file as model directory")
    }

    // MARK: 6. Non-finite numbers

    /// A NaN or Inf anywhere in the weights is refused at load, naming the tensor and element.
    func testNonFiniteWeightsAreRefusedNamingTheTensor() throws {
        for (value, shown) in [(Float.nan, "nan"), (Float.infinity, "inf"), (-Float.infinity, "-inf")] {
            let dir = copyFixture("qwen3_tied_f32", self)
            let f = try SafeTensorsFile(path: weights(dir).path)
            let info = try XCTUnwrap(f.tensors["model.layers.1.mlp.up_proj.weight"])
            var data = try Data(contentsOf: weights(dir))
            let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
            let at = 8 + n + info.begin + 4 * 7
            withUnsafeBytes(of: value.bitPattern.littleEndian) { data.replaceSubrange(at..<(at + 4), with: $0) }
            try data.write(to: weights(dir))
            assertThrows(try TransformerModel.load(directory: dir), containing: ["model.safetensors", "model.layers.1.mlp.up_proj.weight", "element 7", shown])
            assertOneLineFailure(try runChorus(["logprobs", "--model", dir.path, "--tokens", "1,2"]), containing: ["model.layers.1.mlp.up_proj.weight"])
        }
    }

    /// A temperature so small that 1/T overflows is the greedy limit: the argmax, a finite
    /// log-prob, never NaN.
    func testTinyTemperatureIsGreedy() throws {
        let V = 8
        let logits: [Float] = [0.5, 3.25, -1, 3.0, 2, 0, 1e30, -1e30].enumerated().map { $0.offset == 6 ? 1 : $0.element }
        var work = [Float](repeating: 0, count: V), order = [Int32](repeating: 0, count: V)
        for t: Float in [1e-40, 1e-38, 1e-30, Float.leastNonzeroMagnitude] {
            var rng = ChorusRNG(seed: 3)
            let s = logits.withUnsafeBufferPointer { l in
                sampleToken(logits: l.baseAddress!, vocab: V, params: SamplingParameters(temperature: t, topP: 1, topK: 0),
                            rng: &rng, work: &work, order: &order)
            }
            XCTAssertEqual(s.id, 1, "temperature \(t)")
            XCTAssertTrue(s.logprob.isFinite, "temperature \(t): log-prob \(s.logprob)")
        }
        let (status, out, err) = try runChorus(["sample", "--model", Fixtures.model("qwen3_tied_f32").path, "--tokens", "1,2", "--max-tokens", "4", "--temperature", "1e-40"])
        XCTAssertEqual(status, 0, err)
        let (_, greedy, _) = try runChorus(["sample", "--model", Fixtures.model("qwen3_tied_f32").path, "--tokens", "1,2", "--max-tokens", "4", "--temperature", "0"])
        let tokens = { (s: String) in (try? JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any])?["tokens"] as? [Int] }
        XCTAssertEqual(tokens(out), tokens(greedy))
        XCTAssertFalse(out.contains("null") || out.contains("nan"), out)
    }

    // MARK: 7. Lenient types

    /// A config.json field of the wrong type is an error naming the field, never a default.
    func testConfigFieldsOfTheWrongTypeAreNamed() throws {
        let base = try String(contentsOf: Fixtures.model("qwen3_tied_f32").appendingPathComponent("config.json"), encoding: .utf8)
        func config(_ from: String, _ to: String) throws -> Data {
            XCTAssertTrue(base.contains(from), from)
            return Data(base.replacingOccurrences(of: from, with: to).utf8)
        }
        let cases: [(String, String, [String])] = [
            ("\"rope_theta\": 10000.0", "\"rope_theta\": \"500000\"", ["rope_parameters.rope_theta", "number", "\"500000\""]),
            ("\"hidden_act\": \"silu\"", "\"hidden_act\": 5", ["hidden_act", "string", "5"]),
            ("\"tie_word_embeddings\": true", "\"tie_word_embeddings\": 1", ["tie_word_embeddings", "true or false"]),
            ("\"hidden_size\": 48", "\"hidden_size\": \"48\"", ["hidden_size", "integer"]),
            ("\"hidden_size\": 48", "\"hidden_size\": 48.5", ["hidden_size", "integer"]),
            ("\"num_hidden_layers\": 2", "\"num_hidden_layers\": true", ["num_hidden_layers", "integer"]),
            ("\"rms_norm_eps\": 1e-06", "\"rms_norm_eps\": [1e-06]", ["rms_norm_eps", "number"]),
            ("\"use_sliding_window\": false", "\"use_sliding_window\": \"no\"", ["use_sliding_window"]),
            ("\"layer_types\": [", "\"layer_types\": [7, ", ["layer_types[0]", "string"]),
            ("\"rope_parameters\": {", "\"rope_parameters\": 3, \"x\": {", ["rope_parameters", "object"]),
            ("\"eos_token_id\": null", "\"eos_token_id\": [1, \"2\"]", ["eos_token_id[1]", "integer"]),
            ("\"model_type\": \"qwen3\"", "\"model_type\": 3", ["model_type", "string"]),
        ]
        for (from, to, fragments) in cases {
            assertThrows(try ModelConfig(json: try config(from, to)), containing: fragments)
        }
        // The right types still load, with the values given (rope_theta from rope_parameters).
        let c = try ModelConfig(json: try config("\"rope_theta\": 10000.0", "\"rope_theta\": 500000"))
        XCTAssertEqual(c.ropeTheta, 500000)
        // Through the CLI: one line naming the field.
        let dir = copyFixture("qwen3_tied_f32", self)
        try editConfig(dir) { $0.replacingOccurrences(of: "\"rope_theta\": 10000.0", with: "\"rope_theta\": \"500000\"") }
        assertOneLineFailure(try runChorus(["logprobs", "--model", dir.path, "--tokens", "1,2"]), containing: ["config.json", "rope_parameters.rope_theta"])
    }

    // MARK: 8. Ambiguous checkpoints and safetensors strictness

    /// With both model.safetensors and model.safetensors.index.json, the single file is loaded
    /// (what transformers does), not the shards.
    func testSingleFileWinsOverAnIndex() throws {
        let dir = copyFixture("qwen3_untied_bf16_sharded", self)
        let sharded = try TransformerModel.load(directory: dir)
        let other = TransformerModel(config: sharded.config)
        other.initializeRandom(seed: 42)
        let tmp = temporaryDirectory(self).appendingPathComponent("single")
        try other.save(directory: tmp, dtype: .f32)
        try FileManager.default.copyItem(at: weights(tmp), to: weights(dir))
        let loaded = try TransformerModel.load(directory: dir)
        XCTAssertEqual(loaded.parameters.array, other.parameters.array, "the single file must be loaded")
        XCTAssertNotEqual(loaded.parameters.array, sharded.parameters.array)
    }

    /// Files the reference `safetensors` library rejects are rejected: trailing bytes,
    /// non-integer shapes and offsets, non-string metadata, gaps, duplicate names.
    func testSafetensorsStrictness() throws {
        let trailing = copyFixture("qwen3_tied_f32", self)
        var d = try Data(contentsOf: weights(trailing))
        d.append(contentsOf: [UInt8](repeating: 0, count: 8))
        try d.write(to: weights(trailing))
        assertThrows(try TransformerModel.load(directory: trailing), containing: ["model.safetensors", "8 bytes after the last tensor"])

        let cases: [((String) -> String, [String])] = [
            ({ $0.replacingOccurrences(of: "\"shape\":[48]", with: "\"shape\":[48.0]") }, ["shape", "non-negative integer"]),
            ({ $0.replacingOccurrences(of: "\"shape\":[48]", with: "\"shape\":[\"48\"]") }, ["shape", "non-negative integer"]),
            ({ $0.replacingOccurrences(of: "\"shape\":[48]", with: "\"shape\":[-48]") }, ["shape", "non-negative integer"]),
            ({ $0.replacingOccurrences(of: "{\"format\":\"pt\"}", with: "{\"format\":1}") }, ["__metadata__", "format", "not a string"]),
            ({ $0.replacingOccurrences(of: "{\"format\":\"pt\"}", with: "[]") }, ["__metadata__"]),
            ({ "{\"__metadata__\":{\"a\":\"b\"}," + $0.dropFirst() }, ["__metadata__", "twice"]),
            ({ " " + $0 }, ["header", "'{'"]),
        ]
        for (edit, fragments) in cases {
            let dir = copyFixture("qwen3_tied_f32", self)
            let header = try headerText(weights(dir))
            let edited = edit(header)
            XCTAssertNotEqual(edited, header, "the edit must apply: \(fragments)")
            try rewriteHeaderText(weights(dir), edit)
            assertThrows(try TransformerModel.load(directory: dir), containing: ["model.safetensors"] + fragments)
        }
        // Metadata of strings still loads.
        let ok = copyFixture("qwen3_tied_f32", self)
        try rewriteHeaderText(weights(ok)) { $0.replacingOccurrences(of: "{\"format\":\"pt\"}", with: "{\"format\":\"pt\",\"note\":\"x\"}") }
        XCTAssertNoThrow(try TransformerModel.load(directory: ok))
    }

    /// The header JSON text of a safetensors file, compacted as `rewriteHeaderText` expects.
    func headerText(_ url: URL) throws -> String {
        let data = try Data(contentsOf: url)
        let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        return String(decoding: data.subdata(in: 8..<(8 + n)), as: UTF8.self).replacingOccurrences(of: " ", with: "")
    }

    // MARK: 9. Tokenizer edge cases through the CLI

    /// `tokenizer train` on empty input writes nothing; its output is never one of its inputs
    /// and never replaces a file without --force; invalid UTF-8 text is refused, not replaced.
    func testTokenizerCommandsRefuseEdgeCases() throws {
        let tmp = temporaryDirectory(self)
        let empty = tmp.appendingPathComponent("empty.txt"), out = tmp.appendingPathComponent("tok.json")
        try Data().write(to: empty)
        assertOneLineFailure(try runChorus(["tokenizer", "train", "--input", empty.path, "--vocab-size", "300", "--output", out.path]),
                             containing: ["no text to train on", "empty.txt"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "nothing written for empty input")
        let text = tmp.appendingPathComponent("text.txt")
        try Data(String(repeating: "hello world, hello tokens. ", count: 20).utf8).write(to: text)
        let before = try Data(contentsOf: text)
        assertOneLineFailure(try runChorus(["tokenizer", "train", "--input", text.path, "--vocab-size", "300", "--output", text.path, "--force"]),
                             containing: ["is the input file"])
        XCTAssertEqual(try Data(contentsOf: text), before, "the input must survive")
        XCTAssertEqual(try runChorus(["tokenizer", "train", "--input", text.path, "--vocab-size", "300", "--output", out.path]).0, 0)
        assertOneLineFailure(try runChorus(["tokenizer", "train", "--input", text.path, "--vocab-size", "300", "--output", out.path]),
                             containing: ["already exists", "--force"])
        XCTAssertEqual(try runChorus(["tokenizer", "train", "--input", text.path, "--vocab-size", "300", "--output", out.path, "--force"]).0, 0)
        let r = try runChorusRaw([Array("tokenize".utf8), Array("--tokenizer".utf8), Array(out.path.utf8), Array("--text".utf8), [0x68, 0x69, 0xC3]])
        assertOneLineFailure(r, containing: ["--text", "not valid UTF-8"], "tokenize --text with invalid UTF-8")
    }

    // MARK: 11. Messages that mislead

    /// Each message names the file and field and the real cause.
    func testMessagesNameTheRealCause() throws {
        let base = try String(contentsOf: Fixtures.model("qwen3_tied_f32").appendingPathComponent("config.json"), encoding: .utf8)
        let huge = base.replacingOccurrences(of: "\"vocab_size\": 96", with: "\"vocab_size\": 1e30")
        do {
            _ = try ModelConfig(json: Data(huge.utf8))
            XCTFail("vocab_size 1e30 accepted")
        } catch {
            XCTAssertTrue("\(error)".contains("vocab_size"), "\(error)")
            XCTAssertFalse("\(error)".contains("positive"), "1e30 is positive: \(error)")
        }
        let tmp = temporaryDirectory(self)
        let missing = tmp.appendingPathComponent("missing-model")
        let r = try runChorus(["logprobs", "--model", missing.path, "--tokens", "1,2"])
        assertOneLineFailure(r, containing: ["missing-model", "no such file"], "missing model directory")
        XCTAssertFalse(r.2.contains("permission") || r.2.contains("NSCocoaErrorDomain"), r.2)
        // A directory without config.json.
        let empty = tmp.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let r2 = try runChorus(["logprobs", "--model", empty.path, "--tokens", "1,2"])
        assertOneLineFailure(r2, containing: ["config.json", "no such file"], "empty model directory")
        XCTAssertFalse(r2.2.contains("NSCocoaErrorDomain"), r2.2)
    }

    // MARK: 12. Non-UTF-8 paths

    /// A path that is not valid UTF-8 is used byte for byte (never rewritten to U+FFFD), and
    /// messages show it as given, with \xFF for the invalid byte.
    func testNonUTF8PathsAreUsedAsGiven() throws {
        let tmp = temporaryDirectory(self)
        let nameBytes: [UInt8] = Array("model-".utf8) + [0xFF, 0xFE] + Array("-x".utf8)
        let dirBytes = Array(tmp.path.utf8) + [UInt8(ascii: "/")] + nameBytes
        XCTAssertEqual(dirBytes.withCString { mkdir($0, 0o755) }, 0)
        for f in ["config.json", "model.safetensors"] {
            let src = try Data(contentsOf: Fixtures.model("qwen3_tied_f32").appendingPathComponent(f))
            let path = dirBytes + Array("/\(f)".utf8)
            let fd = path.withCString { open($0, O_WRONLY | O_CREAT | O_TRUNC, 0o644) }
            XCTAssertGreaterThanOrEqual(fd, 0)
            _ = src.withUnsafeBytes { write(fd, $0.baseAddress, src.count) }
            close(fd)
        }
        let (status, out, err) = try runChorusRaw([Array("logprobs".utf8), Array("--model".utf8), dirBytes, Array("--tokens".utf8), Array("1,2".utf8)])
        XCTAssertEqual(status, 0, err)
        let (_, expected, _) = try runChorus(["logprobs", "--model", Fixtures.model("qwen3_tied_f32").path, "--tokens", "1,2"])
        XCTAssertEqual(out, expected)
        // `--model=PATH` works too.
        let (s2, out2, err2) = try runChorusRaw([Array("logprobs".utf8), Array("--model=".utf8) + dirBytes, Array("--tokens".utf8), Array("1,2".utf8)])
        XCTAssertEqual(s2, 0, err2)
        XCTAssertEqual(out2, expected)
        // Errors name the path as given.
        let noWeights = dirBytes + Array("/model.safetensors".utf8)
        XCTAssertEqual(noWeights.withCString { unlink($0) }, 0)
        let r = try runChorusRaw([Array("logprobs".utf8), Array("--model".utf8), dirBytes, Array("--tokens".utf8), Array("1,2".utf8)])
        assertOneLineFailure(r, containing: ["model-\\xFF\\xFE-x/model.safetensors"], "missing weights under a non-UTF-8 path")
        XCTAssertFalse(r.2.contains("/proc/self/fd"), r.2)
        // A non-UTF-8 name that does not exist cannot be created byte for byte: refused by name.
        let absent = Array(tmp.path.utf8) + Array("/out-".utf8) + [0xFF]
        let r3 = try runChorusRaw([Array("convert".utf8), Array("--model".utf8), Array(Fixtures.model("qwen3_tied_f32").path.utf8), Array("--output".utf8), absent])
        assertOneLineFailure(r3, containing: ["out-\\xFF"], "non-UTF-8 output name")
        XCTAssertFalse(FileManager.default.fileExists(atPath: tmp.appendingPathComponent("out-\u{FFFD}").path), "a rewritten name was created")
        // Invalid UTF-8 in a text option is refused, not replaced.
        let r4 = try runChorusRaw([Array("logprobs".utf8), Array("--model".utf8), Array(Fixtures.model("qwen3_tied_f32").path.utf8), Array("--tokens".utf8), [0x31, 0xFF]])
        assertOneLineFailure(r4, containing: ["--tokens", "UTF-8"], "non-UTF-8 text option")
    }
}

extension Array where Element == UInt8 {
    /// Calls `body` with a NUL-terminated C string of these bytes.
    func withCString<R>(_ body: (UnsafePointer<CChar>) -> R) -> R {
        (self.map { CChar(bitPattern: $0) } + [0]).withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
