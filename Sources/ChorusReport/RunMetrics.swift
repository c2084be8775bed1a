import ChorusCore
import Foundation

/// One logged value of a metric: the step and the value (NaN for `null` or a non-finite number,
/// drawn as a gap).
public struct MetricPoint: Equatable, Sendable {
    public var step: Int
    public var value: Double
    public init(step: Int, value: Double) { self.step = step; self.value = value }
}

/// A run directory's metrics.jsonl (and run.json) as the report reads them: every numeric field
/// of the step rows as a series over steps, and each eval row's `mean_at_k` / `best_at_k` per
/// benchmark as the series `eval/NAME/mean_at_k` and `eval/NAME/best_at_k`.
///
/// Reading is forgiving where a file is damaged (a run killed mid-write): a line that is not a
/// JSON object with an integer `step` is skipped and named in `notes`; only a run with no
/// readable row at all is an error.
public struct RunMetrics: Sendable {
    /// The run directory.
    public var directory: URL
    /// Series by metric name, each sorted by step (one point per step: the last row wins).
    public var series: [String: [MetricPoint]]
    /// k of each benchmark's mean@k / best@k (from the last eval row naming it).
    public var evalK: [String: Int]
    /// Selected run.json settings (kind, aggregator, seed, steps), as text, when present.
    public var settings: [String: String]
    /// What was skipped, one sentence each (already naming the file).
    public var notes: [String]
    /// The last step with a row (train or eval).
    public var lastStep: Int?
    /// The teachers with an aggregator-weight series (`weight/NAME`), in pool order (run.json's
    /// `teachers`, weakest first), then any others sorted; empty when the run logged none.
    public var weightTeachers: [String] = []

    /// The prefix of eval series names.
    public static let evalPrefix = "eval/"
    /// The prefix of the aggregator's per-teacher weight series (`weight/NAME`: the mean
    /// weight of teacher NAME in the step's references, Σ over teachers = 1).
    public static let weightPrefix = "weight/"

    /// Reads `directory`/metrics.jsonl and run.json. Throws `ReportError.unreadableRun` when
    /// metrics.jsonl is missing, unreadable or holds no readable row.
    public static func read(_ directory: URL) throws -> RunMetrics {
        let url = directory.appendingPathComponent("metrics.jsonl")
        let text: String
        do { text = try InputFile.readText(url.path) } catch let e as InputFileError {
            throw ReportError.unreadableRun(directory.path, e.problem)
        } catch { throw ReportError.unreadableRun(directory.path, "\(error)") }
        var out = RunMetrics(directory: directory, series: [:], evalK: [:], settings: [:], notes: [], lastStep: nil)
        var byName: [String: [Int: Double]] = [:]
        var bad: [Int] = []
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        var rows = 0
        for (i, raw) in lines.enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            guard let obj = (try? JSONSerialization.jsonObject(with: Data(line.utf8), options: [.fragmentsAllowed])) as? [String: Any],
                  let step = integer(obj["step"]), step >= 0 else {
                bad.append(i + 1)
                continue
            }
            rows += 1
            out.lastStep = max(out.lastStep ?? step, step)
            if let e = obj["eval"] as? [String: Any] {
                for (name, v) in e {
                    guard let d = v as? [String: Any] else { continue }
                    for key in ["mean_at_k", "best_at_k"] where d[key] != nil {
                        byName[evalPrefix + name + "/" + key, default: [:]][step] = number(d[key])
                    }
                    if let k = integer(d["k"]) { out.evalK[name] = k }
                }
                continue
            }
            for (key, v) in obj where key != "step" {
                // Numbers and nulls (a NaN the trainer wrote as null); strings and objects are not metrics.
                if v is NSNull { byName[key, default: [:]][step] = .nan; continue }
                guard let n = v as? NSNumber else { continue }
                byName[key, default: [:]][step] = number(n)
            }
        }
        if !bad.isEmpty {
            let torn = !text.hasSuffix("\n") && bad.last == lines.count
            let shown = bad.prefix(5).map(String.init).joined(separator: ", ") + (bad.count > 5 ? ", …" : "")
            out.notes.append("\(url.path): skipped \(bad.count) malformed line\(bad.count == 1 ? "" : "s") (line \(shown))"
                             + (torn ? "; the last line is incomplete, the run was probably stopped while writing it" : ""))
        }
        if rows == 0 { throw ReportError.unreadableRun(directory.path, "metrics.jsonl holds no readable row") }
        out.series = byName.mapValues { d in d.keys.sorted().map { MetricPoint(step: $0, value: d[$0]!) } }
        var poolOrder: [String] = []
        if let data = try? Data(contentsOf: directory.appendingPathComponent("run.json")),
           let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] {
            for key in ["kind", "aggregator", "seed", "steps"] {
                if let s = obj[key] as? String { out.settings[key] = s } else if let n = obj[key] as? NSNumber { out.settings[key] = n.stringValue }
            }
            poolOrder = (obj["teachers"] as? [Any])?.compactMap { $0 as? String } ?? []
        }
        let weighted = Set(out.series.keys.filter { $0.hasPrefix(weightPrefix) && $0.count > weightPrefix.count }
            .map { String($0.dropFirst(weightPrefix.count)) })
        var seen = Set<String>()
        out.weightTeachers = poolOrder.filter { weighted.contains($0) && seen.insert($0).inserted } + weighted.subtracting(poolOrder).sorted()
        return out
    }

    /// The series of `name`, empty when the run did not log it or logged only gaps.
    public func points(_ name: String) -> [MetricPoint] { series[name] ?? [] }

    /// The benchmarks of the eval rows, sorted.
    public var benchmarks: [String] {
        Set(series.keys.filter { $0.hasPrefix(Self.evalPrefix) }.map { k -> String in
            let rest = k.dropFirst(Self.evalPrefix.count)
            return String(rest[..<(rest.lastIndex(of: "/") ?? rest.endIndex)])
        }).sorted()
    }

    static func integer(_ v: Any?) -> Int? {
        guard let n = v as? NSNumber else { return nil }
        let d = n.doubleValue
        guard d.isFinite, d == d.rounded(), abs(d) < 1e15 else { return nil }
        return Int(d)
    }

    static func number(_ v: Any?) -> Double {
        guard let n = v as? NSNumber else { return .nan }
        let d = n.doubleValue
        return d.isFinite ? d : .nan
    }
}

/// Errors of the report (one line each).
public enum ReportError: Error, CustomStringConvertible, Equatable {
    /// A run directory without a readable metrics.jsonl.
    case unreadableRun(String, String)
    /// No run of any group could be read (each run's problem listed).
    case noReadableRuns([String])
    /// A path given to `chorus report` that is neither a run directory nor holds runs.
    case notRuns(String, String)
    /// An output path that must not be written.
    case badOutput(String, String)
    /// A malformed `--group NAME=DIR,...`.
    case badGroup(String)

    public var description: String {
        switch self {
        case let .unreadableRun(d, why): return "\(d): \(why)"
        case let .noReadableRuns(all): return "no run could be read: " + all.joined(separator: "; ")
        case let .notRuns(p, why): return "\(p): \(why)"
        case let .badOutput(p, why): return "\(p): \(why)"
        case let .badGroup(why): return "--group: \(why)"
        }
    }
}
