import CBLAS

/// Whether a gemm operand is used as stored or transposed.
public enum Transpose: Sendable { case none, transpose }

/// The one matrix-product entry point of Chorus: row-major single-precision
/// `C = alpha * op(A) * op(B) + beta * C` over OpenBLAS' `cblas_sgemm`.
///
/// Shapes: op(A) is (M,K), op(B) is (K,N), C is (M,N). Leading dimensions are the row
/// strides of the matrices *as stored* (so a transposed A stored as (K,M) has lda >= M).
/// Strided leading dimensions let callers multiply sub-blocks (one attention head inside a
/// fused QKV buffer) without copying.
@inline(__always)
public func gemm(
    _ transA: Transpose, _ transB: Transpose,
    m: Int, n: Int, k: Int,
    alpha: Float = 1,
    a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0,
    c: UnsafeMutablePointer<Float>, ldc: Int
) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        // BLAS would only scale C; keep the contract explicit.
        for i in 0..<m { for j in 0..<n { c[i * ldc + j] *= beta } }
        return
    }
    cblas_sgemm(
        CblasRowMajor,
        transA == .none ? CblasNoTrans : CblasTrans,
        transB == .none ? CblasNoTrans : CblasTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Controls OpenBLAS' worker threads. Chorus sets this once from `Parallel.threads` and drops
/// to one thread inside its own parallel regions so the two never oversubscribe the cores.
public enum BLAS {
    /// Sets the number of OpenBLAS threads.
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }
    /// The number of OpenBLAS threads currently configured.
    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// Runs `body` with OpenBLAS single-threaded (for gemm calls made from inside a
    /// `parallelFor`), restoring the previous count afterwards.
    public static func singleThreaded<R>(_ body: () throws -> R) rethrows -> R {
        let old = threads
        if old == 1 { return try body() }
        setThreads(1)
        defer { setThreads(old) }
        return try body()
    }
}
