import Foundation

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the per-record and per-header checksum.
// Chosen over a truncated SHA-256 because it is cheap enough to check on every lookup and it
// detects every burst error of up to 32 bits, which covers the flipped-byte damage we expect.
// Slicing-by-8 tables keep it at several hundred MB/s without hardware intrinsics.

/// CRC-32C checksum (the iSCSI / ext4 polynomial). `crc32c("123456789") == 0xE3069283`.
public enum CRC32C {
    /// 8 tables of 256 entries; table 0 is the classic byte-at-a-time table.
    private static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[i] = c
        }
        for i in 0..<256 {
            for s in 1..<8 {
                let prev = t[(s - 1) * 256 + i]
                t[s * 256 + i] = (prev >> 8) ^ t[Int(prev & 0xff)]
            }
        }
        return t
    }()

    /// Continues a CRC over `buffer`; start with `crc = 0` for a fresh checksum.
    public static func update(_ crc: UInt32, _ buffer: UnsafeRawBufferPointer) -> UInt32 {
        var c = ~crc
        var i = 0
        let n = buffer.count
        tables.withUnsafeBufferPointer { t in
            while i + 8 <= n {
                let lo = c ^ (UInt32(buffer[i]) | UInt32(buffer[i + 1]) << 8
                    | UInt32(buffer[i + 2]) << 16 | UInt32(buffer[i + 3]) << 24)
                c = t[7 * 256 + Int(lo & 0xff)] ^ t[6 * 256 + Int((lo >> 8) & 0xff)]
                    ^ t[5 * 256 + Int((lo >> 16) & 0xff)] ^ t[4 * 256 + Int(lo >> 24)]
                    ^ t[3 * 256 + Int(buffer[i + 4])] ^ t[2 * 256 + Int(buffer[i + 5])]
                    ^ t[1 * 256 + Int(buffer[i + 6])] ^ t[Int(buffer[i + 7])]
                i += 8
            }
            while i < n {
                c = (c >> 8) ^ t[Int((c ^ UInt32(buffer[i])) & 0xff)]
                i += 1
            }
        }
        return ~c
    }

    /// CRC-32C of `bytes`.
    public static func checksum<C: ContiguousBytes>(_ bytes: C) -> UInt32 {
        bytes.withUnsafeBytes { update(0, $0) }
    }
}
