import ChorusCore
import ChorusTensor
import ChorusTokenizer
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Element types that can appear in a safetensors file.
public enum SafeTensorsDType: String, Sendable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16"
    case f64 = "F64", i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"
    case u16 = "U16", u32 = "U32", u64 = "U64", f8e4m3 = "F8_E4M3", f8e5m2 = "F8_E5M2"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .f64, .i64, .u64: return 8
        case .f32, .i32, .u32: return 4
        case .f16, .bf16, .i16, .u16: return 2
        case .i8, .u8, .bool, .f8e4m3, .f8e5m2: return 1
        }
    }

    /// Whether Chorus can load it as a float parameter (f32, f16, bf16).
    public var isLoadableFloat: Bool { self == .f32 || self == .f16 || self == .bf16 }
}

/// Errors reading or writing checkpoints; each names the file and, where relevant, the tensor.
public enum CheckpointError: Error, CustomStringConvertible, Equatable {
    case fileNotFound(path: String)
    case truncated(file: String, detail: String)
    case badHeader(file: String, detail: String)
    case badOffsets(file: String, tensor: String, detail: String)
    case unsupportedDType(file: String, tensor: String, dtype: String)
    case shapeMismatch(file: String, tensor: String, expected: [Int], found: [Int])
    case missingTensor(name: String, directory: String)
    case unusedTensor(name: String, file: String)
    case badIndex(file: String, detail: String)
    case nonFinite(file: String, tensor: String, index: Int, value: Float)
    case unreadable(path: String, problem: String)
    /// The model directory has no tokenizer.json (needed to encode or decode text).
    case missingTokenizer(directory: String)

    public var description: String {
        switch self {
        case let .fileNotFound(p): return "\(p): file not found"
        case let .truncated(f, d): return "\(f): truncated safetensors file: \(d)"
        case let .badHeader(f, d): return "\(f): invalid safetensors header: \(d)"
        case let .badOffsets(f, t, d): return "\(f): tensor '\(t)': invalid data offsets: \(d)"
        case let .unsupportedDType(f, t, d): return "\(f): tensor '\(t)': dtype \(d) is not allowed (expected F32, F16 or BF16)"
        case let .shapeMismatch(f, t, e, s): return "\(f): tensor '\(t)': shape \(s) does not match the config's \(e)"
        case let .missingTensor(n, d): return "\(d): missing tensor '\(n)'"
        case let .unusedTensor(n, f): return "\(f): unexpected tensor '\(n)' (not used by this model)"
        case let .badIndex(f, d): return "\(f): invalid sharded checkpoint index: \(d)"
        case let .nonFinite(f, t, i, v): return "\(f): tensor '\(t)': element \(i) is \(v) (weights must be finite numbers)"
        case let .unreadable(p, why): return "\(p): \(why)"
        case let .missingTokenizer(d):
            return "\(d): no tokenizer.json in the model directory (needed to encode and decode text; copy the checkpoint's tokenizer.json there)"
        }
    }
}

/// One tensor entry of a safetensors header.
public struct SafeTensorInfo: Sendable {
    public let name: String
    public let dtype: SafeTensorsDType
    public let shape: [Int]
    /// Byte range relative to the start of the data section.
    public let begin: Int, end: Int
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A memory-mapped safetensors file: little-endian u64 header length, JSON header, data.
///
/// Every offset in the header is checked against the file size before any byte is read, so a
/// header that lies produces an error naming the tensor, never an out-of-bounds read.
public final class SafeTensorsFile: @unchecked Sendable {
    /// Path of the file (for error messages).
    public let path: String
    /// Tensors by name, in header order.
    public let tensors: [String: SafeTensorInfo]
    /// Header `__metadata__` (string to string).
    public let metadata: [String: String]
    private let base: UnsafeRawPointer
    private let mappedLength: Int
    private let dataStart: Int

    /// Maps and validates a safetensors file.
    public init(path: String) throws {
        self.path = path
        let fd: Int32
        do { fd = try InputFile.open(path) } catch let e as InputFileError {
            if e.problem == InputFile.problem(errno: ENOENT) { throw CheckpointError.fileNotFound(path: path) }
            throw CheckpointError.unreadable(path: path, problem: e.problem)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw CheckpointError.fileNotFound(path: path) }
        let size = Int(st.st_size)
        if size < 8 { throw CheckpointError.truncated(file: path, detail: "\(size) bytes, shorter than the 8-byte header length") }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw CheckpointError.truncated(file: path, detail: "mmap failed (errno \(errno))")
        }
        let base = UnsafeRawPointer(p)
        do {
            (tensors, metadata, dataStart) = try SafeTensorsFile.parse(base: base, size: size, path: path)
        } catch {
            munmap(p, size)
            throw error
        }
        self.base = base
        self.mappedLength = size
    }

    /// Validates the header of a mapped file: returns tensors, metadata and the data offset.
    private static func parse(base: UnsafeRawPointer, size: Int, path: String) throws
        -> ([String: SafeTensorInfo], [String: String], Int) {

        let headerLen = Int(UInt64(littleEndian: base.loadUnaligned(as: UInt64.self)))
        if headerLen <= 0 || headerLen > 100_000_000 {
            throw CheckpointError.badHeader(file: path, detail: "header length \(headerLen) is not plausible")
        }
        if 8 + headerLen > size {
            throw CheckpointError.truncated(file: path, detail: "header claims \(headerLen) bytes but the file has \(size - 8) after the length")
        }
        let dataStart = 8 + headerLen
        let headerData = Data(bytes: base + 8, count: headerLen)
        // The reference `safetensors` library's rules: a UTF-8 JSON object starting with '{'
        // (trailing spaces allowed), `__metadata__` a map of strings to strings, every entry
        // {dtype, shape: [non-negative integers], data_offsets: [begin, end] integers}, the
        // tensors tiling the data section exactly (no gap, no overlap, no trailing bytes).
        guard headerData.first == UInt8(ascii: "{") else {
            throw CheckpointError.badHeader(file: path, detail: "header does not start with '{'")
        }
        let root: JSONValue
        do { root = try JSONParser.parse(headerData) } catch {
            throw CheckpointError.badHeader(file: path, detail: "header is not valid JSON (\(error))")
        }
        guard let members = root.objectValue else { throw CheckpointError.badHeader(file: path, detail: "header is not a JSON object") }
        let dataSize = size - dataStart
        var infos: [String: SafeTensorInfo] = [:]
        var meta: [String: String] = [:]
        /// A JSON integer literal in 0...Int.max (no sign, fraction or exponent: serde's usize).
        func unsigned(_ v: JSONValue) -> Int? {
            guard case let .number(n) = v, n.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
            return Int(n)
        }
        for (name, v) in members {
            if infos[name] != nil || (name == "__metadata__" && !meta.isEmpty) {
                throw CheckpointError.badHeader(file: path, detail: "entry '\(name)' appears twice")
            }
            if name == "__metadata__" {
                if case .null = v { continue }
                guard let m = v.objectValue else { throw CheckpointError.badHeader(file: path, detail: "__metadata__ is not an object of strings") }
                for (k, x) in m {
                    guard let str = x.stringValue else {
                        throw CheckpointError.badHeader(file: path, detail: "__metadata__ value of '\(k)' is not a string")
                    }
                    meta[k] = str
                }
                continue
            }
            guard let ds = v["dtype"]?.stringValue, let shapeJ = v["shape"]?.arrayValue, let offJ = v["data_offsets"]?.arrayValue
            else { throw CheckpointError.badHeader(file: path, detail: "entry '\(name)' lacks dtype, shape or data_offsets") }
            guard let dt = SafeTensorsDType(rawValue: ds) else {
                throw CheckpointError.unsupportedDType(file: path, tensor: name, dtype: ds)
            }
            var shape: [Int] = []
            for d in shapeJ {
                guard let n = unsigned(d) else {
                    throw CheckpointError.badHeader(file: path, detail: "tensor '\(name)' shape has a dimension that is not a non-negative integer")
                }
                shape.append(n)
            }
            guard offJ.count == 2, let b = unsigned(offJ[0]), let en = unsigned(offJ[1]) else {
                throw CheckpointError.badOffsets(file: path, tensor: name, detail: "data_offsets must be two non-negative integers")
            }
            var numel = 1
            for d in shape {
                let (r, o) = numel.multipliedReportingOverflow(by: d)
                if o { throw CheckpointError.badHeader(file: path, detail: "tensor '\(name)' shape overflows") }
                numel = r
            }
            if en < b { throw CheckpointError.badOffsets(file: path, tensor: name, detail: "[\(b), \(en)] is not a range") }
            if en > dataSize {
                throw CheckpointError.badOffsets(file: path, tensor: name, detail: "end \(en) is past the data section (\(dataSize) bytes; file truncated or header lies)")
            }
            let (bytes, o) = numel.multipliedReportingOverflow(by: dt.size)
            if o || en - b != bytes {
                throw CheckpointError.badOffsets(file: path, tensor: name, detail: "\(en - b) bytes for \(numel) \(ds) elements")
            }
            infos[name] = SafeTensorInfo(name: name, dtype: dt, shape: shape, begin: b, end: en)
        }
        // The tensors tile the data section from byte 0 with no gap or overlap, and nothing
        // follows the last one (the reference rejects all three).
        let sorted = infos.values.sorted { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var cursor = 0
        for t in sorted {
            if t.begin < cursor { throw CheckpointError.badOffsets(file: path, tensor: t.name, detail: "overlaps the previous tensor") }
            if t.begin > cursor { throw CheckpointError.badOffsets(file: path, tensor: t.name, detail: "leaves \(t.begin - cursor) unused bytes before it") }
            cursor = t.end
        }
        if cursor != dataSize {
            throw CheckpointError.badHeader(file: path, detail: "\(dataSize - cursor) bytes after the last tensor (the data section must end with it)")
        }
        return (infos, meta, dataStart)
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), mappedLength) }

    /// Raw bytes of a tensor (valid while this object lives).
    public func rawBytes(_ info: SafeTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + dataStart + info.begin, count: info.end - info.begin)
    }

    /// Converts a float tensor into `dst` (elementCount floats).
    public func read(_ name: String, into dst: UnsafeMutablePointer<Float>) throws {
        guard let info = tensors[name] else { throw CheckpointError.missingTensor(name: name, directory: path) }
        guard info.dtype.isLoadableFloat else { throw CheckpointError.unsupportedDType(file: path, tensor: name, dtype: info.dtype.rawValue) }
        let raw = rawBytes(info)
        let n = info.elementCount
        switch info.dtype {
        case .f32:
            // The data section need not be 4-byte aligned relative to the map; copy bytewise.
            memcpy(dst, raw.baseAddress!, n * 4)
        case .bf16:
            for i in 0..<n { dst[i] = HalfConversion.bf16ToFloat(raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .f16:
            for i in 0..<n { dst[i] = HalfConversion.f16ToFloat(raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        default: break
        }
    }

    /// Reads a float tensor into a new array.
    public func readArray(_ name: String) throws -> [Float] {
        guard let info = tensors[name] else { throw CheckpointError.missingTensor(name: name, directory: path) }
        var out = [Float](repeating: 0, count: info.elementCount)
        try out.withUnsafeMutableBufferPointer { try read(name, into: $0.baseAddress!) }
        return out
    }
}

/// Writes safetensors files (F32 or BF16) that the Python `safetensors` library reads back
/// bit-exactly. Tensors are laid out in the order given; the header is space-padded to a
/// multiple of 8 bytes as the reference writer does.
public enum SafeTensorsWriter {
    /// One tensor to write: name, shape, f32 values (converted when `dtype` is bf16).
    public struct Entry {
        public var name: String
        public var shape: [Int]
        public var data: UnsafePointer<Float>
        /// A tensor named `name` of `shape`, read from `data` (product of shape floats).
        public init(name: String, shape: [Int], data: UnsafePointer<Float>) {
            self.name = name; self.shape = shape; self.data = data
        }
    }

    /// Writes `entries` to `url` atomically (temp file + fsync + rename).
    public static func write(_ entries: [Entry], dtype: SafeTensorsDType = .f32, metadata: [String: String] = ["format": "pt"], to url: URL) throws {
        precondition(dtype == .f32 || dtype == .bf16, "writer supports F32 and BF16")
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for e in entries {
            let n = e.shape.reduce(1, *) * dtype.size
            header[e.name] = ["dtype": dtype.rawValue, "shape": e.shape, "data_offsets": [offset, offset + n]]
            offset += n
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        var len = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &len) { out.append(contentsOf: $0) }
        out.append(json)
        for e in entries {
            let n = e.shape.reduce(1, *)
            switch dtype {
            case .f32:
                out.append(UnsafeBufferPointer(start: e.data, count: n))
            default:
                var tmp = [UInt16](repeating: 0, count: n)
                for i in 0..<n { tmp[i] = HalfConversion.floatToBF16(e.data[i]).littleEndian }
                tmp.withUnsafeBufferPointer { out.append($0) }
            }
        }
        try AtomicFile.write(out, to: url)
    }
}
