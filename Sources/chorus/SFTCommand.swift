import ArgumentParser
import ChorusTraining
import Foundation

/// `chorus sft RUN.toml`: supervised fine-tuning on prompt/completion JSONL.
struct SFT: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sft",
        abstract: "Supervised fine-tuning (loss on completion tokens) from a run file.",
        discussion: """
        Writes checkpoints, metrics.jsonl and the final Hugging Face model under the run's \
        output directory. A killed run continues exactly with --resume RUN_DIR.
        """)

    @Argument(help: "The run file (TOML).")
    var runFile: String

    @OptionGroup var runOptions: RunOptions

    func run() throws {
        let cfg = try SFTConfig(contentsOf: URL(fileURLWithPath: runFile))
        let trainer = try SFTTrainer(config: cfg, resume: runOptions.resumeDirectory)
        runOptions.configure(trainer.loop)
        try runOptions.finish(try trainer.train())
    }
}
