/// GPT-2's reversible byte <-> character mapping ("bytes_to_unicode"), used by the ByteLevel
/// pre-tokenizer and decoder: printable bytes map to themselves, the other 68 bytes to
/// U+0100... in byte order, so every byte string becomes a printable string.
struct ByteLevelAlphabet {
    /// `scalarForByte[b]` is the character that stands for byte `b`.
    let scalarForByte: [Unicode.Scalar]
    /// `byteForScalar[s]` is the byte that character `s` stands for, or -1; indexed by scalar
    /// value below `byteForScalar.count` (324).
    let byteForScalar: [Int16]

    init() {
        var printable = [Bool](repeating: false, count: 256)
        for b in 0x21...0x7E { printable[b] = true }
        for b in 0xA1...0xAC { printable[b] = true }
        for b in 0xAE...0xFF { printable[b] = true }
        var scalars = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            if printable[b] {
                scalars[b] = Unicode.Scalar(UInt8(b))
            } else {
                scalars[b] = Unicode.Scalar(next)!  // 256..<324, always valid scalars
                next += 1
            }
        }
        var reverse = [Int16](repeating: -1, count: Int(next))
        for b in 0..<256 { reverse[Int(scalars[b].value)] = Int16(b) }
        scalarForByte = scalars
        byteForScalar = reverse
    }

    /// The byte-level string for raw bytes (what a vocabulary entry looks like).
    func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(scalarForByte[Int(b)]) }
        return String(s)
    }

    /// The raw bytes of a byte-level string, or nil if some character is outside the alphabet.
    func decode(_ token: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(token.utf8.count)
        for s in token.unicodeScalars {
            let v = Int(s.value)
            guard v < byteForScalar.count, byteForScalar[v] >= 0 else { return nil }
            out.append(UInt8(byteForScalar[v]))
        }
        return out
    }
}
