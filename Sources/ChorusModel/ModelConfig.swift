import ChorusCore
import ChorusTokenizer
import Foundation

/// The decoder-only architectures Chorus implements, keyed by config.json's `model_type`.
///
/// The three families share one transformer; their differences are flags (see `ModelConfig`):
/// Qwen2 adds biases to q/k/v, Qwen3 adds per-head RMSNorm on q and k and an explicit head_dim.
public enum ModelFamily: String, Codable, Sendable, CaseIterable {
    case llama, qwen2, qwen3
}

/// A Hugging Face `config.json` for llama, qwen2 and qwen3 models, validated.
///
/// Mirrors transformers' LlamaConfig / Qwen2Config / Qwen3Config defaults. Fields Chorus cannot
/// honour (rope scaling kinds, sliding windows, MoE, other activations) are refused by name in
/// `validate()` rather than ignored.
public struct ModelConfig: Sendable, Equatable {
    /// The architecture family (`model_type`).
    public var family: ModelFamily
    /// Vocabulary size V (rows of the embedding and LM head).
    public var vocabSize: Int
    /// Model width C.
    public var hiddenSize: Int
    /// MLP width I (gate/up output, down input).
    public var intermediateSize: Int
    /// Number of transformer blocks L.
    public var numLayers: Int
    /// Query heads Hq.
    public var numHeads: Int
    /// Key/value heads Hkv (GQA when < Hq; Hq must be a multiple).
    public var numKVHeads: Int
    /// Per-head dimension D (explicit in Qwen3; hidden/heads otherwise).
    public var headDim: Int
    /// RMSNorm epsilon.
    public var rmsNormEps: Float
    /// RoPE base θ.
    public var ropeTheta: Double
    /// Whether the LM head reuses the embedding matrix.
    public var tieWordEmbeddings: Bool
    /// Bias on the q/k/v projections (Qwen2 always; llama/qwen3 when `attention_bias`).
    public var qkvBias: Bool
    /// Bias on the output projection (llama/qwen3 `attention_bias`; never in Qwen2).
    public var oBias: Bool
    /// Per-head RMSNorm on q and k before RoPE (Qwen3).
    public var qkNorm: Bool
    /// Maximum positions the checkpoint was trained for (informational).
    public var maxPositionEmbeddings: Int
    /// Beginning/end of sequence ids, if the config names them.
    public var bosTokenId: Int?
    public var eosTokenIds: [Int]
    /// The declared parameter dtype (`torch_dtype` or `dtype`), informational.
    public var dtype: String?

    /// Query-heads per KV head (GQA group size).
    public var kvMul: Int { numHeads / numKVHeads }
    /// Width of the fused QKV projection output: (Hq + 2 Hkv) D.
    public var qkvDim: Int { (numHeads + 2 * numKVHeads) * headDim }
    /// Width of the attention output: Hq D.
    public var attnDim: Int { numHeads * headDim }

    /// A config built in code (tests, benchmarks, `bench` shapes).
    public init(
        family: ModelFamily, vocabSize: Int, hiddenSize: Int, intermediateSize: Int, numLayers: Int,
        numHeads: Int, numKVHeads: Int, headDim: Int? = nil, rmsNormEps: Float = 1e-6,
        ropeTheta: Double = 10_000, tieWordEmbeddings: Bool = true, attentionBias: Bool = false,
        maxPositionEmbeddings: Int = 4096
    ) {
        self.family = family
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numLayers = numLayers
        self.numHeads = numHeads
        self.numKVHeads = numKVHeads
        self.headDim = headDim ?? hiddenSize / numHeads
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.tieWordEmbeddings = tieWordEmbeddings
        self.qkvBias = family == .qwen2 || attentionBias
        self.oBias = family != .qwen2 && attentionBias
        self.qkNorm = family == .qwen3
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.bosTokenId = nil
        self.eosTokenIds = []
        self.dtype = nil
    }

    /// Checks internal consistency; throws `ConfigError.invalid` naming the field.
    public func validate(file: String = "config.json") throws {
        func bad(_ field: String, _ why: String) -> ConfigError { .invalid(file: file, field: field, reason: why) }
        if vocabSize <= 0 { throw bad("vocab_size", "must be positive") }
        if hiddenSize <= 0 { throw bad("hidden_size", "must be positive") }
        if intermediateSize <= 0 { throw bad("intermediate_size", "must be positive") }
        if numLayers <= 0 { throw bad("num_hidden_layers", "must be positive") }
        if numHeads <= 0 { throw bad("num_attention_heads", "must be positive") }
        if numKVHeads <= 0 || numHeads % numKVHeads != 0 {
            throw bad("num_key_value_heads", "\(numKVHeads) must divide num_attention_heads \(numHeads)")
        }
        if headDim <= 0 || headDim % 2 != 0 { throw bad("head_dim", "\(headDim) must be positive and even (RoPE)") }
        if !(rmsNormEps > 0) { throw bad("rms_norm_eps", "must be positive") }
        if !(ropeTheta > 0) { throw bad("rope_theta", "must be positive") }
        // Bound sizes so layout arithmetic cannot overflow and absurd configs fail cleanly.
        let limit = 1 << 24
        for (k, v) in [("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
                       ("num_hidden_layers", numLayers), ("num_attention_heads", numHeads), ("head_dim", headDim)] where v > limit {
            throw bad(k, "\(v) exceeds the supported maximum \(limit)")
        }
        let approx = Double(vocabSize) * Double(hiddenSize) * 2
            + Double(numLayers) * Double(hiddenSize) * Double(qkvDim + attnDim + 3 * intermediateSize)
        if approx > 1e11 { throw bad("hidden_size", "the model would have ~\(Int(approx)) parameters, more than Chorus supports") }
    }

    /// Total parameter count (including the LM head when untied).
    public var parameterCount: Int { ParameterLayout(config: self).totalCount }
}

/// Errors reading or validating a config.json.
public enum ConfigError: Error, CustomStringConvertible, Equatable {
    case unreadable(file: String, reason: String)
    case missingField(file: String, field: String)
    case invalid(file: String, field: String, reason: String)
    case unsupported(file: String, field: String, value: String)
    case unknownModelType(file: String, modelType: String)

    public var description: String {
        switch self {
        case let .unreadable(f, r): return "\(f): cannot read config: \(r)"
        case let .missingField(f, k): return "\(f): missing required field '\(k)'"
        case let .invalid(f, k, r): return "\(f): invalid '\(k)': \(r)"
        case let .unsupported(f, k, v): return "\(f): unsupported '\(k)' = \(v) (Chorus does not implement it)"
        case let .unknownModelType(f, t):
            return "\(f): unknown model_type '\(t)' (supported: \(ModelFamily.allCases.map(\.rawValue).joined(separator: ", ")))"
        }
    }
}

extension ModelConfig {
    /// Parses and validates a config.json file (a regular file; never opened blocking).
    public init(contentsOf url: URL) throws {
        let data: Data
        do { data = try InputFile.read(url.path, limit: 16 << 20) } catch let e as InputFileError {
            throw ConfigError.unreadable(file: url.path, reason: e.problem)
        }
        try self.init(json: data, file: url.path)
    }

    /// Parses and validates config.json bytes; `file` names the source in errors.
    ///
    /// Every field Chorus reads is type-checked: a string where a number belongs, a number
    /// where a boolean belongs, or an integer beyond the supported range is an error naming
    /// the field, never a silent default.
    public init(json data: Data, file: String = "config.json") throws {
        let root: JSONValue
        do { root = try JSONParser.parse(data) } catch {
            if case let .malformedJSON(offset, reason) = error {
                throw ConfigError.unreadable(file: file, reason: "not valid JSON at byte \(offset): \(reason)")
            }
            throw ConfigError.unreadable(file: file, reason: "not valid JSON")
        }
        guard root.objectValue != nil else { throw ConfigError.unreadable(file: file, reason: "not a JSON object") }
        let r = JSONFields(obj: root, file: file)
        guard let mt = try r.string("model_type") else { throw ConfigError.missingField(file: file, field: "model_type") }
        guard let family = ModelFamily(rawValue: mt) else { throw ConfigError.unknownModelType(file: file, modelType: mt) }

        // Refuse what we do not implement, by name.
        if let act = try r.string("hidden_act"), act != "silu" {
            throw ConfigError.unsupported(file: file, field: "hidden_act", value: act)
        }
        if let rs = r.value("rope_scaling") {
            guard rs.objectValue != nil else { throw r.wrongType("rope_scaling", rs, expected: "an object or null") }
            let rsFields = JSONFields(obj: rs, file: file, prefix: "rope_scaling.")
            let kind = try rsFields.string("rope_type") ?? rsFields.string("type") ?? "\(rs)"
            if kind != "default" { throw ConfigError.unsupported(file: file, field: "rope_scaling", value: kind) }
        }
        var theta: Double?
        if let rp = r.value("rope_parameters") {
            guard let members = rp.objectValue else { throw r.wrongType("rope_parameters", rp, expected: "an object or null") }
            let rpFields = JSONFields(obj: rp, file: file, prefix: "rope_parameters.")
            let kind = try rpFields.string("rope_type") ?? "default"
            if kind != "default" { throw ConfigError.unsupported(file: file, field: "rope_parameters.rope_type", value: kind) }
            theta = try rpFields.double("rope_theta")
            for (k, v) in members where !["rope_type", "rope_theta"].contains(k) {
                throw ConfigError.unsupported(file: file, field: "rope_parameters.\(k)", value: JSONFields.text(v))
            }
        }
        if let top = try r.double("rope_theta") {
            if let t = theta, t != top {
                throw ConfigError.invalid(file: file, field: "rope_theta", reason: "\(top) differs from rope_parameters.rope_theta \(t)")
            }
            theta = top
        }
        if try r.bool("use_sliding_window") == true {
            throw ConfigError.unsupported(file: file, field: "use_sliding_window", value: "true")
        }
        if family == .llama, let sw = r.value("sliding_window") {
            throw ConfigError.unsupported(file: file, field: "sliding_window", value: JSONFields.text(sw))
        }
        if let lt = r.value("layer_types") {
            guard let items = lt.arrayValue else { throw r.wrongType("layer_types", lt, expected: "an array of strings") }
            for (i, item) in items.enumerated() {
                guard let kind = item.stringValue else { throw r.wrongType("layer_types[\(i)]", item, expected: "a string") }
                if kind != "full_attention" { throw ConfigError.unsupported(file: file, field: "layer_types", value: kind) }
            }
        }
        for moe in ["num_experts", "num_local_experts", "n_routed_experts"] {
            if let n = try r.int(moe), n > 0 {
                throw ConfigError.unsupported(file: file, field: moe, value: "\(n) (mixture of experts)")
            }
        }
        if try r.bool("mlp_bias") == true { throw ConfigError.unsupported(file: file, field: "mlp_bias", value: "true") }
        if let tp = try r.int("pretraining_tp"), tp != 1 {
            throw ConfigError.unsupported(file: file, field: "pretraining_tp", value: "\(tp)")
        }

        let hidden = try r.int("hidden_size", required: true)!
        let heads = try r.int("num_attention_heads", required: true)!
        self.init(
            family: family,
            vocabSize: try r.int("vocab_size", required: true)!,
            hiddenSize: hidden,
            intermediateSize: try r.int("intermediate_size", required: true)!,
            numLayers: try r.int("num_hidden_layers", required: true)!,
            numHeads: heads,
            numKVHeads: try r.int("num_key_value_heads") ?? heads,
            headDim: try r.int("head_dim") ?? (heads > 0 ? hidden / heads : 0),
            rmsNormEps: Float(try r.double("rms_norm_eps") ?? 1e-6),
            ropeTheta: theta ?? 10_000,
            tieWordEmbeddings: try r.bool("tie_word_embeddings") ?? false,
            attentionBias: try r.bool("attention_bias") ?? false,
            maxPositionEmbeddings: try r.int("max_position_embeddings") ?? 4096)
        bosTokenId = try r.int("bos_token_id")
        if let e = r.value("eos_token_id"), let items = e.arrayValue {
            eosTokenIds = try items.enumerated().map { i, v in
                guard let id = JSONFields.integer(v) else { throw r.wrongType("eos_token_id[\(i)]", v, expected: "an integer") }
                return id
            }
        } else if let e = try r.int("eos_token_id") { eosTokenIds = [e] }
        dtype = try r.string("torch_dtype") ?? r.string("dtype")
        for id in [bosTokenId].compactMap({ $0 }) + eosTokenIds where id < 0 {
            throw ConfigError.invalid(file: file, field: bosTokenId == id ? "bos_token_id" : "eos_token_id", reason: "\(id) is negative")
        }
        try validate(file: file)
    }

    /// A config.json object for this config, as transformers would write it.
    public func jsonObject() -> [String: Any] {
        var o: [String: Any] = [
            "model_type": family.rawValue,
            "architectures": [family == .llama ? "LlamaForCausalLM" : family == .qwen2 ? "Qwen2ForCausalLM" : "Qwen3ForCausalLM"],
            "vocab_size": vocabSize, "hidden_size": hiddenSize, "intermediate_size": intermediateSize,
            "num_hidden_layers": numLayers, "num_attention_heads": numHeads, "num_key_value_heads": numKVHeads,
            "head_dim": headDim, "rms_norm_eps": Double(rmsNormEps), "rope_theta": ropeTheta,
            "tie_word_embeddings": tieWordEmbeddings, "hidden_act": "silu",
            "max_position_embeddings": maxPositionEmbeddings, "torch_dtype": dtype ?? "float32",
        ]
        if family != .qwen2 { o["attention_bias"] = qkvBias }
        if let b = bosTokenId { o["bos_token_id"] = b }
        if eosTokenIds.count == 1 { o["eos_token_id"] = eosTokenIds[0] } else if !eosTokenIds.isEmpty { o["eos_token_id"] = eosTokenIds }
        return o
    }

    /// Writes config.json (pretty, sorted keys).
    public func write(to url: URL) throws {
        let d = try JSONSerialization.data(withJSONObject: jsonObject(), options: [.prettyPrinted, .sortedKeys])
        try d.write(to: url, options: .atomic)
    }
}

/// Typed field access over a JSON object (`JSONValue`, which keeps numbers as written and
/// never confuses a boolean with a number), naming the field and the value on errors.
struct JSONFields {
    let obj: JSONValue
    let file: String
    /// Prepended to field names in errors ("rope_parameters.").
    var prefix = ""

    /// The value of `k`, nil when absent or null.
    func value(_ k: String) -> JSONValue? { obj[k]?.nonNull }

    /// A short rendering of a JSON value for messages.
    static func text(_ v: JSONValue) -> String {
        switch v {
        case .null: return "null"
        case let .bool(b): return "\(b)"
        case let .number(n): return n
        case let .string(s): return "\"\(s.count > 40 ? String(s.prefix(40)) + "…" : s)\""
        case .array: return "an array"
        case .object: return "an object"
        }
    }

    func wrongType(_ k: String, _ v: JSONValue, expected: String) -> ConfigError {
        .invalid(file: file, field: prefix + k, reason: "expected \(expected), got \(JSONFields.text(v))")
    }

    /// The integer a JSON number stands for: an integer literal, or a float literal with an
    /// integral value (transformers writes `2048` but a hand-edited `2048.0` means the same),
    /// within ±2^53. Nil otherwise (booleans and strings included).
    static func integer(_ v: JSONValue) -> Int? {
        guard case let .number(n) = v else { return nil }
        if let i = Int(n) { return i }
        guard let d = Double(n), d == d.rounded(), abs(d) <= 9_007_199_254_740_992 else { return nil }
        return Int(d)
    }

    func int(_ k: String, required: Bool = false) throws -> Int? {
        guard let v = value(k) else {
            if required { throw ConfigError.missingField(file: file, field: prefix + k) }
            return nil
        }
        if let i = JSONFields.integer(v) { return i }
        if case let .number(n) = v, let d = Double(n), d == d.rounded() {
            throw ConfigError.invalid(file: file, field: prefix + k, reason: "\(n) is out of range for an integer")
        }
        throw wrongType(k, v, expected: "an integer")
    }

    func double(_ k: String) throws -> Double? {
        guard let v = value(k) else { return nil }
        guard case let .number(n) = v, let d = Double(n) else { throw wrongType(k, v, expected: "a number") }
        guard d.isFinite else { throw ConfigError.invalid(file: file, field: prefix + k, reason: "\(n) is out of range") }
        return d
    }

    func string(_ k: String) throws -> String? {
        guard let v = value(k) else { return nil }
        guard let s = v.stringValue else { throw wrongType(k, v, expected: "a string") }
        return s
    }

    func bool(_ k: String) throws -> Bool? {
        guard let v = value(k) else { return nil }
        guard let b = v.boolValue else { throw wrongType(k, v, expected: "true or false") }
        return b
    }
}
