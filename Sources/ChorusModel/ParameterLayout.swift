/// Where every parameter lives inside one flat Float32 buffer (llm.c style), with its
/// Hugging Face name.
///
/// Per layer the q, k and v projection matrices are adjacent, so together they form the fused
/// ((Hq+2Hkv)·D, C) QKV matrix used by one gemm; gate and up are adjacent the same way and form
/// the fused (2I, C) matrix. The HF tensors are plain sub-ranges: no copies on load or save.
public struct ParameterLayout: Sendable {
    /// One named parameter: HF name, shape, offset into the flat buffer.
    public struct Entry: Sendable {
        public let name: String
        public let shape: [Int]
        public let offset: Int
        public var count: Int { shape.reduce(1, *) }
    }

    /// Offsets of one transformer block's parameters (`nil` when the family lacks it).
    public struct Layer: Sendable {
        public var inputNorm = 0
        public var qkv = 0          // ((Hq+2Hkv)·D, C): q rows, then k rows, then v rows
        public var qkvBias: Int?    // ((Hq+2Hkv)·D)
        public var qNorm: Int?      // (D)
        public var kNorm: Int?      // (D)
        public var o = 0            // (C, Hq·D)
        public var oBias: Int?      // (C)
        public var postNorm = 0     // (C)
        public var gateUp = 0       // (2I, C): gate rows, then up rows
        public var down = 0         // (C, I)
    }

    /// All entries in buffer order.
    public private(set) var entries: [Entry] = []
    /// Block offsets, one per layer.
    public private(set) var layers: [Layer] = []
    /// Token embedding (V, C).
    public private(set) var embed = 0
    /// Final norm (C).
    public private(set) var finalNorm = 0
    /// LM head (V, C): the embedding when tied.
    public private(set) var lmHead = 0
    /// Total number of floats.
    public private(set) var totalCount = 0

    /// Builds the layout for a config.
    public init(config c: ModelConfig) {
        let C = c.hiddenSize, D = c.headDim, I = c.intermediateSize
        let q = c.numHeads * D, kv = c.numKVHeads * D
        func add(_ name: String, _ shape: [Int]) -> Int {
            let off = totalCount
            entries.append(Entry(name: name, shape: shape, offset: off))
            totalCount += shape.reduce(1, *)
            return off
        }
        embed = add("model.embed_tokens.weight", [c.vocabSize, C])
        for l in 0..<c.numLayers {
            let p = "model.layers.\(l)."
            var L = Layer()
            L.inputNorm = add(p + "input_layernorm.weight", [C])
            L.qkv = add(p + "self_attn.q_proj.weight", [q, C])
            _ = add(p + "self_attn.k_proj.weight", [kv, C])
            _ = add(p + "self_attn.v_proj.weight", [kv, C])
            if c.qkvBias {
                L.qkvBias = add(p + "self_attn.q_proj.bias", [q])
                _ = add(p + "self_attn.k_proj.bias", [kv])
                _ = add(p + "self_attn.v_proj.bias", [kv])
            }
            if c.qkNorm {
                L.qNorm = add(p + "self_attn.q_norm.weight", [D])
                L.kNorm = add(p + "self_attn.k_norm.weight", [D])
            }
            L.o = add(p + "self_attn.o_proj.weight", [C, q])
            if c.oBias { L.oBias = add(p + "self_attn.o_proj.bias", [C]) }
            L.postNorm = add(p + "post_attention_layernorm.weight", [C])
            L.gateUp = add(p + "mlp.gate_proj.weight", [I, C])
            _ = add(p + "mlp.up_proj.weight", [I, C])
            L.down = add(p + "mlp.down_proj.weight", [C, I])
            layers.append(L)
        }
        finalNorm = add("model.norm.weight", [C])
        lmHead = c.tieWordEmbeddings ? embed : add("lm_head.weight", [c.vocabSize, C])
    }

    /// The entry with a given HF name.
    public func entry(named name: String) -> Entry? { entries.first { $0.name == name } }
}
