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

    /// Sets the thread count for Chorus kernels and the gemm wrapper (nil keeps the current
    /// count), and makes OpenBLAS single-threaded: `gemm` splits large products across these
    /// workers itself.
    public static func configure(threads: Int? = nil) {
        if let t = threads { _threads = max(1, t) }
        BLAS.setThreads(1)
    }
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
    parallelChunks(n, workers: workers, costPerItem: costPerItem) { _, lo, hi in body(lo, hi) }
}

/// Like `parallelFor` but also passes the worker index, for per-worker partial sums.
/// Static split: worker w gets rows [n·w/W, n·(w+1)/W).
@inline(__always)
public func parallelChunks(_ n: Int, workers: Int, costPerItem: Int, _ body: (Int, Int, Int) -> Void) {
    if workers <= 1 || n * costPerItem < 32_768 {
        // Serial, but keep the same partition so partial sums are identical either way.
        for w in 0..<workers {
            let lo = n * w / workers, hi = n * (w + 1) / workers
            if lo < hi { body(w, lo, hi) }
        }
        return
    }
    DispatchQueue.concurrentPerform(iterations: workers) { w in
        let lo = n * w / workers, hi = n * (w + 1) / workers
        if lo < hi { body(w, lo, hi) }
    }
}
