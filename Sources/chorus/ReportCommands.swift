import ArgumentParser
import ChorusCore
import ChorusReport
import Foundation

/// `chorus report RUN_DIR...`: the plotted HTML report of any set of runs (docs/report.md).
struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a self-contained HTML report (inline SVG plots) of one or more run directories.",
        discussion: """
        Each RUN_DIR is one line, labelled by its name; a directory whose seed-N subdirectories \
        are runs is one line over those seeds (mean and min–max band), and a `chorus compare` \
        output (OUTPUT/LABEL/seed-N/) gives one line per label. --group NAME=DIR,DIR,... makes \
        a line of any runs. Plots: each benchmark's mean@k and best@k, train KL (k1, k3), grad \
        norm, entropies, PPL drift, masked fraction and loss over steps. Malformed or missing \
        metrics lines are skipped and listed on the page; only no readable run at all is an \
        error. The page is written atomically to --output (default ./report.html); a file that \
        is not a chorus page, or a path inside a run directory, is never overwritten.
        """)

    @Argument(help: "Run directories, directories of seed-N runs, or a `chorus compare` output directory.")
    var runDirectories: [String] = []

    @Option(name: .customLong("group"), help: "A line over several runs: NAME=DIR1,DIR2 (repeatable).")
    var groups: [String] = []

    @Option(help: "The HTML file to write (default: report.html in the current directory).")
    var output: String = "report.html"

    @Option(help: "The page title.")
    var title: String = "Chorus report"

    func run() throws {
        if runDirectories.isEmpty && groups.isEmpty { throw CLIError("give at least one RUN_DIR (or --group NAME=DIR,...)") }
        let explicit = try groups.map(ReportInputs.parseGroup)
        let all = try ReportInputs.groups(paths: runDirectories.map { URL(fileURLWithPath: $0, isDirectory: true) }, explicit: explicit)
        let out = URL(fileURLWithPath: output)
        try ReportInputs.checkOutput(out, runs: all.flatMap(\.runDirectories))
        try ComparisonReport.write(groups: all, title: title, summary: nil, to: out)
        FileHandle.standardError.write(Data("report: \(RawArguments.restorePaths(out.path)) (\(all.count) group\(all.count == 1 ? "" : "s"))\n".utf8))
    }
}

/// `chorus inspect RUN_DIR --step S`: the token view of one recorded rollout (docs/report.md).
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write an HTML page of one recorded rollout: tokens coloured by KL or entropy, masked tokens, the virtual rollout.",
        discussion: """
        Reads RUN_DIR/rollouts/step-S.jsonl (recorded by `chorus train` with [output] \
        rollouts_every) and writes one page for sample --sample: the response's tokens coloured \
        by per-token KL |log π_θ − log π_ref|, student entropy or reference entropy (a toggle on \
        the page), tokens masked by the correction or dropped by the filter marked, every score \
        and each teacher's log-prob on hover, and the virtual rollout: the reference's top-1 \
        token at every student prefix beside the student's token. Default output: \
        inspect-step-S-sample-I.html in the current directory.
        """)

    @Argument(help: "A `chorus train` run directory.")
    var runDirectory: String

    @Option(parsing: .unconditional, help: "The step whose rollouts to show (see the error for the recorded steps).")
    var step: Int

    @Option(parsing: .unconditional, help: "The sample within the step (0-based, prompt-major).")
    var sample: Int = 0

    @Option(help: "The colouring the page opens with: \(TokenColoring.allCases.map(\.rawValue).joined(separator: ", ")).")
    var color: String = TokenColoring.kl.rawValue

    @Option(help: "The HTML file to write (default: inspect-step-S-sample-I.html in the current directory).")
    var output: String?

    func run() throws {
        guard let coloring = TokenColoring(rawValue: color) else {
            throw CLIError("--color: '\(color)' is not one of: \(TokenColoring.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if sample < 0 { throw CLIError("--sample must be >= 0, got \(sample)") }
        let run = URL(fileURLWithPath: runDirectory, isDirectory: true)
        try InputFile.checkDirectory(run.path, what: "run directory")
        guard ReportInputs.isRunDirectory(run) else {
            throw CLIError("\(run.path): not a run directory (no run.toml, run.json or metrics.jsonl)")
        }
        let records = try RolloutLog.read(run: run, step: step)
        guard sample < records.count else { throw RolloutLogError.sampleOutOfRange(step: step, sample: sample, count: records.count) }
        let out = URL(fileURLWithPath: output ?? "inspect-step-\(step)-sample-\(sample).html")
        try ReportInputs.checkOutput(out, runs: [run])
        try TokenPage.write(record: records[sample], run: run.path, samples: records.count, coloring: coloring, to: out)
        FileHandle.standardError.write(Data("inspect: \(RawArguments.restorePaths(out.path))\n".utf8))
    }
}
