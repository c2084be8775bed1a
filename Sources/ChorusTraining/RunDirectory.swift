import ChorusCore
import ChorusModel
import ChorusTensor
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Errors about run directories and checkpoints.
public enum RunError: Error, CustomStringConvertible {
    case exists(String)
    case noCheckpoint(String)
    case badCheckpoint(String, String)
    case configChanged(String)
    case io(String, String)
    case inUse(String)
    case notARun(String, String)

    public var description: String {
        switch self {
        case let .exists(d): return "\(d): run directory already has checkpoints; pass --resume \(d) to continue it, or choose another output directory"
        case let .noCheckpoint(d): return "\(d): no checkpoint to resume from"
        case let .badCheckpoint(d, why): return "\(d): unusable checkpoint: \(why)"
        case let .configChanged(d): return "\(d): the run file differs from the one this run was started with (see \(d)/run.toml); resume with the original file"
        case let .io(f, why): return "\(f): \(why)"
        case let .inUse(d): return "\(d): run directory is in use by another chorus process (it holds \(d)/run.lock); wait for it to finish or stop it"
        case let .notARun(d, why): return "\(d): cannot resume: \(why)"
        }
    }
}

/// The state a trainer needs to continue exactly where it stopped.
public struct TrainerState: Codable, Equatable {
    /// Optimizer steps completed.
    public var step: Int
    /// The run's random generator after `step` steps.
    public var rng: ChorusRNG
    /// Seed the run started with.
    public var seed: UInt64
    /// Free-form trainer counters (tokens seen, ...).
    public var counters: [String: Double]
    public init(step: Int, rng: ChorusRNG, seed: UInt64, counters: [String: Double] = [:]) {
        self.step = step; self.rng = rng; self.seed = seed; self.counters = counters
    }
}

/// A run directory:
///
///     run.toml              the run file as given (the record of config and seed)
///     run.json              resolved settings, seed, threads, start time, and the Chorus
///                           version that made the run (`chorus_version`, as --version prints it)
///     metrics.jsonl         one JSON object per logged step
///     checkpoints/step-N/   config.json, model.safetensors, tokenizer.json (an HF model
///                           directory) + optimizer.safetensors (AdamW m, v) + state.json
///     checkpoints/latest    name of the newest complete checkpoint
///     final/                the final model, HF format
///
/// A checkpoint is written into a hidden temporary directory, fsynced, then renamed into
/// place, and only then named in `latest` (itself replaced atomically). A kill at any moment
/// leaves either the previous checkpoint or the new one, never a partial one that loads.
public final class RunDirectory {
    public let url: URL
    var checkpoints: URL { url.appendingPathComponent("checkpoints") }
    public var metricsURL: URL { url.appendingPathComponent("metrics.jsonl") }
    private var metricsFD: Int32 = -1
    /// The open `run.lock`, flock'ed exclusively while this process uses the directory.
    private var lockFD: Int32 = -1

    /// Opens (creating when needed) a run directory and takes its lock: one process at a time
    /// may use a run directory. With `resuming`, the directory must already hold a run (its
    /// `run.toml`); nothing is created then.
    public init(url: URL, resuming: Bool = false) throws {
        self.url = url
        if resuming {
            var st = stat()
            guard stat(url.path, &st) == 0 else { throw RunError.notARun(url.path, InputFile.problem(errno: errno)) }
            guard st.st_mode & S_IFMT == S_IFDIR else { throw RunError.notARun(url.path, "not a directory") }
            let toml = url.appendingPathComponent("run.toml").path
            guard stat(toml, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
                throw RunError.notARun(url.path, "it holds no run.toml, so no run was started there (start one without --resume)")
            }
        }
        do { try InputFile.createDirectory(url.path) } catch let e as InputFileError {
            throw RunError.io(e.path, "run directory: \(e.problem)")
        }
        try lock()
        do {
            try FileManager.default.createDirectory(at: checkpoints, withIntermediateDirectories: true)
        } catch { throw RunError.io(url.path, "cannot create run directory") }
    }

    deinit {
        if metricsFD >= 0 { close(metricsFD) }
        unlock()
    }

    /// Takes the exclusive lock on `run.lock` without waiting: a second process on the same
    /// directory fails at once, before it reads or writes anything there. The kernel drops the
    /// lock when the holder exits, kill -9 included, so a crash never leaves a stale lock.
    func lock() throws {
        let path = url.appendingPathComponent("run.lock").path
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw RunError.io(path, "cannot open the run lock (\(InputFile.problem(errno: errno)))") }
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            let e = errno
            close(fd)
            if e == EWOULDBLOCK { throw RunError.inUse(url.path) }
            throw RunError.io(path, "cannot lock (\(InputFile.problem(errno: e)))")
        }
        lockFD = fd
    }

    /// Releases the lock (when the run is done with the directory, or on deinit).
    public func unlock() {
        if lockFD >= 0 {
            flock(lockFD, LOCK_UN)
            close(lockFD)
            lockFD = -1
        }
    }

    /// Records the run file (or checks it is unchanged when resuming). run.json holds
    /// `settings` plus `chorus_version` (`ChorusVersion.string`, what `chorus --version` prints).
    public func recordConfig(text: String, settings: [String: Any], resuming: Bool) throws {
        let toml = url.appendingPathComponent("run.toml")
        if resuming {
            let old = try InputFile.readText(toml.path)
            if old != text { throw RunError.configChanged(url.path) }
            return
        }
        try AtomicFile.write(Data(text.utf8), to: toml)
        var recorded = settings
        recorded["chorus_version"] = ChorusVersion.string
        let json = try JSONSerialization.data(withJSONObject: recorded, options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(json, to: url.appendingPathComponent("run.json"))
    }

    /// The checkpoint `checkpoints/latest` names, if any. `latest` is written only after its
    /// checkpoint is complete, so the one it names is returned even when it has since gone
    /// missing or lost files: loading it then fails naming it, rather than silently starting
    /// the run over from step 0.
    public func latestCheckpoint() -> URL? {
        guard let name = try? String(contentsOf: checkpoints.appendingPathComponent("latest"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines), !name.isEmpty else { return nil }
        return checkpoints.appendingPathComponent(name)
    }

    /// Saves model, tokenizer, optimizer and state as checkpoint `step`, atomically; keeps the
    /// newest `keep` checkpoints.
    public func saveCheckpoint(step: Int, model: TransformerModel, tokenizerJSON: Data, optimizer: AdamW,
                               state: TrainerState, keep: Int = 2) throws {
        let fm = FileManager.default
        let name = String(format: "step-%08d", step)
        let tmp = checkpoints.appendingPathComponent(".tmp-" + name)
        let final = checkpoints.appendingPathComponent(name)
        try? fm.removeItem(at: tmp)
        try model.save(directory: tmp)
        try AtomicFile.write(tokenizerJSON, to: tmp.appendingPathComponent("tokenizer.json"))
        try SafeTensorsWriter.write([
            .init(name: "m", shape: [optimizer.m.count], data: optimizer.m.data),
            .init(name: "v", shape: [optimizer.v.count], data: optimizer.v.data),
        ], metadata: ["adam_step": "\(optimizer.step)"], to: tmp.appendingPathComponent("optimizer.safetensors"))
        let st = try JSONEncoder().encode(state)
        try AtomicFile.write(st, to: tmp.appendingPathComponent("state.json"))
        try? fm.removeItem(at: final)
        guard rename(tmp.path, final.path) == 0 else { throw RunError.io(final.path, "rename failed (errno \(errno))") }
        syncDirectory(checkpoints)
        try AtomicFile.write(Data(name.utf8), to: checkpoints.appendingPathComponent("latest"))
        // Prune older checkpoints and leftovers of interrupted writes.
        let names = ((try? fm.contentsOfDirectory(atPath: checkpoints.path)) ?? []).sorted()
        let complete = names.filter { $0.hasPrefix("step-") }
        for old in complete.dropLast(max(1, keep)) where old != name { try? fm.removeItem(at: checkpoints.appendingPathComponent(old)) }
        for t in names where t.hasPrefix(".tmp-") && t != ".tmp-" + name { try? fm.removeItem(at: checkpoints.appendingPathComponent(t)) }
    }

    /// Loads a checkpoint into `model` and `optimizer`; returns the trainer state.
    public func loadCheckpoint(_ dir: URL, model: TransformerModel, optimizer: AdamW) throws -> TrainerState {
        do {
            try model.loadWeights(directory: dir)
            let opt = try SafeTensorsFile(path: dir.appendingPathComponent("optimizer.safetensors").path)
            for (name, t) in [("m", optimizer.m), ("v", optimizer.v)] {
                guard let info = opt.tensors[name], info.elementCount == t.count else {
                    throw RunError.badCheckpoint(dir.path, "optimizer tensor '\(name)' missing or of the wrong size")
                }
                try opt.read(name, into: t.data)
            }
            guard let s = opt.metadata["adam_step"], let adamStep = Int(s) else {
                throw RunError.badCheckpoint(dir.path, "optimizer.safetensors lacks adam_step")
            }
            optimizer.step = adamStep
            let state = try JSONDecoder().decode(TrainerState.self, from: Data(contentsOf: dir.appendingPathComponent("state.json")))
            return state
        } catch let e as RunError { throw e } catch {
            throw RunError.badCheckpoint(dir.path, "\(error)")
        }
    }

    /// Drops metrics rows of steps after `step` (they belong to work lost in a crash and will
    /// be redone), keeping the file consistent with the checkpoint being resumed.
    public func truncateMetrics(after step: Int) throws {
        guard let text = try? String(contentsOf: metricsURL, encoding: .utf8) else { return }
        var kept: [Substring] = []
        for line in text.split(separator: "\n") {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let s = (obj["step"] as? NSNumber)?.intValue else { continue }  // a torn last line
            if s <= step { kept.append(line) }
        }
        try AtomicFile.write(Data((kept.joined(separator: "\n") + (kept.isEmpty ? "" : "\n")).utf8), to: metricsURL)
    }

    /// The evaluation rows already in metrics.jsonl (`{"step": s, "eval": {NAME: {"mean_at_k":
    /// ...}}}`), in file order, with the first benchmark's mean@k: what a resumed run shows on
    /// its progress line and how it knows the step-0 evaluation is done.
    public func evalSteps() -> [(step: Int, meanAtK: Double)] {
        guard let text = try? String(contentsOf: metricsURL, encoding: .utf8) else { return [] }
        var out: [(step: Int, meanAtK: Double)] = []
        for line in text.split(separator: "\n") {
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let s = (obj["step"] as? NSNumber)?.intValue, let e = obj["eval"] as? [String: Any] else { continue }
            let mean = e.values.compactMap { (($0 as? [String: Any])?["mean_at_k"] as? NSNumber)?.doubleValue }.first ?? .nan
            out.append((s, mean))
        }
        return out
    }

    /// Appends one metrics line (O_APPEND, so concurrent readers see whole lines).
    public func appendMetrics(_ line: String) {
        if metricsFD < 0 { metricsFD = open(metricsURL.path, O_WRONLY | O_CREAT | O_APPEND, 0o644) }
        guard metricsFD >= 0 else { return }
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { Glibc.write(metricsFD, $0.baseAddress, $0.count) }
    }

    /// Flushes the metrics file to disk (called at checkpoints).
    public func syncMetrics() { if metricsFD >= 0 { fsync(metricsFD) } }

    /// Writes the final model (HF directory with tokenizer.json) to `final/`.
    public func saveFinal(model: TransformerModel, tokenizerJSON: Data) throws -> URL {
        let dir = url.appendingPathComponent("final")
        try model.save(directory: dir)
        try AtomicFile.write(tokenizerJSON, to: dir.appendingPathComponent("tokenizer.json"))
        return dir
    }

    private func syncDirectory(_ u: URL) {
        let fd = open(u.path, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
    }
}

/// A progress line on stderr: step, loss, tokens/s and ETA. Redrawn in place on a terminal,
/// printed every ~5% of the run otherwise (logs stay readable).
public final class ProgressReporter {
    let total: Int
    let start = DispatchTime.now().uptimeNanoseconds
    let startStep: Int
    let tty = isatty(STDERR_FILENO) != 0
    public var enabled = true

    public init(total: Int, startStep: Int) {
        self.total = total
        self.startStep = startStep
    }

    /// Reports that `step` steps are done.
    public func update(step: Int, fields: [(String, String)], tokensPerSecond: Double) {
        guard enabled else { return }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let done = step - startStep
        let eta = done > 0 ? elapsed / Double(done) * Double(total - step) : 0
        let text = "step \(step)/\(total) | " + fields.map { "\($0.0) \($0.1)" }.joined(separator: " | ")
            + String(format: " | %.0f tok/s | ETA %@", tokensPerSecond, Self.duration(eta))
        let every = max(1, total / 20)
        if tty {
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + text + (step == total ? "\n" : "")).utf8))
        } else if step % every == 0 || step == total || done == 1 {
            FileHandle.standardError.write(Data((text + "\n").utf8))
        }
    }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600)h\(t % 3600 / 60)m" : t >= 60 ? "\(t / 60)m\(t % 60)s" : "\(t)s"
    }
}

/// SIGINT / SIGTERM during training: the handler only sets a flag; the trainer finishes the
/// current step, writes a checkpoint and returns, so an interrupted run loses nothing.
public enum StopSignal {
    nonisolated(unsafe) static var flag: sig_atomic_t = 0

    /// Whether a stop was requested since `install`.
    public static var requested: Bool { flag != 0 }

    /// Installs the handlers (and clears the flag).
    public static func install() {
        flag = 0
        signal(SIGINT) { _ in StopSignal.flag = 1 }
        signal(SIGTERM) { _ in StopSignal.flag = 1 }
    }

    /// Restores the default handlers.
    public static func uninstall() {
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }
}
