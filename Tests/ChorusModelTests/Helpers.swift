import ChorusModel
import ChorusTensor
import Foundation
import ChorusTestSupport
import XCTest

/// Locations of the committed fixtures (see Fixtures/make_fixtures.py).
enum Fixtures {
    static var root: URL { Bundle.module.resourceURL!.appendingPathComponent("Fixtures") }
    static var models: URL { root.appendingPathComponent("models") }
    static func model(_ name: String) -> URL { models.appendingPathComponent(name) }
    static let modelNames = [
        "llama_untied_f32", "llama_tied_bias_bf16", "qwen2_untied_f32", "qwen2_tied_f16",
        "qwen3_tied_f32", "qwen3_untied_bf16_sharded", "llama_hd64_long_f32",
    ]

    /// The expected log-softmax matrices recorded by transformers: (tokens, logprobs (T, V)).
    static func expected(_ name: String) throws -> [([Int], [Float])] {
        let f = try SafeTensorsFile(path: model(name).appendingPathComponent("expected.safetensors").path)
        var out: [([Int], [Float])] = []
        var i = 0
        while f.tensors["tokens_\(i)"] != nil {
            let toks = try f.readArray("tokens_\(i)").map { Int($0) }
            out.append((toks, try f.readArray("logprobs_\(i)")))
            i += 1
        }
        // An empty or renamed expected file must fail, not compare nothing.
        if out.isEmpty { throw FixtureError.noCases(f.path) }
        return out
    }
}

/// Copies a fixture model into a temporary directory so a test may damage it.
func copyFixture(_ name: String, _ test: XCTestCase) -> URL {
    let dst = temporaryDirectory(test).appendingPathComponent(name)
    try! FileManager.default.copyItem(at: Fixtures.model(name), to: dst)
    return dst
}


