import Dispatch
import Foundation

/// The worker count used by Chorus kernels and OpenBLAS (default: the number of cores,
/// overridable with the CHORUS_THREADS environment variable or `Parallel.configure`).
public enum Parallel {
    nonisolated(unsafe) private static var _threads: Int = {
        if let s = ProcessInfo.processInfo.environment["CHORUS_THREADS"], let n = Int(s), n > 0 { return n }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    /// Number of threads kernels split work across.
    public static var threads: Int { _threads }

    /// Sets the thread count for Chorus kernels and the gemm wrapper (OpenBLAS stays
    /// single-threaded; `gemm` splits large products across these workers itself).
    public static func configure(threads: Int) {
        _threads = max(1, threads)
        BLAS.setThreads(1)
    }

    /// Makes OpenBLAS single-threaded (call once at start-up; `configure` does it too).
    public static func applyToBLAS() { BLAS.setThreads(1) }
}

/// Runs `body(chunkStart, chunkEnd)` over `0..<n` split into contiguous chunks, one per worker,
/// in parallel when `n * costPerItem` is large enough to pay for the thread hand-off.
///
/// Work is split statically so results are deterministic for a given thread count.
/// Gemm calls inside `body` must pass `parallel: false`.
@inline(__always)
public func parallelFor(_ n: Int, costPerItem: Int = 1024, _ body: (Int, Int) -> Void) {
    let workers = min(Parallel.threads, n)
    if workers <= 1 || n * costPerItem < 32_768 {
        if n > 0 { body(0, n) }
        return
    }
    DispatchQueue.concurrentPerform(iterations: workers) { w in
        let lo = n * w / workers
        let hi = n * (w + 1) / workers
        if lo < hi { body(lo, hi) }
    }
}
