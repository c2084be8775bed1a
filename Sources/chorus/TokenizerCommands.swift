import ArgumentParser
import ChorusCore
import ChorusTokenizer
import Foundation

/// `chorus tokenize`: prints the ids of a text as `{"ids":[...]}`.
struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encode text with a tokenizer.json (special tokens in the text are recognised).")

    @OptionGroup var tokenizer: TokenizerOptions

    @Option(help: "The text to encode.")
    var text: String

    func run() throws {
        let tok = try tokenizer.load()
        let ids = tok.encode(text)
        print("{\"ids\":[" + ids.map(String.init).joined(separator: ",") + "]}")
    }
}

/// `chorus detokenize`: prints the text of comma-separated ids as `{"text":"..."}`.
struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode comma-separated token ids with a tokenizer.json.")

    @OptionGroup var tokenizer: TokenizerOptions

    @Option(help: "Comma-separated token ids, e.g. 1,2,3.")
    var ids: String

    @Flag(help: "Leave special tokens out of the text.")
    var skipSpecialTokens = false

    func validate() throws {
        _ = try parsedIds()
    }

    func parsedIds() throws -> [Int] {
        // A usage error (with the usage line), as before; the parsing itself is shared.
        do { return try parseTokenList(ids, option: "--ids", allowEmpty: true) } catch { throw ValidationError("\(error)") }
    }

    func run() throws {
        let tok = try tokenizer.load()
        let text = try tok.decode(try parsedIds(), skipSpecialTokens: skipSpecialTokens)
        print("{\"text\":" + JSONText.string(text) + "}")
    }
}

/// `chorus tokenizer ...`: tokenizer utilities.
struct TokenizerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Tokenizer utilities.",
        subcommands: [TrainTokenizer.self, BenchTokenizer.self])
}

/// `chorus tokenizer train`: trains a byte-level BPE tokenizer.json (Qwen2 layout).
struct TrainTokenizer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a byte-level BPE tokenizer (Qwen2-style pre-tokenizer) on text files.")

    @Option(name: .long, parsing: .upToNextOption, help: "UTF-8 text files to train on.")
    var input: [String]

    @Option(help: "Vocabulary size, counting the 256 byte symbols and the special tokens.")
    var vocabSize: Int

    @Option(name: .customLong("special-token"), help: "A special token (repeatable); they get the first ids.")
    var specialTokens: [String] = []

    @Option(help: "Pairs seen fewer times are not merged.")
    var minFrequency: Int = 2

    @Option(help: "Where to write tokenizer.json (must not exist unless --force; never one of the inputs).")
    var output: String

    @Flag(help: "Replace an existing --output file.")
    var force = false

    func validate() throws {
        if input.isEmpty { throw ValidationError("--input needs at least one file") }
        if vocabSize < 256 + specialTokens.count {
            throw ValidationError("--vocab-size must be at least 256 + the number of special tokens")
        }
    }

    func run() throws {
        // The output must not be one of the inputs (that would destroy training data), and an
        // existing file is replaced only when asked for.
        if let outID = OutputSafety.identity(output) {
            if let same = input.first(where: { OutputSafety.identity($0).map { $0 == outID } ?? false }) {
                throw CLIError("--output \(output) is the input file \(same); choose another output")
            }
            if !force { throw CLIError("--output \(output) already exists; pass --force to replace it") }
        }
        let trainer = BPETrainer(vocabSize: vocabSize, specialTokens: specialTokens, minFrequency: minFrequency)
        let tok = try trainer.train(files: input.map { URL(fileURLWithPath: $0) })
        try tok.write(to: URL(fileURLWithPath: output))
        if tok.vocabSize < vocabSize {
            FileHandle.standardError.write(Data("note: the input has pairs for only \(tok.vocabSize) tokens (of --vocab-size \(vocabSize)); wrote \(tok.vocabSize)\n".utf8))
        }
    }
}

/// `chorus tokenizer bench`: encode throughput on a text file, one line per `encode` call and
/// the whole file in one call. Prints one JSON object; build with `-c release` to measure.
struct BenchTokenizer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure encode throughput (MB/s) on a UTF-8 text file.")

    @OptionGroup var tokenizer: TokenizerOptions

    @Option(help: "UTF-8 text file to encode.")
    var input: String

    @Option(help: "Timed repetitions (the best is reported); one warm-up run comes first.")
    var repeats: Int = 3

    func run() throws {
        let tok = try tokenizer.load()
        let data = try InputFile.read(input)
        let text = try UTF8Text.decode(data, source: input)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { String($0) + "\n" }
        let megabytes = Double(data.count) / 1e6
        func best(_ body: () -> Int) -> (seconds: Double, tokens: Int) {
            var tokens = body()  // warm-up (also fills the word cache, as in steady state)
            var bestSeconds = Double.infinity
            for _ in 0..<max(repeats, 1) {
                let start = DispatchTime.now().uptimeNanoseconds
                tokens = body()
                bestSeconds = min(bestSeconds, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            return (bestSeconds, tokens)
        }
        let perLine = best { lines.reduce(0) { $0 + tok.encode($1).count } }
        let whole = best { tok.encode(text).count }
        print("{\"bytes\":\(data.count),\"lines\":\(lines.count),\"tokens\":\(perLine.tokens),"
            + "\"per_line_mb_s\":\(String(format: "%.2f", megabytes / perLine.seconds)),"
            + "\"whole_text_mb_s\":\(String(format: "%.2f", megabytes / whole.seconds)),"
            + "\"whole_text_tokens\":\(whole.tokens)}")
    }
}

