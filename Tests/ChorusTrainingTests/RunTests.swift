import ChorusModel
import ChorusTensor
import ChorusTokenizer
import ChorusTraining
import Foundation
import ChorusTestSupport
import XCTest

/// Run files end to end: a run that starts from `init =`, each learning-rate schedule against
/// its formula, and the errors of a resume that cannot continue.
final class RunTests: XCTestCase {
    func metrics(_ runDir: URL) throws -> [[String: Any]] {
        let text = try String(contentsOf: runDir.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        return try text.split(separator: "\n").map { try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
    }

    func train(_ runFile: URL, resume: URL? = nil) throws -> SFTTrainer {
        let t = try SFTTrainer(config: try SFTConfig(contentsOf: runFile), resume: resume)
        t.showProgress = false
        try t.train()
        return t
    }

    /// Every schedule's logged rate is the documented formula (peak 3e-3, warm-up 3, 8 steps,
    /// min_lr_ratio 0.2), computed here independently of `LRSchedule`.
    func testEachScheduleFollowsItsFormula() throws {
        let peak = 3e-3, warmup = 3.0, total = 8.0, minRatio = 0.2
        let formulas: [(String, (Double) -> Double)] = [
            ("constant", { _ in peak }),
            ("linear-warmup", { s in s < warmup ? peak * (s + 1) / warmup : peak }),
            ("cosine", { s in
                s < warmup ? peak * (s + 1) / warmup
                    : peak * (minRatio + (1 - minRatio) * 0.5 * (1 + cos(Double.pi * (s - warmup) / (total - warmup)))) }),
        ]
        var seen: [[Double]] = []
        for (name, f) in formulas {
            let (dir, runFile) = try makeSFTSetup(self, steps: 8, checkpointEvery: 100,
                                                  extra: "schedule = \"\(name)\"\nmin_lr_ratio = \(minRatio)")
            _ = try train(runFile)
            let rows = try metrics(dir.appendingPathComponent("out"))
            XCTAssertEqual(rows.count, 8, name)
            let lrs = rows.map { ($0["lr"] as? Double) ?? .nan }
            XCTAssertEqual(rows.map { $0["step"] as? Int }, (1...8).map { $0 }, name)
            for (i, lr) in lrs.enumerated() {
                XCTAssertEqual(lr, f(Double(i)), accuracy: 1e-12 * peak, "\(name) step \(i + 1)")
            }
            seen.append(lrs)
        }
        // The three schedules are told apart (each formula is exercised, not a shared default).
        XCTAssertNotEqual(seen[0], seen[1])
        XCTAssertNotEqual(seen[1], seen[2])
        XCTAssertLessThan(seen[2][7], seen[1][7] * 0.5, "cosine decays toward min_lr_ratio")
    }

    /// `[model] init = "DIR"`: the run starts from that checkpoint. At lr 0 the final weights
    /// are the checkpoint's bit for bit; at lr > 0 the first step's loss is the same (same
    /// weights, same batch) and the weights then move.
    func testRunStartsFromInitCheckpoint() throws {
        let (dir, _) = try makeSFTSetup(self, steps: 1, checkpointEvery: 1)
        let tok = try Tokenizer(contentsOf: dir.appendingPathComponent("tokenizer.json"))
        let cfg = ModelConfig(family: .llama, vocabSize: tok.vocabSize, hiddenSize: 32, intermediateSize: 48, numLayers: 1,
                              numHeads: 2, numKVHeads: 1, headDim: 16, tieWordEmbeddings: false)
        let initial = TransformerModel(config: cfg)
        initial.initializeRandom(seed: 1234, std: 0.1)
        let initDir = dir.appendingPathComponent("init")
        try initial.save(directory: initDir)
        try FileManager.default.copyItem(at: dir.appendingPathComponent("tokenizer.json"), to: initDir.appendingPathComponent("tokenizer.json"))
        func runFile(_ name: String, lr: String) throws -> URL {
            let text = """
            [model]
            init = "init"

            [data]
            train = "train.jsonl"
            max_length = 32
            eos = "<|endoftext|>"

            [train]
            steps = 2
            batch_size = 8
            micro_batch = 4
            lr = \(lr)
            schedule = "constant"
            seed = 5
            threads = 2
            checkpoint_every = 10

            [output]
            dir = "\(name)"
            """
            let u = dir.appendingPathComponent(name + ".toml")
            try text.write(to: u, atomically: true, encoding: .utf8)
            return u
        }
        let frozen = try train(try runFile("frozen", lr: "0.0"))
        XCTAssertEqual(frozen.model.config.family, .llama, "the architecture comes from init's config.json")
        XCTAssertEqual(frozen.model.parameters.array, initial.parameters.array, "lr 0 keeps the init weights exactly")
        let final = try TransformerModel.load(directory: dir.appendingPathComponent("frozen/final"))
        XCTAssertEqual(final.parameters.array, initial.parameters.array)

        let moving = try train(try runFile("moving", lr: "3e-3"))
        let l0 = try metrics(dir.appendingPathComponent("frozen")), l1 = try metrics(dir.appendingPathComponent("moving"))
        XCTAssertEqual(l0.count, 2); XCTAssertEqual(l1.count, 2)
        let a = try XCTUnwrap(l0.first?["loss"] as? Double), b = try XCTUnwrap(l1.first?["loss"] as? Double)
        XCTAssertEqual(a, b, accuracy: 1e-9 * abs(a), "step 1 runs on the init weights")
        XCTAssertNotEqual(moving.model.parameters.array, initial.parameters.array)
    }

    /// Resuming with a changed run file, or with a checkpoint that is gone or damaged, fails
    /// with an error naming the run (or checkpoint), never a silent restart.
    func testResumeErrors() throws {
        let (dir, runFile) = try makeSFTSetup(self, steps: 2, checkpointEvery: 1)
        _ = try train(runFile)
        let out = dir.appendingPathComponent("out")
        let ckpts = out.appendingPathComponent("checkpoints")
        let latest = try String(contentsOf: ckpts.appendingPathComponent("latest"), encoding: .utf8)
        XCTAssertEqual(latest, "step-00000002")

        // A changed run file.
        let changed = dir.appendingPathComponent("changed.toml")
        try (try String(contentsOf: runFile, encoding: .utf8)).replacingOccurrences(of: "lr = 3e-3", with: "lr = 1e-3")
            .write(to: changed, atomically: true, encoding: .utf8)
        assertThrows(try SFTTrainer(config: try SFTConfig(contentsOf: changed), resume: out),
                     containing: [out.path, "run file differs", "run.toml"])

        // A checkpoint that lost its weights.
        let backup = dir.appendingPathComponent("backup")
        try FileManager.default.copyItem(at: ckpts, to: backup)
        try FileManager.default.removeItem(at: ckpts.appendingPathComponent("step-00000002/model.safetensors"))
        assertThrows(try SFTTrainer(config: try SFTConfig(contentsOf: runFile), resume: out),
                     containing: ["step-00000002", "unusable checkpoint", "model.safetensors"])

        // The checkpoint `latest` names is gone.
        try FileManager.default.removeItem(at: ckpts.appendingPathComponent("step-00000002"))
        assertThrows(try SFTTrainer(config: try SFTConfig(contentsOf: runFile), resume: out),
                     containing: ["step-00000002", "unusable checkpoint"])
        // Nothing was truncated or overwritten by the failed attempts.
        XCTAssertEqual(try metrics(out).count, 2)

        // Restored, the same resume works (the errors came from the damage, not the setup).
        try FileManager.default.removeItem(at: ckpts)
        try FileManager.default.copyItem(at: backup, to: ckpts)
        let t = try SFTTrainer(config: try SFTConfig(contentsOf: runFile), resume: out)
        XCTAssertEqual(t.step, 2)
    }
}
