import ChorusCore
import ChorusModel
import ChorusTensor
import ChorusTokenizer
import ChorusTraining
import Foundation
import ChorusTestSupport
import XCTest

/// Builds a tiny SFT setup in a temp directory: a trained tokenizer, arithmetic JSONL data and
/// a run file for a small Qwen3 model trained from scratch.
func makeSFTSetup(_ test: XCTestCase, steps: Int, checkpointEvery: Int, extra: String = "") throws -> (dir: URL, runFile: URL) {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("chorus-sft-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
    var rng = ChorusRNG(seed: 9)
    var lines: [String] = [], texts: [String] = []
    for _ in 0..<48 {
        let a = rng.int(below: 50), b = rng.int(below: 50)
        let p = "Q: \(a) + \(b) = ?\nA:", c = " \(a + b)"
        lines.append("{\"prompt\": \"\(p.replacingOccurrences(of: "\n", with: "\\n"))\", \"completion\": \"\(c)\"}")
        texts.append(p + c)
    }
    try lines.joined(separator: "\n").write(to: dir.appendingPathComponent("train.jsonl"), atomically: true, encoding: .utf8)
    let tok = try BPETrainer(vocabSize: 300, specialTokens: ["<|endoftext|>"]).train(texts: texts)
    try tok.write(to: dir.appendingPathComponent("tokenizer.json"))
    let run = """
    [model]
    family = "qwen3"
    hidden_size = 32
    layers = 2
    heads = 4
    kv_heads = 2
    head_dim = 8
    intermediate_size = 64
    tokenizer = "tokenizer.json"
    init_seed = 1

    [data]
    train = "train.jsonl"
    max_length = 32
    eos = "<|endoftext|>"

    [train]
    steps = \(steps)
    batch_size = 8
    micro_batch = 4
    lr = 3e-3
    warmup = 3
    seed = 5
    threads = 2
    checkpoint_every = \(checkpointEvery)
    \(extra)

    [output]
    dir = "out"
    """
    let runFile = dir.appendingPathComponent("run.toml")
    try run.write(to: runFile, atomically: true, encoding: .utf8)
    return (dir, runFile)
}

final class SFTTests: XCTestCase {
    func testSFTLearnsAndWritesALoadableRun() throws {
        let (dir, runFile) = try makeSFTSetup(self, steps: 30, checkpointEvery: 10)
        let trainer = try SFTTrainer(config: try SFTConfig(contentsOf: runFile))
        trainer.showProgress = false
        let final = try XCTUnwrap(try trainer.train())
        let rows = try String(contentsOf: dir.appendingPathComponent("out/metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(rows.count, 30)
        let losses = rows.map { (try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any])["loss"] as! Double }
        XCTAssertLessThan(losses.suffix(5).reduce(0, +) / 5, losses.prefix(5).reduce(0, +) / 5 * 0.7, "loss should fall: \(losses)")
        // The final directory and each checkpoint are Hugging Face model directories.
        let m = try TransformerModel.load(directory: final)
        XCTAssertEqual(m.parameters.array, trainer.model.parameters.array)
        XCTAssertNoThrow(try Tokenizer(contentsOf: final.appendingPathComponent("tokenizer.json")))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("out/run.toml").path))
        // run.json records the Chorus version that made the run, as `chorus --version` prints it.
        let runJSON = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("out/run.json"))) as? [String: Any])
        XCTAssertEqual(runJSON["chorus_version"] as? String, ChorusVersion.string)
        XCTAssertTrue(ChorusVersion.string.hasPrefix(ChorusVersion.package + " (revision "), ChorusVersion.string)
        // Starting again over an existing run is refused.
        XCTAssertThrowsError(try SFTTrainer(config: try SFTConfig(contentsOf: runFile))) { e in
            XCTAssertTrue("\(e)".contains("--resume"), "\(e)")
        }
    }

    func testRunFileErrorsNameTheKey() throws {
        let (_, runFile) = try makeSFTSetup(self, steps: 3, checkpointEvery: 1, extra: "stepz = 4")
        XCTAssertThrowsError(try SFTConfig(contentsOf: runFile)) { XCTAssertTrue("\($0)".contains("train.stepz"), "\($0)") }
        let (_, rf2) = try makeSFTSetup(self, steps: 3, checkpointEvery: 1, extra: "schedule = \"wavy\"")
        XCTAssertThrowsError(try SFTConfig(contentsOf: rf2)) { XCTAssertTrue("\($0)".contains("wavy"), "\($0)") }
    }

    /// kill -9 at random moments, resume each time: the final weights equal an uninterrupted
    /// run's bit for bit.
    func testKilledRunResumesToIdenticalWeights() throws {
        let steps = 60
        let (dir, runFile) = try makeSFTSetup(self, steps: steps, checkpointEvery: 3)
        let reference = try SFTTrainer(config: try SFTConfig(contentsOf: runFile))
        reference.showProgress = false
        let refFinal = try XCTUnwrap(try reference.train())
        let expected = try TransformerModel.load(directory: refFinal).parameters.array

        // The same run file with another output directory: the first start is fresh, and
        // every later one resumes (--resume is refused until a run.toml records the run).
        let killedRunFile = dir.appendingPathComponent("killed.toml")
        try String(contentsOf: runFile, encoding: .utf8).replacingOccurrences(of: "dir = \"out\"", with: "dir = \"killed\"")
            .write(to: killedRunFile, atomically: true, encoding: .utf8)
        let resumed = dir.appendingPathComponent("killed")
        // Let each start get somewhere, then kill -9 (unless it already finished).
        guard let kills = try killAndResumeUntilFinished(runDirectory: resumed, pause: (150_000, 350_000), arguments: { resume in
            ["sft", killedRunFile.path, "--quiet"] + (resume ? ["--resume", resumed.path] : [])
        }) else { return }
        XCTAssertGreaterThanOrEqual(kills, 2, "the run should have been killed mid-way at least twice")
        let got = try TransformerModel.load(directory: resumed.appendingPathComponent("final")).parameters.array
        XCTAssertEqual(got, expected, "resumed run differs from the uninterrupted one (after \(kills) kills)")
        let rows = try String(contentsOf: resumed.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        let stepsLogged = rows.map { (try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any])["step"] as! Int }
        XCTAssertEqual(stepsLogged, Array(1...steps), "metrics has each step exactly once")
    }
}

extension SFTTests {
    /// SIGTERM (or Ctrl-C) finishes the current step, checkpoints it and exits with 130: no
    /// finished step is lost.
    func testTerminatedRunCheckpointsItsLastStep() throws {
        let (dir, runFile) = try makeSFTSetup(self, steps: 100_000, checkpointEvery: 1000)
        let p = Process()
        p.executableURL = try XCTUnwrap(chorusExecutable())
        p.arguments = ["sft", runFile.path, "--quiet"]
        p.standardError = FileHandle.nullDevice
        try p.run()
        // Wait until a few steps are logged (polling, so a loaded machine only makes it slower).
        let metrics = dir.appendingPathComponent("out/metrics.jsonl")
        for _ in 0..<600 {
            if let t = try? String(contentsOf: metrics, encoding: .utf8), t.split(separator: "\n").count >= 3 { break }
            usleep(50_000)
        }
        XCTAssertTrue(p.isRunning)
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 130)
        let out = dir.appendingPathComponent("out")
        let latest = try String(contentsOf: out.appendingPathComponent("checkpoints/latest"), encoding: .utf8)
        let rows = try String(contentsOf: out.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").count
        XCTAssertGreaterThan(rows, 0)
        XCTAssertEqual(latest, String(format: "step-%08d", rows), "the checkpoint holds every finished step")
    }
}

