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
    /// Parses and validates a config.json file.
    public init(contentsOf url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ConfigError.unreadable(file: url.path, reason: "file not found or unreadable")
        }
        try self.init(json: data, file: url.path)
    }

    /// Parses and validates config.json bytes; `file` names the source in errors.
    public init(json data: Data, file: String = "config.json") throws {
        guard let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ConfigError.unreadable(file: file, reason: "not a JSON object")
        }
        let r = JSONFields(obj: obj, file: file)
        guard let mt = obj["model_type"] as? String else { throw ConfigError.missingField(file: file, field: "model_type") }
        guard let family = ModelFamily(rawValue: mt) else { throw ConfigError.unknownModelType(file: file, modelType: mt) }

        // Refuse what we do not implement, by name.
        if let act = obj["hidden_act"] as? String, act != "silu" {
            throw ConfigError.unsupported(file: file, field: "hidden_act", value: act)
        }
        if let rs = obj["rope_scaling"], !(rs is NSNull) {
            let kind = ((rs as? [String: Any])?["rope_type"] ?? (rs as? [String: Any])?["type"]) as? String ?? "\(rs)"
            if kind != "default" { throw ConfigError.unsupported(file: file, field: "rope_scaling", value: kind) }
        }
        var theta: Double?
        if let rp = obj["rope_parameters"] as? [String: Any] {
            let kind = (rp["rope_type"] as? String) ?? "default"
            if kind != "default" { throw ConfigError.unsupported(file: file, field: "rope_parameters.rope_type", value: kind) }
            theta = (rp["rope_theta"] as? NSNumber)?.doubleValue
            for k in rp.keys where !["rope_type", "rope_theta"].contains(k) {
                throw ConfigError.unsupported(file: file, field: "rope_parameters.\(k)", value: "\(rp[k]!)")
            }
        }
        if theta == nil { theta = try r.double("rope_theta") }
        if (obj["use_sliding_window"] as? Bool) == true {
            throw ConfigError.unsupported(file: file, field: "use_sliding_window", value: "true")
        }
        if family == .llama, let sw = obj["sliding_window"], !(sw is NSNull) {
            throw ConfigError.unsupported(file: file, field: "sliding_window", value: "\(sw)")
        }
        if let lt = obj["layer_types"] as? [String], let other = lt.first(where: { $0 != "full_attention" }) {
            throw ConfigError.unsupported(file: file, field: "layer_types", value: other)
        }
        for moe in ["num_experts", "num_local_experts", "n_routed_experts"] {
            if let n = (obj[moe] as? NSNumber)?.intValue, n > 0 {
                throw ConfigError.unsupported(file: file, field: moe, value: "\(n) (mixture of experts)")
            }
        }
        if (obj["mlp_bias"] as? Bool) == true { throw ConfigError.unsupported(file: file, field: "mlp_bias", value: "true") }
        if let tp = (obj["pretraining_tp"] as? NSNumber)?.intValue, tp != 1 {
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
            tieWordEmbeddings: (obj["tie_word_embeddings"] as? Bool) ?? false,
            attentionBias: (obj["attention_bias"] as? Bool) ?? false,
            maxPositionEmbeddings: try r.int("max_position_embeddings") ?? 4096)
        bosTokenId = try r.int("bos_token_id")
        if let e = obj["eos_token_id"] as? [NSNumber] { eosTokenIds = e.map(\.intValue) }
        else if let e = try r.int("eos_token_id") { eosTokenIds = [e] }
        dtype = (obj["torch_dtype"] as? String) ?? (obj["dtype"] as? String)
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

/// Typed field access over a JSON object, naming the field on errors.
struct JSONFields {
    let obj: [String: Any]
    let file: String

    func int(_ k: String, required: Bool = false) throws -> Int? {
        guard let v = obj[k], !(v is NSNull) else {
            if required { throw ConfigError.missingField(file: file, field: k) }
            return nil
        }
        guard let n = v as? NSNumber, n.doubleValue == n.doubleValue.rounded() else {
            throw ConfigError.invalid(file: file, field: k, reason: "expected an integer, got \(v)")
        }
        return n.intValue
    }

    func double(_ k: String) throws -> Double? {
        guard let v = obj[k], !(v is NSNull) else { return nil }
        guard let n = v as? NSNumber else {
            throw ConfigError.invalid(file: file, field: k, reason: "expected a number, got \(v)")
        }
        return n.doubleValue
    }
}
