import ChorusConfig
import Foundation

/// The manifest settings of a remote teacher: a model served by vLLM or SGLang (or by
/// `chorus serve`, which speaks vLLM's subset), scored over HTTP.
///
/// ```toml
/// [[teacher]]
/// name = "big"
/// kind = "vllm"                        # or "sglang"
/// url = "http://gpu-box:8000"          # the server's base URL (no /v1)
/// model = "Qwen/Qwen3-8B"              # the served model name (vLLM: required)
/// tokenizer = "big/tokenizer.json"     # the teacher's tokenizer, for the vocabulary check
/// api_key_env = "VLLM_API_KEY"         # optional: the environment variable holding the key
/// top_k = 20                           # optional: log-probs asked per position (vLLM caps at 20
///                                      #   unless started with --max-logprobs)
/// vocab_size = 151936                  # optional: default config.json beside the tokenizer,
///                                      #   else the tokenizer's number of ids
/// timeout = 120                        # optional: seconds per request
/// retries = 4                          # optional: retries of a failed request (backoff 0.25 s · 2^i)
/// concurrency = 8                      # optional: requests in flight
/// ```
/// The key itself never sits in a manifest or a run directory: only the variable's name.
public struct RemoteSpec: Sendable, Equatable {
    /// The server's base URL, without a trailing slash.
    public var url: String
    /// The served model name (sent as `model`; nil: not sent, SGLang only).
    public var model: String?
    /// The teacher's tokenizer.json (absolute).
    public var tokenizer: URL
    /// The environment variable holding the bearer key, if the server wants one.
    public var apiKeyEnvironment: String?
    /// Log-probs asked per position (the top-k that rebuilds the teacher's rows).
    public var topK: Int
    /// The teacher's vocabulary size V, if written.
    public var vocabularySize: Int?
    /// Seconds a request may wait for its answer.
    public var timeout: Double
    /// Times a failed request is sent again (unreachable server, timeout, 429, 5xx).
    public var retries: Int
    /// Requests in flight at once.
    public var concurrency: Int

    public init(url: String, model: String?, tokenizer: URL, apiKeyEnvironment: String? = nil, topK: Int = 20,
                vocabularySize: Int? = nil, timeout: Double = 120, retries: Int = 4, concurrency: Int = 8) {
        self.url = url
        self.model = model
        self.tokenizer = tokenizer
        self.apiKeyEnvironment = apiKeyEnvironment
        self.topK = topK
        self.vocabularySize = vocabularySize
        self.timeout = timeout
        self.retries = retries
        self.concurrency = concurrency
    }

    /// Reads the remote keys of a `[[teacher]]` table: nil for a local kind, which then may not
    /// carry them (`finish()` refuses them as unknown keys).
    init?(table t: ConfigTable, kind: TeacherKind, base: URL) throws {
        guard kind == .vllm || kind == .sglang else { return nil }
        let u = try t.required("url", try t.string("url"))
        guard let comps = URLComponents(string: u), let scheme = comps.scheme?.lowercased(), scheme == "http" || scheme == "https",
              let host = comps.host, !host.isEmpty, comps.query == nil else {
            throw t.error("url", "\"\(u)\" is not an http(s) base URL such as http://127.0.0.1:8000")
        }
        url = u.hasSuffix("/") ? String(u.dropLast()) : u
        model = try t.string("model")
        if kind == .vllm, model == nil { throw t.error("model", "missing required key (the served model name)") }
        if let m = model, m.isEmpty { throw t.error("model", "must be a non-empty string") }
        let tok = try t.required("tokenizer", try t.string("tokenizer"))
        if tok.isEmpty { throw t.error("tokenizer", "must be a non-empty string (a tokenizer.json file)") }
        tokenizer = URL(fileURLWithPath: tok, relativeTo: base).standardizedFileURL
        apiKeyEnvironment = try t.string("api_key_env")
        if let e = apiKeyEnvironment, e.isEmpty || e.contains(where: { !($0.isLetter || $0.isNumber || $0 == "_") }) {
            throw t.error("api_key_env", "\"\(e)\" is not an environment variable name (the key itself never goes in a manifest)")
        }
        topK = try t.int("top_k", min: 1, max: 1 << 20) ?? 20
        vocabularySize = try t.int("vocab_size", min: 1, max: 1 << 24)
        timeout = try t.double("timeout", min: 0.001, max: 86_400) ?? 120
        retries = try t.int("retries", min: 0, max: 20) ?? 4
        concurrency = try t.int("concurrency", min: 1, max: 256) ?? 8
    }
}
