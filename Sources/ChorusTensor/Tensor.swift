import ChorusCore
import Foundation

/// A Float32 tensor: a row-major shape over one owned, 64-byte aligned buffer.
///
/// Reference semantics on purpose (like llm.c's flat buffers): activations, parameters and
/// gradients are allocated once from explicit sizes and then written in place by the kernels.
public final class Tensor: @unchecked Sendable {
    /// Row-major dimensions, e.g. (B,T,C) is `[B, T, C]`.
    public private(set) var shape: [Int]
    /// Number of elements, the product of `shape`.
    public private(set) var count: Int
    /// The storage; valid for `count` elements (capacity may be larger after `reshape`).
    public let data: UnsafeMutablePointer<Float>
    /// Allocated element capacity.
    public let capacity: Int

    /// Allocates a zero-filled tensor of the given shape.
    ///
    /// Callers check input-sized requests against `ResourceLimits` first and throw; a request
    /// that still exceeds the limit (or overflows) ends the process with one line naming the
    /// shape, the last line of defence against a crash with a backtrace or the OOM killer.
    public init(shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        var n = 1
        for d in shape {
            let (r, overflow) = n.multipliedReportingOverflow(by: d)
            if overflow { Tensor.refuse(shape, bytes: shape.reduce(4.0) { $0 * Double($1) }) }
            n = r
        }
        if n > Tensor.maxElements { Tensor.refuse(shape, bytes: 4 * Double(n)) }
        self.shape = shape
        self.count = n
        self.capacity = max(n, 1)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: capacity * 4, alignment: 64)
        self.data = raw.bindMemory(to: Float.self, capacity: capacity)
        data.initialize(repeating: 0, count: capacity)
    }

    deinit { data.deallocate() }

    /// The most floats one tensor may hold: the memory limit (`ResourceLimits`) over 4.
    static let maxElements: Int = ((try? ResourceLimits.current().bytes) ?? ResourceLimits.machineMemory) / 4

    /// Ends the process with one line: an allocation no caller checked exceeds the limit.
    static func refuse(_ shape: [Int], bytes: Double) -> Never {
        let limit: (bytes: Int, source: String) = (try? ResourceLimits.current()) ?? (ResourceLimits.machineMemory, "physical memory")
        FileHandle.standardError.write(Data(("chorus: \(ResourceError(what: "a tensor of shape \(shape)", bytes: bytes, limit: limit.bytes, source: limit.source))\n").utf8))
        exit(1)
    }

    /// Changes the shape in place; the element count must fit the capacity.
    public func reshape(_ newShape: [Int]) {
        let n = newShape.reduce(1, *)
        precondition(n <= capacity, "reshape \(newShape) exceeds capacity \(capacity)")
        shape = newShape
        count = n
    }

    /// Sets every element to zero (one memset).
    public func zero() { data.update(repeating: 0, count: count) }

    /// A copy of the contents as an array (for tests and I/O, not hot loops).
    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// The element at a flat index.
    @inlinable public subscript(i: Int) -> Float {
        get { data[i] }
        set { data[i] = newValue }
    }
}
