import ChorusModel
import ChorusTensor
import Foundation
import XCTest

final class SamplerTests: XCTestCase {
    func draw(_ logits: [Float], _ p: SamplingParameters, _ rng: inout ChorusRNG) -> Int {
        var work = [Float](repeating: 0, count: logits.count), order = [Int32](repeating: 0, count: logits.count)
        return sampleToken(logits: logits, vocab: logits.count, params: p, rng: &rng, work: &work, order: &order).id
    }

    func testGreedyAndDegenerateFilters() {
        var rng = ChorusRNG(seed: 1)
        let logits: [Float] = [0.1, 2.0, -1, 2.0, 0.5]
        XCTAssertEqual(draw(logits, .init(temperature: 0), &rng), 1)  // ties: lower id
        for _ in 0..<50 {
            XCTAssertEqual(draw(logits, .init(temperature: 1, topK: 1), &rng), 1)
            XCTAssertEqual(draw(logits, .init(temperature: 1, topP: 0.01), &rng), 1)
            let t = draw(logits, .init(temperature: 1, topK: 2), &rng)
            XCTAssertTrue(t == 1 || t == 3)
        }
    }

    /// Empirical frequencies follow softmax(logits / T), and top-p keeps the smallest nucleus.
    func testFrequenciesMatchDistribution() {
        var rng = ChorusRNG(seed: 2)
        let logits: [Float] = [1, 0, -1, 0.5]
        let T: Float = 0.7
        let z = logits.map { exp($0 / T) }, sum = z.reduce(0, +)
        var counts = [Int](repeating: 0, count: 4)
        let n = 40_000
        for _ in 0..<n { counts[draw(logits, .init(temperature: T), &rng)] += 1 }
        for i in 0..<4 { XCTAssertEqual(Double(counts[i]) / Double(n), Double(z[i] / sum), accuracy: 0.01) }
        // p = [0.49, 0.18, 0.07, 0.30] at T=0.7 -> top-p 0.7 keeps ids {0, 3}.
        counts = [0, 0, 0, 0]
        for _ in 0..<5000 { counts[draw(logits, .init(temperature: T, topP: 0.7), &rng)] += 1 }
        XCTAssertEqual(counts[1] + counts[2], 0)
        XCTAssertGreaterThan(counts[0], counts[3])
    }

    /// Same seed, same continuation; the reported log-probs equal a full forward pass's, and a
    /// batched generate gives each sequence what it gets alone.
    func testGenerateIsSeededAndConsistent() throws {
        let model = try TransformerModel.load(directory: Fixtures.model("qwen3_tied_f32"))
        let p = SamplingParameters(temperature: 1)
        let a = try model.generate(prompts: [[1, 2, 3]], maxTokens: 12, params: p, seeds: [7])[0]
        let b = try model.generate(prompts: [[1, 2, 3]], maxTokens: 12, params: p, seeds: [7])[0]
        XCTAssertEqual(a.tokens, b.tokens)
        XCTAssertEqual(a.tokens.count, 15)
        let c = try model.generate(prompts: [[1, 2, 3]], maxTokens: 12, params: p, seeds: [8])[0]
        XCTAssertNotEqual(a.tokens, c.tokens)
        let scores = try model.scoreSequence(a.tokens)
        for (i, lp) in a.logprobs.enumerated() { XCTAssertEqual(lp, scores[3 + i]!.logprob, accuracy: 1e-4) }
        let batch = try model.generate(prompts: [[5, 6], [1, 2, 3], [9]], maxTokens: 12, params: p, seeds: [3, 7, 4])
        XCTAssertEqual(batch[1].tokens, a.tokens)
        for (x, y) in zip(batch[1].logprobs, a.logprobs) { XCTAssertEqual(x, y, accuracy: 1e-4) }
        // Greedy decoding equals the argmax of the full forward at each step.
        let g = try model.generate(prompts: [[4, 4]], maxTokens: 8, params: .init(temperature: 0), seeds: [0])[0]
        let full = try model.scoreSequence(g.tokens, topK: 1)
        for i in 2..<g.tokens.count { XCTAssertEqual(Int(full[i]!.topIds[0]), g.tokens[i]) }
        // Stop tokens end a sequence early, after emitting the stop token.
        let stop = Set([g.tokens[4]])
        let s = try model.generate(prompts: [[4, 4]], maxTokens: 8, params: .init(temperature: 0), seeds: [0], stopTokens: stop)[0]
        XCTAssertEqual(s.tokens, Array(g.tokens.prefix(g.tokens.firstIndex { stop.contains($0) && $0 == g.tokens[4] }! + 1)))
    }
}

/// The rollout engine's fast paths against the reference ones: the fused sampler against
/// `sampleToken` + `rowStats`, and the batched, parallel, allocation-free `generate` against
/// `generateReference`. Both must agree bit for bit (same float operations).
final class RolloutEngineTests: XCTestCase {
    static let paramSets: [SamplingParameters] = [
        .init(temperature: 1), .init(temperature: 0.7), .init(temperature: 0),
        .init(temperature: 1, topP: 0.9), .init(temperature: 0.6, topP: 0.5), .init(temperature: 1.3, topP: 0.999),
        .init(temperature: 1, topK: 5), .init(temperature: 0.8, topP: 0.95, topK: 40), .init(temperature: 1, topP: 0.3, topK: 1),
    ]

    func testFusedSamplerMatchesReference() {
        var gen = ChorusRNG(seed: 11)
        for V in [1, 7, 8, 61, 1000] {
            for scale: Float in [0.1, 3, 12] {   // flat, typical, peaked
                var logits = (0..<V).map { _ in gen.normal() * scale }
                if V > 4 { logits[3] = logits[1] }   // a tie
                var work = [Float](repeating: 0, count: V), order = [Int32](repeating: 0, count: V)
                for p in Self.paramSets {
                    for seed in UInt64(0)..<20 {
                        var r1 = ChorusRNG(seed: seed), r2 = ChorusRNG(seed: seed)
                        let ref = sampleToken(logits: logits, vocab: V, params: p, rng: &r1, work: &work, order: &order)
                        let lse = logits.withUnsafeBufferPointer { rowStats($0.baseAddress!, count: V).logSumExp }
                        let fast = logits.withUnsafeBufferPointer { lb in
                            sampleTokenFused(logits: lb.baseAddress!, vocab: V, params: p, rng: &r2, work: &work, order: &order)
                        }
                        XCTAssertEqual(fast.token, ref, "V \(V) scale \(scale) \(p) seed \(seed)")
                        XCTAssertEqual(fast.modelLogprob, logits[ref.id] - lse, "V \(V) scale \(scale) \(p) seed \(seed)")
                        XCTAssertEqual(r1.next(), r2.next(), "the generators advanced differently")
                    }
                }
            }
        }
    }

    func testGenerateMatchesReferenceLoop() throws {
        let config = ModelConfig(family: .qwen3, vocabSize: 300, hiddenSize: 64, intermediateSize: 96, numLayers: 2,
                                 numHeads: 4, numKVHeads: 2, headDim: 16, ropeTheta: 10_000)
        let model = TransformerModel(config: config)
        model.initializeRandom(seed: 5, std: 0.3)   // peaked enough that top-p cuts inside the candidates
        let prompts = [[1, 2, 3], [7], [9, 9, 9, 9, 9], [4, 5]]
        for p in RolloutEngineTests.paramSets {
            for G in [1, 3] {
                let seeds = (0..<UInt64(prompts.count * G)).map { $0 * 7919 + 1 }
                // A stop token that some samples emit, so rows drop out mid-batch.
                let stop: Set<Int> = [17, 42, 99]
                let ref = try model.generateReference(prompts: prompts, samplesPerPrompt: G, maxTokens: 20, params: p,
                                                      seeds: seeds, stopTokens: stop)
                let ws = ForwardWorkspace()
                for _ in 0..<2 {   // a reused workspace gives the same result
                    let fast = try model.generate(prompts: prompts, samplesPerPrompt: G, maxTokens: 20, params: p,
                                                  seeds: seeds, stopTokens: stop, workspace: ws)
                    XCTAssertEqual(fast.count, ref.count)
                    for (f, r) in zip(fast, ref) {
                        XCTAssertEqual(f.tokens, r.tokens, "\(p) G \(G)")
                        XCTAssertEqual(f.logprobs, r.logprobs, "\(p) G \(G)")
                        XCTAssertEqual(f.samplingLogprobs, r.samplingLogprobs, "\(p) G \(G)")
                        XCTAssertEqual(f.promptLength, r.promptLength)
                    }
                }
            }
        }
    }

    /// Suppressed tokens (a control-token student's routing ids) are never drawn, at any
    /// temperature, and the batched loop still equals the reference loop with them; an id
    /// outside the vocabulary is refused.
    func testSuppressedTokensAreNeverDrawn() throws {
        let config = ModelConfig(family: .qwen3, vocabSize: 40, hiddenSize: 32, intermediateSize: 64, numLayers: 1,
                                 numHeads: 4, numKVHeads: 2, headDim: 8, ropeTheta: 10_000)
        let model = TransformerModel(config: config)
        model.initializeRandom(seed: 9, std: 0.3)
        let prompts = [[1, 2, 3], [7]], G = 4
        let seeds = (0..<UInt64(prompts.count * G)).map { $0 * 31 + 5 }
        let params = SamplingParameters(temperature: 1)
        let free = try model.generate(prompts: prompts, samplesPerPrompt: G, maxTokens: 30, params: params, seeds: seeds)
        // The most frequent tokens of the free run: suppressing them must change the draws.
        var counts = [Int: Int]()
        for g in free { for t in g.response { counts[t, default: 0] += 1 } }
        let banned = counts.sorted { $0.value > $1.value }.prefix(3).map(\.key)
        XCTAssertEqual(banned.count, 3)
        for p in [params, SamplingParameters(temperature: 0), SamplingParameters(temperature: 2, topP: 0.9)] {
            let fast = try model.generate(prompts: prompts, samplesPerPrompt: G, maxTokens: 30, params: p, seeds: seeds, suppressTokens: banned)
            let ref = try model.generateReference(prompts: prompts, samplesPerPrompt: G, maxTokens: 30, params: p, seeds: seeds, suppressTokens: banned)
            for (f, r) in zip(fast, ref) {
                XCTAssertTrue(Set(f.response).isDisjoint(with: banned), "\(p): drew a suppressed token")
                XCTAssertEqual(f.tokens, r.tokens, "\(p)")
                XCTAssertEqual(f.logprobs, r.logprobs, "\(p)")
                XCTAssertTrue(f.logprobs.allSatisfy(\.isFinite))
            }
        }
        XCTAssertThrowsError(try model.generate(prompts: prompts, maxTokens: 2, params: params, seeds: [1, 2], suppressTokens: [40]))
    }

    func testForwardDecodeRejectsBadInput() throws {
        let model = try TransformerModel.load(directory: Fixtures.model("qwen3_tied_f32"))
        let kv = KVCache(config: model.config, capacity: 2)
        let ws = ForwardWorkspace()
        XCTAssertThrowsError(try model.forwardDecode(tokens: [model.config.vocabSize], caches: [kv], workspace: ws)) {
            XCTAssertEqual($0 as? ModelError, .tokenOutOfRange(token: model.config.vocabSize, vocabSize: model.config.vocabSize))
        }
        XCTAssertThrowsError(try model.forwardDecode(tokens: [], caches: [], workspace: ws))
        _ = try model.forwardDecode(tokens: [1], caches: [kv], workspace: ws)
        _ = try model.forwardDecode(tokens: [2], caches: [kv], workspace: ws)
        XCTAssertThrowsError(try model.forwardDecode(tokens: [3], caches: [kv], workspace: ws)) {
            XCTAssertEqual($0 as? ModelError, .cacheFull(capacity: 2, needed: 3))
        }
    }
}

/// The sampler's reduced-precision weight copy.
final class SamplingCopyTests: XCTestCase {
    func testCopiesRoundEveryParameterAndReuseTheModel() throws {
        let model = try TransformerModel.load(directory: Fixtures.model("qwen3_tied_f32"))
        let n = model.parameters.count
        let f32 = model.samplingCopy(precision: .f32)
        XCTAssertFalse(f32 === model)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: f32.parameters.data, count: n)),
                       Array(UnsafeBufferPointer(start: model.parameters.data, count: n)))
        let bf = model.samplingCopy(precision: .bf16)
        var changed = 0
        for i in 0..<n {
            let x = model.parameters.data[i], y = bf.parameters.data[i]
            XCTAssertEqual(y, HalfConversion.bf16ToFloat(HalfConversion.floatToBF16(x)))
            XCTAssertEqual(y, x, accuracy: abs(x) / 256 + 1e-30)   // 8 significant bits
            if y != x { changed += 1 }
        }
        XCTAssertGreaterThan(changed, n / 2, "bf16 rounding changed almost nothing")
        // Refreshing in place after an update reuses the model object.
        model.parameters.data[0] += 1
        let again = model.samplingCopy(precision: .f16, reusing: bf)
        XCTAssertTrue(again === bf)
        XCTAssertEqual(again.parameters.data[0], HalfConversion.f16ToFloat(HalfConversion.floatToF16(model.parameters.data[0])))
    }
}

/// Decoding from a bf16 / f16 sampling copy through `gemm`'s 16-bit kernel (`HalfWeights`)
/// against the same rounded weights in f32 through the plain path.
final class HalfSamplingTests: XCTestCase {
    override func tearDown() {
        HalfKernel.enabled = true
        super.tearDown()
    }

    /// A random Qwen3 model whose decode products cover the kernel's odd cases: vocabulary and
    /// MLP widths not multiples of the 32-wide panel, batches across the 8/4/1-row tiles.
    func makeModel() -> TransformerModel {
        let config = ModelConfig(family: .qwen3, vocabSize: 301, hiddenSize: 64, intermediateSize: 100, numLayers: 2,
                                 numHeads: 4, numKVHeads: 2, headDim: 16, ropeTheta: 10_000)
        let model = TransformerModel(config: config)
        model.initializeRandom(seed: 21, std: 0.3)
        return model
    }

    let prompts = [[1, 2, 3], [7], [9, 9, 9, 9, 9], [4, 5], [200, 3, 8]]

    /// Greedy and sampled decoding from the copy (kernel) give the tokens of an f32 model holding
    /// the same rounded weights (plain gemm), and model log-probs within 2e-4: the two differ only
    /// by f32 summation order inside the products (relative ~1e-6 per product), which a 2-layer
    /// model carries to the logits at about 1e-5.
    func testDecodeMatchesF32ForwardOnRoundedWeights() throws {
        let model = makeModel()
        for precision in [SamplingPrecision.bf16, .f16] {
            let copy = model.samplingCopy(precision: precision)
            XCTAssertNotNil(copy.halfWeights)
            let plain = copy.samplingCopy(precision: .f32)   // the rounded values, no 16-bit matrices
            XCTAssertNil(plain.halfWeights)
            for params in [SamplingParameters(temperature: 0), SamplingParameters(temperature: 1), SamplingParameters(temperature: 0.8, topP: 0.9)] {
                for G in [1, 3] {   // 5 and 15 rows: the 4-row and 8-row tiles and single rows
                    let seeds = (0..<UInt64(prompts.count * G)).map { $0 * 31 + 5 }
                    let fast = try copy.generate(prompts: prompts, samplesPerPrompt: G, maxTokens: 24, params: params, seeds: seeds)
                    let ref = try plain.generate(prompts: prompts, samplesPerPrompt: G, maxTokens: 24, params: params, seeds: seeds)
                    for (f, r) in zip(fast, ref) {
                        XCTAssertEqual(f.tokens, r.tokens, "\(precision) \(params) G \(G)")
                        for (x, y) in zip(f.logprobs, r.logprobs) { XCTAssertEqual(x, y, accuracy: 2e-4, "\(precision) \(params) G \(G)") }
                    }
                }
            }
        }
    }

    /// The decode step's logits through the kernel equal the f32 product of the rounded weights
    /// (relative 1e-4 of the row's largest logit), row by row, for batches of 1 ... 17.
    func testDecodeLogitsMatch() throws {
        let model = makeModel()
        let copy = model.samplingCopy(precision: .bf16), plain = copy.samplingCopy(precision: .f32)
        let V = model.config.vocabSize
        for batch in [1, 4, 8, 9, 17] {
            func logits(_ m: TransformerModel) throws -> [Float] {
                let caches = (0..<batch).map { _ in KVCache(config: m.config, capacity: 8) }
                let ws = ForwardWorkspace()
                _ = try m.forwardHidden((0..<batch).map { PackedSequence(tokens: [($0 * 7) % V, 3], cache: caches[$0]) }, workspace: ws)
                let h = try m.forwardDecode(tokens: (0..<batch).map { ($0 * 13 + 1) % V }, caches: caches, workspace: ws)
                var out: [Float] = []
                m.headChunks(hidden: h, rows: Array(0..<batch), scratch: m.makeHeadScratch()) { _, n, l, _ in
                    out += Array(UnsafeBufferPointer(start: l, count: n * V))
                }
                return out
            }
            let a = try logits(copy), b = try logits(plain)
            for r in 0..<batch {
                let scale = b[(r * V)..<((r + 1) * V)].map(abs).max()!
                for j in 0..<V { XCTAssertEqual(a[r * V + j], b[r * V + j], accuracy: 1e-4 * scale, "batch \(batch) row \(r) id \(j)") }
            }
        }
    }

    /// Same seeds and threads give the same rollouts; with the kernel off (a CPU without
    /// AVX-512/FMA) the copy decodes exactly as the f32 model of its rounded weights; the
    /// copy's tokens and log-probs do not depend on the thread count.
    func testDeterministicAndFallback() throws {
        let model = makeModel()
        let copy = model.samplingCopy(precision: .bf16), plain = copy.samplingCopy(precision: .f32)
        let seeds = (0..<UInt64(prompts.count * 2)).map { $0 + 100 }
        let p = SamplingParameters(temperature: 1)
        func run(_ m: TransformerModel) throws -> [Generation] {
            try m.generate(prompts: prompts, samplesPerPrompt: 2, maxTokens: 16, params: p, seeds: seeds)
        }
        let a = try run(copy), b = try run(copy)
        XCTAssertEqual(a.map(\.tokens), b.map(\.tokens))
        XCTAssertEqual(a.map(\.logprobs), b.map(\.logprobs))
        let threads = Parallel.threads
        for t in [1, 3] {
            Parallel.configure(threads: t)
            let c = try run(copy)
            XCTAssertEqual(c.map(\.tokens), a.map(\.tokens), "\(t) threads")
            XCTAssertEqual(c.map(\.logprobs), a.map(\.logprobs), "\(t) threads")
        }
        Parallel.configure(threads: threads)
        HalfKernel.enabled = false
        let off = try run(copy), ref = try run(plain)
        XCTAssertEqual(off.map(\.tokens), ref.map(\.tokens))
        XCTAssertEqual(off.map(\.logprobs), ref.map(\.logprobs))
    }

    /// Refreshing a copy in place keeps, replaces or drops its 16-bit matrices with the precision,
    /// and they hold the freshly rounded weights.
    func testRefreshRepacks() {
        let model = makeModel()
        let copy = model.samplingCopy(precision: .bf16)
        let head = copy.halfWeights!.lmHead
        model.parameters.data[model.layout.lmHead] = 0.123456
        XCTAssertTrue(model.samplingCopy(precision: .bf16, reusing: copy) === copy)
        XCTAssertTrue(copy.halfWeights!.lmHead === head, "same format: repacked in place")
        XCTAssertEqual(head.value(row: 0, col: 0), HalfConversion.bf16ToFloat(HalfConversion.floatToBF16(0.123456)))
        _ = model.samplingCopy(precision: .f16, reusing: copy)
        XCTAssertEqual(copy.halfWeights?.format, .f16)
        XCTAssertEqual(copy.halfWeights!.lmHead.value(row: 0, col: 0), HalfConversion.f16ToFloat(HalfConversion.floatToF16(0.123456)))
        let L = model.layout.layers[1]
        XCTAssertEqual(copy.halfWeights!.layers[1].down.value(row: 2, col: 5), copy.parameters.data[L.down + 2 * model.config.intermediateSize + 5])
        _ = model.samplingCopy(precision: .f32, reusing: copy)
        XCTAssertNil(copy.halfWeights)
    }
}
