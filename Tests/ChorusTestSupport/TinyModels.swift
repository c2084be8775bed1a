import ChorusCore
import ChorusModel
import ChorusTokenizer
import Foundation

/// The tiny on-policy world the trainer and report tests share: `dir/prompts.jsonl` with 16
/// "a + b =" problems (operands below 20, drawn from `ChorusRNG(seed: promptSeed)`, answers
/// included), a byte-level BPE tokenizer (280 tokens) trained on their full texts, and one
/// random Qwen3 model per entry of `models` (hidden 32, 2 layers, 4 heads / 2 KV heads of 8,
/// init seed 1, std 0.1) under `dir/NAME/` with that tokenizer. Every model starts from the same
/// weights; its final norm is multiplied by `sharpen`, so a teacher is the student made sharper
/// — a target the student can reach, so a falling KL shows learning rather than luck.
public func writeTinyArithmeticModels(in dir: URL, promptSeed: UInt64, models: [(name: String, sharpen: Float)]) throws {
    var rng = ChorusRNG(seed: promptSeed)
    var lines: [String] = [], texts: [String] = []
    for _ in 0..<16 {
        let a = rng.int(below: 20), b = rng.int(below: 20)
        lines.append("{\"prompt\": \"\(a) + \(b) =\", \"answer\": \"\(a + b)\"}")
        texts.append("\(a) + \(b) = \(a + b)")
    }
    try lines.joined(separator: "\n").write(to: dir.appendingPathComponent("prompts.jsonl"), atomically: true, encoding: .utf8)
    let tok = try BPETrainer(vocabSize: 280, specialTokens: ["<|endoftext|>"]).train(texts: texts)
    let eos = tok.tokenToId("<|endoftext|>")!
    for (name, sharpen) in models {
        let m = TransformerModel(config: ModelConfig(family: .qwen3, vocabSize: tok.vocabSize, hiddenSize: 32, intermediateSize: 64,
                                                      numLayers: 2, numHeads: 4, numKVHeads: 2, headDim: 8, ropeTheta: 10_000))
        m.initializeRandom(seed: 1, std: 0.1)
        m.setSpecialTokenIds(eos: [eos])
        let norm = m.parameter(m.layout.finalNorm)
        for i in 0..<m.config.hiddenSize { norm[i] *= sharpen }
        let d = dir.appendingPathComponent(name)
        try m.save(directory: d)
        try tok.write(to: d.appendingPathComponent("tokenizer.json"))
    }
}
