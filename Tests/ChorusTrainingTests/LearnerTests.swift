import ChorusModel
import ChorusTensor
import ChorusTokenizer
import ChorusTraining
import Foundation
import XCTest

/// The learner API the on-policy trainer stands on: training-forward parity with the scoring
/// path, response-aligned weights, the logits-gradient hook, linear attention memory, rollouts.
final class LearnerTests: XCTestCase {
    /// A batch with different prompt and response lengths, one longer than an attention block
    /// (64 queries) so blocked attention is exercised across block boundaries.
    func batch(vocab V: Int, seed: UInt64 = 3) -> [TrainingSequence] {
        var rng = ChorusRNG(seed: seed)
        return [(1, 9), (5, 4), (17, 80), (3, 1)].map { p, r in
            TrainingSequence(tokens: (0..<(p + r)).map { _ in rng.int(below: V) }, promptLength: p)
        }
    }

    /// The rollout correction compares learner and scorer log-probs, so the training forward
    /// must reproduce the scoring path (`forwardHidden` + `score`) on the same batch. They share
    /// one block implementation and one head: the values are bit-identical (tolerance 0).
    func testTrainingForwardEqualsScoringPathBitForBit() throws {
        for name in TrainingFixtures.names {
            let model = try TransformerModel.load(directory: TrainingFixtures.model(name))
            let seqs = batch(vocab: model.config.vocabSize)
            let learner = try model.trainingForward(seqs, tape: TrainingTape())
            let ws = ForwardWorkspace()   // owns the hidden states below: keep it alive
            let hidden = try model.forwardHidden(seqs.map { PackedSequence(tokens: $0.tokens) }, workspace: ws)
            var rows: [Int] = [], targets: [Int] = [], row0 = 0
            for s in seqs {
                for t in 0..<s.responseLength { rows.append(row0 + s.promptLength - 1 + t); targets.append(s.tokens[s.promptLength + t]) }
                row0 += s.tokens.count
            }
            let scored = withExtendedLifetime(ws) {
                model.score(hidden: hidden, rows: rows, targets: targets, topK: 0, scratch: model.makeHeadScratch())
            }
            XCTAssertEqual(Array(learner.logprobs.joined()), scored.map(\.logprob), "\(name): log-probs")
            XCTAssertEqual(Array(learner.entropy.joined()), scored.map(\.entropy), "\(name): entropies")
            XCTAssertEqual(learner.logprobs.map(\.count), seqs.map(\.responseLength))
            // Each sequence scored alone (other gemm shapes, so other rounding) agrees to 1e-5 relative.
            for (i, s) in seqs.enumerated() {
                let alone = try model.scoreSequence(s.tokens, from: s.promptLength)
                for t in 0..<s.responseLength {
                    XCTAssertEqual(learner.logprobs[i][t], try XCTUnwrap(alone[s.promptLength + t]).logprob, accuracy: 1e-5 * max(1, abs(learner.logprobs[i][t])), "\(name) seq \(i) t \(t)")
                }
            }
        }
    }

    /// Weights are per response token: a weight on response token t moves exactly the loss of
    /// log p(y_t | prompt, y_<t) — checked by comparing the objective's loss with the scored
    /// log-probs, and by the gradient of a single weighted token against finite differences.
    func testResponseAlignedWeightsAndEntropyBonusGradients() throws {
        let model = try TransformerModel.load(directory: TrainingFixtures.model("qwen3_untied_qknorm"))
        let seqs = Array(batch(vocab: model.config.vocabSize).prefix(2))
        let tape = TrainingTape()
        let scores = try model.trainingForward(seqs, tape: tape)
        var rng = ChorusRNG(seed: 11)
        let w = seqs.map { s in (0..<s.responseLength).map { _ in Float(rng.uniform() * 2 - 1) } }
        let e = seqs.map { s in (0..<s.responseLength).map { _ in Float(rng.uniform() * 0.5) } }
        let objective = TokenObjective(weights: w, entropyWeights: e)
        func lossValue() throws -> Double {
            let s = try model.trainingForward(seqs, tape: tape)
            var l = 0.0
            for i in seqs.indices {
                for t in 0..<seqs[i].responseLength {
                    l -= Double(w[i][t]) * Double(s.logprobs[i][t]) + Double(e[i][t]) * Double(s.entropy[i][t])
                }
            }
            return l
        }
        let grads = Tensor(shape: [model.parameters.count])
        _ = try model.trainingForward(seqs, tape: tape)
        let loss = model.trainingBackward(objective, tape: tape, grads: grads)
        var expected = 0.0
        for i in seqs.indices {
            for t in 0..<seqs[i].responseLength {
                expected -= Double(w[i][t]) * Double(scores.logprobs[i][t]) + Double(e[i][t]) * Double(scores.entropy[i][t])
            }
        }
        XCTAssertEqual(loss, expected, accuracy: 1e-4 * max(1, abs(expected)))
        // Finite differences on coordinates of every tensor (eps 1e-2, float32 loss).
        for entry in model.layout.entries {
            var scale: Float = 0
            for i in 0..<entry.count { scale = max(scale, abs(grads[entry.offset + i])) }
            for _ in 0..<2 {
                let i = entry.offset + rng.int(below: entry.count)
                let old = model.parameters[i], h: Float = 1e-2
                model.parameters[i] = old + h; let lp = try lossValue()
                model.parameters[i] = old - h; let lm = try lossValue()
                model.parameters[i] = old
                XCTAssertEqual(Double(grads[i]), (lp - lm) / Double(2 * h), accuracy: 2e-2 * Double(max(scale, 1e-2)), entry.name)
            }
        }
    }

    /// Zero weights mean zero gradient (inactive rows skip the head entirely).
    func testZeroWeightsGiveZeroGradient() throws {
        let model = try TransformerModel.load(directory: TrainingFixtures.model("llama_untied"))
        let seqs = batch(vocab: model.config.vocabSize)
        let tape = TrainingTape(), grads = Tensor(shape: [model.parameters.count])
        _ = try model.trainingForward(seqs, tape: tape)
        let loss = model.trainingBackward(TokenObjective(weights: seqs.map { [Float](repeating: 0, count: $0.responseLength) }), tape: tape, grads: grads)
        XCTAssertEqual(loss, 0)
        XCTAssertEqual(grads.array.map(abs).max(), 0)
    }

    /// Attention probabilities are recomputed in the backward pass: the tape grows linearly in
    /// the sequence length T, not as T² (doubling T must not much more than double it).
    func testTapeMemoryIsLinearInSequenceLength() throws {
        let model = TransformerModel(config: ModelConfig(family: .qwen3, vocabSize: 64, hiddenSize: 32, intermediateSize: 64,
                                                          numLayers: 2, numHeads: 4, numKVHeads: 2, headDim: 8, ropeTheta: 10_000))
        model.initializeRandom(seed: 1)
        func bytes(_ T: Int) throws -> Int {
            let tape = TrainingTape(), grads = Tensor(shape: [model.parameters.count])
            let s = [TrainingSequence(tokens: (0..<T).map { $0 % 64 }, promptLength: 1)]
            _ = try model.trainingForward(s, tape: tape)
            model.trainingBackward(TokenObjective(weights: [[Float](repeating: 1, count: T - 1)]), tape: tape, grads: grads)
            return tape.bytes
        }
        let b1 = try bytes(256), b2 = try bytes(512), b4 = try bytes(1024)
        XCTAssertLessThan(Double(b2), 2.1 * Double(b1), "256 -> 512 tokens: \(b1) -> \(b2) bytes")
        XCTAssertLessThan(Double(b4), 2.1 * Double(b2), "512 -> 1024 tokens: \(b2) -> \(b4) bytes")
        // Saved probabilities alone would be L·H·T² = 2·4·1024² floats (32 MiB) at T = 1024.
        XCTAssertLessThan(b4, 8 << 20, "\(b4) bytes at T = 1024")
    }

    /// Rollouts: a prompt is prefilled once and its samples continue on forks of its cache; the
    /// result equals sampling the same prompt repeatedly with the same seeds. Each token carries
    /// its log-prob under the model and under the sampling distribution.
    func testGenerateForksPromptsAndReportsBothLogprobs() throws {
        let model = try TransformerModel.load(directory: TrainingFixtures.model("qwen2_tied_bias"))
        let prompts = [[1, 2, 3, 4], [7, 8]]
        let seeds: [UInt64] = [10, 11, 12, 13, 14, 15]
        let params = SamplingParameters(temperature: 0.7, topP: 0.9)
        let forked = try model.generate(prompts: prompts, samplesPerPrompt: 3, maxTokens: 10, params: params, seeds: seeds)
        let separate = try model.generate(prompts: prompts.flatMap { [$0, $0, $0] }, maxTokens: 10, params: params, seeds: seeds)
        XCTAssertEqual(forked.map(\.tokens), separate.map(\.tokens))
        for (a, b) in zip(forked, separate) {
            XCTAssertEqual(a.logprobs.count, 10)
            for (x, y) in zip(a.logprobs, b.logprobs) { XCTAssertEqual(x, y, accuracy: 1e-5) }
        }
        XCTAssertEqual(Set(forked[0..<3].map(\.tokens)).count, 3, "three different samples of one prompt")
        // The sampling log-prob is log softmax(z/T)[y] renormalised over the top-p set: compute
        // it independently from the full distribution of a scoring pass.
        let g = forked[4]
        let ws = ForwardWorkspace()
        let hidden = try model.forwardHidden([PackedSequence(tokens: g.tokens)], workspace: ws)
        let rows = Array((g.promptLength - 1)..<(g.tokens.count - 1))
        let lp = withExtendedLifetime(ws) { model.logProbabilities(hidden: hidden, rows: rows, scratch: model.makeHeadScratch()) }
        let V = model.config.vocabSize
        for (t, y) in g.response.enumerated() {
            let row = (0..<V).map { Double(lp.data[t * V + $0]) }
            XCTAssertEqual(Double(g.logprobs[t]), row[y], accuracy: 1e-4)
            let scaled = row.map { $0 / Double(params.temperature) }
            let mx = scaled.max()!
            let p = scaled.map { Foundation.exp($0 - mx) }, z = p.reduce(0, +)
            let order = (0..<V).sorted { p[$0] > p[$1] || (p[$0] == p[$1] && $0 < $1) }
            var kept = 0.0, keep: Set<Int> = []
            for j in order { kept += p[j] / z; keep.insert(j); if kept >= Double(params.topP) { break } }
            XCTAssertTrue(keep.contains(y), "a sampled token is inside the nucleus")
            let mass = keep.reduce(0.0) { $0 + p[$1] / z }
            XCTAssertEqual(Double(g.samplingLogprobs[t]), Foundation.log(p[y] / z / mass), accuracy: 1e-4)
        }
        // Greedy: the sampling distribution is a point mass.
        let greedy = try model.generate(prompts: [[1, 2]], maxTokens: 5, params: .init(temperature: 0), seeds: [0])[0]
        XCTAssertEqual(greedy.samplingLogprobs, [Float](repeating: 0, count: 5))
    }

    /// SFT loss weights, read directly: one weight per completion token (EOS included), each
    /// 1/N with N the batch's completion tokens, none on the prompt — and the first step's loss
    /// is the mean completion NLL computed independently by the scoring path.
    func testSFTLossWeightsAreOnCompletionTokensOnly() throws {
        let (dir, runFile) = try makeSFTSetup(self, steps: 1, checkpointEvery: 1)
        let config = try SFTConfig(contentsOf: runFile)
        let trainer = try SFTTrainer(config: config)
        trainer.showProgress = false
        let batch = trainer.batch(step: 0)
        let eos = try XCTUnwrap(trainer.tokenizer.tokenToId("<|endoftext|>"))
        let weights = SFTTrainer.lossWeights(batch)
        let n = batch.reduce(0) { $0 + $1.responseLength }
        for (ex, w) in zip(batch, weights) {
            // The completion is what follows the encoded prompt, EOS last.
            let promptText = try trainer.tokenizer.decode(Array(ex.tokens[..<ex.promptLength]))
            XCTAssertTrue(promptText.hasSuffix("A:"), "the prompt ends where the completion starts: \(promptText)")
            XCTAssertEqual(ex.tokens.last, eos)
            XCTAssertEqual(w.count, ex.responseLength)
            XCTAssertEqual(w, [Float](repeating: 1 / Float(n), count: ex.responseLength))
        }
        // Independent loss: −(1/N) Σ log p(completion tokens) from a fresh copy of the initial model.
        let initial = trainer.model.copy()
        var expected = 0.0
        for ex in batch {
            let s = try initial.scoreSequence(ex.tokens, from: ex.promptLength)
            for i in ex.promptLength..<ex.tokens.count { expected -= Double(try XCTUnwrap(s[i]).logprob) / Double(n) }
        }
        try trainer.train()
        let row = try String(contentsOf: dir.appendingPathComponent("out/metrics.jsonl"), encoding: .utf8).split(separator: "\n")[0]
        let loss = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(row.utf8)) as? [String: Any])?["loss"] as? Double)
        XCTAssertEqual(loss, expected, accuracy: 1e-5 * max(1, expected))
    }

    /// Rollout groups: G responses after one prompt, G = 1 ... 5, responses of 0, 1, 2 and more
    /// tokens, prompts of 1 ... 9 tokens (and two consecutive groups with the same prompt).
    func groupedBatch(vocab V: Int, seed: UInt64) -> [TrainingSequence] {
        var rng = ChorusRNG(seed: seed)
        var out: [TrainingSequence] = []
        let shapes: [(prompt: Int, responses: [Int])] = [(8, [5, 3, 6, 1]), (1, [2, 7]), (9, [0, 1, 4, 2, 3]), (3, [6]), (5, [1, 1, 1])]
        for (p, lengths) in shapes {
            let prompt = (0..<p).map { _ in rng.int(below: V) }
            for l in lengths { out.append(TrainingSequence(prompt: prompt, response: (0..<l).map { _ in rng.int(below: V) })) }
        }
        out += out.suffix(3)   // the last group's prompt again, right after it
        return out
    }

    /// `sharePrompts` (the prompt's rows run once per group) gives the unshared pass's
    /// log-probs, entropies, loss and gradient up to float summation order, on every fixture
    /// architecture (direct and blocked attention, GQA, q/k norms, biases, tied heads).
    func testSharedPromptsEqualUnsharedForwardAndGradient() throws {
        for name in TrainingFixtures.names {
            let model = try TransformerModel.load(directory: TrainingFixtures.model(name))
            let seqs = groupedBatch(vocab: model.config.vocabSize, seed: 5)
            var rng = ChorusRNG(seed: 12)
            let w = seqs.map { s in (0..<s.responseLength).map { _ in Float(rng.uniform() * 2 - 1) } }
            let e = seqs.map { s in (0..<s.responseLength).map { _ in Float(rng.uniform() * 0.5) } }
            func run(_ share: Bool) throws -> (ResponseScores, Double, [Float]) {
                let tape = TrainingTape(), grads = Tensor(shape: [model.parameters.count])
                let s = try model.trainingForward(seqs, tape: tape, sharePrompts: share)
                let loss = model.trainingBackward(TokenObjective(weights: w, entropyWeights: e), tape: tape, grads: grads)
                return (s, loss, grads.array)
            }
            let (a, lossA, gA) = try run(false), (b, lossB, gB) = try run(true)
            XCTAssertEqual(b.logprobs.map(\.count), seqs.map(\.responseLength), name)
            for i in seqs.indices {
                for t in 0..<seqs[i].responseLength {
                    XCTAssertEqual(b.logprobs[i][t], a.logprobs[i][t], accuracy: 1e-5 * max(1, abs(a.logprobs[i][t])), "\(name) seq \(i) t \(t)")
                    XCTAssertEqual(b.entropy[i][t], a.entropy[i][t], accuracy: 1e-5 * max(1, a.entropy[i][t]), "\(name) seq \(i) t \(t)")
                }
            }
            XCTAssertEqual(lossB, lossA, accuracy: 1e-5 * max(1, abs(lossA)), name)
            let scale = gA.map(abs).max() ?? 0
            XCTAssertGreaterThan(scale, 0, name)
            let worst = zip(gA, gB).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(worst, 1e-5 * max(1, scale), "\(name): gradient (largest |g| \(scale))")
        }
    }

    /// A shared tape that grew for a big step serves a smaller one, and the other way round: the
    /// join caches are reused while large enough and replaced when not.
    func testSharedPromptsReuseTheTapeAcrossBatchShapes() throws {
        let model = try TransformerModel.load(directory: TrainingFixtures.model("qwen3_untied_qknorm"))
        let big = groupedBatch(vocab: model.config.vocabSize, seed: 7)
        let small = Array(big.prefix(4))
        var rng = ChorusRNG(seed: 8)
        let longer = [TrainingSequence(prompt: [1, 2], response: (0..<40).map { _ in rng.int(below: model.config.vocabSize) }),
                      TrainingSequence(prompt: [1, 2], response: [3, 4])]
        let tape = TrainingTape()
        for seqs in [big, small, longer, big] {
            let shared = try model.trainingForward(seqs, tape: tape, sharePrompts: true)
            let alone = try model.trainingForward(seqs, tape: TrainingTape())
            for i in seqs.indices {
                for t in 0..<seqs[i].responseLength {
                    XCTAssertEqual(shared.logprobs[i][t], alone.logprobs[i][t], accuracy: 1e-5 * max(1, abs(alone.logprobs[i][t])))
                }
            }
        }
        XCTAssertThrowsError(try model.trainingForward([TrainingSequence(tokens: [1, 2], promptLength: 0)], tape: tape, sharePrompts: true))
        XCTAssertThrowsError(try model.trainingForward([TrainingSequence(prompt: [1], response: [model.config.vocabSize])], tape: tape,
                                                       sharePrompts: true))
    }
}
