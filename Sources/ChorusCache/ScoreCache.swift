import ChorusCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Hit/miss counters of one teacher in this process.
public struct TeacherCounters: Codable, Equatable, Sendable {
    /// Lookups answered from the cache.
    public var hits = 0
    /// Lookups that found nothing usable (absent or corrupt).
    public var misses = 0
    /// Misses caused by a corrupt record (also counted in `misses`).
    public var corrupt = 0
    /// Records written by `store`.
    public var stores = 0
}

/// Where a record lives.
struct RecordLocation {
    var segment: Int
    var offset: Int
    var length: Int
    var summary: FrameSummary
}

/// The content-addressed, compressed store of teacher scores.
///
/// A directory holds append-only segment files of checksummed record frames
/// (docs/cache-format.md). Any number of processes may open the same directory: appends and
/// maintenance take an exclusive `flock` on `<dir>/lock`, lookups take no lock and trust only
/// checksummed frames. The index (digest -> location) is derived state, rebuilt from the segment
/// headers at open and refreshed incrementally when a lookup misses. A kill -9 during `store`
/// leaves at most one incomplete frame at the end of a segment; the next writer cuts it off.
///
/// Thread-safe: one instance may be shared by the teacher pool's threads.
public final class ScoreCache: @unchecked Sendable {
    /// The cache directory.
    public let directory: URL
    /// True if opened read-only (no repair, no stores, no access log).
    public let readOnly: Bool
    /// Segments roll over to a new file past this size.
    public let maxSegmentBytes: Int
    /// fsync after every store (survives power loss, not only process death; slower).
    public let syncWrites: Bool
    /// zstd level for new records (3 by default: higher levels gain under 1% on these streams).
    public let compressionLevel: Int32
    /// Called for every problem found (corrupt record, cut torn tail). Defaults to a line on
    /// standard error; set it to route reports elsewhere.
    public var onProblem: @Sendable (String) -> Void = { message in
        FileHandle.standardError.write(Data("chorus cache: \(message)\n".utf8))
    }

    /// Test hook: append each frame in pieces of this many bytes with a pause (microseconds)
    /// between them, so that a crash test's kill -9 lands inside a frame (one whole-frame write()
    /// is almost never interrupted). Leave nil in real use.
    public var debugAppendChunks: (bytes: Int, pauseMicroseconds: UInt32)?

    static let formatFile = "FORMAT"
    static let formatLine = "chorus-score-cache 1\n"
    static let lockFile = "lock"

    let mutex = NSLock()
    let path: String
    let segmentsPath: String
    let lockFD: FileDescriptor
    var accessLog: AccessLog?
    var index: [[UInt8]: RecordLocation] = [:]
    /// Segment number -> offset up to which it has been indexed.
    var scanned: [Int: Int] = [:]
    var readers: [Int: FileDescriptor] = [:]
    var counters: [String: TeacherCounters] = [:]
    /// Fingerprint -> teacher name learned from stores and hits, to label misses.
    var teacherNames: [[UInt8]: String] = [:]

    /// Opens (creating unless `readOnly`) the cache at `directory`. A writable open takes the
    /// lock once to index every segment and cut torn tails left by crashed writers; `onProblem`
    /// (if given) already receives the reports of that first scan.
    public init(directory: URL, readOnly: Bool = false, maxSegmentBytes: Int = 64 << 20,
                syncWrites: Bool = false, compressionLevel: Int32 = 3,
                onProblem: (@Sendable (String) -> Void)? = nil) throws {
        if let onProblem { self.onProblem = onProblem }
        self.directory = directory
        self.readOnly = readOnly
        self.maxSegmentBytes = maxSegmentBytes
        self.syncWrites = syncWrites
        self.compressionLevel = compressionLevel
        path = directory.path
        segmentsPath = path + "/" + SegmentFile.directoryName
        let formatPath = path + "/" + ScoreCache.formatFile
        if readOnly {
            guard let format = try readWholeFile(formatPath) else {
                throw CacheError.badFormat(path: path, detail: "no \(ScoreCache.formatFile) file")
            }
            guard String(decoding: format, as: UTF8.self) == ScoreCache.formatLine else {
                throw CacheError.badFormat(path: formatPath, detail: "unsupported format line")
            }
            lockFD = try FileDescriptor(path: path + "/" + ScoreCache.lockFile, flags: O_RDONLY | O_CREAT)
        } else {
            for dir in [path, segmentsPath] where mkdir(dir, 0o755) != 0 && errno != EEXIST {
                throw CacheError.io(path: dir, operation: "mkdir", errno: errno)
            }
            lockFD = try FileDescriptor(path: path + "/" + ScoreCache.lockFile, flags: O_RDWR | O_CREAT)
            try lockFD.lock(exclusive: true)
            defer { lockFD.unlock() }
            if let format = try readWholeFile(formatPath) {
                guard String(decoding: format, as: UTF8.self) == ScoreCache.formatLine else {
                    throw CacheError.badFormat(path: formatPath, detail: "unsupported format line")
                }
            } else {
                try AtomicFile.write(Array(ScoreCache.formatLine.utf8), to: URL(fileURLWithPath: formatPath))
            }
            accessLog = try AccessLog(path: path + "/" + AccessLog.fileName)
            try refresh(writersExcluded: true)
        }
        if readOnly { try refresh(writersExcluded: false) }
    }

    // MARK: lookup and store

    /// The record stored under `key`, or nil. A corrupt record is reported through `onProblem`,
    /// dropped from the index and answered as a miss, so the caller re-scores it; a corrupt value
    /// is never returned. `teacher` labels the hit/miss counters (default: the name the
    /// fingerprint was stored under, else the fingerprint's first 16 hex digits). `counted: false`
    /// leaves the counters alone (reading back a record just stored is neither a hit nor a miss).
    public func lookup(_ key: CacheKey, teacher: String? = nil, counted: Bool = true) -> ScoreRecord? {
        mutex.lock()
        defer { mutex.unlock() }
        func tally(_ label: String, _ update: (inout TeacherCounters) -> Void) {
            if counted { update(&counters[label, default: TeacherCounters()]) }
        }
        var label = teacher ?? teacherNames[key.fingerprint.bytes] ?? String(key.fingerprint.hex.prefix(16))
        var location = index[key.digest]
        if location == nil {
            // Another process may have stored it since we last looked.
            do { try refresh(writersExcluded: false) } catch { onProblem("\(error)") }
            location = index[key.digest]
        }
        guard var location else {
            tally(label) { $0.misses += 1 }
            return nil
        }
        if teacher == nil { label = location.summary.teacher }
        var bytes: [UInt8]
        do {
            bytes = try readFrame(location)
        } catch CacheError.io(_, _, ENOENT) {
            // The segment was removed by another process's gc: re-index and try where it went.
            resetIndex()
            try? refresh(writersExcluded: false)
            guard let moved = index[key.digest], let again = try? readFrame(moved) else {
                tally(label) { $0.misses += 1 }
                return nil
            }
            location = moved
            bytes = again
        } catch {
            onProblem("\(error) (key \(key.hex)); treated as a miss")
            tally(label) { $0.misses += 1 }
            return nil
        }
        do {
            let (_, decodedKey, record) = try RecordFrame.decode(bytes, from: 0, segment: segmentName(location.segment))
            guard decodedKey.digest == key.digest else {
                throw CacheError.corruptRecord(segment: segmentName(location.segment), offset: location.offset,
                                               detail: "record holds another key")
            }
            tally(label) { $0.hits += 1 }
            teacherNames[key.fingerprint.bytes] = location.summary.teacher
            accessLog?.recordAccess(digest: key.digest)
            return record
        } catch {
            // decode names offset 0 of the frame buffer; report the frame's place in the segment.
            var message = "\(error)"
            if case let CacheError.corruptRecord(segment, _, detail) = error {
                message = "\(CacheError.corruptRecord(segment: segment, offset: location.offset, detail: detail))"
            }
            onProblem("\(message) (key \(key.hex)); treated as a miss")
            index[key.digest] = nil
            tally(label) { $0.misses += 1; $0.corrupt += 1 }
            return nil
        }
    }

    /// True if a record for `key` is indexed (its integrity is checked only by `lookup`).
    public func contains(_ key: CacheKey) -> Bool {
        mutex.lock()
        defer { mutex.unlock() }
        if index[key.digest] == nil { try? refresh(writersExcluded: false) }
        return index[key.digest] != nil
    }

    /// Stores `record` under `key`, labelled with the teacher's name (at most 255 UTF-8 bytes).
    /// Returns false without writing if the key is already stored (content addressing: same key,
    /// same scores). Throws `CacheError.invalidRecord` for records that cannot be stored (NaN or
    /// positive log-probs, mismatched top-k arrays, positions past the context).
    @discardableResult
    public func store(_ key: CacheKey, _ record: ScoreRecord, teacher: String) throws -> Bool {
        try storeReadingBack(key, record, teacher: teacher).stored
    }

    /// `store`, returning also the record as every later `lookup` of `key` will: the frame just
    /// written as the reader decodes it (its storage precision), or, when the key was already
    /// stored, that record read back without counting a hit (nil if it no longer reads).
    public func storeReadingBack(_ key: CacheKey, _ record: ScoreRecord, teacher: String) throws
        -> (stored: Bool, record: ScoreRecord?) {
        guard !readOnly else { throw CacheError.io(path: path, operation: "store (opened read-only)", errno: EROFS) }
        let storedAt = UInt64(max(0, Date().timeIntervalSince1970 * 1000))
        // Compress before taking the lock: other writers wait only for the append itself.
        let (frame, readBack) = try RecordFrame.encodeReadingBack(key: key, record: record, teacher: teacher, storedAt: storedAt,
                                                                  level: compressionLevel)
        if try !append(frame, key: key, record: record, teacher: teacher, storedAt: storedAt) {
            return (false, lookup(key, teacher: teacher, counted: false))
        }
        return (true, readBack)
    }

    /// Appends an encoded frame under the writer lock; false when the key is already stored.
    private func append(_ frame: [UInt8], key: CacheKey, record: ScoreRecord, teacher: String, storedAt: UInt64) throws -> Bool {
        mutex.lock()
        defer { mutex.unlock() }
        try lockFD.lock(exclusive: true)
        defer { lockFD.unlock() }
        try refresh(writersExcluded: true)
        if index[key.digest] != nil { return false }
        var active = scanned.keys.max() ?? 0
        if active == 0 || (scanned[active]! > SegmentFile.headerSize && scanned[active]! + frame.count > maxSegmentBytes) {
            active += 1
            try SegmentFile.create(number: active, in: segmentsPath)
            scanned[active] = SegmentFile.headerSize
        }
        let offset = scanned[active]!
        let writer = try FileDescriptor(path: segmentsPath + "/" + SegmentFile.fileName(active), flags: O_WRONLY | O_APPEND)
        let size = try writer.size()
        guard size == offset else {
            throw CacheError.io(path: writer.path, operation: "append (size \(size), expected \(offset))", errno: EIO)
        }
        do {
            if let (chunk, pause) = debugAppendChunks, chunk > 0 {
                var at = 0
                while at < frame.count {
                    try writer.writeAll(Array(frame[at..<min(frame.count, at + chunk)]))
                    at += chunk
                    usleep(pause)
                }
            } else {
                try writer.writeAll(frame)
            }
            if syncWrites { try writer.sync() }
        } catch {
            // Leave no partial frame behind (e.g. disk full).
            try? writer.truncate(to: offset)
            throw error
        }
        scanned[active] = offset + frame.count
        let summary = FrameSummary(digest: key.digest, storedAt: storedAt, positions: record.positions.count,
                                   topEntries: record.positions.reduce(0) { $0 + $1.topIds.count }, teacher: teacher)
        index[key.digest] = RecordLocation(segment: active, offset: offset, length: frame.count, summary: summary)
        counters[teacher, default: TeacherCounters()].stores += 1
        teacherNames[key.fingerprint.bytes] = teacher
        return true
    }

    /// This process's hit/miss/store counters, per teacher label.
    public func counterSnapshot() -> [String: TeacherCounters] {
        mutex.lock()
        defer { mutex.unlock() }
        return counters
    }

    /// Drops the in-memory index and rebuilds it from the segment files.
    public func rebuildIndex() throws {
        mutex.lock()
        defer { mutex.unlock() }
        resetIndex()
        try refresh(writersExcluded: false)
    }

    // MARK: index maintenance (callers hold `mutex`)

    func segmentName(_ number: Int) -> String {
        SegmentFile.directoryName + "/" + SegmentFile.fileName(number)
    }

    func resetIndex() {
        index.removeAll()
        scanned.removeAll()
        readers.removeAll()
    }

    func reader(_ segment: Int) throws -> FileDescriptor {
        if let fd = readers[segment] { return fd }
        let fd = try FileDescriptor(path: segmentsPath + "/" + SegmentFile.fileName(segment), flags: O_RDONLY)
        readers[segment] = fd
        return fd
    }

    func readFrame(_ location: RecordLocation) throws -> [UInt8] {
        let bytes = try reader(location.segment).read(at: location.offset, count: location.length)
        guard bytes.count == location.length else {
            throw CacheError.corruptRecord(segment: segmentName(location.segment), offset: location.offset,
                                           detail: "segment shorter than the indexed frame")
        }
        return bytes
    }

    /// Brings the index up to date with the segment files: new segments, frames appended since
    /// the last scan, and a full rebuild if a segment vanished (another process ran `gc`).
    /// With `writersExcluded` (caller holds the exclusive lock, not read-only) a torn tail is cut.
    func refresh(writersExcluded: Bool) throws {
        let present = try SegmentFile.list(in: segmentsPath)
        if scanned.keys.contains(where: { !present.contains($0) }) { resetIndex() }
        for number in present {
            let file = try reader(number)
            let size = try file.size()
            var from = scanned[number] ?? 0
            if from == 0 {
                let header = try file.read(at: 0, count: SegmentFile.headerSize)
                if !SegmentFile.headerIsValid(header) {
                    onProblem("\(segmentName(number)) @0: bad segment header")
                }
                from = SegmentFile.headerSize
            }
            guard size > from else { scanned[number] = from; continue }
            var tornAt: Int?
            let end = try scanSegment(file, name: segmentName(number), from: from, size: size,
                                      writersExcluded: writersExcluded && !readOnly) { item in
                switch item {
                case let .record(offset, length, summary):
                    index[summary.digest] = RecordLocation(segment: number, offset: offset, length: length, summary: summary)
                case let .corrupt(offset, length, detail, _):
                    onProblem("\(segmentName(number)) @\(offset): corrupt region of \(length) bytes: \(detail)")
                case let .tornTail(offset, _):
                    tornAt = offset
                }
            }
            if let tornAt {
                let writer = try FileDescriptor(path: file.path, flags: O_WRONLY)
                try writer.truncate(to: tornAt)
                onProblem("\(segmentName(number)) @\(tornAt): cut a torn record of \(size - tornAt) bytes (interrupted write)")
            }
            scanned[number] = end
        }
    }
}

/// The access log: 20-byte entries (first 8 bytes of the digest, access time in ms, CRC-32C of
/// those 16 bytes) appended on every hit, read by `gc` to evict least recently used records.
/// Advisory data: a damaged entry is skipped, and losing the log only makes gc fall back to
/// store times.
final class AccessLog {
    static let fileName = "access.log"
    static let entrySize = 20
    let file: FileDescriptor

    init(path: String) throws {
        file = try FileDescriptor(path: path, flags: O_WRONLY | O_APPEND | O_CREAT)
    }

    func recordAccess(digest: [UInt8], at time: UInt64 = UInt64(max(0, Date().timeIntervalSince1970 * 1000))) {
        // Best effort: a failed write loses recency information, never data.
        try? file.writeAll(AccessLog.entry(digest: digest, time: time))
    }

    static func entry(digest: [UInt8], time: UInt64) -> [UInt8] {
        var w = ByteWriter(capacity: entrySize)
        w.raw(digest.prefix(8))
        w.u64(time)
        w.u32(CRC32C.checksum(w.bytes))
        return w.bytes
    }

    /// Latest access time per 8-byte digest prefix (little-endian UInt64 of the prefix).
    static func read(path: String) throws -> [UInt64: UInt64] {
        guard let bytes = try readWholeFile(path) else { return [:] }
        var out: [UInt64: UInt64] = [:]
        var offset = 0
        while offset + entrySize <= bytes.count {
            var r = ByteReader(bytes, from: offset, to: offset + entrySize)
            let prefix = try r.fixed(UInt64.self), time = try r.fixed(UInt64.self), crc = try r.fixed(UInt32.self)
            let computed = bytes.withUnsafeBytes { CRC32C.update(0, UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + 16)])) }
            if computed == crc {
                out[prefix] = max(out[prefix] ?? 0, time)
                offset += entrySize
            } else {
                offset += 1  // resynchronise after a torn or damaged entry
            }
        }
        return out
    }

    static func prefixKey(_ digest: [UInt8]) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(digest[i]) << (8 * UInt64(i)) }
        return v
    }
}
