import ChorusModel
import Foundation

/// A teacher's model: given in memory, or read from its directory on first use. Its config is
/// read at once (vocabulary size, BOS id), its weights only when something must be scored, so
/// a teacher whose scores are all in the cache never loads them.
public final class LazyModel {
    /// The model directory (nil for a model built in memory).
    public let directory: URL?
    public let config: ModelConfig
    /// The model, once loaded (from the start for a model given in memory).
    public private(set) var loaded: TransformerModel?

    /// A model in memory.
    public init(_ model: TransformerModel, directory: URL? = nil) {
        self.directory = directory
        config = model.config
        loaded = model
    }

    /// A model to be loaded from `directory`; reads config.json now.
    public init(directory: URL) throws {
        self.directory = directory
        config = try ModelConfig(contentsOf: directory.appendingPathComponent("config.json"))
    }

    /// The model, loading its weights on the first call.
    public func model() throws -> TransformerModel {
        if let m = loaded { return m }
        let m = try TransformerModel.load(directory: directory!)
        loaded = m
        return m
    }
}
