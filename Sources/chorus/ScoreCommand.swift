import ArgumentParser
import ChorusCore
import ChorusModel
import ChorusTeachers
import ChorusTensor
import Foundation

/// `chorus score`: teacher log-probs and the aggregated reference of one token sequence.
struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score a token sequence with a teacher pool and an aggregator; prints one JSON object.",
        discussion: """
        Output: {"positions":[L..n-1], "teachers":{NAME:[lp,...]}, "reference":[lp,...], \
        "reference_entropy":[...], "weights":{NAME:w}} where lp is log p(tokens[i] | tokens[<i]). \
        tokens[0..<L] is the prompt (L = --prompt-length, default 1), the rest the response. \
        Aggregators: \(AggregatorFactory.names.joined(separator: ", ")). Every teacher is scored \
        (weights of 0 included) so all per-teacher log-probs are listed. \
        The sequence is --tokens, or --text / --text-file encoded with the pool's tokenizer: the \
        student's tokenizer.json (--student, else the manifest's student), or without a student \
        the first teacher's (the pool's vocabulary check makes them agree); --prompt-length \
        still counts tokens. Text input adds "text" (the decoded response, positions L..n-1), \
        "full_text" and "token_strings" (each scored token's text, aligned with "positions").
        """)

    @Option(help: "Teacher pool manifest (TOML).")
    var pool: String

    @Option(help: "Aggregation strategy: \(AggregatorFactory.names.joined(separator: ", ")).")
    var aggregator: String

    @Option(help: "Training progress p in [0, 1] (switch strategies).")
    var progress: Double = 0

    @Option(help: "Prompt-group index (routing: control-token uses teacher G mod K, random is seeded by G).")
    var group: Int = 0

    @Option(name: .customLong("prompt-length"), help: "Number of prompt tokens L (>= 1); positions L..n-1 are scored.")
    var promptLength: Int = 1

    @Option(help: "Score cache directory (consulted before scoring, filled after).")
    var cache: String?

    @OptionGroup var input: SequenceInput

    @Option(help: "Student model directory (overrides the manifest's `student`; self-teachers without a path use it).")
    var student: String?

    @Option(help: "Seed of the random strategy.")
    var seed: UInt64 = 0

    @Option(help: "Hard-switch boundaries, comma-separated (default: equal stages).")
    var boundaries: String?

    @Flag(name: .customLong("log-space"), help: "Soft switch blends in log space (normalized) instead of probability space.")
    var logSpace = false

    @Option(name: .customLong("privileged"), help: "A privileged value for self-teacher templates, NAME=VALUE (repeatable).")
    var privileged: [String] = []

    @OptionGroup var workers: ThreadOptions

    func run() throws {
        workers.configure()
        let studentDirectory = student.map { URL(fileURLWithPath: $0).standardizedFileURL }
        let (ids, tok) = try input.resolve {
            try PoolManifest.load(contentsOf: URL(fileURLWithPath: pool)).loadTextTokenizer(studentDirectory: studentDirectory)
        }
        if !AggregatorFactory.names.contains(aggregator) { throw CLIError("\(AggregatorError.unknownName(aggregator))") }
        if !(progress >= 0 && progress <= 1) { throw CLIError("--progress \(progress) is outside [0, 1]") }
        if promptLength < 1 || promptLength >= ids.count {
            throw CLIError("--prompt-length \(promptLength) must be in [1, \(ids.count - 1)] for \(ids.count) tokens")
        }
        var values: [String: String] = [:]
        for kv in privileged {
            guard let eq = kv.firstIndex(of: "="), eq != kv.startIndex else { throw CLIError("--privileged '\(kv)' is not NAME=VALUE") }
            values[String(kv[..<eq])] = String(kv[kv.index(after: eq)...])
        }
        var opts = AggregatorOptions(softSwitchLogSpace: logSpace, seed: seed)
        if let b = boundaries {
            opts.boundaries = try b.split(separator: ",").map {
                guard let v = Double($0.trimmingCharacters(in: .whitespaces)) else { throw CLIError("--boundaries: '\($0)' is not a number") }
                return v
            }
        }
        let poolURL = URL(fileURLWithPath: pool)
        let studentSource = studentDirectory.map { StudentSource(directory: $0) }
        let p = try TeacherPool.load(manifest: poolURL, student: studentSource)
        if let dir = cache { p.store = try ScoreCacheStore(directory: URL(fileURLWithPath: dir)) }
        let agg = try p.makeAggregator(name: aggregator, options: opts)

        // Every id must be a teacher token or (routing) a control token the teachers never see.
        let control = Set((agg as? ControlTokenRouting)?.controlTokenIds ?? [])
        for t in ids where (t < 0 || t >= p.vocabularySize) && !control.contains(t) {
            throw CLIError("token id \(t) is outside the vocabulary [0, \(p.vocabularySize))")
        }
        let prompt = Array(ids[0..<promptLength]), response = Array(ids[promptLength...])
        if let bad = response.first(where: { control.contains($0) }) {
            throw CLIError("token id \(bad) is a control token; control tokens belong in the prompt")
        }
        let g = ScoringGroup(prompt: prompt, responses: [response], index: group, privileged: values)
        let r = try p.score([g], aggregator: agg, progress: progress, scoreInactive: true)[0][0]

        let names = p.names
        let num: (Float) -> String = JSONText.number
        // With a cross-tokenizer teacher the scores are per chunk (docs/cross-tokenizer.md):
        // "chunks" lists each chunk's [first, end) response positions; a chunk's log-probs sit
        // on its last position.
        let chunks = r.chunks.map { [("chunks", JSONText.array($0.map { JSONText.array([String(promptLength + $0.lowerBound), String(promptLength + $0.upperBound)]) }))] } ?? []
        var fields = [
            ("positions", JSONText.array((promptLength..<ids.count).map(String.init))),
            ("teachers", JSONText.object(names.indices.map { k in
                (names[k], JSONText.array((r.teacherLogprobs[k] ?? []).map(num)))
            })),
            ("reference", JSONText.array(r.logprobs.map(num))),
            ("reference_entropy", JSONText.array(r.entropy.map(num))),
            ("weights", JSONText.object(names.indices.map { (names[$0], JSONText.number(Float(r.weights[$0]))) })),
        ]
        if let tok {
            fields += [
                ("text", JSONText.string(TextOutput.text(response, tok))),
                ("full_text", JSONText.string(TextOutput.text(ids, tok))),
                ("token_strings", TextOutput.tokenStrings(response, tok)),
            ]
        }
        emit(JSONText.object(fields + chunks))
    }
}
