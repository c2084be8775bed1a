import ChorusCore
import ChorusModel
import ChorusTasks
import ChorusTestSupport
import ChorusTokenizer
import Foundation
import XCTest

/// Reward checking, mean@k / best@k arithmetic and the evaluator against an independent
/// computation of what the model generates.
final class RewardTests: XCTestCase {
    func testExactMatchTrimsSurroundingWhitespaceOnly() {
        let m = ExactMatch()
        let p = PromptRecord(prompt: "q", answer: " 42\n")
        XCTAssertEqual(m.reward(completion: "42", problem: p), 1)
        XCTAssertEqual(m.reward(completion: "\t 42 \n\n", problem: p), 1)
        XCTAssertEqual(m.reward(completion: "4 2", problem: p), 0, "inner whitespace matters")
        XCTAssertEqual(m.reward(completion: "42.", problem: p), 0)
        XCTAssertEqual(m.reward(completion: "", problem: p), 0)
        XCTAssertEqual(m.reward(completion: "Yes", problem: PromptRecord(prompt: "q", answer: "yes")), 0, "case matters")
        XCTAssertEqual(m.reward(completion: "", problem: PromptRecord(prompt: "q", answer: "  ")), 1)
        XCTAssertEqual(m.reward(completion: "42", problem: PromptRecord(prompt: "q")), 0, "no answer, no reward")
        XCTAssertEqual(m.requiredFields, ["answer"])
    }

    /// The completion is cut at the first stop token (later text is dropped even when it
    /// would match), special tokens elsewhere are kept, unknown ids give nil.
    func testCompletionTextCutsAtTheFirstEOS() throws {
        let tok = try BPETrainer(vocabSize: 270, specialTokens: ["<|endoftext|>", "<|pad|>"]).train(texts: ["12 34 12 34"])
        let eos = try XCTUnwrap(tok.tokenToId("<|endoftext|>")), pad = try XCTUnwrap(tok.tokenToId("<|pad|>"))
        let twelve = tok.encode(" 12"), more = tok.encode(" 34")
        XCTAssertEqual(completionText(twelve + [eos] + more, stopTokens: [eos], tokenizer: tok), " 12")
        XCTAssertEqual(completionText([eos] + twelve, stopTokens: [eos], tokenizer: tok), "")
        XCTAssertEqual(completionText(twelve + more, stopTokens: [eos], tokenizer: tok), " 12 34")
        XCTAssertEqual(completionText(twelve + [pad], stopTokens: [eos], tokenizer: tok), " 12<|pad|>")
        XCTAssertEqual(completionText(twelve + [eos], stopTokens: [], tokenizer: tok), " 12<|endoftext|>")
        XCTAssertNil(completionText(twelve + [tok.vocabSize + 3], stopTokens: [eos], tokenizer: tok))
        XCTAssertEqual(completionText(twelve + [eos, tok.vocabSize + 3], stopTokens: [eos], tokenizer: tok), " 12",
                       "what follows the EOS is never decoded")
        let p = PromptRecord(prompt: "q", answer: "12")
        XCTAssertEqual(ExactMatch().reward(completion: completionText(twelve + [eos] + more, stopTokens: [eos], tokenizer: tok)!, problem: p), 1)
    }

    func testMeanAndBestOnHandCases() {
        let s = EvalScores(rewards: [[1, 0, 0], [0, 0, 0], [1, 1, 1], [0, 0.5, 0]])
        XCTAssertEqual(s.meanAtK, 4.5 / 12, accuracy: 1e-15)
        XCTAssertEqual(s.bestAtK, 0.5, "a partial reward is not a correct sample")
        XCTAssertEqual(EvalScores(rewards: [[0]]).meanAtK, 0)
        XCTAssertEqual(EvalScores(rewards: [[1, 1], [1, 0]]).bestAtK, 1)
        XCTAssertEqual(EvalScores(rewards: [[1, 1], [1, 0]]).meanAtK, 0.75)
    }

    /// The chunk plan covers every (problem, sample) pair exactly once within the chunk size.
    func testChunkPlanCoversEverySampleOnce() {
        for (n, s, chunk) in [(5, 3, 8), (7, 1, 64), (3, 20, 8), (4, 8, 8), (2, 64, 64), (1, 65, 64), (9, 5, 4)] {
            var seen = [[Int]](repeating: [Int](repeating: 0, count: s), count: n)
            for c in Evaluator.plan(problems: n, samples: s, chunk: chunk) {
                XCTAssertLessThanOrEqual(c.problems.count * c.samples, chunk, "\(n) \(s) \(chunk)")
                for i in c.problems { for j in c.firstSample..<(c.firstSample + c.samples) { seen[i][j] += 1 } }
            }
            XCTAssertEqual(seen, [[Int]](repeating: [Int](repeating: 1, count: s), count: n), "\(n) \(s) \(chunk)")
        }
    }
}

final class EvaluatorTests: XCTestCase {
    /// Greedy: the evaluator's completions equal the continuation computed token by token from
    /// full forward passes (no KV cache, no batching), cut at the EOS; answers set to that
    /// text (with extra surrounding whitespace) on even problems and to something else on odd
    /// ones give mean@k = best@k = 0.5, and rewards [1, 0, 1, 0, 1, 0] k times each.
    func testGreedyMatchesAnIndependentContinuation() throws {
        let t = try TinyTask(self)
        var expected: [String] = []
        var stoppedEarly = 0
        for p in t.prompts {
            let ids = try greedyContinuation(model: t.model, prompt: t.tokenizer.encode(p), stops: [t.eos], maxTokens: t.maxTokens)
            if ids.last == t.eos { stoppedEarly += 1 }
            expected.append(try t.tokenizer.decode(Array(ids.prefix { $0 != t.eos })))
        }
        XCTAssertGreaterThan(stoppedEarly, 0, "the set-up must exercise the EOS cut")
        let answers = expected.enumerated().map { i, e in i % 2 == 0 ? " \(e) \n" : e + "7" }
        let data = try t.writeData("greedy.jsonl", answers: answers)
        let ev = try Evaluator(dataset: try PromptDataset(contentsOf: data), tokenizer: t.tokenizer,
                               options: EvalOptions(k: 3, temperature: 0, maxTokens: t.maxTokens))
        let r = try ev.run(model: t.model)
        XCTAssertEqual(r.completions, expected.map { [String?](repeating: $0, count: 3) })
        XCTAssertEqual(r.scores.rewards, (0..<6).map { [Double](repeating: $0 % 2 == 0 ? 1 : 0, count: 3) })
        XCTAssertEqual(r.scores.meanAtK, 0.5)
        XCTAssertEqual(r.scores.bestAtK, 0.5)
        XCTAssertEqual(r.json, "{\"greedy\":{\"mean_at_k\":0.5,\"best_at_k\":0.5,\"k\":3,\"problems\":6}}")
        // The first N problems only.
        let four = try Evaluator(dataset: try PromptDataset(contentsOf: data), tokenizer: t.tokenizer,
                                 options: EvalOptions(k: 1, problems: 3, temperature: 0, maxTokens: t.maxTokens)).run(model: t.model)
        XCTAssertEqual(four.scores.rewards, [[1], [0], [1]])
        XCTAssertEqual(four.scores.meanAtK, 2.0 / 3.0, accuracy: 1e-15)
    }

    /// Sampling: each sample equals a lone `generate` call with its own seed (so nothing
    /// depends on the batch or chunking), runs are deterministic, the first N problems score
    /// the same whatever N, and another seed gives other samples.
    func testSamplingIsPerSampleSeededAndDeterministic() throws {
        let t = try TinyTask(self)
        let data = try t.writeData("s.jsonl", answers: Array(repeating: "1", count: 6))
        let dataset = try PromptDataset(contentsOf: data)
        let opts = EvalOptions(k: 4, temperature: 1, topP: 0.95, maxTokens: t.maxTokens, seed: 99)
        let a = try Evaluator(dataset: dataset, tokenizer: t.tokenizer, options: opts).run(model: t.model)
        var small = opts
        small.chunkSequences = 3   // 4 samples > 3: a problem's samples span calls
        let b = try Evaluator(dataset: dataset, tokenizer: t.tokenizer, options: small).run(model: t.model)
        XCTAssertEqual(a.completions, b.completions)
        var prefix = opts
        prefix.problems = 2
        XCTAssertEqual(try Evaluator(dataset: dataset, tokenizer: t.tokenizer, options: prefix).run(model: t.model).completions,
                       Array(a.completions.prefix(2)))
        for i in [0, 5] {
            for j in [0, 3] {
                let g = try t.model.generate(prompts: [t.tokenizer.encode(t.prompts[i])], maxTokens: t.maxTokens,
                                             params: SamplingParameters(temperature: 1, topP: 0.95),
                                             seeds: [Evaluator.sampleSeed(99, problem: i, sample: j)], stopTokens: [t.eos])[0]
                XCTAssertEqual(a.completions[i][j], completionText(g.response, stopTokens: [t.eos], tokenizer: t.tokenizer))
            }
        }
        var other = opts
        other.seed = 100
        XCTAssertNotEqual(try Evaluator(dataset: dataset, tokenizer: t.tokenizer, options: other).run(model: t.model).completions,
                          a.completions)
        // Not all samples of a problem are the same (it samples), and rewards follow the texts.
        XCTAssertTrue(a.completions.contains { Set($0.map { $0 ?? "\u{0}" }).count > 1 })
        for (texts, rewards) in zip(a.completions, a.scores.rewards) {
            XCTAssertEqual(rewards, texts.map { $0.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) == "1" ? 1 : 0 } ?? 0 })
        }
    }

    /// A model whose outputs are NaN (its final norm poisoned) is refused with a one-line error
    /// naming the first problem's file:line and sample, greedy and sampled alike, rather than
    /// scored as if its samples meant something.
    func testNonFiniteModelIsAnErrorNotAScore() throws {
        let t = try TinyTask(self)
        let data = try t.writeData("nan.jsonl", answers: Array(repeating: "1", count: 6))
        let norm = t.model.parameter(t.model.layout.finalNorm)
        for c in 0..<t.model.config.hiddenSize { norm[c] = .nan }
        for temperature in [0.0, 1.0] {
            let ev = try Evaluator(dataset: try PromptDataset(contentsOf: data), tokenizer: t.tokenizer,
                                   options: EvalOptions(k: 2, temperature: temperature, maxTokens: t.maxTokens))
            assertThrows(try ev.run(model: t.model), containing: ["\(data.path):1:", "sample 0", "not finite"])
        }
    }

    func testSetUpErrors() throws {
        let t = try TinyTask(self)
        let data = try t.writeData("e.jsonl", answers: Array(repeating: "1", count: 6))
        let d = try PromptDataset(contentsOf: data)
        assertThrows(try Evaluator(dataset: d, tokenizer: t.tokenizer, options: EvalOptions(problems: 7)),
                     containing: [data.path, "6 problems", "7"])
        for (o, frag) in [(EvalOptions(k: 0), "--k"), (EvalOptions(k: 5000), "--k"), (EvalOptions(problems: 0), "--problems"),
                          (EvalOptions(temperature: -1), "--temperature"), (EvalOptions(temperature: .nan), "--temperature"),
                          (EvalOptions(temperature: .infinity), "--temperature"), (EvalOptions(topP: 0), "--top-p"),
                          (EvalOptions(topP: 1.5), "--top-p"), (EvalOptions(maxTokens: 0), "--max-tokens"),
                          (EvalOptions(maxTokens: 1 << 20), "--max-tokens")] {
            assertThrows(try Evaluator(dataset: d, tokenizer: t.tokenizer, options: o), containing: [frag])
        }
        // ExactMatch needs an answer on every evaluated problem.
        let noAnswer = t.dir.appendingPathComponent("na.jsonl")
        try "{\"prompt\": \"1 + 1 =\", \"answer\": \"2\"}\n{\"prompt\": \"2 + 2 =\"}\n".write(to: noAnswer, atomically: true, encoding: .utf8)
        let na = try PromptDataset(contentsOf: noAnswer)
        assertThrows(try Evaluator(dataset: na, tokenizer: t.tokenizer, options: EvalOptions()), containing: ["\(noAnswer.path):2:", "\"answer\"", "missing"])
        XCTAssertNoThrow(try Evaluator(dataset: na, tokenizer: t.tokenizer, options: EvalOptions(problems: 1)))
    }
}
