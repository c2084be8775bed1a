import ArgumentParser
import ChorusTensor
import ChorusTokenizer
import ChorusTraining
import Foundation

/// `--threads N`: the worker pool of the kernels and BLAS.
struct ThreadOptions: ParsableArguments {
    @Option(help: "Worker threads for kernels and BLAS (default: all cores, or CHORUS_THREADS).")
    var threads: Int?

    /// 0 and negative counts are refused, not clamped.
    func validate() throws {
        if let t = threads, t < 1 { throw ValidationError("--threads must be >= 1, got \(t)") }
    }

    /// Sizes the worker pool; call before any kernel runs.
    func configure() { Parallel.configure(threads: threads) }
}

/// `--tokenizer PATH`: a Hugging Face tokenizer.json.
struct TokenizerOptions: ParsableArguments {
    @Option(help: "Path to a Hugging Face tokenizer.json.")
    var tokenizer: String

    func load() throws -> Tokenizer { try Tokenizer(contentsOf: URL(fileURLWithPath: tokenizer)) }
}

/// The cache directory argument of the `chorus cache …` subcommands.
struct CacheDirectoryArgument: ParsableArguments {
    @Argument(help: "Cache directory.")
    var directory: String

    var url: URL { URL(fileURLWithPath: directory, isDirectory: true) }
}

/// The run options of `chorus sft` and `chorus train`: resume a run directory, stop early,
/// quiet progress; and how a run's end is reported.
struct RunOptions: ParsableArguments {
    @Option(help: "Continue the run in this directory from its latest checkpoint.")
    var resume: String?

    @Option(name: .customLong("max-steps"), help: "Stop after this many steps in this process (the run can be resumed).")
    var maxSteps: Int?

    @Flag(help: "No progress line on stderr.")
    var quiet = false

    func validate() throws {
        if let m = maxSteps, m < 1 { throw ValidationError("--max-steps must be >= 1, got \(m)") }
    }

    /// The run directory to resume, if any.
    var resumeDirectory: URL? { resume.map { URL(fileURLWithPath: $0) } }

    /// Applies --quiet and --max-steps to a trainer's loop.
    func configure(_ loop: OptimizationLoop) {
        loop.showProgress = !quiet
        loop.stopAfter = maxSteps
    }

    /// Reports the end of `train()`: the final model's path on stderr, or exit status 130 when
    /// the run was interrupted (its checkpoint written; the usual status for SIGINT). A run
    /// stopped by --max-steps returns quietly.
    func finish(_ final: URL?) throws {
        if let final {
            FileHandle.standardError.write(Data("final model: \(RawArguments.restorePaths(final.path))\n".utf8))
        } else if StopSignal.requested {
            throw ExitCode(130)
        }
    }
}
