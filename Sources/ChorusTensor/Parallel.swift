import Dispatch
import Foundation

/// The worker count used by Chorus kernels and OpenBLAS (default: the number of cores,
/// overridable with the CHORUS_THREADS environment variable or `Parallel.configure`).
public enum Parallel {
    nonisolated(unsafe) private static var _threads: Int = {
        if let s = ProcessInfo.processInfo.environment["CHORUS_THREADS"], let n = Int(s), n > 0 { return n }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    /// Number of threads kernels split work across: 1 on a thread running one of
    /// `coarse`'s work items (it already has a core to itself).
    public static var threads: Int { pthread_getspecific(coarseKey) == nil ? _threads : 1 }

    /// Marks the threads running `coarse` work items (set while an item runs).
    private static let coarseKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// Runs `body(w)` for w in 0 ..< workers, each on its own thread, with every Chorus kernel
    /// and `gemm` inside running serially on it (`threads` is 1 there): parallelism over large
    /// independent items (a teacher's whole forward) instead of one thread hand-off per
    /// small op. Which item a worker runs is fixed by the caller, so results do not depend
    /// on scheduling; nested calls run their items one after another.
    public static func coarse(_ workers: Int, _ body: (Int) -> Void) {
        if workers <= 1 || pthread_getspecific(coarseKey) != nil {
            for w in 0..<workers { body(w) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            pthread_setspecific(coarseKey, UnsafeRawPointer(bitPattern: 1))
            defer { pthread_setspecific(coarseKey, nil) }
            body(w)
        }
    }

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
