import ChorusTensor

/// A preallocated key/value store for one sequence: keys and values are each
/// (L, capacity, Hkv·D). Positions [0, length) are filled.
public final class KVCache: @unchecked Sendable {
    /// Maximum number of positions.
    public let capacity: Int
    /// Positions currently stored.
    public var length: Int = 0
    private let layerStride: Int
    private let k: Tensor, v: Tensor

    /// Allocates a cache for `capacity` positions of a model.
    public init(config c: ModelConfig, capacity: Int) {
        self.capacity = capacity
        layerStride = capacity * c.numKVHeads * c.headDim
        k = Tensor(shape: [c.numLayers * layerStride])
        v = Tensor(shape: [c.numLayers * layerStride])
    }

    /// Keys of layer l, (capacity, Hkv·D).
    @inline(__always) public func keys(layer l: Int) -> UnsafeMutablePointer<Float> { k.data + l * layerStride }
    /// Values of layer l, (capacity, Hkv·D).
    @inline(__always) public func values(layer l: Int) -> UnsafeMutablePointer<Float> { v.data + l * layerStride }

    /// Forgets the contents (keeps the memory).
    public func reset() { length = 0 }
}
