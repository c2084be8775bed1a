/// Vectorised transcendental helpers over `SIMD8<Float>` (Cephes-style polynomials).

/// The SIMD width used by Chorus' elementwise kernels.
public typealias FloatVec = SIMD8<Float>
/// Number of lanes in `FloatVec`.
public let floatVecWidth = 8

/// Loads 8 floats from an unaligned pointer.
@inline(__always)
public func loadVec(_ p: UnsafePointer<Float>) -> FloatVec {
    UnsafeRawPointer(p).loadUnaligned(as: FloatVec.self)
}

/// Stores 8 floats to an unaligned pointer.
@inline(__always)
public func storeVec(_ v: FloatVec, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: FloatVec.self)
}

/// exp(x) lane-wise, relative error about 2 ulp over [-87, 88]; inputs below -87.3 give ~0,
/// above 88 are clamped.
@inline(__always)
public func vexp(_ x0: FloatVec) -> FloatVec {
    var x = x0
    let lo = FloatVec(repeating: -87.3), hi = FloatVec(repeating: 88.0)
    x.replace(with: lo, where: x .< lo)
    x.replace(with: hi, where: x .> hi)
    // exp(x) = 2^n * exp(r), n = round(x / ln2), r = x - n ln2 (two-part ln2 for accuracy).
    // Rounding via the 1.5·2^23 trick: the low mantissa bits of t hold n, no int conversion.
    let magic: Float = 12_582_912
    let t = x * 1.442_695_04 + magic
    let fx = t - magic
    x = x - fx * 0.693_359_375
    x = x + fx * 2.121_944_4e-4
    let z = x * x
    var y = FloatVec(repeating: 1.987_569_1e-4)
    y = y * x + 1.398_199_9e-3
    y = y * x + 8.333_451_9e-3
    y = y * x + 4.166_579_6e-2
    y = y * x + 1.666_666_5e-1
    y = y * x + 5.000_000_1e-1
    y = y * z + x + 1
    let n = unsafeBitCast(t, to: SIMD8<UInt32>.self) &- unsafeBitCast(FloatVec(repeating: magic), to: SIMD8<UInt32>.self)
    let pow2 = unsafeBitCast((n &+ 127) &<< 23, to: FloatVec.self)
    return y * pow2
}

/// Scalar exp with the same polynomial as `vexp` (used for the ragged tails of rows so a
/// value does not depend on its position within the row).
@inline(__always)
public func sexp(_ x: Float) -> Float {
    vexp(FloatVec(repeating: x))[0]
}
