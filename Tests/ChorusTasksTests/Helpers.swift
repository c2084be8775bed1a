import ChorusCore
import ChorusModel
import ChorusTasks
import ChorusTestSupport
import ChorusTokenizer
import Foundation
import XCTest

/// A tiny random Qwen3 model and its BPE tokenizer, saved as a Hugging Face directory, with an
/// EOS id chosen so that greedy decoding of the first prompt stops early (the EOS cut matters).
struct TinyTask {
    let dir: URL
    let modelDir: URL
    let tokenizer: Tokenizer
    let model: TransformerModel
    let eos: Int
    let prompts: [String]
    let maxTokens = 8

    init(_ test: XCTestCase) throws {
        dir = temporaryDirectory(test)
        var rng = ChorusRNG(seed: 7)
        var texts: [String] = []
        for _ in 0..<40 {
            let a = rng.int(below: 30), b = rng.int(below: 30)
            texts.append("\(a) + \(b) = \(a + b)")
        }
        prompts = (0..<6).map { i in "\(i * 3) + \(i + 2) =" }
        let tok = try BPETrainer(vocabSize: 280, specialTokens: ["<|endoftext|>"]).train(texts: texts)
        tokenizer = tok
        let m = TransformerModel(config: ModelConfig(family: .qwen3, vocabSize: tok.vocabSize, hiddenSize: 32, intermediateSize: 64,
                                                      numLayers: 2, numHeads: 4, numKVHeads: 2, headDim: 8, ropeTheta: 10_000))
        m.initializeRandom(seed: 5, std: 0.3)
        // EOS: the third greedy token of prompt 0 when it is new there, so that prompt stops
        // after two tokens; otherwise the first token not among its first three.
        let free = try greedyContinuation(model: m, prompt: tok.encode(prompts[0]), stops: [], maxTokens: 3)
        let eosId = free[2] != free[0] && free[2] != free[1] ? free[2] : (0..<tok.vocabSize).first { !free.contains($0) }!
        m.setSpecialTokenIds(eos: [eosId])
        eos = eosId
        model = m
        modelDir = dir.appendingPathComponent("model")
        try m.save(directory: modelDir)
        try tok.write(to: modelDir.appendingPathComponent("tokenizer.json"))
    }

    /// Writes a prompt file: problem i's answer is `answers[i]`.
    func writeData(_ name: String, answers: [String]) throws -> URL {
        let url = dir.appendingPathComponent(name)
        let lines = zip(prompts, answers).map { JSONText.object([("prompt", JSONText.string($0)), ("answer", JSONText.string($1))]) }
        try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }
}

/// The greedy continuation computed independently of the sampler: one full forward pass (no KV
/// cache, no batching) per token, taking the most likely next token from `scoreSequence`'s
/// top-1 (lowest id among ties, as the sampler). Stops after a token in `stops`.
func greedyContinuation(model: TransformerModel, prompt: [Int], stops: Set<Int>, maxTokens: Int) throws -> [Int] {
    var tokens = prompt, out: [Int] = []
    for _ in 0..<maxTokens {
        let scores = try model.scoreSequence(tokens + [0], topK: 1)
        let next = Int(try XCTUnwrap(scores.last??.topIds.first))
        tokens.append(next)
        out.append(next)
        if stops.contains(next) { break }
    }
    return out
}
