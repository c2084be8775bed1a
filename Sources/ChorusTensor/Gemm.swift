import CBLAS
import Dispatch

/// Whether a gemm operand is used as stored or transposed.
public enum Transpose: Sendable { case none, transpose }

/// The one matrix-product entry point of Chorus: row-major single-precision
/// `C = alpha * op(A) * op(B) + beta * C` over OpenBLAS' `cblas_sgemm`.
///
/// Shapes: op(A) is (M,K), op(B) is (K,N), C is (M,N). Leading dimensions are the row
/// strides of the matrices *as stored* (so a transposed A stored as (K,M) has lda >= M).
/// Strided leading dimensions let callers multiply sub-blocks (one attention head inside a
/// fused QKV buffer) without copying.
///
/// OpenBLAS itself runs single-threaded (see `BLAS`); when `parallel` is true and the product
/// is large, this wrapper splits C into `Parallel.threads` row blocks (or column blocks when M
/// is small) and runs one sgemm per worker. Owning the threads avoids OpenBLAS' spinning
/// workers competing with Chorus' own parallel kernels on a 2-core machine. Pass
/// `parallel: false` from inside a parallel region. Products with few rows (batched decoding)
/// over `Gemm.smallProduct` go through `smallRowsGemm`, which never packs the weight matrix;
/// serial calls (attention blocks inside a parallel region) keep OpenBLAS' own choice.
///
/// `bHalf`, for op(B) = Wᵀ with W (n, k) the f32 matrix `b`, is W rounded to bf16 / f16 and
/// packed (the rollout sampler's weights, whose f32 `b` is the same rounded values): products of
/// at most `HalfKernel.maxRows` rows then run the 16-bit kernel (half the bytes, read front to
/// back, 8-row register tiles) on CPUs that have its instructions, and the f32 path otherwise. Both compute
/// the product of the same rounded weights; they differ by f32 summation order only.
@inline(__always)
public func gemm(
    _ transA: Transpose, _ transB: Transpose,
    m: Int, n: Int, k: Int,
    alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0,
    c: UnsafeMutablePointer<Float>, ldc: Int,
    parallel: Bool = true,
    bHalf: HalfMatrix? = nil
) {
    if m == 0 || n == 0 { return }
    if let w = bHalf, transA == .none, transB == .transpose, k > 0, m <= HalfKernel.maxRows, w.allFinite, HalfKernel.active {
        precondition(w.rows == n && w.cols == k, "bHalf is \(w.rows)x\(w.cols), the product needs \(n)x\(k)")
        halfGemm(m: m, alpha: alpha, a: a, lda: lda, w: w, beta: beta, c: c, ldc: ldc, workers: parallel ? Parallel.threads : 1)
        return
    }
    if k == 0 {
        // BLAS would only scale C; keep the contract explicit.
        for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : c[i * ldc + j] * beta } }
        return
    }
    let workers = Parallel.threads
    if parallel && m <= Gemm.smallRows && m * n * k > Gemm.smallProduct {
        smallRowsGemm(transA, transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                      beta: beta, c: c, ldc: ldc, workers: workers)
        return
    }
    if !parallel || workers == 1 || m * n * k < 1 << 20 {
        sgemmSerial(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    }
    if m >= 16 * workers {
        // Split rows of C (and of op(A)).
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let lo = m * w / workers, hi = m * (w + 1) / workers
            let aOff = transA == .none ? lo * lda : lo
            sgemmSerial(transA, transB, hi - lo, n, k, alpha, a + aOff, lda, b, ldb, beta, c + lo * ldc, ldc)
        }
    } else {
        // Few rows (decoding): split columns of C (and of op(B)), in multiples of 16.
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let lo = (n * w / workers) & ~15, hi = w == workers - 1 ? n : (n * (w + 1) / workers) & ~15
            if hi <= lo { return }
            let bOff = transB == .none ? lo : lo * ldb
            sgemmSerial(transA, transB, m, hi - lo, k, alpha, a, lda, b + bOff, ldb, beta, c + lo, ldc)
        }
    }
}

/// Tuning of the few-rows (decode) path of `gemm`, measured on the 2-core Zen 4 box with
/// OpenBLAS 0.3 (qwen3-23m decode, batch 8: 1M -> ~840 tok/s, 250k/125k -> ~1150-1200 tok/s;
/// its small-matrix kernel is only taken below some M·N·K).
public enum Gemm {
    /// Products with at most this many rows of C take the few-rows path.
    nonisolated(unsafe) public static var smallRows = 64
    /// Largest M·N·K of one sgemm call on the few-rows path.
    nonisolated(unsafe) public static var smallProduct = 200_000
}

/// C = alpha·op(A)·op(B) + beta·C for few rows of C (batched decoding: M is the batch):
/// C is cut into column blocks small enough (M·width·K <= `Gemm.smallProduct`) that OpenBLAS
/// runs its unpacked small-matrix kernel on each. The big-product driver would copy (pack)
/// the whole of op(B) — the weight matrix — on every call, which for a few rows costs as much
/// as the product itself. Blocks are dealt to `workers` threads in contiguous runs.
func smallRowsGemm(_ transA: Transpose, _ transB: Transpose, m: Int, n: Int, k: Int, alpha: Float,
                   a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                   beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, workers: Int) {
    let width = max(16, (Gemm.smallProduct / (m * k)) & ~15)
    let blocks = (n + width - 1) / width
    let run = { (lo: Int, hi: Int) in
        for blk in lo..<hi {
            let j0 = blk * width, w = min(width, n - j0)
            let bOff = transB == .none ? j0 : j0 * ldb
            sgemmSerial(transA, transB, m, w, k, alpha, a, lda, b + bOff, ldb, beta, c + j0, ldc)
        }
    }
    let W = min(workers, blocks)
    if W <= 1 { run(0, blocks); return }
    DispatchQueue.concurrentPerform(iterations: W) { w in run(blocks * w / W, blocks * (w + 1) / W) }
}

@inline(__always)
func sgemmSerial(_ transA: Transpose, _ transB: Transpose, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                 _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                 _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
    cblas_sgemm(
        CblasRowMajor,
        transA == .none ? CblasNoTrans : CblasTrans,
        transB == .none ? CblasNoTrans : CblasTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// OpenBLAS thread control. Chorus keeps OpenBLAS single-threaded and parallelises around it
/// (see `gemm`), so the cores are never oversubscribed.
public enum BLAS {
    /// Sets the number of OpenBLAS threads.
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }
    /// The number of OpenBLAS threads currently configured.
    public static var threads: Int { Int(openblas_get_num_threads()) }
}
