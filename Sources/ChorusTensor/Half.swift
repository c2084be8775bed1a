/// Conversions between Float32 and the 16-bit float formats found in checkpoints.
///
/// bf16 is the top half of an f32 (round-to-nearest-even when narrowing, as PyTorch does);
/// f16 is IEEE binary16 with subnormals, infinities and NaN handled.
public enum HalfConversion {
    /// bf16 bits -> Float.
    @inline(__always)
    public static func bf16ToFloat(_ h: UInt16) -> Float { Float(bitPattern: UInt32(h) << 16) }

    /// Float -> bf16 bits, round to nearest even; NaN stays NaN.
    @inline(__always)
    public static func floatToBF16(_ f: Float) -> UInt16 {
        let u = f.bitPattern
        if f.isNaN { return UInt16(u >> 16) | 0x0040 }
        let rounding: UInt32 = 0x7FFF + ((u >> 16) & 1)
        return UInt16((u &+ rounding) >> 16)
    }

    /// f16 bits -> Float (exact).
    @inline(__always)
    public static func f16ToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = UInt32(h >> 10) & 0x1F
        let mant = UInt32(h & 0x3FF)
        if exp == 0 {
            if mant == 0 { return Float(bitPattern: sign) }
            // Subnormal: value = mant * 2^-24.
            let v = Float(mant) * (1.0 / 16_777_216.0)
            return sign != 0 ? -v : v
        }
        if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mant << 13)) }
        return Float(bitPattern: sign | ((exp + 112) << 23) | (mant << 13))
    }

    /// Float -> f16 bits, round to nearest even, overflow to infinity.
    public static func floatToF16(_ f: Float) -> UInt16 {
        let u = f.bitPattern
        let sign = UInt16((u >> 16) & 0x8000)
        let exp = Int((u >> 23) & 0xFF)
        var mant = u & 0x7F_FFFF
        if exp == 255 { return sign | 0x7C00 | (mant != 0 ? 0x200 : 0) }
        var e = exp - 127 + 15
        if e >= 31 { return sign | 0x7C00 }
        if e <= 0 {
            if e < -10 { return sign }
            mant |= 0x80_0000
            let shift = UInt32(14 - e)
            let half: UInt32 = 1 << (shift - 1)
            let rem = mant & ((1 << shift) - 1)
            var m = mant >> shift
            if rem > half || (rem == half && (m & 1) == 1) { m += 1 }
            return sign | UInt16(m)
        }
        let rem = mant & 0x1FFF
        var m = mant >> 13
        if rem > 0x1000 || (rem == 0x1000 && (m & 1) == 1) {
            m += 1
            if m == 0x400 { m = 0; e += 1; if e >= 31 { return sign | 0x7C00 } }
        }
        return sign | UInt16(e << 10) | UInt16(m)
    }
}
