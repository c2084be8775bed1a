import CZstd

/// Thin one-shot wrappers over the zstd simple API. Records are small (kilobytes) and decoded
/// whole, so streaming would add code without saving memory.
enum Zstd {
    /// Compresses `input` into one zstd frame (which records its own content size).
    static func compress(_ input: [UInt8], level: Int32) throws -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var out = [UInt8](repeating: 0, count: bound)
        let written = out.withUnsafeMutableBytes { dst in
            input.withUnsafeBytes { src in
                ZSTD_compress(dst.baseAddress, bound, src.baseAddress, src.count, level)
            }
        }
        if ZSTD_isError(written) != 0 {
            throw CacheError.compression(detail: String(cString: ZSTD_getErrorName(written)))
        }
        out.removeLast(out.count - written)
        return out
    }

    /// Decompresses one frame whose content size must be exactly `expectedSize`; a frame that
    /// claims or produces another size is damage, not data.
    static func decompress(_ input: ArraySlice<UInt8>, expectedSize: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: max(expectedSize, 1))
        let produced = out.withUnsafeMutableBytes { dst in
            input.withUnsafeBytes { src in
                ZSTD_decompress(dst.baseAddress, expectedSize, src.baseAddress, src.count)
            }
        }
        if ZSTD_isError(produced) != 0 {
            throw CacheError.compression(detail: String(cString: ZSTD_getErrorName(produced)))
        }
        guard produced == expectedSize else {
            throw CacheError.compression(detail: "frame holds \(produced) bytes, expected \(expectedSize)")
        }
        out.removeLast(out.count - expectedSize)
        return out
    }
}
