import ChorusModel
import ChorusTensor
import Foundation
import ChorusTestSupport
import XCTest

/// Bad checkpoints are refused with one-line errors naming the file and the problem.
final class CheckpointErrorTests: XCTestCase {
    func weights(_ dir: URL) -> URL { dir.appendingPathComponent("model.safetensors") }

    func testTruncatedFile() throws {
        let dir = copyFixture("qwen3_tied_f32", self)
        let data = try Data(contentsOf: weights(dir))
        try data.prefix(data.count - 100).write(to: weights(dir))
        assertThrows(try TransformerModel.load(directory: dir), containing: ["model.safetensors", "past the data section"])
        try data.prefix(5).write(to: weights(dir))
        assertThrows(try TransformerModel.load(directory: dir), containing: ["model.safetensors", "truncated"])
        try data.prefix(200).write(to: weights(dir))
        assertThrows(try TransformerModel.load(directory: dir), containing: ["model.safetensors", "truncated"])
    }

    /// Rewrites the header JSON of a safetensors file through `edit`.
    func rewriteHeader(_ url: URL, _ edit: (inout [String: Any]) -> Void) throws {
        let data = try Data(contentsOf: url)
        let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        var header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as! [String: Any]
        edit(&header)
        var json = try JSONSerialization.data(withJSONObject: header)
        while json.count % 8 != 0 { json.append(0x20) }
        var len = UInt64(json.count)
        var out = Data(bytes: &len, count: 8)
        out.append(json)
        out.append(data.subdata(in: (8 + n)..<data.count))
        try out.write(to: url)
    }

    func testHeaderWhoseOffsetsLie() throws {
        let dir = copyFixture("qwen3_tied_f32", self)
        try rewriteHeader(weights(dir)) { h in
            var e = h["model.norm.weight"] as! [String: Any]
            let o = e["data_offsets"] as! [Int]
            e["data_offsets"] = [o[0], o[1] + 1_000_000]
            h["model.norm.weight"] = e
        }
        assertThrows(try TransformerModel.load(directory: dir), containing: ["model.safetensors", "model.norm.weight", "offsets"])
        let dir2 = copyFixture("qwen3_tied_f32", self)
        try rewriteHeader(weights(dir2)) { h in
            var e = h["model.norm.weight"] as! [String: Any]
            e["shape"] = [4096]
            h["model.norm.weight"] = e
        }
        assertThrows(try TransformerModel.load(directory: dir2), containing: ["model.norm.weight", "offsets"])
        // A header length larger than the file.
        let dir3 = copyFixture("qwen3_tied_f32", self)
        var d = try Data(contentsOf: weights(dir3))
        d.replaceSubrange(0..<8, with: withUnsafeBytes(of: UInt64(d.count).littleEndian) { Data($0) })
        try d.write(to: weights(dir3))
        assertThrows(try TransformerModel.load(directory: dir3), containing: ["model.safetensors", "truncated"])
        // Garbage in the header.
        let dir4 = copyFixture("qwen3_tied_f32", self)
        var g = try Data(contentsOf: weights(dir4))
        g[9] = 0x7B; g[10] = 0x7B
        try g.write(to: weights(dir4))
        assertThrows(try TransformerModel.load(directory: dir4), containing: ["model.safetensors", "header"])
    }

    func testDisallowedDType() throws {
        let dir = copyFixture("qwen3_tied_f32", self)
        try rewriteHeader(weights(dir)) { h in
            var e = h["model.norm.weight"] as! [String: Any]
            e["dtype"] = "I32"
            h["model.norm.weight"] = e
        }
        assertThrows(try TransformerModel.load(directory: dir), containing: ["model.norm.weight", "I32", "not allowed"])
    }

    func testMissingAndUnusedTensors() throws {
        let dir = copyFixture("qwen3_tied_f32", self)
        try rewriteHeader(weights(dir)) { h in
            h["model.layers.1.self_attn.k_norm.weightX"] = h.removeValue(forKey: "model.layers.1.self_attn.k_norm.weight")
        }
        assertThrows(try TransformerModel.load(directory: dir), containing: ["missing tensor", "model.layers.1.self_attn.k_norm.weight"])
        // An extra tensor nobody uses: declare a config with fewer layers.
        let dir2 = copyFixture("qwen3_tied_f32", self)
        let cfgURL = dir2.appendingPathComponent("config.json")
        var cfg = try JSONSerialization.jsonObject(with: Data(contentsOf: cfgURL)) as! [String: Any]
        cfg["num_hidden_layers"] = 1
        try JSONSerialization.data(withJSONObject: cfg).write(to: cfgURL)
        assertThrows(try TransformerModel.load(directory: dir2), containing: ["unexpected tensor", "model.layers.1."])
    }

    func testShardIndexMustAgreeWithShards() throws {
        let dir = copyFixture("qwen3_untied_bf16_sharded", self)
        let idx = dir.appendingPathComponent("model.safetensors.index.json")
        var obj = try JSONSerialization.jsonObject(with: Data(contentsOf: idx)) as! [String: Any]
        var map = obj["weight_map"] as! [String: String]
        let first = map.keys.sorted()[0]
        let other = map.values.first { $0 != map[first]! }!
        map[first] = other
        obj["weight_map"] = map
        try JSONSerialization.data(withJSONObject: obj).write(to: idx)
        assertThrows(try TransformerModel.load(directory: dir), containing: ["index", first])
    }

    func testConfigErrors() throws {
        func cfg(_ edit: (inout [String: Any]) -> Void) throws -> Data {
            var c = try JSONSerialization.jsonObject(with: Data(contentsOf: Fixtures.model("qwen3_tied_f32").appendingPathComponent("config.json"))) as! [String: Any]
            edit(&c)
            return try JSONSerialization.data(withJSONObject: c)
        }
        assertThrows(try ModelConfig(json: try cfg { $0["model_type"] = "gpt_neox" }), containing: ["unknown model_type", "gpt_neox"])
        assertThrows(try ModelConfig(json: try cfg { $0["rope_parameters"] = ["rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0] }),
                     containing: ["rope_parameters.rope_type", "yarn"])
        assertThrows(try ModelConfig(json: try cfg { $0["rope_scaling"] = ["rope_type": "linear", "factor": 2.0] }),
                     containing: ["rope_scaling", "linear"])
        assertThrows(try ModelConfig(json: try cfg { $0["use_sliding_window"] = true }), containing: ["use_sliding_window"])
        assertThrows(try ModelConfig(json: try cfg { $0["num_experts"] = 8 }), containing: ["num_experts"])
        assertThrows(try ModelConfig(json: try cfg { $0["hidden_act"] = "gelu" }), containing: ["hidden_act", "gelu"])
        assertThrows(try ModelConfig(json: try cfg { $0["num_key_value_heads"] = 3 }), containing: ["num_key_value_heads"])
        assertThrows(try ModelConfig(json: try cfg { $0.removeValue(forKey: "hidden_size") }), containing: ["hidden_size"])
        assertThrows(try ModelConfig(json: try cfg { $0["vocab_size"] = 1_000_000_000_000 }), containing: ["vocab_size", "maximum"])
        assertThrows(try ModelConfig(json: try cfg { $0["hidden_size"] = 4_000_000; $0["num_hidden_layers"] = 4000; $0["head_dim"] = 16 }),
                     containing: ["parameters"])
        // A config that lies about sizes fails on the first tensor, before allocating the model.
        let liar = copyFixture("qwen3_tied_f32", self)
        let cu = liar.appendingPathComponent("config.json")
        var lc = try JSONSerialization.jsonObject(with: Data(contentsOf: cu)) as! [String: Any]
        lc["intermediate_size"] = 4_000_000
        try JSONSerialization.data(withJSONObject: lc).write(to: cu)
        assertThrows(try TransformerModel.load(directory: liar), containing: ["mlp.gate_proj.weight", "shape"])
        let missing = temporaryDirectory(self)
        assertThrows(try TransformerModel.load(directory: missing), containing: ["config.json"])
    }

    func testTokenOutOfRange() throws {
        let model = try TransformerModel.load(directory: Fixtures.model("qwen3_tied_f32"))
        assertThrows(try model.scoreSequence([1, 2, 96]), containing: ["96", "vocabulary"])
        assertThrows(try model.scoreSequence([-1, 2]), containing: ["-1", "vocabulary"])
    }
}

/// The safetensors reader against files written by the Python library, and the writer.
final class SafeTensorsTests: XCTestCase {
    var st: URL { Fixtures.models.appendingPathComponent("st") }

    func testReadsPythonFilesExactly() throws {
        let r = try SafeTensorsFile(path: st.appendingPathComponent("rounded.safetensors").path)
        let values = try r.readArray("values")
        let f32 = try SafeTensorsFile(path: st.appendingPathComponent("f32.safetensors").path)
        XCTAssertEqual(f32.tensors["a"]!.shape, [3, 4])
        XCTAssertEqual(try f32.readArray("a").map(\.bitPattern), values.map(\.bitPattern))
        let bf = try SafeTensorsFile(path: st.appendingPathComponent("bf16.safetensors").path)
        XCTAssertEqual(try bf.readArray("a").map(\.bitPattern), try r.readArray("bf16_as_f32").map(\.bitPattern))
        let f16 = try SafeTensorsFile(path: st.appendingPathComponent("f16.safetensors").path)
        XCTAssertEqual(try f16.readArray("a").map(\.bitPattern), try r.readArray("f16_as_f32").map(\.bitPattern))
        // Our narrowing agrees with torch's rounding bit for bit.
        XCTAssertEqual(values.map { HalfConversion.bf16ToFloat(HalfConversion.floatToBF16($0)).bitPattern },
                       try r.readArray("bf16_as_f32").map(\.bitPattern))
        XCTAssertEqual(values.map { HalfConversion.f16ToFloat(HalfConversion.floatToF16($0)).bitPattern },
                       try r.readArray("f16_as_f32").map(\.bitPattern))
    }

    /// The writer's data section for the same tensors equals the Python library's byte for
    /// byte, and its header parses with the same names, dtypes and shapes.
    func testWriterMatchesPythonLayout() throws {
        let values = try SafeTensorsFile(path: st.appendingPathComponent("rounded.safetensors").path).readArray("values")
        let dir = temporaryDirectory(self)
        for (dtype, ref) in [(SafeTensorsDType.f32, "f32.safetensors"), (.bf16, "bf16.safetensors")] {
            let url = dir.appendingPathComponent(ref)
            try values.withUnsafeBufferPointer { v in
                try SafeTensorsWriter.write([.init(name: "a", shape: [3, 4], data: v.baseAddress!),
                                             .init(name: "b", shape: [5], data: v.baseAddress!)], dtype: dtype, to: url)
            }
            let mine = try SafeTensorsFile(path: url.path), theirs = try SafeTensorsFile(path: st.appendingPathComponent(ref).path)
            for name in ["a", "b"] {
                XCTAssertEqual(mine.tensors[name]!.shape, theirs.tensors[name]!.shape)
                XCTAssertEqual(mine.tensors[name]!.dtype, theirs.tensors[name]!.dtype)
                XCTAssertEqual(Array(mine.rawBytes(mine.tensors[name]!)), Array(theirs.rawBytes(theirs.tensors[name]!)), "\(dtype) \(name)")
            }
            // Header length is a multiple of 8, as the reference writer pads it.
            let d = try Data(contentsOf: url)
            XCTAssertEqual(d.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } % 8, 0)
        }
    }
}
