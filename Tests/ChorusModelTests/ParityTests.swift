import ChorusModel
import ChorusTensor
import Foundation
import ChorusTestSupport
import XCTest

/// Forward-pass parity with Hugging Face transformers (fixtures from make_fixtures.py).
/// Tolerance: 1e-4 absolute on every log-prob of every position.
final class ParityTests: XCTestCase {
    func fullLogProbs(_ model: TransformerModel, _ tokens: [Int]) throws -> [Float] {
        let ws = ForwardWorkspace()
        let h = try model.forwardHidden([PackedSequence(tokens: tokens)], workspace: ws)
        return model.logProbabilities(hidden: h, rows: Array(0..<tokens.count), scratch: model.makeHeadScratch()).array
    }

    func testEveryFamilyMatchesTransformers() throws {
        for name in Fixtures.modelNames {
            let model = try TransformerModel.load(directory: Fixtures.model(name))
            for (tokens, expected) in try Fixtures.expected(name) {
                let got = try fullLogProbs(model, tokens)
                let d = maxAbsDiff(got, expected)
                XCTAssertLessThan(d, 1e-4, "\(name) T=\(tokens.count): max |Δ logprob| = \(d)")
            }
        }
    }

    func testFamilyFlagsComeFromConfig() throws {
        let q2 = try ModelConfig(contentsOf: Fixtures.model("qwen2_untied_f32").appendingPathComponent("config.json"))
        XCTAssertTrue(q2.qkvBias); XCTAssertFalse(q2.oBias); XCTAssertFalse(q2.qkNorm); XCTAssertEqual(q2.numKVHeads, 1)
        let q3 = try ModelConfig(contentsOf: Fixtures.model("qwen3_tied_f32").appendingPathComponent("config.json"))
        XCTAssertTrue(q3.qkNorm); XCTAssertEqual(q3.headDim, 16); XCTAssertTrue(q3.tieWordEmbeddings)
        let ll = try ModelConfig(contentsOf: Fixtures.model("llama_tied_bias_bf16").appendingPathComponent("config.json"))
        XCTAssertTrue(ll.qkvBias); XCTAssertTrue(ll.oBias); XCTAssertEqual(ll.ropeTheta, 500_000)  // top-level rope_theta
        let q3s = try ModelConfig(contentsOf: Fixtures.model("qwen3_untied_bf16_sharded").appendingPathComponent("config.json"))
        XCTAssertEqual(q3s.ropeTheta, 1_000_000)  // rope_parameters.rope_theta
    }

    /// Packing sequences of different lengths into one batch gives the same numbers as
    /// running each alone.
    func testPackedBatchMatchesSingleSequences() throws {
        let model = try TransformerModel.load(directory: Fixtures.model("qwen3_untied_bf16_sharded"))
        let cases = try Fixtures.expected("qwen3_untied_bf16_sharded")
        let ws = ForwardWorkspace()
        let h = try model.forwardHidden(cases.map { PackedSequence(tokens: $0.0) }, workspace: ws)
        let total = cases.reduce(0) { $0 + $1.0.count }
        let all = model.logProbabilities(hidden: h, rows: Array(0..<total), scratch: model.makeHeadScratch()).array
        var off = 0
        for (tokens, expected) in cases {
            let got = Array(all[off * model.config.vocabSize ..< (off + tokens.count) * model.config.vocabSize])
            XCTAssertLessThan(maxAbsDiff(got, expected), 1e-4)
            off += tokens.count
        }
    }

    /// KV-cache decoding (prefill, then one token at a time) gives the full forward's log-probs.
    func testKVCacheDecodingMatchesFullForward() throws {
        for name in ["qwen3_tied_f32", "qwen2_untied_f32", "llama_tied_bias_bf16"] {
            let model = try TransformerModel.load(directory: Fixtures.model(name))
            let tokens = try Fixtures.expected(name)[1].0   // 70 tokens, crosses a query block
            let full = try fullLogProbs(model, tokens)
            let V = model.config.vocabSize
            let cache = KVCache(config: model.config, capacity: tokens.count)
            let ws = ForwardWorkspace(), scratch = model.makeHeadScratch()
            var got: [Float] = []
            let prefill = 5
            var h = try model.forwardHidden([PackedSequence(tokens: Array(tokens[..<prefill]), cache: cache)], workspace: ws)
            got += model.logProbabilities(hidden: h, rows: Array(0..<prefill), scratch: scratch).array
            for t in prefill..<tokens.count {
                h = try model.forwardHidden([PackedSequence(tokens: [tokens[t]], cache: cache)], workspace: ws)
                got += model.logProbabilities(hidden: h, rows: [0], scratch: scratch).array
            }
            XCTAssertEqual(cache.length, tokens.count)
            XCTAssertEqual(got.count, tokens.count * V)
            // Same math, different float32 summation order (the gemm shapes differ). These
            // fixtures have logits up to ~60 in magnitude, so round-off reaches a few 1e-5;
            // hold it to the project's log-prob tolerance, 1e-4 absolute (measured: <= 4.6e-5).
            let d = maxAbsDiff(got, full)
            XCTAssertLessThan(d, 1e-4, "\(name): cached vs full max |Δ| = \(d)")
        }
    }

    /// Past the 256 positions a model's RoPE table starts with: the full forward (above, in
    /// testEveryFamilyMatchesTransformers), KV-cache decoding that grows the table mid-way, and
    /// the training forward all match transformers on a 300-token sequence at head_dim 64.
    func testSequencesLongerThanTheRopeTable() throws {
        let name = "llama_hd64_long_f32"
        let model = try TransformerModel.load(directory: Fixtures.model(name))
        XCTAssertEqual(model.config.headDim, 64)
        XCTAssertEqual(model.rope.positions, 256, "the table a model starts with")
        let cases = try Fixtures.expected(name)
        let (tokens, expected) = try XCTUnwrap(cases.first { $0.0.count > 256 })
        XCTAssertEqual(tokens.count, 300)
        let V = model.config.vocabSize
        // KV cache: prefill 250 positions, then decode one token at a time across 256.
        let cache = KVCache(config: model.config, capacity: tokens.count)
        let ws = ForwardWorkspace(), scratch = model.makeHeadScratch()
        var got: [Float] = []
        var h = try model.forwardHidden([PackedSequence(tokens: Array(tokens[..<250]), cache: cache)], workspace: ws)
        got += model.logProbabilities(hidden: h, rows: Array(0..<250), scratch: scratch).array
        for t in 250..<tokens.count {
            h = try model.forwardHidden([PackedSequence(tokens: [tokens[t]], cache: cache)], workspace: ws)
            got += model.logProbabilities(hidden: h, rows: [0], scratch: scratch).array
        }
        withExtendedLifetime(ws) {}   // h pointed into it
        XCTAssertGreaterThanOrEqual(model.rope.positions, 300)
        let d = maxAbsDiff(got, expected)
        XCTAssertLessThan(d, 1e-4, "KV-cache decoding past the table: max |Δ| \(d)")
        // Training forward (a fresh model, so its table is grown by the training pass itself).
        let fresh = try TransformerModel.load(directory: Fixtures.model(name))
        let lp = try fresh.trainingForward([TrainingSequence(tokens: tokens, promptLength: 1)], tape: TrainingTape()).logprobs[0]
        XCTAssertEqual(lp.count, tokens.count - 1)
        let next = (0..<(tokens.count - 1)).map { expected[$0 * V + tokens[$0 + 1]] }
        let dt = maxAbsDiff(lp, next)
        XCTAssertLessThan(dt, 1e-4, "training forward past the table: max |Δ| \(dt)")
    }

    /// Scores (logprob of the actual next token, entropy, top-k) agree with the full vectors.
    func testScoreSequenceAgreesWithFullDistribution() throws {
        let name = "llama_untied_f32"
        let model = try TransformerModel.load(directory: Fixtures.model(name))
        let (tokens, expected) = try Fixtures.expected(name)[0]
        let V = model.config.vocabSize
        let scores = try model.scoreSequence(tokens, topK: 5)
        XCTAssertNil(scores[0])
        for i in 1..<tokens.count {
            let row = Array(expected[(i - 1) * V ..< i * V])
            let s = try XCTUnwrap(scores[i])
            XCTAssertEqual(s.logprob, row[tokens[i]], accuracy: 1e-4)
            let h = -row.reduce(Float(0)) { $0 + exp($1) * $1 }
            XCTAssertEqual(s.entropy, h, accuracy: 1e-4)
            let order = row.indices.sorted { row[$0] > row[$1] || (row[$0] == row[$1] && $0 < $1) }
            XCTAssertEqual(s.topIds.map(Int.init), Array(order.prefix(5)))
            for (id, lp) in zip(s.topIds, s.topLogprobs) { XCTAssertEqual(lp, row[Int(id)], accuracy: 1e-4) }
        }
    }

    /// Saving and reloading (f32) reproduces the parameters bit-exactly; bf16 within rounding.
    func testSaveAndReload() throws {
        let model = try TransformerModel.load(directory: Fixtures.model("qwen2_untied_f32"))
        let dir = temporaryDirectory(self).appendingPathComponent("m")
        try model.save(directory: dir)
        let back = try TransformerModel.load(directory: dir)
        XCTAssertEqual(back.config, model.config)
        XCTAssertEqual(back.parameters.array, model.parameters.array)
        try model.save(directory: dir, dtype: .bf16)
        let b16 = try TransformerModel.load(directory: dir)
        let expect = model.parameters.array.map { HalfConversion.bf16ToFloat(HalfConversion.floatToBF16($0)) }
        XCTAssertEqual(b16.parameters.array, expect)
    }
}
