import ArgumentParser
import ChorusTensor
import ChorusTokenizer
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
