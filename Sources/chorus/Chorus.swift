import ArgumentParser
import ChorusCore
import Foundation

/// The `chorus` command-line tool.
@main
struct Chorus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chorus",
        abstract: "Multi-teacher on-policy distillation for language models.",
        version: ChorusVersion.string,
        subcommands: [
            Logprobs.self,
            Sample.self,
            Bench.self,
            Convert.self,
            SFT.self,
            Train.self,
            Compare.self,
            Eval.self,
            TasksCommand.self,
            Tokenize.self,
            Detokenize.self,
            TokenizerCommand.self,
            CacheCommand.self,
            Score.self,
            Serve.self,
            Info.self,
            Report.self,
            Inspect.self,
        ])

    /// ArgumentParser's `main`, with four additions: the environment is checked first
    /// (`CHORUS_THREADS`, `CHORUS_MEMORY_LIMIT`), non-UTF-8 paths on the command line are used
    /// byte for byte (`RawArguments`), and every error that is not the parser's own becomes one
    /// line naming the file and cause (`describeError`); usage errors are one line too (the
    /// usage itself is in `--help`).
    static func main() {
        do {
            try EnvironmentCheck.validate()
            var command = try parseAsRoot(try RawArguments.prepare())
            try command.run()
        } catch {
            // --help, --version and explicit exit codes (130 after Ctrl-C) keep their format.
            let code = exitCode(for: error)
            if code == .success || error is ExitCode { exit(withError: error) }
            let parserError = String(reflecting: type(of: error)).hasPrefix("ArgumentParser.")
            let text = parserError ? RawArguments.restorePaths(message(for: error)) : describeError(error)
            let line = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty }.joined(separator: " ")
            FileHandle.standardError.write(Data("Error: \(line)\n".utf8))
            Foundation.exit(code.rawValue)
        }
    }
}
