import ChorusConfig
import ChorusModel
import ChorusTensor
import ChorusTraining
import Foundation
import ChorusTestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Issue 10 (hardening), the training side: one process per run directory, strict --resume
/// and options, and a run that meets non-finite numbers stops keeping its last good checkpoint.
final class TrainingHardeningTests: XCTestCase {
    func steps(_ runDir: URL) throws -> [Int] {
        let text = try String(contentsOf: runDir.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        return text.split(separator: "\n").map { (try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any])["step"] as! Int }
    }

    // MARK: 3. Two processes on one run directory

    /// A run directory is locked while a trainer holds it: a second trainer (fresh or
    /// resuming) is refused at once naming the directory, and takes it once the first is done.
    func testSecondTrainerOnALockedRunIsRefused() throws {
        let (dir, runFile) = try makeSFTSetup(self, steps: 4, checkpointEvery: 2)
        let out = dir.appendingPathComponent("out")
        let first = try SFTTrainer(config: try SFTConfig(contentsOf: runFile))
        first.showProgress = false
        assertThrows(try SFTTrainer(config: try SFTConfig(contentsOf: runFile), resume: out), containing: [out.path, "in use", "run.lock"])
        assertThrows(try SFTTrainer(config: try SFTConfig(contentsOf: runFile)), containing: [out.path, "in use"])
        XCTAssertNotNil(try first.train())
        XCTAssertEqual(try steps(out), [1, 2, 3, 4])
        // Done: the lock is released and the directory can be opened again (here: refused only
        // because the run is complete with checkpoints, not because it is in use).
        assertThrows(try SFTTrainer(config: try SFTConfig(contentsOf: runFile)), containing: ["--resume"])
    }

    /// Two `chorus sft` processes on one directory: the second exits at once with one line,
    /// the first finishes, and metrics.jsonl holds every step exactly once.
    func testTwoProcessesOnOneRunDirectory() throws {
        let (dir, runFile) = try makeSFTSetup(self, steps: 400, checkpointEvery: 50)
        let out = dir.appendingPathComponent("out")
        let p = Process()
        p.executableURL = try XCTUnwrap(chorusExecutable())
        p.arguments = ["sft", runFile.path, "--quiet", "--max-steps", "400"]
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        // Wait until the first one holds the directory (run.toml is written under the lock).
        var waited = 0
        while !FileManager.default.fileExists(atPath: out.appendingPathComponent("run.toml").path) && waited < 600 {
            usleep(50_000); waited += 1
        }
        XCTAssertTrue(p.isRunning, "the first run should still be running")
        let t0 = Date()
        for args in [["sft", runFile.path, "--resume", out.path, "--quiet"], ["sft", runFile.path, "--quiet"]] {
            assertOneLineFailure(try runChorus(args), containing: [out.path, "in use"], "\(args)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(t0), 60, "the second process must not wait for the lock")
        // Interrupt the first: the lock goes with the process, and a resume continues it.
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let (status, _, err) = try runChorus(["sft", runFile.path, "--resume", out.path, "--quiet", "--max-steps", "3"])
        XCTAssertTrue(status == 0 || status == 130, err)
        let logged = try steps(out)
        XCTAssertEqual(logged, Array(1...(logged.last ?? 0)), "each step exactly once")
    }

    // MARK: 12. Non-UTF-8 paths

    /// A run file whose own name (or directory) is not valid UTF-8 is used byte for byte, and
    /// its relative paths (tokenizer, data, output) resolve against its real directory, not
    /// against the /proc/self/fd stand-in the command line uses for it. Messages show the name as
    /// given (\xFF), never the stand-in.
    func testNonUTF8RunFileResolvesRelativePaths() throws {
        let (dir, runFile) = try makeSFTSetup(self, steps: 2, checkpointEvery: 2)
        let text = try Data(contentsOf: runFile)
        func writeRaw(_ path: [UInt8], _ data: Data) {
            let fd = path.withCString { open($0, O_WRONLY | O_CREAT | O_TRUNC, 0o644) }
            XCTAssertGreaterThanOrEqual(fd, 0)
            _ = data.withUnsafeBytes { write(fd, $0.baseAddress, data.count) }
            close(fd)
        }
        // 1. The file's own name is not UTF-8; it sits beside tokenizer.json and train.jsonl.
        let named = Array(dir.path.utf8) + Array("/run-".utf8) + [0xFF] + Array(".toml".utf8)
        writeRaw(named, text)
        let r = try runChorusRaw([Array("sft".utf8), named, Array("--quiet".utf8)])
        XCTAssertEqual(r.0, 0, r.2)
        XCTAssertEqual(try steps(dir.appendingPathComponent("out")), [1, 2])
        // Run again: refused (the run has checkpoints), naming the directory, no stand-in.
        let again = try runChorusRaw([Array("sft".utf8), named, Array("--quiet".utf8)])
        assertOneLineFailure(again, containing: ["--resume"], "second run of a finished run")
        XCTAssertFalse(again.2.contains("/proc/self/fd"), again.2)

        // 2. The directory is not UTF-8 (file name plain): the run goes there too.
        let sub = Array(dir.path.utf8) + Array("/d-".utf8) + [0xFE]
        XCTAssertEqual(sub.withCString { mkdir($0, 0o755) }, 0)
        for f in ["tokenizer.json", "train.jsonl"] {
            writeRaw(sub + Array("/\(f)".utf8), try Data(contentsOf: dir.appendingPathComponent(f)))
        }
        let inSub = sub + Array("/run.toml".utf8)
        writeRaw(inSub, text)
        let r2 = try runChorusRaw([Array("sft".utf8), inSub, Array("--quiet".utf8)])
        XCTAssertEqual(r2.0, 0, r2.2)
        let metrics = sub + Array("/out/metrics.jsonl".utf8)
        var st = stat()
        XCTAssertEqual(metrics.withCString { stat($0, &st) }, 0, "the run was written inside the non-UTF-8 directory")
        XCTAssertFalse(r2.2.contains("/proc/self/fd"), r2.2)
    }

    // MARK: 10. Resume and options

    /// --resume of something that holds no run is refused and creates nothing.
    func testResumeOfANonRunIsRefused() throws {
        let (dir, runFile) = try makeSFTSetup(self, steps: 3, checkpointEvery: 1)
        let missing = dir.appendingPathComponent("no-such-run")
        let empty = dir.appendingPathComponent("empty-run")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let notRun = dir.appendingPathComponent("not-a-run")
        try FileManager.default.createDirectory(at: notRun.appendingPathComponent("checkpoints"), withIntermediateDirectories: true)
        try Data("{}\n".utf8).write(to: notRun.appendingPathComponent("metrics.jsonl"))
        let cases: [(URL, String)] = [(missing, "no such file"), (empty, "no run.toml"), (notRun, "no run.toml"), (runFile, "not a directory")]
        for (target, fragment) in cases {
            assertThrows(try SFTTrainer(config: try SFTConfig(contentsOf: runFile), resume: target), containing: [target.path, "cannot resume", fragment])
            assertOneLineFailure(try runChorus(["sft", runFile.path, "--resume", target.path, "--quiet"]), containing: [target.path, fragment], "--resume \(target.lastPathComponent)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: missing.path), "a refused resume must not create the directory")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: empty.path), [])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("out").path), "nothing trained")
    }

    /// --max-steps, --threads and CHORUS_THREADS out of range are refused with one line.
    func testStepAndThreadOptionsAreStrict() throws {
        let (_, runFile) = try makeSFTSetup(self, steps: 3, checkpointEvery: 1)
        for n in ["0", "-3"] {
            assertOneLineFailure(try runChorus(["sft", runFile.path, "--max-steps=\(n)", "--quiet"]), containing: ["--max-steps", n], "--max-steps \(n)")
        }
        let model = dirOfAModel()
        for n in ["0", "-4"] {
            assertOneLineFailure(try runChorus(["logprobs", "--model", model.path, "--tokens", "1,2", "--threads=\(n)"]), containing: ["--threads", n], "--threads \(n)")
        }
        for v in ["abc", "0", "-2", "", "2x"] {
            assertOneLineFailure(try runChorus(["sft", runFile.path, "--quiet"], environment: ["CHORUS_THREADS": v]), containing: ["CHORUS_THREADS", "'\(v)'"], "CHORUS_THREADS=\(v)")
        }
    }

    /// A small saved model directory for the CLI option checks.
    func dirOfAModel() -> URL {
        let dir = temporaryDirectory(self).appendingPathComponent("m")
        let cfg = ModelConfig(family: .qwen3, vocabSize: 300, hiddenSize: 16, intermediateSize: 32, numLayers: 1, numHeads: 2,
                              numKVHeads: 1, headDim: 8, rmsNormEps: 1e-6, ropeTheta: 10000, tieWordEmbeddings: true,
                              attentionBias: false, maxPositionEmbeddings: 64)
        let m = TransformerModel(config: cfg)
        m.initializeRandom(seed: 1)
        try! m.save(directory: dir, dtype: .f32)
        return dir
    }

    /// `--set` values: TOML literals as given, bare words and paths as strings, and anything
    /// else refused naming the override (never a "syntax error at line N" of the run file).
    func testSetOverrideValues() throws {
        let text = "[train]\nlr = 1e-3\n\n[output]\ndir = \"a\"\n"
        func value(_ o: String) throws -> ConfigTable {
            try ConfigTable(string: try applyOverrides([o], to: text, file: "run.toml"), file: "run.toml")
        }
        XCTAssertEqual(try value("output.dir=/tmp/run x").table("output")?.string("dir"), "/tmp/run x")
        XCTAssertEqual(try value("output.dir=\"q\"").table("output")?.string("dir"), "q")
        XCTAssertEqual(try value("train.lr=2e-4").table("train")?.double("lr"), 2e-4)
        XCTAssertEqual(try value("train.schedule=cosine").table("train")?.string("schedule"), "cosine")
        XCTAssertEqual(try value("eval.benchmarks=[\"add3\", \"rev\"]").table("eval")?.strings("benchmarks"), ["add3", "rev"])
        for bad in ["output.dir=\"unclosed", "output.dir=a\"b", "eval.benchmarks=[\"add3\"",
                    "train.l r=1", "train.lr=a\nb = 2", "output.dir=a\\b"] {
            XCTAssertThrowsError(try applyOverrides([bad], to: text, file: "run.toml"), bad) { e in
                let m = "\(e)"
                XCTAssertTrue(m.contains("--set"), m)
                XCTAssertFalse(m.contains("line"), m)
            }
        }
    }

    // MARK: 6. Non-finite numbers in training

    /// lr = 1e30 overflows the weights: training stops at that step naming it, writes no NaN
    /// model or metrics row, and the last good checkpoint loads with finite weights.
    func testHugeLearningRateStopsKeepingTheLastGoodCheckpoint() throws {
        let (dir, runFile) = try makeSFTSetup(self, steps: 20, checkpointEvery: 1)
        var text = try String(contentsOf: runFile, encoding: .utf8)
        text = text.replacingOccurrences(of: "lr = 3e-3", with: "lr = 1e30")
        try text.write(to: runFile, atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("out")
        let r = try runChorus(["sft", runFile.path, "--quiet"])
        assertOneLineFailure(r, containing: ["step", "not finite"], "lr = 1e30")
        let trainer = try SFTTrainer(config: try SFTConfig(contentsOf: runFile), resume: out)
        _ = trainer
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("final").path), "no final model from a failed run")
        let metrics = try String(contentsOf: out.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        XCTAssertFalse(metrics.contains("null") || metrics.lowercased().contains("nan"), metrics)
        let cks = try FileManager.default.contentsOfDirectory(atPath: out.appendingPathComponent("checkpoints").path).filter { $0.hasPrefix("step-") }.sorted()
        XCTAssertFalse(cks.isEmpty, "a checkpoint before the failure")
        for ck in cks {
            let m = try TransformerModel.load(directory: out.appendingPathComponent("checkpoints").appendingPathComponent(ck))
            XCTAssertTrue(m.parameters.array.allSatisfy(\.isFinite), "checkpoint \(ck) holds non-finite weights")
        }
        // The error names the step that failed, one past the last logged one.
        let logged = try steps(out)
        XCTAssertTrue(r.2.contains("step \((logged.last ?? 0) + 1):"), "\(r.2) vs logged \(logged)")
    }

    // MARK: 11. Messages that mislead

    /// Run files and data files that cannot be read say why: missing, a directory, not UTF-8.
    func testUnreadableRunAndDataFilesSayWhy() throws {
        let (dir, runFile) = try makeSFTSetup(self, steps: 3, checkpointEvery: 1)
        assertOneLineFailure(try runChorus(["sft", dir.appendingPathComponent("nope.toml").path]), containing: ["nope.toml", "no such file"])
        assertOneLineFailure(try runChorus(["sft", dir.path]), containing: [dir.path, "is a directory"])
        assertOneLineFailure(try runChorus(["train", dir.appendingPathComponent("nope.toml").path]), containing: ["nope.toml", "no such file"])
        // An output directory that is a file, or under one.
        let text = try String(contentsOf: runFile, encoding: .utf8)
        try Data("x".utf8).write(to: dir.appendingPathComponent("blocker"))
        for out in ["blocker", "blocker/run"] {
            let rf = dir.appendingPathComponent("out-\(out.count).toml")
            try text.replacingOccurrences(of: "dir = \"out\"", with: "dir = \"\(out)\"").write(to: rf, atomically: true, encoding: .utf8)
            assertOneLineFailure(try runChorus(["sft", rf.path, "--quiet"]), containing: ["blocker", "a regular file, not a directory"], out)
        }
        let data = dir.appendingPathComponent("train.jsonl")
        let good = try Data(contentsOf: data)
        try FileManager.default.removeItem(at: data)
        assertOneLineFailure(try runChorus(["sft", runFile.path, "--quiet"]), containing: ["train.jsonl", "no such file"])
        try (good + Data([0x0A, 0xFF, 0x0A])).write(to: data)
        let r = try runChorus(["sft", runFile.path, "--quiet"])
        assertOneLineFailure(r, containing: ["train.jsonl", "not valid UTF-8", "0xFF"])
        XCTAssertFalse(r.2.contains("NSCocoaErrorDomain") || r.2.contains("cannot read file"), r.2)
    }

    // MARK: 4. Resource bombs in run files

    /// A run file whose model or micro-batch cannot fit the memory limit is refused with one
    /// line before anything is allocated.
    func testRunFileSizesAreCheckedAgainstTheMemoryLimit() throws {
        let (_, runFile) = try makeSFTSetup(self, steps: 3, checkpointEvery: 1)
        let text = try String(contentsOf: runFile, encoding: .utf8)
        try text.replacingOccurrences(of: "hidden_size = 32", with: "hidden_size = 1048576").write(to: runFile, atomically: true, encoding: .utf8)
        assertOneLineFailure(try runChorus(["sft", runFile.path, "--quiet"], environment: ["CHORUS_MEMORY_LIMIT": "256M", "CHORUS_THREADS": "2"]),
                             containing: ["[model]", "parameters", "256.0 MiB"])
        try text.replacingOccurrences(of: "micro_batch = 4", with: "micro_batch = 8").write(to: runFile, atomically: true, encoding: .utf8)
        assertOneLineFailure(try runChorus(["sft", runFile.path, "--quiet"], environment: ["CHORUS_MEMORY_LIMIT": "300K", "CHORUS_THREADS": "2"]),
                             containing: ["training on", "tokens per micro-batch", "300.0 KiB"])
    }

    /// The on-policy trainer checks its rollout sizes from the run file the same way.
    func testOnPolicyRolloutSizesAreCheckedAgainstTheMemoryLimit() throws {
        let (_, runFile) = try makeOPDSetup(self, steps: 2)
        let limit = ["CHORUS_MEMORY_LIMIT": "256M", "CHORUS_THREADS": "2"]
        assertOneLineFailure(try runChorus(["train", runFile.path, "--set", "rollout.max_tokens=1048576", "--quiet"], environment: limit),
                             containing: ["training on", "tokens per micro-batch", "256.0 MiB"])
        XCTAssertEqual(try runChorus(["train", runFile.path, "--quiet", "--max-steps", "1"], environment: limit).0, 0, "the same run with small sizes fits")
    }
}

private extension Array where Element == UInt8 {
    /// These bytes as a NUL-terminated C string (for paths that are not valid UTF-8).
    func withCString<R>(_ body: (UnsafePointer<CChar>) -> R) -> R {
        (self.map { CChar(bitPattern: $0) } + [0]).withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
