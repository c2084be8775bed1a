import ArgumentParser

/// The `chorus` command-line tool.
@main
struct Chorus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chorus",
        abstract: "Multi-teacher on-policy distillation for language models.",
        subcommands: [CacheCommand.self])
}
