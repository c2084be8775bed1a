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

    @Option(help: "Continue the run in this directory from its latest checkpoint.")
    var resume: String?

    @Option(name: .customLong("max-steps"), help: "Stop after this many steps in this process (the run can be resumed).")
    var maxSteps: Int?

    @Flag(help: "No progress line on stderr.")
    var quiet = false

    func validate() throws {
        if let m = maxSteps, m < 1 { throw ValidationError("--max-steps must be >= 1, got \(m)") }
    }

    func run() throws {
        let cfg = try SFTConfig(contentsOf: URL(fileURLWithPath: runFile))
        let trainer = try SFTTrainer(config: cfg, resume: resume.map { URL(fileURLWithPath: $0) })
        trainer.showProgress = !quiet
        trainer.stopAfter = maxSteps
        if let final = try trainer.train() {
            FileHandle.standardError.write(Data("final model: \(RawArguments.restorePaths(final.path))\n".utf8))
        } else if StopSignal.requested {
            throw ExitCode(130)   // interrupted (checkpoint written); the usual status for SIGINT
        }
    }
}
