import ChorusConfig
import ChorusModel
import ChorusTeachers
import ChorusTensor
import ChorusTokenizer
import ChorusTestSupport
import ChorusTraining
import Foundation
import XCTest

/// Cross-tokenizer teachers in the trainer: the chunk rule against the per-token path, the
/// refusals, and an end-to-end run (docs/cross-tokenizer.md).
final class CrossTokenizerTrainingTests: XCTestCase {
    let texts = (0..<16).map { i in ["\(i) + 2 = \(i + 2)", "café \(i) naïve", "日本 \(i % 4) 語", "über \(i) 🎉"][i % 4] }

    func model(vocab: Int, seed: UInt64) -> TransformerModel {
        let m = TransformerModel(config: ModelConfig(family: .qwen3, vocabSize: vocab, hiddenSize: 32, intermediateSize: 64,
                                                      numLayers: 2, numHeads: 4, numKVHeads: 2, headDim: 8, ropeTheta: 10_000))
        m.initializeRandom(seed: seed, std: 0.3)
        return m
    }

    /// A teacher whose tokenizer is the student's, scored through the cross-tokenizer path,
    /// gives the same per-token weights as the same-vocabulary path: alone (bit for bit) and
    /// mixed arithmetically with a same-vocabulary teacher (within float rounding), for every
    /// divergence. The responses are the tokenizer's own encodings, so every chunk is one token.
    func testSameTokenizerThroughTheCrossPathGivesTheSameWeights() throws {
        let tok = try BPETrainer(vocabSize: 300, specialTokens: ["<|endoftext|>"]).train(texts: texts)
        let eos = tok.tokenToId("<|endoftext|>")!
        let student = model(vocab: tok.vocabSize, seed: 1)
        let a = model(vocab: tok.vocabSize, seed: 2), b = model(vocab: tok.vocabSize, seed: 3)
        let aligner = try TokenAligner(teacher: "b", studentTokenizer: tok, teacherTokenizer: tok, studentEOS: [eos], teacherEOS: [eos])
        let prompt = tok.encode("3 + 2 =")
        let responses = texts.prefix(5).map { tok.encode(" " + $0, addSpecialTokens: false) + [eos] }
        let group = ScoringGroup(prompt: prompt, responses: responses)
        let learner = try responses.map { r in
            try student.scoreSequence(prompt + r, from: prompt.count).dropFirst(prompt.count).map { $0!.logprob }
        }
        for mixed in [false, true] {
            var exact: [any Teacher] = [CheckpointTeacher(name: "b", model: b)]
            var cross: [any Teacher] = [CrossTokenizerTeacher(inner: CheckpointTeacher(name: "b", model: b), aligner: aligner)]
            if mixed {
                exact.insert(CheckpointTeacher(name: "a", model: a), at: 0)
                cross.insert(CheckpointTeacher(name: "a", model: a), at: 0)
            }
            let p1 = try TeacherPool(teachers: exact), p2 = try TeacherPool(teachers: cross)
            let r1 = try p1.score([group], aggregator: try p1.makeAggregator(name: "arithmetic"), progress: 0)[0]
            let r2 = try p2.score([group], aggregator: try p2.makeAggregator(name: "arithmetic"), progress: 0)[0]
            for (x, y) in zip(r1, r2) {
                XCTAssertNil(x.chunks)
                XCTAssertLessThan(maxAbsDiff(x.logprobs, y.logprobs), mixed ? 1e-5 : 2e-6)
                XCTAssertEqual(y.chunks, (0..<x.logprobs.count).map { $0..<($0 + 1) }, "canonical tokens: one token per chunk")
            }
            for d in [Divergence.reverseKL, .forwardKL, .jensenShannon, .hellinger, .tsallis(alpha: 0.5)] {
                let w1 = divergenceWeights(student: learner, reference: r1.map(\.logprobs), divergence: d)
                let w2 = divergenceWeights(logRatios: tokenLogRatios(student: learner, reference: r2.map(\.logprobs), chunks: r2.map(\.chunks)),
                                           divergence: d)
                // The cross path reads the scored token's log-prob from the LM-head score, the
                // same-vocabulary path from the log-softmax row: equal up to float rounding.
                for (u, v) in zip(w1, w2) {
                    for (x, y) in zip(u, v) {
                        XCTAssertLessThanOrEqual(abs(x - y), (mixed ? 1e-5 : 2e-6) * max(1, abs(x)), "\(d) mixed: \(mixed)")
                    }
                }
            }
        }
    }

    /// Each token of a chunk carries the chunk's log-ratio Σ student − log π_ref(chunk).
    func testChunkLogRatiosSpreadTheChunkRatioOverItsTokens() {
        let student: [[Float]] = [[-1, -2, -0.5, -3], [-1]]
        let reference: [[Float]] = [[0, -2.5, -1, -2], [-0.25]]
        let r = tokenLogRatios(student: student, reference: reference, chunks: [[0..<2, 2..<3, 3..<4], nil])
        XCTAssertEqual(r, [[-0.5, -0.5, 0.5, -1], [-0.75]])
        XCTAssertEqual(chunkLogRatios(student: student, reference: reference, chunks: [[0..<4], nil]), [[-1.0], [-0.75]])
    }

    /// A student and a sharper teacher with different BPE tokenizers trained on the same text
    /// (vocabularies 300 and 360; the prompts hold 2- and 3-byte UTF-8 names), and a pool
    /// naming the teacher `cross_tokenizer = true`.
    func makeCrossSetup(steps: Int, extra: String = "", teacherTemplate: String? = nil) throws -> (dir: URL, runFile: URL) {
        let (dir, runFile) = try makeOPDSetup(self, steps: steps, extra: extra)
        let names = ["José", "Zoë", "Jürgen", "Søren", "Anaïs", "李雷", "Ana", "Bob"]
        var lines: [String] = [], corpus: [String] = []
        for i in 0..<16 {
            let n = names[i % names.count], a = i % 7 + 1, b = (3 * i) % 5 + 1
            lines.append("{\"prompt\": \"\(n) has \(a) apples and \(b) pears. How many fruits?\", \"answer\": \"\(a + b)\"}")
            corpus.append("\(n) has \(a) apples and \(b) pears. How many fruits? \(n) has \(a + b) fruits.")
        }
        try lines.joined(separator: "\n").write(to: dir.appendingPathComponent("prompts.jsonl"), atomically: true, encoding: .utf8)
        let st = try BPETrainer(vocabSize: 300, specialTokens: ["<|endoftext|>"]).train(texts: corpus)
        let tt = try BPETrainer(vocabSize: 360, specialTokens: ["<|endoftext|>"]).train(texts: corpus)
        XCTAssertNotEqual(st.vocabSize, tt.vocabSize)
        for (name, tok, seed) in [("student", st, UInt64(1)), ("teacher", tt, UInt64(7))] {
            let m = model(vocab: tok.vocabSize, seed: seed)
            m.initializeRandom(seed: seed, std: 0.1)
            if name == "teacher" { scaleInPlace(m.parameter(m.layout.finalNorm), 4, count: m.config.hiddenSize) }
            m.setSpecialTokenIds(eos: [tok.tokenToId("<|endoftext|>")!])
            let d = dir.appendingPathComponent(name)
            try FileManager.default.removeItem(at: d)
            try m.save(directory: d)
            try tok.write(to: d.appendingPathComponent("tokenizer.json"))
        }
        try """
        [[teacher]]
        name = "teacher"
        path = "teacher"
        cross_tokenizer = true
        \(teacherTemplate.map { "chat_template = \"\($0)\"" } ?? "")
        """.write(to: dir.appendingPathComponent("pool.toml"), atomically: true, encoding: .utf8)
        return (dir, runFile)
    }

    /// The student's chunk-level KL to a teacher with another tokenizer falls (sampled k1
    /// estimates, seeded: 2.70 over the first 8 steps, 2.05 over the last 8 of 40).
    func testACrossTokenizerTeacherLowersTheChunkKL() throws {
        let (dir, runFile) = try makeCrossSetup(steps: 40, teacherTemplate: "Q: {prompt}\\nA:")
        let trainer = try OnPolicyTrainer(config: try OnPolicyConfig(contentsOf: runFile, overrides: ["rollout.prompts_per_step=8"]))
        trainer.showProgress = false
        XCTAssertEqual(trainer.pool.crossVocabularyTeachers, [0])
        XCTAssertNotNil(try trainer.train())
        let rows = try metricsRows(dir)
        XCTAssertEqual(rows.map { $0["step"] as? Int }, Array(1...40))
        let kl = rows.map { $0["chunk_kl_k1/teacher"] as! Double }
        let first = kl.prefix(8).reduce(0, +) / 8, last = kl.suffix(8).reduce(0, +) / 8
        XCTAssertLessThan(last, 0.85 * first, "mean chunk KL of the first steps \(first), of the last \(last)")
        for key in ["kl_k1", "kl_k3", "chunk_kl_k1", "chunk_kl_k3", "kl_k1/teacher", "chunk_kl_k3/teacher", "reference_entropy"] {
            XCTAssertNotNil(rows[0][key], key)
        }
    }

    /// A pool mixing a same-tokenizer teacher (the student's own checkpoint) and a
    /// cross-tokenizer one trains under every strategy; per-teacher chunk KLs are logged for
    /// the teachers scored (routing leaves the other null in some steps).
    func testMixedPoolsTrainUnderEveryAggregator() throws {
        let (dir, runFile) = try makeCrossSetup(steps: 3)
        try """
        [[teacher]]
        name = "near"
        path = "student"
        [[teacher]]
        name = "teacher"
        path = "teacher"
        cross_tokenizer = true
        """.write(to: dir.appendingPathComponent("pool.toml"), atomically: true, encoding: .utf8)
        for agg in ["arithmetic", "geometric", "hard-switch", "soft-switch", "random", "control-token"] {
            try? FileManager.default.removeItem(at: dir.appendingPathComponent("out"))
            let trainer = try OnPolicyTrainer(config: try OnPolicyConfig(contentsOf: runFile, overrides: ["teachers.aggregator=\"\(agg)\""]))
            trainer.showProgress = false
            XCTAssertEqual(trainer.pool.crossVocabularyTeachers, [1], agg)
            XCTAssertNotNil(try trainer.train(), agg)
            let rows = try metricsRows(dir)
            XCTAssertEqual(rows.count, 3, agg)
            for r in rows {
                XCTAssertTrue((r["kl_k1"] as? Double)?.isFinite ?? false, agg)
                let scored = ["near", "teacher"].filter { (r["weight/\($0)"] as? Double ?? 0) > 0 }
                for name in scored { XCTAssertTrue((r["chunk_kl_k1/\(name)"] as? Double)?.isFinite ?? false, "\(agg) \(name)") }
            }
        }
    }

    func testFullVocabularyAndTeacherEntropyFilterAreRefusedNamingTheTeacher() throws {
        let (_, runFile) = try makeCrossSetup(steps: 2)
        for (set, feature) in [("objective.full_vocabulary=true", "objective.full_vocabulary"), ("filter.by=\"teacher-entropy\"", "teacher-entropy")] {
            assertThrows(try OnPolicyTrainer(config: try OnPolicyConfig(contentsOf: runFile, overrides: [set])),
                         containing: [feature, "teacher 'teacher'", "own tokenizer"])
        }
    }
}
