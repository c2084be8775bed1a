import ChorusCore
import ChorusTensor
import ChorusTokenizer
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The set of safetensors files of a checkpoint: `model.safetensors`, or the shards named by
/// `model.safetensors.index.json`.
public struct CheckpointFiles {
    /// Open files, each with its tensors.
    public let files: [SafeTensorsFile]
    /// Which file holds each tensor.
    public let location: [String: SafeTensorsFile]

    /// Opens the weights of a model directory, checking the shard index against the shards.
    ///
    /// When both `model.safetensors` and `model.safetensors.index.json` exist, the single file
    /// is loaded and the index ignored, as transformers' `from_pretrained` does (it looks for
    /// the single file first), so both load the same model.
    public init(directory: URL) throws {
        let fm = FileManager.default
        let single = directory.appendingPathComponent("model.safetensors")
        let index = directory.appendingPathComponent("model.safetensors.index.json")
        if !Self.isRegularFile(single.path) && fm.fileExists(atPath: index.path) {
            let data: Data
            do { data = try InputFile.read(index.path, limit: 256 << 20) } catch let e as InputFileError {
                throw CheckpointError.unreadable(path: index.path, problem: e.problem)
            }
            guard let obj = (try? JSONParser.parse(data)), let members = obj["weight_map"]?.objectValue
            else { throw CheckpointError.badIndex(file: index.path, detail: "no 'weight_map' object") }
            var map: [String: String] = [:]
            for (name, v) in members {
                guard let shard = v.stringValue else {
                    throw CheckpointError.badIndex(file: index.path, detail: "weight_map entry '\(name)' is not a file name string")
                }
                map[name] = shard
            }
            var opened: [String: SafeTensorsFile] = [:]
            var loc: [String: SafeTensorsFile] = [:]
            for shard in Set(map.values).sorted() {
                if shard.contains("/") { throw CheckpointError.badIndex(file: index.path, detail: "shard name '\(shard)' must be a file name") }
                opened[shard] = try SafeTensorsFile(path: directory.appendingPathComponent(shard).path)
            }
            for (name, shard) in map {
                let f = opened[shard]!
                guard f.tensors[name] != nil else {
                    throw CheckpointError.badIndex(file: index.path, detail: "tensor '\(name)' is mapped to \(shard) but is not in it")
                }
                loc[name] = f
            }
            for (shard, f) in opened {
                for name in f.tensors.keys where map[name] != shard {
                    throw CheckpointError.badIndex(file: index.path, detail: "tensor '\(name)' in \(shard) is not listed in weight_map")
                }
            }
            files = opened.keys.sorted().map { opened[$0]! }
            location = loc
        } else if fm.fileExists(atPath: single.path) || Self.isSymlink(single.path) {
            let f = try SafeTensorsFile(path: single.path)
            files = [f]
            location = Dictionary(uniqueKeysWithValues: f.tensors.keys.map { ($0, f) })
        } else {
            throw CheckpointError.fileNotFound(path: single.path)
        }
    }

    /// Whether `path` is a regular file after following links (what Python's `os.path.isfile` says).
    static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFREG
    }

    /// Whether `path` is a symbolic link (a dangling one is reported by opening it).
    static func isSymlink(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFLNK
    }
}

extension TransformerModel {
    /// Loads a Hugging Face model directory (config.json + safetensors), strictly: every
    /// parameter must be present with the config's shape and a float dtype, and every tensor in
    /// the files must be used (rotary `inv_freq` buffers, which transformers recomputes, and a
    /// tied `lm_head.weight` are the only exceptions).
    public static func load(directory: URL) throws -> TransformerModel {
        do { try InputFile.checkDirectory(directory.path, what: "model directory") } catch let e as InputFileError {
            throw CheckpointError.unreadable(path: e.path, problem: e.problem)
        }
        let config = try ModelConfig(contentsOf: directory.appendingPathComponent("config.json"))
        // The parameters must fit in memory before the layout (or anything) is built.
        try MemoryCheck.model(config, source: directory.path)
        let ck = try CheckpointFiles(directory: directory)
        // Check names, shapes and dtypes against the config before allocating anything, so a
        // config that lies about sizes fails with a message instead of a huge allocation.
        try check(ck, layout: ParameterLayout(config: config), config: config, directory: directory)
        let model = TransformerModel(config: config)
        try model.read(ck, directory: directory)
        return model
    }

    /// Fills the parameters from a directory's safetensors files (see `load`).
    public func loadWeights(directory: URL) throws {
        let ck = try CheckpointFiles(directory: directory)
        try TransformerModel.check(ck, layout: layout, config: config, directory: directory)
        try read(ck, directory: directory)
    }

    /// Every parameter present with the config's shape and a float dtype; no unexpected tensor.
    static func check(_ ck: CheckpointFiles, layout: ParameterLayout, config: ModelConfig, directory: URL) throws {
        var expected = Set<String>()
        for e in layout.entries {
            guard let f = ck.location[e.name], let info = f.tensors[e.name] else {
                throw CheckpointError.missingTensor(name: e.name, directory: directory.path)
            }
            guard info.dtype.isLoadableFloat else {
                throw CheckpointError.unsupportedDType(file: f.path, tensor: e.name, dtype: info.dtype.rawValue)
            }
            guard info.shape == e.shape else {
                throw CheckpointError.shapeMismatch(file: f.path, tensor: e.name, expected: e.shape, found: info.shape)
            }
            expected.insert(e.name)
        }
        for (name, f) in ck.location.sorted(by: { $0.key < $1.key }) where !expected.contains(name) {
            if name.hasSuffix("rotary_emb.inv_freq") { continue }
            if name == "lm_head.weight" && config.tieWordEmbeddings,
               f.tensors[name]?.shape == [config.vocabSize, config.hiddenSize] { continue }  // compared in `read`
            throw CheckpointError.unusedTensor(name: name, file: f.path)
        }
    }

    /// Converts every parameter into the flat buffer (after `check`). A NaN or infinity in any
    /// weight is refused naming the file, tensor and element: such a model would score and
    /// sample garbage without a word.
    func read(_ ck: CheckpointFiles, directory: URL) throws {
        for e in layout.entries {
            let f = ck.location[e.name]!
            let p = parameter(e.offset)
            try f.read(e.name, into: p)
            for i in 0..<e.count where !p[i].isFinite {
                throw CheckpointError.nonFinite(file: f.path, tensor: e.name, index: i, value: p[i])
            }
        }
        if config.tieWordEmbeddings, let f = ck.location["lm_head.weight"] {
            // Some exporters write the tied head explicitly; accept it only if it really is
            // the embedding.
            let head = try f.readArray("lm_head.weight")
            let emb = UnsafeBufferPointer(start: parameter(layout.embed), count: head.count)
            if !head.elementsEqual(emb) {
                throw CheckpointError.unusedTensor(name: "lm_head.weight (differs from the tied embedding)", file: f.path)
            }
        }
    }

    /// Writes the model as a Hugging Face directory: config.json and model.safetensors
    /// (f32 or bf16), both atomically.
    public func save(directory: URL, dtype: SafeTensorsDType = .f32) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var cfg = config
        cfg.dtype = dtype == .bf16 ? "bfloat16" : "float32"
        let entries = layout.entries.map {
            SafeTensorsWriter.Entry(name: $0.name, shape: $0.shape, data: UnsafePointer(parameter($0.offset)))
        }
        try SafeTensorsWriter.write(entries, dtype: dtype, to: directory.appendingPathComponent("model.safetensors"))
        let d = try JSONSerialization.data(withJSONObject: cfg.jsonObject(), options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(d, to: directory.appendingPathComponent("config.json"))
    }
}
