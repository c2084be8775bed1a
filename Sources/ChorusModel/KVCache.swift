import ChorusTensor

/// A preallocated key/value store for one sequence: keys and values are each
/// (L, capacity, Hkv·D). Positions [0, length) are filled.
public final class KVCache: @unchecked Sendable {
    /// Maximum number of positions.
    public let capacity: Int
    /// Positions currently stored.
    public var length: Int = 0
    /// The model the cache was built for (fixes layer count and row width).
    public let config: ModelConfig
    private let rowWidth: Int          // Hkv·D
    private let layerStride: Int       // capacity · Hkv·D
    private let k: Tensor, v: Tensor

    /// Allocates a cache for `capacity` positions of a model.
    public init(config c: ModelConfig, capacity: Int) {
        self.config = c
        self.capacity = capacity
        rowWidth = c.numKVHeads * c.headDim
        layerStride = capacity * rowWidth
        k = Tensor(shape: [c.numLayers * layerStride])
        v = Tensor(shape: [c.numLayers * layerStride])
    }

    /// A new cache of `capacity` positions holding a copy of this one's filled positions, so
    /// several continuations can share one prefilled prefix (each extends its own copy).
    public func fork(capacity newCapacity: Int) -> KVCache {
        precondition(newCapacity >= length, "fork capacity \(newCapacity) < filled length \(length)")
        let out = KVCache(config: config, capacity: newCapacity)
        let n = length * rowWidth
        for l in 0..<config.numLayers {
            out.keys(layer: l).update(from: keys(layer: l), count: n)
            out.values(layer: l).update(from: values(layer: l), count: n)
        }
        out.length = length
        return out
    }

    /// Keys of layer l, (capacity, Hkv·D).
    @inline(__always) public func keys(layer l: Int) -> UnsafeMutablePointer<Float> { k.data + l * layerStride }
    /// Values of layer l, (capacity, Hkv·D).
    @inline(__always) public func values(layer l: Int) -> UnsafeMutablePointer<Float> { v.data + l * layerStride }

    /// Forgets the contents (keeps the memory).
    public func reset() { length = 0 }
}
