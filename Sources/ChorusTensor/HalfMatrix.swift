import ChorusKernels
import Foundation

/// The 16-bit float formats a `HalfMatrix` stores.
public enum HalfFormat: String, Sendable {
    /// bfloat16: the top half of an f32 (8 significant bits, f32's range).
    case bf16
    /// IEEE binary16 (11 significant bits, largest finite 65504).
    case f16
}

/// A weight matrix W (N outputs × K inputs, as stored for `gemm(.none, .transpose, ...)`)
/// rounded to bf16 or f16 and packed for the 16-bit kernel of `gemm`'s `bHalf` route:
/// half the bytes of the f32 copy, read front to back.
///
/// Layout (see ChorusKernels' HalfPanelKernel.swift): panels of 32 outputs, the last padded
/// with zeros; panel p is K steps of 16 UInt32 words, word j of step k holding W[32p + j][k]
/// in its low 16 bits and W[32p + 16 + j][k] in its high 16 bits.
public final class HalfMatrix: @unchecked Sendable {
    /// N, the outputs (rows of W).
    public let rows: Int
    /// K, the inputs (columns of W).
    public let cols: Int
    /// bf16 or f16.
    public let format: HalfFormat
    /// Whether every stored value is finite. f16 rounds magnitudes above 65504 to infinity,
    /// which the kernel's exact widening does not represent: gemm then takes the f32 path.
    public private(set) var allFinite = true
    /// The packed words, `panels · cols · 16`.
    let words: UnsafeMutablePointer<UInt32>
    /// Number of 32-output panels.
    public var panels: Int { (rows + halfPanelWidth - 1) / halfPanelWidth }

    /// An all-zero matrix of N = `rows` outputs and K = `cols` inputs.
    public init(rows: Int, cols: Int, format: HalfFormat) {
        precondition(rows >= 0 && cols >= 0, "negative HalfMatrix shape \(rows)x\(cols)")
        self.rows = rows; self.cols = cols; self.format = format
        let n = max(1, (rows + halfPanelWidth - 1) / halfPanelWidth * cols * halfPanelWords)
        words = UnsafeMutablePointer<UInt32>.allocate(capacity: n)
        words.initialize(repeating: 0, count: n)
    }

    deinit { words.deallocate() }

    /// Rounds W (rows × cols f32, row stride ld) to the format (round to nearest even, as
    /// `HalfConversion`) and packs it, replacing the contents.
    public func pack(from w: UnsafePointer<Float>, ld: Int) {
        precondition(ld >= cols, "ld \(ld) < cols \(cols)")
        let K = cols, bf = format == .bf16
        var finite = true
        for p in 0..<panels {
            let panel = words + p * K * halfPanelWords
            for j in 0..<halfPanelWords {
                let r0 = p * halfPanelWidth + j, r1 = r0 + halfPanelWords
                for k in 0..<K {
                    let lo = r0 < rows ? Self.round(w[r0 * ld + k], bf) : 0
                    let hi = r1 < rows ? Self.round(w[r1 * ld + k], bf) : 0
                    panel[k * halfPanelWords + j] = UInt32(lo) | UInt32(hi) << 16
                    if !bf && ((lo & 0x7C00) == 0x7C00 || (hi & 0x7C00) == 0x7C00) { finite = false }
                }
            }
        }
        allFinite = finite
    }

    @inline(__always)
    static func round(_ x: Float, _ bf16: Bool) -> UInt16 {
        bf16 ? HalfConversion.floatToBF16(x) : HalfConversion.floatToF16(x)
    }

    /// W[r][k] as stored (widened exactly to Float); for tests and checks, not hot loops.
    public func value(row r: Int, col k: Int) -> Float {
        precondition(r >= 0 && r < rows && k >= 0 && k < cols, "(\(r), \(k)) outside \(rows)x\(cols)")
        let p = r / halfPanelWidth, j = r % halfPanelWidth
        let word = words[(p * cols + k) * halfPanelWords + j % halfPanelWords]
        let h = UInt16(truncatingIfNeeded: j < halfPanelWords ? word : word >> 16)
        return format == .bf16 ? HalfConversion.bf16ToFloat(h) : HalfConversion.f16ToFloat(h)
    }
}

/// Which instructions this CPU has, read once from /proc/cpuinfo (Linux); elsewhere none, and
/// the kernels that need them are not used.
public enum CPUFeatures {
    /// The flags of the first processor in /proc/cpuinfo (empty where it cannot be read).
    public static let flags: Set<String> = {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return [] }
        for line in text.split(separator: "\n") where line.hasPrefix("flags") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
        }
        return []
    }()

    /// AVX-512F, AVX2 and FMA: what ChorusKernels is compiled for.
    public static let hasKernelInstructions = ["avx512f", "avx2", "fma"].allSatisfy { flags.contains($0) }
}

/// The 16-bit kernel route of `gemm`.
public enum HalfKernel {
    /// Whether `gemm` may use the 16-bit kernel (only on CPUs with `CPUFeatures.hasKernelInstructions`).
    /// Tests clear it to check the portable path; CHORUS_HALF_KERNEL=0 clears it for a run.
    nonisolated(unsafe) public static var enabled: Bool =
        ProcessInfo.processInfo.environment["CHORUS_HALF_KERNEL"] != "0"

    /// Whether the route is taken on this machine now.
    public static var active: Bool { enabled && CPUFeatures.hasKernelInstructions }

    /// Products with more rows than this take the f32 path. Unlimited by default: measured on
    /// the development machine (Zen 5, qwen3-23m products, one core), the kernel ran 200-270
    /// GFLOP/s at 64 to 1024 rows where OpenBLAS' sgemm with its Haswell kernels ran ~100, so a
    /// bf16 sampler's prefill takes it too. Tests lower it to check the f32 route.
    nonisolated(unsafe) public static var maxRows = Int.max
}

/// C = alpha·A·Wᵀ + beta·C through the 16-bit kernel, W's panels split between `workers`
/// threads in contiguous runs (each output is computed by one thread, in one fixed order, so
/// the result does not depend on the split). A is (m, K) with row stride lda, C (m, N) with
/// row stride ldc.
func halfGemm(m: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int, w: HalfMatrix, beta: Float,
              c: UnsafeMutablePointer<Float>, ldc: Int, workers: Int) {
    let panels = w.panels, n = w.rows, k = w.cols, bf = w.format == .bf16
    let packed = UnsafePointer(w.words)
    let W = min(workers, panels)
    if W <= 1 {
        halfPanelGemm(bf16: bf, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, packed: packed, panels: 0, panels,
                      beta: beta, c: c, ldc: ldc)
        return
    }
    DispatchQueue.concurrentPerform(iterations: W) { t in
        halfPanelGemm(bf16: bf, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, packed: packed,
                      panels: panels * t / W, panels * (t + 1) / W, beta: beta, c: c, ldc: ldc)
    }
}
