import ArgumentParser
import ChorusCore
import ChorusReport
import ChorusTraining
import Foundation

/// `chorus compare RUN.toml --aggregators a,b,...`: every strategy (and baseline) from the same
/// seeds; or `chorus compare RUN.toml --sweep KEY=V1,V2,...`: run-file keys varied one at a
/// time around the run file's recipe. Then the table, compare.json and report.html (docs/compare.md).
struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train several aggregation strategies (and SFT baselines), or sweeps of run-file keys, from the same seeds and compare them.",
        discussion: """
        Each strategy and seed is a normal run directory, OUTPUT/LABEL/seed-S/ (resumable with \
        chorus train/sft --resume); all share one score cache, so the second strategy's first \
        step is served from it. Baselines (sft-teacher: SFT on the strongest teacher's samples; \
        sft-self: SFT on the student's own correct samples) train to the response tokens of the \
        default strategy's run of the same seed. Prints the table (peak and final mean@k and \
        best@k per eval set, final train KL, stability flags; with --seeds > 1 mean ± std and a \
        * on differences a paired t test finds significant against the default strategy) and \
        writes OUTPUT/table.txt, OUTPUT/compare.json and OUTPUT/report.html. Re-running the same \
        command skips finished runs and resumes started ones. \
        --sweep KEY=V1,V2,... (repeatable, instead of --aggregators) varies one run-file key at a \
        time: the run file's own recipe runs once per seed (OUTPUT/default/) and each value that \
        changes it once per seed (OUTPUT/KEY=VALUE/), every other key at the run file's value; the \
        table has one block per key, the default marked, * against the default. See docs/compare.md.
        """)

    @Argument(help: "The run file (TOML) every strategy starts from.")
    var runFile: String

    @Option(help: "Comma-separated aggregators, e.g. arithmetic,geometric,hard-switch,soft-switch,control-token,random.")
    var aggregators: String?

    @Option(help: "Comma-separated baselines: sft-teacher, sft-self.")
    var baselines: String = ""

    @Option(parsing: .unconditional, help: "Seeds per strategy: the run file's train.seed, +1, ...")
    var seeds: Int = 1

    @Option(parsing: .unconditional, help: "Steps per run (default: the run file's train.steps).")
    var steps: Int?

    @Option(help: "The output directory.")
    var output: String = "compare"

    @Option(name: .customLong("set"), help: "Override a run-file key for every run: SECTION.KEY=VALUE (repeatable).")
    var overrides: [String] = []

    @Option(name: .customLong("sweep"), help: ArgumentHelp(
        "Vary one run-file key against the run file's recipe: SECTION.KEY=V1,V2,... (repeatable; values as --set takes them).",
        valueName: "key=values"))
    var sweeps: [String] = []

    @Flag(help: "No per-run progress line on stderr (the run list is still printed).")
    var quiet = false

    @Flag(help: "Print compare.json (one object) on stdout instead of the table.")
    var json = false

    func run() throws {
        func list(_ s: String) -> [String] { s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
        let out = URL(fileURLWithPath: output, isDirectory: true)
        let comparison = try Comparison(runFile: URL(fileURLWithPath: runFile), overrides: overrides, aggregators: list(aggregators ?? ""),
                                        baselines: list(baselines), sweeps: sweeps, seeds: seeds, steps: steps, output: out)
        comparison.log = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
        comparison.showRunProgress = !quiet
        guard try comparison.run() else { throw ExitCode(130) }
        let summary = comparison.summary()
        try summary.write(to: out)
        let groups = comparison.labels.map { l in
            ReportGroup(label: l, runDirectories: comparison.runs.filter { $0.label == l }.map(\.directory))
        }
        let page = out.appendingPathComponent("report.html")
        try ComparisonReport.write(groups: groups, title: "chorus compare: \(URL(fileURLWithPath: runFile).lastPathComponent)",
                                   summaries: summary.blocks.map { SummaryTable(title: $0.title, rows: $0.rows) }, to: page)
        print(json ? summary.json : summary.table, terminator: "")
        FileHandle.standardError.write(Data("wrote \(RawArguments.restorePaths(out.path))/{table.txt,compare.json,report.html}\n".utf8))
    }
}
