import ArgumentParser
import ChorusTokenizer
import Foundation

/// `chorus tokenize`: prints the ids of a text as `{"ids":[...]}`.
struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encode text with a tokenizer.json (special tokens in the text are recognised).")

    @Option(help: "Path to a Hugging Face tokenizer.json.")
    var tokenizer: String

    @Option(help: "The text to encode.")
    var text: String

    func run() throws {
        let tok = try Tokenizer(contentsOf: URL(fileURLWithPath: tokenizer))
        let ids = tok.encode(text)
        print("{\"ids\":[" + ids.map(String.init).joined(separator: ",") + "]}")
    }
}

/// `chorus detokenize`: prints the text of comma-separated ids as `{"text":"..."}`.
struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode comma-separated token ids with a tokenizer.json.")

    @Option(help: "Path to a Hugging Face tokenizer.json.")
    var tokenizer: String

    @Option(help: "Comma-separated token ids, e.g. 1,2,3.")
    var ids: String

    @Flag(help: "Leave special tokens out of the text.")
    var skipSpecialTokens = false

    func validate() throws {
        _ = try parsedIds()
    }

    func parsedIds() throws -> [Int] {
        let trimmed = ids.trimmingCharacters(in: .whitespaces)
        if trimmed.isEmpty { return [] }
        return try trimmed.split(separator: ",", omittingEmptySubsequences: false).map { part in
            guard let id = Int(part.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--ids: '\(part)' is not an integer id")
            }
            return id
        }
    }

    func run() throws {
        let tok = try Tokenizer(contentsOf: URL(fileURLWithPath: tokenizer))
        let text = try tok.decode(try parsedIds(), skipSpecialTokens: skipSpecialTokens)
        print("{\"text\":" + jsonQuoted(text) + "}")
    }
}

/// `chorus tokenizer ...`: tokenizer utilities.
struct TokenizerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Tokenizer utilities.",
        subcommands: [TrainTokenizer.self])
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

    @Option(help: "Where to write tokenizer.json.")
    var output: String

    func validate() throws {
        if input.isEmpty { throw ValidationError("--input needs at least one file") }
        if vocabSize < 256 + specialTokens.count {
            throw ValidationError("--vocab-size must be at least 256 + the number of special tokens")
        }
    }

    func run() throws {
        let trainer = BPETrainer(vocabSize: vocabSize, specialTokens: specialTokens, minFrequency: minFrequency)
        let tok = try trainer.train(files: input.map { URL(fileURLWithPath: $0) })
        try tok.write(to: URL(fileURLWithPath: output))
    }
}

/// `s` as a JSON string literal (RFC 8259 escaping; non-ASCII written as UTF-8).
private func jsonQuoted(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case "\u{08}": out += "\\b"
        case "\u{0C}": out += "\\f"
        default:
            if scalar.value < 0x20 {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}
