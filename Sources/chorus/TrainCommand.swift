import ArgumentParser
import ChorusTraining
import Foundation

/// `chorus train RUN.toml`: on-policy distillation from a teacher pool.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "On-policy distillation: the student samples, the teacher pool scores, the student learns.",
        discussion: """
        Each step samples rollouts.group_size responses to each of rollouts.prompts_per_step \
        prompts, scores them with the pool's aggregated reference, turns the per-token ratio into \
        weights (divergence, correction, filter, clipping, whitening) and updates the student. \
        Writes checkpoints, metrics.jsonl and the final model under [output] dir; a killed run \
        continues exactly with --resume RUN_DIR. See docs/training.md for every run-file key.
        """)

    @Argument(help: "The run file (TOML).")
    var runFile: String

    @Option(name: .customLong("set"), help: "Override a run-file key: SECTION.KEY=VALUE (repeatable), e.g. train.lr=1e-4.")
    var overrides: [String] = []

    @OptionGroup var runOptions: RunOptions

    func run() throws {
        let cfg = try OnPolicyConfig(contentsOf: URL(fileURLWithPath: runFile), overrides: overrides)
        let trainer = try OnPolicyTrainer(config: cfg, resume: runOptions.resumeDirectory)
        runOptions.configure(trainer.loop)
        try runOptions.finish(try trainer.train())
    }
}
