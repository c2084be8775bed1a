import ChorusCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Totals for one teacher in `CacheStats`.
public struct TeacherStats: Codable, Equatable, Sendable {
    public var records = 0
    public var positions = 0
    public var bytes = 0
}

/// What `ScoreCache.stats()` reports. Byte counts are on-disk frame bytes of live records
/// (the newest copy of each key); `segmentBytes` is everything in the segment files.
public struct CacheStats: Codable, Equatable, Sendable {
    public var records = 0
    public var segments = 0
    public var segmentBytes = 0
    public var recordBytes = 0
    public var positions = 0
    public var topEntries = 0
    /// `recordBytes / positions`.
    public var bytesPerPosition = 0.0
    /// Raw float32-equivalent bytes of the live records over `recordBytes`.
    public var ratioToFloat32 = 0.0
    public var teachers: [String: TeacherStats] = [:]
    /// This process's lookup counters (per teacher label).
    public var counters: [String: TeacherCounters] = [:]

    enum CodingKeys: String, CodingKey {
        case records, segments, teachers, counters, positions
        case segmentBytes = "segment_bytes", recordBytes = "record_bytes", topEntries = "top_entries"
        case bytesPerPosition = "bytes_per_position", ratioToFloat32 = "ratio_to_float32"
    }
}

/// One damaged place found by `verify`.
public struct CacheDamage: Codable, Equatable, Sendable {
    /// Segment file, relative to the cache directory.
    public var segment: String
    public var offset: Int
    public var length: Int
    /// Hex digest of the record, when its header was readable.
    public var key: String?
    public var detail: String
}

/// What `ScoreCache.verify()` found.
public struct VerifyReport: Codable, Equatable, Sendable {
    /// Frames that decoded completely and whose key re-derives to the stored digest.
    public var goodRecords = 0
    /// Corruption: bad checksums, undecodable payloads, garbage between frames. Non-empty means
    /// `chorus cache verify` fails.
    public var corrupt: [CacheDamage] = []
    /// Incomplete final frames left by interrupted writes: expected after a crash, cut by the
    /// next writable open, not a failure.
    public var tornTails: [CacheDamage] = []
    /// Keys stored more than once (harmless: the newest copy is used).
    public var duplicates = 0

    /// True when nothing is corrupt (torn tails allowed).
    public var isClean: Bool { corrupt.isEmpty }

    enum CodingKeys: String, CodingKey {
        case corrupt, duplicates
        case goodRecords = "good_records", tornTails = "torn_tails"
    }
}

/// What `ScoreCache.gc(maxBytes:)` did.
public struct GCReport: Codable, Equatable, Sendable {
    public var keptRecords = 0
    public var keptBytes = 0
    public var evictedRecords = 0
    public var evictedBytes = 0
    /// Records dropped because they failed their checksum while being copied.
    public var droppedCorrupt = 0
    public var segmentBytesBefore = 0
    public var segmentBytesAfter = 0

    enum CodingKeys: String, CodingKey {
        case keptRecords = "kept_records", keptBytes = "kept_bytes", evictedRecords = "evicted_records"
        case evictedBytes = "evicted_bytes", droppedCorrupt = "dropped_corrupt"
        case segmentBytesBefore = "segment_bytes_before", segmentBytesAfter = "segment_bytes_after"
    }
}

extension ScoreCache {
    /// Counts and sizes of the live records, per teacher, from the index (no decompression).
    public func stats() throws -> CacheStats {
        mutex.lock()
        defer { mutex.unlock() }
        try refresh(writersExcluded: false)
        var s = CacheStats()
        let present = try SegmentFile.list(in: segmentsPath)
        s.segments = present.count
        for number in present { s.segmentBytes += (try? reader(number).size()) ?? 0 }
        var raw = 0
        for location in index.values {
            s.records += 1
            s.recordBytes += location.length
            s.positions += location.summary.positions
            s.topEntries += location.summary.topEntries
            raw += location.summary.rawFloat32Bytes
            s.teachers[location.summary.teacher, default: TeacherStats()].records += 1
            s.teachers[location.summary.teacher, default: TeacherStats()].positions += location.summary.positions
            s.teachers[location.summary.teacher, default: TeacherStats()].bytes += location.length
        }
        s.bytesPerPosition = s.positions > 0 ? Double(s.recordBytes) / Double(s.positions) : 0
        s.ratioToFloat32 = s.recordBytes > 0 ? Double(raw) / Double(s.recordBytes) : 0
        s.counters = counters
        return s
    }

    /// Reads and fully decodes every frame of every segment (checksums, decompression, key
    /// re-derivation), holding a shared lock so no append is in flight: an incomplete final
    /// frame is then certainly a torn write. Changes nothing on disk.
    public func verify() throws -> VerifyReport {
        mutex.lock()
        defer { mutex.unlock() }
        try lockFD.lock(exclusive: false)
        defer { lockFD.unlock() }
        var report = VerifyReport()
        var seen = Set<[UInt8]>()
        for number in try SegmentFile.list(in: segmentsPath) {
            let name = segmentName(number)
            let file = try FileDescriptor(path: segmentsPath + "/" + SegmentFile.fileName(number), flags: O_RDONLY)
            let size = try file.size()
            let header = try file.read(at: 0, count: SegmentFile.headerSize)
            if !SegmentFile.headerIsValid(header) {
                report.corrupt.append(CacheDamage(segment: name, offset: 0, length: min(size, SegmentFile.headerSize),
                                                  key: nil, detail: "bad segment header"))
            }
            _ = try scanSegment(file, name: name, from: SegmentFile.headerSize, size: size, writersExcluded: true) { item in
                switch item {
                case let .record(offset, length, summary):
                    let frame = try file.read(at: offset, count: length)
                    do {
                        _ = try RecordFrame.decode(frame, from: 0, segment: name)
                        report.goodRecords += 1
                        if !seen.insert(summary.digest).inserted { report.duplicates += 1 }
                    } catch let CacheError.corruptRecord(_, _, detail) {
                        report.corrupt.append(CacheDamage(segment: name, offset: offset, length: length,
                                                          key: hexString(summary.digest), detail: detail))
                    }
                case let .corrupt(offset, length, detail, digest):
                    report.corrupt.append(CacheDamage(segment: name, offset: offset, length: length,
                                                      key: digest.map { hexString($0) }, detail: detail))
                case let .tornTail(offset, length):
                    report.tornTails.append(CacheDamage(segment: name, offset: offset, length: length, key: nil,
                                                        detail: "incomplete final record (interrupted write)"))
                }
            }
        }
        return report
    }

    /// Shrinks the cache to at most `maxBytes` of record frames, evicting the least recently used
    /// records first (last use = the later of store time and last hit in the access log). Live
    /// records are copied into fresh segments and the old segments removed; a crash midway leaves
    /// duplicates, never losses. Records failing their checksum are dropped and reported.
    public func gc(maxBytes: Int) throws -> GCReport {
        guard !readOnly else { throw CacheError.io(path: path, operation: "gc (opened read-only)", errno: EROFS) }
        mutex.lock()
        defer { mutex.unlock() }
        try lockFD.lock(exclusive: true)
        defer { lockFD.unlock() }
        try refresh(writersExcluded: true)
        var report = GCReport()
        let old = try SegmentFile.list(in: segmentsPath)
        for number in old { report.segmentBytesBefore += try reader(number).size() }

        let accessPath = path + "/" + AccessLog.fileName
        let accessed = try AccessLog.read(path: accessPath)
        func lastUse(_ l: RecordLocation) -> UInt64 {
            max(l.summary.storedAt, accessed[AccessLog.prefixKey(l.summary.digest)] ?? 0)
        }
        // Most recently used first; ties broken by position so the result is deterministic.
        let ordered = index.values.sorted {
            let a = lastUse($0), b = lastUse($1)
            return a != b ? a > b : ($0.segment, $0.offset) > ($1.segment, $1.offset)
        }
        var keep: [RecordLocation] = []
        var total = 0
        for (i, l) in ordered.enumerated() {
            if total + l.length > maxBytes {
                for e in ordered[i...] { report.evictedRecords += 1; report.evictedBytes += e.length }
                break
            }
            keep.append(l)
            total += l.length
        }

        // Copy survivors in their old order (locality for readers), into segments numbered after
        // every existing one, each written complete under a temporary name then linked in.
        keep.sort { ($0.segment, $0.offset) < ($1.segment, $1.offset) }
        var nextNumber = (old.last ?? 0) + 1
        var buffer: [UInt8] = SegmentFile.header(number: nextNumber)
        var newLog: [UInt8] = []
        func flush() throws {
            guard buffer.count > SegmentFile.headerSize else { return }
            let final = segmentsPath + "/" + SegmentFile.fileName(nextNumber)
            try AtomicFile.write(buffer, to: URL(fileURLWithPath: final))
            nextNumber += 1
            buffer = SegmentFile.header(number: nextNumber)
        }
        for l in keep {
            let frame = try readFrame(l)
            guard let header = RecordFrame.parseHeader(frame, at: 0),
                  RecordFrame.bodyChecksumMatches(frame, at: 0, header: header) else {
                onProblem("\(segmentName(l.segment)) @\(l.offset): corrupt record dropped by gc")
                report.droppedCorrupt += 1
                continue
            }
            if buffer.count + frame.count > maxSegmentBytes { try flush() }
            buffer.append(contentsOf: frame)
            report.keptRecords += 1
            report.keptBytes += frame.count
            newLog.append(contentsOf: AccessLog.entry(digest: l.summary.digest, time: lastUse(l)))
        }
        try flush()
        for number in old {
            let file = segmentsPath + "/" + SegmentFile.fileName(number)
            guard unlink(file) == 0 else { throw CacheError.io(path: file, operation: "unlink", errno: errno) }
        }
        // Entries appended by readers between our read and this rename are lost: recency is
        // advisory, and the records themselves are untouched.
        try AtomicFile.write(newLog, to: URL(fileURLWithPath: accessPath))
        accessLog = try AccessLog(path: accessPath)
        resetIndex()
        try refresh(writersExcluded: true)
        for number in try SegmentFile.list(in: segmentsPath) { report.segmentBytesAfter += try reader(number).size() }
        return report
    }
}
