import ChorusCore
import ChorusModel
import ChorusTeachers
import ChorusTensor
import Foundation

/// What `chorus serve` answers, apart from the HTTP transport: vLLM's prompt-logprobs subset
/// of `/v1/completions`, `/v1/models` and `/health`, over one checkpoint.
///
/// `POST /v1/completions` with `{"prompt": [ids], "prompt_logprobs": k, "max_tokens": 1}`
/// answers as vLLM does: `choices[0].prompt_logprobs` has one entry per prompt token, the
/// first null, each mapping a token id (as a string) to `{"logprob", "rank", "decoded_token"}`
/// for the k most likely tokens and the prompt token itself (with its rank in the full
/// distribution when it is outside them). Nothing is generated (`text` is "", `usage` counts no
/// completion tokens): the server scores prompts. Log-probs are those of the checkpoint's
/// forward in f32, the same computation (`CheckpointTeacher`) a local teacher runs.
///
/// Errors answer vLLM's shape, `{"object": "error", "message", "type", "param": null, "code"}`:
/// 400 for a malformed body or a bad prompt (ids outside the vocabulary, longer than
/// `max_position_embeddings`, k above `maxLogprobs`), 401 without the key, 404 for an unknown
/// path or model, 405 for a wrong method, 413 for a body over `maxBodyBytes`, 429 when
/// `maxPending` requests are already waiting or running.
public final class CompletionService {
    /// Limits and identity of a server.
    public struct Options: Sendable {
        /// The model name `/v1/models` lists and requests may name.
        public var servedName: String
        /// When set, every endpoint but `/health` needs `Authorization: Bearer KEY`.
        public var apiKey: String?
        /// The largest `prompt_logprobs` accepted (vLLM's `--max-logprobs`, default 20).
        public var maxLogprobs: Int
        /// The largest request body in bytes (a longer one gets 413 before it is read).
        public var maxBodyBytes: Int
        /// Completions waiting or running at once; one more gets 429. With `maxBodyBytes`, this
        /// bounds the memory held by requests (maxPending · maxBodyBytes plus one forward).
        public var maxPending: Int

        public init(servedName: String, apiKey: String? = nil, maxLogprobs: Int = 20, maxBodyBytes: Int = 8 << 20,
                    maxPending: Int = 64) {
            self.servedName = servedName
            self.apiKey = apiKey
            self.maxLogprobs = maxLogprobs
            self.maxBodyBytes = maxBodyBytes
            self.maxPending = maxPending
        }
    }

    /// An HTTP answer: status and JSON body.
    public struct Response: Sendable {
        public var status: Int
        public var body: Data
        public init(status: Int, body: Data) {
            self.status = status
            self.body = body
        }
    }

    public let options: Options
    /// The checkpoint; used from `queue` only (one forward at a time, each using every core).
    let teacher: CheckpointTeacher
    let config: ModelConfig
    /// id -> token text for `decoded_token` (nil entries and no tokenizer: "").
    let tokens: [String?]
    /// The queue completions run on, one after another (public so tests can hold it).
    public let queue = DispatchQueue(label: "chorus-serve.forward")
    private let lock = NSLock()
    private var pending = 0

    /// A service over the checkpoint in `directory` (config.json and tokenizer.json read now,
    /// the weights on the first request, or now with `loadWeights`).
    public init(directory: URL, options: Options, loadWeights: Bool = true) throws {
        teacher = try CheckpointTeacher(name: options.servedName, directory: directory)
        config = try ModelConfig(contentsOf: directory.appendingPathComponent("config.json"))
        let tok = directory.appendingPathComponent("tokenizer.json")
        tokens = FileManager.default.fileExists(atPath: tok.path) ? try TokenVocabulary(contentsOf: tok).tokens : []
        self.options = options
        if loadWeights { _ = try teacher.forward(ScoringGroup(prompt: [0], responses: [[0]])) }
    }

    /// A service over a model in memory (tests).
    public init(model: TransformerModel, options: Options, tokens: [String?] = []) {
        teacher = CheckpointTeacher(name: options.servedName, model: model)
        config = model.config
        self.tokens = tokens
        self.options = options
    }

    // MARK: - Routing

    /// Whether the request may proceed: `/health` always, the rest only with the key.
    public func authorized(path: String, authorization: String?) -> Bool {
        guard let key = options.apiKey, path != "/health" else { return true }
        guard let a = authorization else { return false }
        return constantTimeEqual(Array(a.utf8), Array("Bearer \(key)".utf8))
    }

    /// Answers a request that needs no forward, or nil for a completion, which the caller runs
    /// through `admit` / `complete` (off the network threads).
    public func route(method: String, path: String, authorization: String?) -> Response? {
        let p = path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? path
        let known = ["/health": "GET", "/v1/models": "GET", "/v1/completions": "POST"]
        guard let m = known[p] else { return error(404, "NotFoundError", "no route \(p) (this server has /v1/completions, /v1/models, /health)") }
        if method != m && !(method == "HEAD" && m == "GET") {
            return error(405, "MethodNotAllowed", "\(p) takes \(m), not \(method)")
        }
        if !authorized(path: p, authorization: authorization) {
            return error(401, "Unauthorized", authorization == nil ? "missing Authorization: Bearer key" : "wrong API key")
        }
        switch p {
        case "/health": return Response(status: 200, body: Data())
        case "/v1/models":
            let model = JSONText.object([("id", JSONText.string(options.servedName)), ("object", "\"model\""),
                                         ("created", "\(Int(Date().timeIntervalSince1970))"), ("owned_by", "\"chorus\""),
                                         ("max_model_len", "\(config.maxPositionEmbeddings)")])
            return Response(status: 200, body: Data(JSONText.object([("object", "\"list\""), ("data", "[\(model)]")]).utf8))
        default: return nil
        }
    }

    /// Takes a pending slot; false (answer 429) when `maxPending` are taken.
    public func admit() -> Bool {
        lock.lock(); defer { lock.unlock() }
        if pending >= options.maxPending { return false }
        pending += 1
        return true
    }

    /// Completions admitted and not yet answered.
    public var pendingCount: Int {
        lock.lock(); defer { lock.unlock() }
        return pending
    }

    /// Gives back a slot taken by `admit`.
    public func release() {
        lock.lock(); pending -= 1; lock.unlock()
    }

    /// The 429 answer.
    public func busy() -> Response {
        error(429, "TooManyRequests", "\(options.maxPending) requests are already waiting or running; retry later")
    }

    /// The 413 answer.
    public func tooLarge() -> Response {
        error(413, "PayloadTooLarge", "request body over \(options.maxBodyBytes) bytes")
    }

    // MARK: - Completions

    /// Answers one `/v1/completions` body. Runs the forward on the calling thread: the server
    /// calls it on `queue`.
    public func complete(body: Data) -> Response {
        let req: [String: Any]
        do {
            guard let o = try JSONSerialization.jsonObject(with: body) as? [String: Any] else {
                return badRequest("the body must be a JSON object")
            }
            req = o
        } catch {
            return badRequest("malformed JSON body")
        }
        if let m = req["model"], !(m is NSNull) {
            guard let s = m as? String else { return badRequest("model must be a string") }
            if s != options.servedName { return self.error(404, "NotFoundError", "The model `\(s)` does not exist.") }
        }
        guard let raw = req["prompt"] as? [Any], !raw.isEmpty else {
            return badRequest("prompt must be a non-empty list of token ids (this server does not tokenize text)")
        }
        var ids: [Int] = []
        ids.reserveCapacity(raw.count)
        for (i, v) in raw.enumerated() {
            guard let id = RemoteWire.integer(v) else {
                return badRequest("prompt[\(i)] is not an integer token id")
            }
            if id < 0 || id >= config.vocabSize {
                return badRequest("prompt[\(i)] = \(id) is outside the vocabulary [0, \(config.vocabSize))")
            }
            ids.append(id)
        }
        if ids.count > config.maxPositionEmbeddings {
            return badRequest("context too long: \(ids.count) tokens, the model's maximum is \(config.maxPositionEmbeddings)")
        }
        var k: Int?
        if let v = req["prompt_logprobs"], !(v is NSNull) {
            guard let i = RemoteWire.integer(v), i >= 0 else {
                return badRequest("prompt_logprobs must be a non-negative integer")
            }
            if i > options.maxLogprobs {
                return badRequest("Requested prompt logprobs of \(i), which is greater than max allowed: \(options.maxLogprobs)")
            }
            k = i
        }
        if let v = req["max_tokens"], !(v is NSNull) {
            guard let i = RemoteWire.integer(v), i == 0 || i == 1 else {
                return badRequest("max_tokens must be 0 or 1: this server scores prompts and generates nothing")
            }
        }
        if let v = req["stream"] as? Bool, v { return badRequest("stream is not supported") }

        var promptLogprobs = "null"
        if let k {
            do { promptLogprobs = try scorePrompt(ids, topK: k) } catch {
                return self.error(500, "InternalServerError", "\(error)")
            }
        }
        let choice = JSONText.object([("index", "0"), ("text", "\"\""), ("logprobs", "null"), ("finish_reason", "\"length\""),
                                      ("stop_reason", "null"), ("prompt_logprobs", promptLogprobs)])
        let usage = JSONText.object([("prompt_tokens", "\(ids.count)"), ("completion_tokens", "0"), ("total_tokens", "\(ids.count)")])
        let out = JSONText.object([("id", JSONText.string("cmpl-\(UUID().uuidString.lowercased())")), ("object", "\"text_completion\""),
                                   ("created", "\(Int(Date().timeIntervalSince1970))"), ("model", JSONText.string(options.servedName)),
                                   ("choices", "[\(choice)]"), ("usage", usage)])
        return Response(status: 200, body: Data(out.utf8))
    }

    /// `prompt_logprobs` JSON for `ids`: null, then per position t >= 1 the top k of
    /// p(· | ids[<t]) and ids[t] with their log-probs, ranks (1 = most likely) and text.
    func scorePrompt(_ ids: [Int], topK k: Int) throws -> String {
        var out = "[null"
        guard ids.count >= 2 else { return out + "]" }
        let V = config.vocabSize
        let response = Array(ids[1...])
        let rows = try teacher.rows(for: ScoringGroup(prompt: [ids[0]], responses: [response]), topK: k)
        let chunk = 64
        var buffer = [Float](repeating: 0, count: min(chunk, response.count) * V)
        var t0 = 0
        while t0 < response.count {
            let m = min(chunk, response.count - t0)
            let scores = try buffer.withUnsafeMutableBufferPointer { b in
                try rows.rows(response: 0, positions: t0..<(t0 + m), into: b.baseAddress!)
            }
            for i in 0..<m {
                let target = response[t0 + i], s = scores[i]
                var entries: [(Int, Float, Int)] = zip(s.topIds, s.topLogprobs).enumerated().map { (Int($1.0), $1.1, $0 + 1) }
                if !entries.contains(where: { $0.0 == target }) {
                    // Rank in the full row: 1 + the number of tokens more likely.
                    let lp = buffer[i * V + target]
                    var above = 0
                    for v in 0..<V where buffer[i * V + v] > lp { above += 1 }
                    entries.append((target, s.logprob, above + 1))
                }
                out += ","
                out += JSONText.object(entries.map { id, lp, rank in
                    (String(id), JSONText.object([("logprob", JSONText.number(lp)), ("rank", "\(rank)"),
                                                  ("decoded_token", JSONText.string(id < tokens.count ? tokens[id] ?? "" : ""))]))
                })
            }
            t0 += m
        }
        return out + "]"
    }

    // MARK: - Errors

    func badRequest(_ message: String) -> Response { error(400, "BadRequestError", message) }

    /// vLLM's error body.
    public func error(_ status: Int, _ type: String, _ message: String) -> Response {
        let body = JSONText.object([("object", "\"error\""), ("message", JSONText.string(message)), ("type", JSONText.string(type)),
                                    ("param", "null"), ("code", "\(status)")])
        return Response(status: status, body: Data(body.utf8))
    }
}

/// Byte-wise equality whose time does not depend on where the first difference is.
func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    var diff = UInt8(a.count == b.count ? 0 : 1)
    for i in 0..<max(a.count, b.count) {
        diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
    }
    return diff == 0
}

/// Sizes the kernel worker pool (nil: every core) before the first forward.
public func configureThreads(_ threads: Int?) { Parallel.configure(threads: threads) }

/// `s` as a JSON string literal.
public func jsonString(_ s: String) -> String { JSONText.string(s) }
