import ArgumentParser

/// The `chorus` command-line tool.
@main
struct Chorus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chorus",
        abstract: "Multi-teacher on-policy distillation for language models.",
        subcommands: [
            Logprobs.self,
            Sample.self,
            Bench.self,
            Convert.self,
            SFT.self,
            Train.self,
            Tokenize.self,
            Detokenize.self,
            TokenizerCommand.self,
            CacheCommand.self,
            Score.self,
            Serve.self,
        ])
}
