import ChorusCore
import Foundation

/// One generated problem: the prompt text and its exact answer (the worked form the model must
/// write, e.g. the reversed digits of a sum).
public struct Problem: Sendable, Equatable, Hashable {
    /// The prompt, e.g. `"237+682="`.
    public var prompt: String
    /// The answer that earns reward 1 under `ExactMatch`, e.g. `"919"`.
    public var answer: String
    public init(prompt: String, answer: String) {
        self.prompt = prompt
        self.answer = answer
    }

    /// The problem as a prompt-file record (`line` is its 1-based index, for messages).
    public func record(line: Int) -> PromptRecord { PromptRecord(prompt: prompt, answer: answer, line: line) }
}

/// A benchmark, a mixture or a generation request that cannot be used. One line each, naming the
/// argument (benchmark name, weight, count) at fault.
public enum BenchmarkError: Error, CustomStringConvertible, Equatable {
    /// No benchmark of that name; lists the known names.
    case unknown(name: String, known: [String])
    /// A `NAME[:WEIGHT]` specification that does not parse.
    case badSpec(spec: String, reason: String)
    /// A mixture weight that is not finite or negative.
    case badWeight(name: String, weight: Double)
    /// Every weight of the mixture is zero.
    case allWeightsZero(names: [String])
    /// A mixture with no benchmark.
    case empty
    /// The same benchmark twice in one mixture.
    case duplicate(name: String)
    /// A problem count below 1 or above the cap.
    case badCount(count: Int, limit: Int)
    /// More eval problems asked of a benchmark than its fixed eval split holds.
    case evalExhausted(name: String, size: Int, want: Int)

    public var description: String {
        switch self {
        case let .unknown(n, known): return "unknown benchmark '\(n)' (known: \(known.joined(separator: ", ")))"
        case let .badSpec(s, why): return "benchmark '\(s)': \(why) (expected NAME or NAME:WEIGHT, e.g. add3:0.7)"
        case let .badWeight(n, w): return "benchmark '\(n)': weight must be a finite number >= 0, got \(w)"
        case let .allWeightsZero(ns): return "benchmark weights are all zero (\(ns.joined(separator: ", "))): at least one must be > 0"
        case .empty: return "no benchmark given"
        case let .duplicate(n): return "benchmark '\(n)' given twice; give each once (with a weight)"
        case let .badCount(c, limit): return "count must be in 1...\(limit), got \(c)"
        case let .evalExhausted(n, size, want): return "benchmark '\(n)': the eval split holds \(size) problems, fewer than the \(want) asked for"
        }
    }
}

/// A named, procedurally generated, verifiable task: every problem is drawn from a seeded
/// `ChorusRNG`, so a (benchmark, split, seed, count) names the same problems on every machine.
///
/// Splits: `eval` is a fixed set of `evalSize` distinct problems drawn from a seed derived from
/// the name alone (the `seed` argument is ignored); `train` is an endless stream from the user's
/// seed that never yields a prompt of the eval split (such draws are skipped). Rewards are
/// `ExactMatch` on `answer`.
///
/// The built-in benchmarks (`Benchmark.all`), formats fixed byte for byte:
/// - `add3` (in-distribution): `"\(a)+\(b)="`, a, b uniform in 100...999; the answer is the
///   decimal digits of a+b reversed (least significant first, the order a carry is computed):
///   `"237+682="` -> `"919"`, `"967+921="` -> `"8881"`.
/// - `add4` (out-of-distribution): the same with a, b in 1000...9999.
/// - `max3` (retention): `"max \(a) \(b)="`, a, b in 100...999; the answer is `String(max(a, b))`
///   (not reversed): a second skill that on-policy distillation on `add3` does not train.
/// - `rev` (retention): `"rev \(w)="`, w 3 to 5 letters a...z; the answer is w backwards
///   (`"rev bksh="` -> `"hskb"`). The bundled student knows it; its answers use letter tokens, so
///   the demo can tell forgetting from a digit habit leaking across tasks.
public struct Benchmark: Sendable {
    /// What a benchmark measures in the demo.
    public enum Role: String, Sendable, CaseIterable {
        /// The skill that distillation trains.
        case inDistribution = "in-distribution"
        /// A harder variant of it that training never shows.
        case outOfDistribution = "out-of-distribution"
        /// A second skill the student already has and training does not touch (forgetting shows here).
        case retention
    }

    /// Which problems: the fixed evaluation set or the training stream that avoids it.
    public enum Split: String, Sendable, CaseIterable {
        case train, eval
    }

    /// The name used on the command line and in run files (`add3`).
    public let name: String
    /// One sentence: what a problem looks like.
    public let description: String
    /// In-distribution, out-of-distribution or retention.
    public let role: Role
    /// Problems in the eval split.
    public let evalSize: Int
    /// Draws one problem (any, eval prompts included).
    let draw: @Sendable (inout ChorusRNG) -> Problem

    /// Most problems one request may generate (`chorus tasks generate --count`).
    public static let maxCount = 10_000_000

    /// `add3`, `add4`, `max3`, `rev`.
    public static let all: [Benchmark] = [
        Benchmark(name: "add3", description: "3-digit addition \"a+b=\" (a, b in 100...999); answer: the digits of a+b reversed",
                  role: .inDistribution, evalSize: 200) { rng in addition(&rng, low: 100, high: 999) },
        Benchmark(name: "add4", description: "4-digit addition \"a+b=\" (a, b in 1000...9999); answer: the digits of a+b reversed",
                  role: .outOfDistribution, evalSize: 200) { rng in addition(&rng, low: 1000, high: 9999) },
        Benchmark(name: "max3", description: "the larger of two 3-digit numbers \"max a b=\" (a, b in 100...999); answer: max(a, b)",
                  role: .retention, evalSize: 200) { rng in
            let a = uniformInt(&rng, 100, 999), b = uniformInt(&rng, 100, 999)
            return Problem(prompt: "max \(a) \(b)=", answer: String(max(a, b)))
        },
        Benchmark(name: "rev", description: "reverse a word of 3 to 5 lowercase letters \"rev w=\"; answer: w backwards",
                  role: .retention, evalSize: 200) { rng in
            let n = uniformInt(&rng, 3, 5)
            var w = ""
            for _ in 0..<n { w.unicodeScalars.append(Unicode.Scalar(UInt8(97 + uniformInt(&rng, 0, 25)))) }
            return Problem(prompt: "rev \(w)=", answer: String(w.reversed()))
        },
    ]

    /// The names of `all`, in order.
    public static var names: [String] { all.map(\.name) }

    /// The benchmark called `name`; throws `.unknown` listing the known names.
    public static func named(_ name: String) throws -> Benchmark {
        guard let b = all.first(where: { $0.name == name }) else { throw BenchmarkError.unknown(name: name, known: names) }
        return b
    }

    /// Creates a benchmark from a problem generator (tests, new tasks).
    public init(name: String, description: String, role: Role, evalSize: Int = 200,
                draw: @escaping @Sendable (inout ChorusRNG) -> Problem) {
        self.name = name
        self.description = description
        self.role = role
        self.evalSize = evalSize
        self.draw = draw
    }

    /// The fixed eval split: `evalSize` distinct problems drawn from `nameSeed(name)`.
    public var evalProblems: [Problem] {
        var rng = ChorusRNG(seed: Self.nameSeed(name))
        var seen = Set<String>(), out: [Problem] = []
        out.reserveCapacity(evalSize)
        while out.count < evalSize {
            let p = draw(&rng)
            if seen.insert(p.prompt).inserted { out.append(p) }
        }
        return out
    }

    /// The endless training stream from `seed` (eval prompts skipped). Stream `seed` of a
    /// benchmark does not depend on any other benchmark.
    public func trainStream(seed: UInt64) -> ProblemStream {
        ProblemStream(rng: ChorusRNG(seed: seed ^ Self.nameSeed(name)), excluded: Set(evalProblems.map(\.prompt)), draw: draw)
    }

    /// The first `count` problems of a split (`count` nil: the whole eval split; required for
    /// train). `seed` picks the train stream and is ignored for eval. Throws on a count outside
    /// 1...`maxCount` or beyond the eval split.
    public func problems(split: Split, count: Int? = nil, seed: UInt64 = 0) throws -> [Problem] {
        switch split {
        case .eval:
            let n = count ?? evalSize
            if n < 1 || n > Self.maxCount { throw BenchmarkError.badCount(count: n, limit: Self.maxCount) }
            if n > evalSize { throw BenchmarkError.evalExhausted(name: name, size: evalSize, want: n) }
            return Array(evalProblems.prefix(n))
        case .train:
            let n = count ?? 0
            if n < 1 || n > Self.maxCount { throw BenchmarkError.badCount(count: n, limit: Self.maxCount) }
            var s = trainStream(seed: seed)
            return (0..<n).map { _ in s.next()! }
        }
    }

    /// `problems(...)` as a prompt dataset named after the benchmark (its `name` is `self.name`,
    /// so `chorus eval` and run-file eval rows key it by the benchmark's name).
    public func dataset(split: Split, count: Int? = nil, seed: UInt64 = 0) throws -> PromptDataset {
        let ps = try problems(split: split, count: count, seed: seed)
        return try PromptDataset(records: ps.enumerated().map { $1.record(line: $0 + 1) }, path: name)
    }

    /// A 64-bit seed from a name (FNV-1a over its UTF-8 bytes): the eval split's seed, and what
    /// keeps two benchmarks' train streams apart under one user seed.
    public static func nameSeed(_ name: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in name.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }
}

/// A benchmark's training stream: problems drawn in order from a seeded generator, skipping
/// any whose prompt is in the eval split. Never ends.
public struct ProblemStream: IteratorProtocol, Sendable {
    var rng: ChorusRNG
    let excluded: Set<String>
    let draw: @Sendable (inout ChorusRNG) -> Problem

    /// The next training problem.
    public mutating func next() -> Problem? {
        while true {
            let p = draw(&rng)
            if !excluded.contains(p.prompt) { return p }
        }
    }
}

/// Benchmarks mixed by weight: each problem comes from benchmark i with probability
/// w_i / Σw, the choice drawn from a seeded generator, so the mixture is interleaved and
/// reproducible. A mixture of one benchmark yields exactly that benchmark's split.
public struct BenchmarkMixture: Sendable {
    /// The benchmarks and their weights (finite, ≥ 0, not all 0), in the order given.
    public let components: [(benchmark: Benchmark, weight: Double)]

    /// Validates the weights and that no benchmark appears twice.
    public init(_ components: [(benchmark: Benchmark, weight: Double)]) throws {
        if components.isEmpty { throw BenchmarkError.empty }
        var seen = Set<String>()
        for c in components {
            if !seen.insert(c.benchmark.name).inserted { throw BenchmarkError.duplicate(name: c.benchmark.name) }
            if !c.weight.isFinite || c.weight < 0 { throw BenchmarkError.badWeight(name: c.benchmark.name, weight: c.weight) }
        }
        if components.allSatisfy({ $0.weight == 0 }) { throw BenchmarkError.allWeightsZero(names: components.map(\.benchmark.name)) }
        self.components = components
    }

    /// Parses `NAME` or `NAME:WEIGHT` specifications (weight 1 when omitted), e.g.
    /// `["add3:3", "max3:1"]`.
    public init(specs: [String]) throws {
        try self.init(specs.map { spec in
            let parts = spec.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            let name = parts[0].trimmingCharacters(in: .whitespaces)
            if name.isEmpty { throw BenchmarkError.badSpec(spec: spec, reason: "no name") }
            let b = try Benchmark.named(name)
            guard parts.count == 2 else { return (b, 1.0) }
            let w = parts[1].trimmingCharacters(in: .whitespaces)
            guard let weight = Double(w) else { throw BenchmarkError.badSpec(spec: spec, reason: "weight '\(w)' is not a number") }
            return (b, weight)
        })
    }

    /// `count` problems of `split`, each tagged with its benchmark's name. Train: each
    /// benchmark's own stream from `seed`, picked by a generator seeded with `seed`. Eval: each
    /// benchmark's eval split in order, picked the same way; throws `.evalExhausted` when a
    /// benchmark's eval split runs out.
    public func problems(split: Benchmark.Split, count: Int, seed: UInt64) throws -> [(benchmark: String, problem: Problem)] {
        var out: [(benchmark: String, problem: Problem)] = []
        out.reserveCapacity(min(count, 1 << 20))
        try forEach(split: split, count: count, seed: seed) { i, p in out.append((components[i].benchmark.name, p)) }
        return out
    }

    /// The problems of `problems(split:count:seed:)` handed one by one to `body` with the index
    /// of their component, without collecting them (what a large file is written from).
    public func forEach(split: Benchmark.Split, count: Int, seed: UInt64, _ body: (Int, Problem) throws -> Void) throws {
        if count < 1 || count > Benchmark.maxCount { throw BenchmarkError.badCount(count: count, limit: Benchmark.maxCount) }
        let active = components.indices.filter { components[$0].weight > 0 }
        let total = active.reduce(0) { $0 + components[$1].weight }
        var picker = ChorusRNG(seed: seed)
        var streams = split == .train ? active.map { components[$0].benchmark.trainStream(seed: seed) } : []
        let evalSets = split == .eval ? active.map { components[$0].benchmark.evalProblems } : []
        var used = [Int](repeating: 0, count: active.count)
        for _ in 0..<count {
            var a = active.count - 1
            if active.count > 1 {
                var u = picker.uniformDouble() * total
                for (j, c) in active.enumerated() {
                    if u < components[c].weight { a = j; break }
                    u -= components[c].weight
                }
            }
            switch split {
            case .train:
                try body(active[a], streams[a].next()!)
            case .eval:
                if used[a] == evalSets[a].count {
                    throw BenchmarkError.evalExhausted(name: components[active[a]].benchmark.name, size: evalSets[a].count, want: used[a] + 1)
                }
                try body(active[a], evalSets[a][used[a]])
            }
            used[a] += 1
        }
    }

    /// The problems as JSONL bytes, one `{"prompt":P,"completion":A,"answer":A}` line each: a
    /// file `chorus sft` trains on (completion) and `chorus eval` / `chorus train` read (answer).
    public func jsonl(split: Benchmark.Split, count: Int, seed: UInt64) throws -> [UInt8] {
        try jsonlCounted(split: split, count: count, seed: seed).bytes
    }

    /// The JSONL bytes and how many problems each component gave (in component order).
    func jsonlCounted(split: Benchmark.Split, count: Int, seed: UInt64) throws -> (bytes: [UInt8], counts: [Int]) {
        var bytes: [UInt8] = [], counts = [Int](repeating: 0, count: components.count)
        bytes.reserveCapacity(min(count, 1 << 20) * 48)
        try forEach(split: split, count: count, seed: seed) { i, p in
            counts[i] += 1
            let a = JSONText.string(p.answer)
            bytes += JSONText.object([("prompt", JSONText.string(p.prompt)), ("completion", a), ("answer", a)]).utf8
            bytes.append(0x0A)
        }
        return (bytes, counts)
    }
}

extension BenchmarkMixture {
    /// Generates `jsonl(split:count:seed:)` and writes it atomically to `url` (a reader sees no
    /// file or the complete one). Returns how many problems each benchmark gave, in component
    /// order. Throws `InputFileError` naming the file when its directory is missing or the
    /// path is a directory, before anything is generated.
    @discardableResult
    public func write(split: Benchmark.Split, count: Int, seed: UInt64, to url: URL) throws -> [(benchmark: String, count: Int)] {
        var isDir: ObjCBool = false
        let dir = url.deletingLastPathComponent().path
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue {
            throw InputFileError(path: url.path, problem: "is a directory")
        }
        if !FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) || !isDir.boolValue {
            throw InputFileError(path: url.path, problem: "directory \(dir) does not exist")
        }
        let (bytes, counts) = try jsonlCounted(split: split, count: count, seed: seed)
        try AtomicFile.write(bytes, to: url)
        return zip(components, counts).map { ($0.benchmark.name, $1) }
    }
}

/// A uniform integer in low...high, drawn with Lemire's unbiased multiply-and-reject from the
/// generator's raw 64-bit words (independent of the standard library's algorithm, so the
/// problems stay byte-identical across Swift versions).
@inline(__always)
func uniformInt(_ rng: inout ChorusRNG, _ low: Int, _ high: Int) -> Int {
    let bound = UInt64(high - low + 1)
    let threshold = (0 &- bound) % bound
    while true {
        let (hi, lo) = rng.next().multipliedFullWidth(by: bound)
        if lo >= threshold { return low + Int(hi) }
    }
}

/// `"a+b="` with a, b uniform in low...high; the answer is the digits of a+b reversed.
func addition(_ rng: inout ChorusRNG, low: Int, high: Int) -> Problem {
    let a = uniformInt(&rng, low, high), b = uniformInt(&rng, low, high)
    return Problem(prompt: "\(a)+\(b)=", answer: String(String(a + b).reversed()))
}
