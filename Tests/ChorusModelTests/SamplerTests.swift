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
