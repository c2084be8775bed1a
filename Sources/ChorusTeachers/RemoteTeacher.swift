import ChorusCache
import ChorusCore
import ChorusModel
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Errors of a remote teacher: each names the teacher and the URL it was talking to.
public enum RemoteTeacherError: Error, CustomStringConvertible, Equatable {
    /// `api_key_env` names a variable that is not set.
    case missingKey(teacher: String, variable: String)
    /// No connection (refused, reset, unknown host) after every attempt.
    case unreachable(teacher: String, url: String, reason: String, attempts: Int)
    /// No answer within the timeout, after every attempt.
    case timedOut(teacher: String, url: String, seconds: Double, attempts: Int)
    /// The server answered with an HTTP error status.
    case http(teacher: String, url: String, status: Int, message: String, hint: String)
    /// The answer is not what the protocol documents.
    case malformed(teacher: String, url: String, reason: String)

    public var description: String {
        func tries(_ n: Int) -> String { n == 1 ? "1 attempt" : "\(n) attempts" }
        switch self {
        case let .missingKey(t, v):
            return "teacher '\(t)': api_key_env names the environment variable \(v), which is not set"
        case let .unreachable(t, u, r, n): return "teacher '\(t)': POST \(u): server unreachable (\(r)) after \(tries(n))"
        case let .timedOut(t, u, s, n): return "teacher '\(t)': POST \(u): timed out, no answer within \(s) s (\(tries(n)))"
        case let .http(t, u, s, m, h):
            return "teacher '\(t)': POST \(u): HTTP \(s)\(m.isEmpty ? "" : ": " + m)\(h.isEmpty ? "" : " (" + h + ")")"
        case let .malformed(t, u, r): return "teacher '\(t)': POST \(u): malformed answer: \(r)"
        }
    }
}

/// A teacher served by an inference engine over HTTP: vLLM (`POST /v1/completions` with
/// `prompt_logprobs`, also what `chorus serve` speaks) or SGLang (`POST /generate` with
/// `return_logprob`).
///
/// Each response of a prompt group is one request, context + response token ids, with the
/// positions of the response read from the answer. A step's requests (all groups, all
/// responses) are sent together, up to `spec.concurrency` in flight. A request that finds the
/// server unreachable, times out, or gets 429 or 5xx is sent again after a backoff of
/// 0.25 s · 2^i (i = 0, 1, …), at most `spec.retries` times; any other 4xx and a malformed
/// answer fail at once. The server reports the top k log-probs and the sampled token's, so
/// the rows are rebuilt by `TopKApproximation` (exact on those entries, a uniform tail
/// elsewhere) and the entropy is that of the rebuilt row (docs/remote-teachers.md).
public final class RemoteTeacher: Teacher {
    /// The two wire protocols.
    public enum Wire: String, Sendable { case vllm, sglang }

    public let name: String
    public let wire: Wire
    public let spec: RemoteSpec
    public let vocabularySize: Int
    /// The endpoint every request goes to (`BASE/v1/completions` or `BASE/generate`).
    public let endpoint: URL
    /// The first backoff in seconds (doubles per retry, capped at 8 s).
    public var backoff: Double = 0.25
    let apiKey: String?
    let session: URLSession
    private var cachedFingerprint: TeacherFingerprint?

    /// A remote teacher; reads its key from `environment[spec.apiKeyEnvironment]` now.
    public init(name: String, wire: Wire, spec: RemoteSpec, vocabularySize: Int,
                environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        self.name = name
        self.wire = wire
        self.spec = spec
        self.vocabularySize = vocabularySize
        guard let base = URL(string: spec.url) else {
            throw RemoteTeacherError.malformed(teacher: name, url: spec.url, reason: "not a URL")
        }
        endpoint = base.appendingPathComponent(wire == .vllm ? "v1/completions" : "generate")
        if let v = spec.apiKeyEnvironment {
            guard let k = environment[v], !k.isEmpty else { throw RemoteTeacherError.missingKey(teacher: name, variable: v) }
            apiKey = k
        } else {
            apiKey = nil
        }
        let cfg = URLSessionConfiguration.ephemeral
        cfg.timeoutIntervalForRequest = spec.timeout
        cfg.timeoutIntervalForResource = spec.timeout
        cfg.httpMaximumConnectionsPerHost = spec.concurrency
        cfg.requestCachePolicy = .reloadIgnoringLocalCacheData
        session = URLSession(configuration: cfg)
    }

    deinit { session.finishTasksAndInvalidate() }

    /// The teacher's V: `vocab_size` of the manifest, else config.json beside the tokenizer,
    /// else the tokenizer's number of ids.
    public static func vocabularySize(_ spec: RemoteSpec) throws -> Int {
        if let v = spec.vocabularySize { return v }
        let cfg = spec.tokenizer.deletingLastPathComponent().appendingPathComponent("config.json")
        if FileManager.default.fileExists(atPath: cfg.path) { return try ModelConfig(contentsOf: cfg).vocabSize }
        return try TokenVocabulary(contentsOf: spec.tokenizer).tokens.count
    }

    public var isCacheable: Bool { true }

    /// SHA-256 over the tokenizer file and "kind", "url", "model", "top_k": the server's weights
    /// are out of reach, so the served model name stands for them (serve a changed model under a
    /// new name, or the cache hands out the old model's scores).
    public func fingerprint(memo: FingerprintMemo?) throws -> TeacherFingerprint {
        if let f = cachedFingerprint { return f }
        let strings = ["kind=\(wire.rawValue)", "url=\(spec.url)", "model=\(spec.model ?? "")", "top_k=\(spec.topK)"]
        let f = try memo.map { try $0.fingerprint(files: [spec.tokenizer], strings: strings) }
            ?? TeacherFingerprint.make(files: [spec.tokenizer], strings: strings)
        cachedFingerprint = f
        return f
    }

    public func context(for group: ScoringGroup) throws -> [Int] {
        if group.prompt.isEmpty { throw TeacherError.emptyPrompt(teacher: name) }
        return group.prompt
    }

    public func rows(for group: ScoringGroup, topK: Int) throws -> any TeacherRows {
        try rows(for: [group], topK: topK)[0]
    }

    /// Every response of every group, one request each, `spec.concurrency` in flight.
    public func rows(for groups: [ScoringGroup], topK: Int) throws -> [any TeacherRows] {
        var jobs: [(group: Int, ids: [Int], start: Int)] = []
        for (gi, g) in groups.enumerated() {
            let ctx = try context(for: g)
            for resp in g.responses {
                for t in ctx + resp where t < 0 || t >= vocabularySize {
                    throw TeacherError.tokenOutOfRange(teacher: name, token: t, vocabSize: vocabularySize)
                }
                jobs.append((gi, ctx + resp, ctx.count))
            }
        }
        let scores = try concurrentMap(jobs.count, limit: spec.concurrency) { j in
            try self.score(ids: jobs[j].ids, start: jobs[j].start)
        }
        var out: [any TeacherRows] = []
        var j = 0
        for g in groups {
            let s = Array(scores[j..<(j + g.responses.count)])
            j += g.responses.count
            out.append(RemoteRows(TopKRows(scores: s, targets: g.responses, vocabularySize: vocabularySize), topK: topK))
        }
        return out
    }

    /// The scores of positions start ..< ids.count of one sequence (one request).
    public func score(ids: [Int], start: Int) throws -> [PositionScore] {
        let body = try JSONSerialization.data(withJSONObject: RemoteWire.request(wire, ids: ids, topK: spec.topK, model: spec.model))
        let data = try post(body)
        let limit = RemoteTeacher.answerLimit(tokens: ids.count, topK: spec.topK)
        if data.count > limit {
            throw RemoteTeacherError.malformed(teacher: name, url: endpoint.absoluteString,
                                               reason: "answer of \(data.count) bytes is over the \(limit) bytes \(ids.count) tokens at top-k \(spec.topK) can need")
        }
        do {
            return try RemoteWire.parse(wire, data, ids: ids, start: start, topK: spec.topK, vocabularySize: vocabularySize)
        } catch let e as RemoteWire.Malformed {
            throw RemoteTeacherError.malformed(teacher: name, url: endpoint.absoluteString, reason: e.reason)
        }
    }

    /// The largest answer read for `tokens` prompt tokens at `topK`: 512 bytes per entry (an id,
    /// a log-prob, a rank and a decoded token of up to ~400 escaped bytes) plus 1 MiB, so that a
    /// broken or hostile server cannot hand the parser an unbounded document.
    public static func answerLimit(tokens: Int, topK: Int) -> Int { (1 << 20) + tokens * (topK + 2) * 512 }

    /// POSTs `body` to the endpoint and returns the 200 answer, retrying what may pass.
    func post(_ body: Data) throws -> Data {
        var attempt = 0
        while true {
            attempt += 1
            let failure: RemoteTeacherError
            let retryable: Bool
            switch send(body) {
            case let .answer(status, data):
                if status == 200 { return data }
                failure = .http(teacher: name, url: endpoint.absoluteString, status: status, message: RemoteWire.errorMessage(data),
                                hint: hint(status))
                retryable = status == 429 || status >= 500
            case .timedOut:
                failure = .timedOut(teacher: name, url: endpoint.absoluteString, seconds: spec.timeout, attempts: attempt)
                retryable = true
            case let .unreachable(reason):
                failure = .unreachable(teacher: name, url: endpoint.absoluteString, reason: reason, attempts: attempt)
                retryable = true
            }
            if !retryable || attempt > spec.retries { throw failure }
            Thread.sleep(forTimeInterval: min(8, backoff * Double(1 << min(attempt - 1, 10))))
        }
    }

    func hint(_ status: Int) -> String {
        guard status == 401 || status == 403 else { return "" }
        if let v = spec.apiKeyEnvironment { return "the server refused the key in $\(v)" }
        return "the server wants a key: name its environment variable in api_key_env"
    }

    enum Outcome { case answer(Int, Data), timedOut, unreachable(String) }

    /// One request, waited for (the pool's scoring is synchronous).
    func send(_ body: Data) -> Outcome {
        var req = URLRequest(url: endpoint, cachePolicy: .reloadIgnoringLocalCacheData, timeoutInterval: spec.timeout)
        req.httpMethod = "POST"
        req.httpBody = body
        req.setValue("application/json", forHTTPHeaderField: "Content-Type")
        if let k = apiKey { req.setValue("Bearer \(k)", forHTTPHeaderField: "Authorization") }
        final class Box: @unchecked Sendable { var outcome: Outcome = .timedOut }   // written once before signal
        let box = Box(), done = DispatchSemaphore(value: 0)
        let task = session.dataTask(with: req) { data, response, error in
            if let http = response as? HTTPURLResponse, error == nil {
                box.outcome = .answer(http.statusCode, data ?? Data())
            } else if let e = error as? URLError, e.code == .timedOut {
                box.outcome = .timedOut
            } else {
                let reason = (error as? URLError).map { "\($0.code.name)" } ?? error.map { "\($0.localizedDescription)" } ?? "no response"
                box.outcome = .unreachable(reason.replacingOccurrences(of: "\n", with: " "))
            }
            done.signal()
        }
        task.resume()
        // The session's own timeout should fire first; this guards against one that never does.
        if done.wait(timeout: .now() + spec.timeout + 5) == .timedOut {
            task.cancel()
            _ = done.wait(timeout: .now() + 5)
            return .timedOut
        }
        return box.outcome
    }
}

extension URLError.Code {
    /// A short name for error messages ("connection refused" rather than a number).
    var name: String {
        switch self {
        case .cannotConnectToHost: return "connection refused"
        case .networkConnectionLost: return "connection lost"
        case .cannotFindHost: return "unknown host"
        case .notConnectedToInternet: return "no network"
        case .timedOut: return "timed out"
        case .badServerResponse: return "bad server response"
        default: return "URL error \(rawValue)"
        }
    }
}

/// Rows of a remote answer: rebuilt from all k entries the server sent, while the scores they
/// hand out carry the `topK` the caller asked for (what a score cache records).
final class RemoteRows: TeacherRows {
    let inner: TopKRows
    let topK: Int
    init(_ inner: TopKRows, topK: Int) {
        self.inner = inner
        self.topK = topK
    }
    var isApproximate: Bool { true }
    func rows(response r: Int, positions: Range<Int>, into out: UnsafeMutablePointer<Float>?) throws -> [PositionScore] {
        try inner.rows(response: r, positions: positions, into: out).map { s in
            var t = s
            if t.topIds.count > topK {
                t.topIds = Array(t.topIds.prefix(topK))
                t.topLogprobs = Array(t.topLogprobs.prefix(topK))
            }
            return t
        }
    }
}

/// Runs `body(0..<n)` on up to `limit` threads and returns the results in order; the first
/// error (lowest index among those that failed) is thrown once every started item is done.
func concurrentMap<T>(_ n: Int, limit: Int, _ body: @escaping (Int) throws -> T) throws -> [T] {
    if n == 0 { return [] }
    let state = ConcurrentMapState<T>(n), group = DispatchGroup()
    for _ in 0..<max(1, min(limit, n)) {
        group.enter()
        DispatchQueue.global().async {
            defer { group.leave() }
            while true {
                state.lock.lock()
                let i = state.next
                let stop = i >= n || !state.errors.isEmpty
                state.next += 1
                state.lock.unlock()
                if stop { return }
                do {
                    let r = try body(i)
                    state.lock.lock(); state.results[i] = r; state.lock.unlock()
                } catch {
                    state.lock.lock(); state.errors.append((i, error)); state.lock.unlock()
                }
            }
        }
    }
    group.wait()
    if let e = state.errors.min(by: { $0.0 < $1.0 }) { throw e.1 }
    return state.results.map { $0! }
}

/// The shared state of `concurrentMap`; every field is read and written under `lock`.
final class ConcurrentMapState<T>: @unchecked Sendable {
    let lock = NSLock()
    var next = 0
    var results: [T?]
    var errors: [(Int, Error)] = []
    init(_ n: Int) { results = [T?](repeating: nil, count: n) }
}
