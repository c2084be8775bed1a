import ChorusCore
import ChorusTokenizer
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The tokenizer of a model directory (`DIR/tokenizer.json`).
public enum CheckpointTokenizer {
    /// Loads `directory/tokenizer.json`; a missing file is `CheckpointError.missingTokenizer`
    /// naming the directory, a bad one a `TokenizerError` naming the file.
    public static func load(directory: URL) throws -> Tokenizer {
        let file = directory.appendingPathComponent("tokenizer.json")
        var st = stat()
        if stat(file.path, &st) != 0 && errno == ENOENT { throw CheckpointError.missingTokenizer(directory: directory.path) }
        return try Tokenizer(contentsOf: file)
    }
}

/// One check of `ModelInfo` (tokenizer against config, weights against config).
public struct InfoCheck: Sendable, Equatable {
    /// What is compared, e.g. "vocab_size" or "eos_token_id".
    public var name: String
    /// Whether it holds.
    public var ok: Bool
    /// One line saying what was found.
    public var detail: String
    public init(name: String, ok: Bool, detail: String) {
        self.name = name
        self.ok = ok
        self.detail = detail
    }

    /// `{"name":…,"ok":…,"detail":…}`.
    public var json: String {
        JSONText.object([("name", JSONText.string(name)), ("ok", ok ? "true" : "false"), ("detail", JSONText.string(detail))])
    }
}

/// What `chorus info --model DIR` reports about a Hugging Face model directory, read from
/// config.json, the safetensors headers (never the weights themselves: the files are mapped
/// and only their headers parsed) and tokenizer.json.
///
/// A directory that cannot be described — no or bad config.json, a truncated or corrupt
/// safetensors file, no or bad tokenizer.json — throws, naming the file. Disagreements
/// between the files (a tensor missing or of the wrong shape, a tokenizer with more ids than
/// the embedding has rows, an eos id with no token) are failed `checks` instead, so that the
/// rest of the description still comes out.
public struct ModelInfo {
    /// The directory as given.
    public var directory: String
    /// The validated config.json.
    public var config: ModelConfig
    /// config.json `architectures` (e.g. ["LlamaForCausalLM"]); empty when absent.
    public var architectures: [String]
    /// config.json `pad_token_id`, when given.
    public var padTokenId: Int?
    /// generation_config.json `eos_token_id` (HF generate stops there), when the file exists.
    public var generationEOSTokenIds: [Int]?
    /// Weight files (names in the directory), sorted.
    public var weightFiles: [String]
    /// Their total size in bytes.
    public var bytesOnDisk: Int
    /// Per safetensors dtype: (tensors, elements), sorted by dtype name.
    public var dtypesOnDisk: [(dtype: String, tensors: Int, elements: Int)]
    /// Number of elements over all tensors in the files (a tied head written out counts twice).
    public var elementsOnDisk: Int
    /// The tokenizer.json path, its vocabulary size (one more than its largest id) and its
    /// added tokens.
    public var tokenizerFile: String
    public var tokenizerVocabSize: Int
    public var addedTokens: [AddedTokenEntry]
    /// Token strings of the special ids (nil where the tokenizer has no such id).
    public var bosToken: String?, eosTokens: [String?], padToken: String?
    /// Weights against config, tokenizer against config.
    public var checks: [InfoCheck]
    /// Things worth knowing that are not errors (e.g. generation_config.json stops elsewhere).
    public var notes: [String]

    /// Parameters Chorus holds for this config (a tied head once).
    public var parameterCount: Int { config.parameterCount }
    /// Whether every check holds.
    public var ok: Bool { checks.allSatisfy(\.ok) }

    /// Describes `directory`; see the type's documentation for what throws.
    public static func inspect(directory: URL) throws -> ModelInfo {
        do { try InputFile.checkDirectory(directory.path, what: "model directory") } catch let e as InputFileError {
            throw CheckpointError.unreadable(path: e.path, problem: e.problem)
        }
        let configURL = directory.appendingPathComponent("config.json")
        let config = try ModelConfig(contentsOf: configURL)
        // The fields ModelConfig does not keep (it validated the file as a JSON object).
        let raw = try JSONParser.parse(try InputFile.read(configURL.path, limit: 16 << 20))
        let architectures = raw["architectures"]?.arrayValue?.compactMap(\.stringValue) ?? []
        let pad = raw["pad_token_id"]?.intValue

        let ck = try CheckpointFiles(directory: directory)
        var checks: [InfoCheck] = []
        var notes: [String] = []
        do {
            try TransformerModel.check(ck, layout: ParameterLayout(config: config), config: config, directory: directory)
            checks.append(InfoCheck(name: "weights", ok: true,
                                    detail: "every parameter of the config is in the files with its shape and a loadable dtype, and nothing else is"))
        } catch {
            checks.append(InfoCheck(name: "weights", ok: false, detail: "\(error)"))
        }
        var byType: [String: (Int, Int)] = [:]
        var elements = 0
        for f in ck.files {
            for t in f.tensors.values {
                let old = byType[t.dtype.rawValue] ?? (0, 0)
                byType[t.dtype.rawValue] = (old.0 + 1, old.1 + t.elementCount)
                elements += t.elementCount
            }
        }
        var bytes = 0
        for f in ck.files {
            var st = stat()
            if stat(f.path, &st) == 0 { bytes += Int(st.st_size) }
        }

        let tok = try CheckpointTokenizer.load(directory: directory)
        let tv = tok.vocabSize, V = config.vocabSize
        if tv <= V {
            checks.append(InfoCheck(name: "vocab_size", ok: true, detail: tv == V
                ? "tokenizer.json has \(tv) ids, config.json vocab_size is \(V)"
                : "tokenizer.json has \(tv) ids, config.json vocab_size is \(V) (\(V - tv) embedding rows have no token: padding)"))
        } else {
            checks.append(InfoCheck(name: "vocab_size", ok: false,
                                    detail: "tokenizer.json has \(tv) ids but config.json vocab_size is \(V): ids \(V)..\(tv - 1) have no embedding row"))
        }
        func special(_ field: String, _ ids: [Int]) {
            if ids.isEmpty {
                if field == "eos_token_id" { notes.append("config.json names no eos_token_id: chorus sample stops only at --max-tokens") }
                return
            }
            let missing = ids.filter { tok.idToToken($0) == nil }
            let shown = ids.map { id in "\(id) = " + (tok.idToToken(id).map { "'\($0)'" } ?? "(no token)") }.joined(separator: ", ")
            if missing.isEmpty {
                checks.append(InfoCheck(name: field, ok: true, detail: "config.json \(field) \(shown) in tokenizer.json"))
            } else {
                checks.append(InfoCheck(name: field, ok: false, detail: "config.json \(field) \(shown): tokenizer.json has no token for \(missing.map(String.init).joined(separator: ", "))"))
            }
        }
        special("bos_token_id", config.bosTokenId.map { [$0] } ?? [])
        special("eos_token_id", config.eosTokenIds)
        special("pad_token_id", pad.map { [$0] } ?? [])

        var generationEOS: [Int]?
        let gen = directory.appendingPathComponent("generation_config.json")
        if FileManager.default.fileExists(atPath: gen.path) {
            do {
                let g = try JSONParser.parse(try InputFile.read(gen.path, limit: 16 << 20))
                if let e = g["eos_token_id"]?.nonNull {
                    generationEOS = e.arrayValue?.compactMap(\.intValue) ?? e.intValue.map { [$0] } ?? []
                }
            } catch {
                notes.append("\(gen.path): cannot read it (\(error)); ignored (Chorus reads eos ids from config.json)")
            }
            if let g = generationEOS, Set(g) != Set(config.eosTokenIds) {
                notes.append("generation_config.json eos_token_id \(g) differs from config.json's \(config.eosTokenIds): chorus sample stops at config.json's")
            }
        }
        return ModelInfo(
            directory: directory.path, config: config, architectures: architectures, padTokenId: pad,
            generationEOSTokenIds: generationEOS,
            weightFiles: ck.files.map { ($0.path as NSString).lastPathComponent }.sorted(), bytesOnDisk: bytes,
            dtypesOnDisk: byType.keys.sorted().map { ($0, byType[$0]!.0, byType[$0]!.1) }, elementsOnDisk: elements,
            tokenizerFile: directory.appendingPathComponent("tokenizer.json").path, tokenizerVocabSize: tv,
            addedTokens: tok.addedTokenEntries,
            bosToken: config.bosTokenId.flatMap(tok.idToToken), eosTokens: config.eosTokenIds.map(tok.idToToken),
            padToken: pad.flatMap(tok.idToToken), checks: checks, notes: notes)
    }

    /// One JSON object (the output of `chorus info --model`):
    /// `{"directory", "architecture", "architectures", "parameters", "parameters_on_disk",
    /// "dtype" (config's declared), "dtypes_on_disk" {DTYPE: {"tensors","parameters"}},
    /// "weight_files", "bytes_on_disk", "vocab_size", "tokenizer_vocab_size", "context_length",
    /// "tied_embeddings", "layers", "hidden_size", "intermediate_size", "heads", "kv_heads",
    /// "head_dim", "rope_theta", "special_tokens" {"bos","eos","pad","added"}, "checks", "notes", "ok"}`.
    public var json: String {
        let c = config
        func idToken(_ id: Int, _ t: String?) -> String {
            JSONText.object([("id", "\(id)"), ("token", t.map(JSONText.string) ?? "null")])
        }
        return JSONText.object([
            ("directory", JSONText.string(directory)),
            ("architecture", JSONText.string(c.family.rawValue)),
            ("architectures", JSONText.array(architectures.map(JSONText.string))),
            ("parameters", "\(parameterCount)"),
            ("parameters_on_disk", "\(elementsOnDisk)"),
            ("dtype", c.dtype.map(JSONText.string) ?? "null"),
            ("dtypes_on_disk", JSONText.object(dtypesOnDisk.map {
                ($0.dtype, JSONText.object([("tensors", "\($0.tensors)"), ("parameters", "\($0.elements)")]))
            })),
            ("weight_files", JSONText.array(weightFiles.map(JSONText.string))),
            ("bytes_on_disk", "\(bytesOnDisk)"),
            ("vocab_size", "\(c.vocabSize)"),
            ("tokenizer_vocab_size", "\(tokenizerVocabSize)"),
            ("context_length", "\(c.maxPositionEmbeddings)"),
            ("tied_embeddings", c.tieWordEmbeddings ? "true" : "false"),
            ("layers", "\(c.numLayers)"),
            ("hidden_size", "\(c.hiddenSize)"),
            ("intermediate_size", "\(c.intermediateSize)"),
            ("heads", "\(c.numHeads)"),
            ("kv_heads", "\(c.numKVHeads)"),
            ("head_dim", "\(c.headDim)"),
            ("rope_theta", JSONText.number(c.ropeTheta)),
            ("special_tokens", JSONText.object([
                ("bos", c.bosTokenId.map { idToken($0, bosToken) } ?? "null"),
                ("eos", JSONText.array(zip(c.eosTokenIds, eosTokens).map { idToken($0.0, $0.1) })),
                ("pad", padTokenId.map { idToken($0, padToken) } ?? "null"),
                ("generation_eos", generationEOSTokenIds.map { JSONText.array($0.map(String.init)) } ?? "null"),
                ("added", JSONText.array(addedTokens.map {
                    JSONText.object([("id", "\($0.id)"), ("content", JSONText.string($0.content)), ("special", $0.special ? "true" : "false")])
                })),
            ])),
            ("checks", JSONText.array(checks.map(\.json))),
            ("notes", JSONText.array(notes.map(JSONText.string))),
            ("ok", ok ? "true" : "false"),
        ])
    }
}
