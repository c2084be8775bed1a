import Foundation

/// A seeded, serialisable random generator (xoshiro256**, seeded through SplitMix64).
///
/// Every random choice in Chorus (init, sampling, routing) draws from one of these so a run is
/// reproducible from its seed; `state` can be saved in a checkpoint and restored exactly.
public struct ChorusRNG: RandomNumberGenerator, Sendable, Codable, Equatable {
    /// The four 64-bit words of xoshiro256** state.
    public var state: [UInt64]

    /// Creates a generator from a seed (any value, including 0).
    public init(seed: UInt64) {
        var z = seed
        func splitmix() -> UInt64 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var x = z
            x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
            x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
            return x ^ (x >> 31)
        }
        state = [splitmix(), splitmix(), splitmix(), splitmix()]
    }

    /// The next 64 random bits.
    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = rotl(state[1] &* 5, 7) &* 9
        let t = state[1] << 17
        state[2] ^= state[0]
        state[3] ^= state[1]
        state[1] ^= state[2]
        state[0] ^= state[3]
        state[2] ^= t
        state[3] = rotl(state[3], 45)
        return result
    }

    @inline(__always) private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// A uniform Float in [0, 1) with 24 random bits.
    @inline(__always)
    public mutating func uniform() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

    /// A uniform Double in [0, 1) with 53 random bits.
    @inline(__always)
    public mutating func uniformDouble() -> Double { Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }

    /// A standard normal sample (Box-Muller; one of the pair is discarded to keep state simple).
    public mutating func normalDouble() -> Double {
        var u1 = uniformDouble()
        if u1 < 1e-300 { u1 = 1e-300 }
        let u2 = uniformDouble()
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
    }

    /// `normalDouble()` rounded to Float.
    public mutating func normal() -> Float { Float(normalDouble()) }

    /// A uniform integer in 0..<n (unbiased).
    public mutating func int(below n: Int) -> Int { Int.random(in: 0..<n, using: &self) }

    /// Fills `buffer` with N(0, std^2) samples.
    public mutating func fillNormal(_ buffer: UnsafeMutablePointer<Float>, count: Int, std: Float) {
        for i in 0..<count { buffer[i] = normal() * std }
    }
}

