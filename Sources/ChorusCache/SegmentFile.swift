import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Segment files: `segments/NNNNNNNN.seg`, each a 16-byte header then record frames appended one
/// after another. Only the highest-numbered segment is ever appended to.
enum SegmentFile {
    /// "CHSEG001": chorus segment, format 1.
    static let magic: [UInt8] = Array("CHSEG001".utf8)
    static let headerSize = 16
    static let directoryName = "segments"
    static let fileExtension = "seg"

    static func fileName(_ number: Int) -> String {
        let digits = String(number)
        return String(repeating: "0", count: max(0, 8 - digits.count)) + digits + "." + fileExtension
    }

    /// The segment number of a file name, or nil for anything else (temporary files included).
    static func number(of fileName: String) -> Int? {
        guard fileName.hasSuffix("." + fileExtension) else { return nil }
        let stem = fileName.dropLast(fileExtension.count + 1)
        guard stem.count == 8, stem.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(stem)
    }

    static func header(number: Int) -> [UInt8] {
        var w = ByteWriter(capacity: headerSize)
        w.raw(magic)
        w.u32(UInt32(truncatingIfNeeded: number))
        w.u32(CRC32C.checksum(w.bytes))
        return w.bytes
    }

    static func headerIsValid(_ bytes: [UInt8]) -> Bool {
        guard bytes.count >= headerSize, Array(bytes[0..<8]) == magic else { return false }
        var r = ByteReader(bytes, from: 12, to: 16)
        guard let crc = try? r.fixed(UInt32.self) else { return false }
        return crc == bytes.withUnsafeBytes { CRC32C.update(0, UnsafeRawBufferPointer(rebasing: $0[0..<12])) }
    }

    /// Segment numbers present in `directory`, ascending.
    static func list(in directory: String) throws -> [Int] {
        guard let dir = opendir(directory) else {
            throw CacheError.io(path: directory, operation: "opendir", errno: errno)
        }
        defer { closedir(dir) }
        var numbers: [Int] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if let n = number(of: name) { numbers.append(n) }
        }
        return numbers.sorted()
    }

    /// Creates segment `number` complete with its header, atomically (temporary file + rename),
    /// so a crash never leaves a segment without a header.
    static func create(number: Int, in directory: String) throws {
        let path = directory + "/" + fileName(number)
        let temp = path + ".tmp.\(getpid())"
        let file = try FileDescriptor(path: temp, flags: O_WRONLY | O_CREAT | O_TRUNC)
        try file.writeAll(header(number: number))
        guard link(temp, path) == 0 else {
            let e = errno
            unlink(temp)
            throw CacheError.io(path: path, operation: "create segment", errno: e)
        }
        unlink(temp)
    }
}

/// One thing found while walking a segment.
enum ScanItem {
    /// A frame whose header and summary are readable. Its body checksum is not checked here:
    /// `RecordFrame.decode` checks it on every lookup, and `verify` decodes every frame.
    case record(offset: Int, length: Int, summary: FrameSummary)
    /// Bytes that are not a valid frame, or a frame whose body failed its check.
    case corrupt(offset: Int, length: Int, detail: String, digest: [UInt8]?)
    /// An incomplete final frame: a crash mid-append (only reported when no writer can be active).
    case tornTail(offset: Int, length: Int)
}

/// Walks frames of one segment. With `writersExcluded` (the caller holds the lock) an incomplete
/// final frame is a torn tail; otherwise it may be a record still being written and the walk just
/// stops before it. Returns the offset where the walk stopped: the end of the last complete frame
/// or corrupt region, which is where a later walk resumes (and where a torn tail is cut).
func scanSegment(_ file: FileDescriptor, name: String, from start: Int, size: Int, writersExcluded: Bool,
                 visit: (ScanItem) throws -> Void) throws -> Int {
    var offset = start
    while offset < size {
        let remaining = size - offset
        if remaining < RecordFrame.headerSize {
            if writersExcluded { try visit(.tornTail(offset: offset, length: remaining)) }
            return offset
        }
        let head = try file.read(at: offset, count: min(RecordFrame.scanSize, remaining))
        if let header = RecordFrame.parseHeader(head, at: 0) {
            if header.totalLength > remaining {
                if writersExcluded { try visit(.tornTail(offset: offset, length: remaining)) }
                return offset
            }
            let bodyEnd = RecordFrame.headerSize + header.bodyLength
            guard let summary = try? RecordFrame.parseSummary(head, bodyStart: RecordFrame.headerSize, bodyEnd: bodyEnd) else {
                try visit(.corrupt(offset: offset, length: header.totalLength, detail: "unreadable record summary", digest: nil))
                offset += header.totalLength
                continue
            }
            try visit(.record(offset: offset, length: header.totalLength, summary: summary))
            offset += header.totalLength
        } else {
            // Not a frame header: damage. Resynchronise on the next valid header so that one bad
            // byte costs one record, not the rest of the segment.
            let rest = try file.read(at: offset, count: remaining)
            var next = 1
            while next < rest.count {
                if rest[next] == RecordFrame.magic[0], RecordFrame.parseHeader(rest, at: next) != nil { break }
                next += 1
            }
            try visit(.corrupt(offset: offset, length: next, detail: "bad frame header", digest: nil))
            offset += next
        }
    }
    return offset
}
