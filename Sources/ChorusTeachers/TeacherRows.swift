import ChorusCore
import ChorusModel
import ChorusTensor
import Foundation

/// One teacher's scores of every response of a prompt group, handed out a few positions at a
/// time: for each position a log-prob row over the vocabulary and the teacher's score there.
///
/// Implementations: `ForwardRows` (a local forward: exact full distributions), `TopKRows`
/// (cache records, or any teacher that reports only top-k log-probs, such as a remote
/// inference server: rows rebuilt by `TopKApproximation`). A pool asks for every position of
/// every response once, in order.
public protocol TeacherRows: AnyObject {
    /// True when the rows are rebuilt from top-k scores rather than the teacher's full
    /// distribution (then only the top-k entries and the sampled token are exact).
    var isApproximate: Bool { get }
    /// Writes the log π rows of `positions` of response `r` into `out`, (positions.count, V)
    /// row-major, unless `out` is nil, and returns the teacher's score at each of those
    /// positions: the sampled token's log-prob (exact), the entropy (NaN when unknown) and the
    /// top entries these rows carry.
    func rows(response r: Int, positions: Range<Int>, into out: UnsafeMutablePointer<Float>?) throws -> [PositionScore]
}

/// Rows from a local forward: exact log-softmax rows, scored by one LM-head pass per row. The
/// scores carry `topK` most likely tokens.
public final class ForwardRows: TeacherRows {
    public let forward: TeacherForward
    public let topK: Int
    public init(_ forward: TeacherForward, topK: Int) {
        self.forward = forward
        self.topK = topK
    }
    public var isApproximate: Bool { false }
    public func rows(response r: Int, positions: Range<Int>, into out: UnsafeMutablePointer<Float>?) throws -> [PositionScore] {
        let first = forward.offsets[r]
        return forward.scores(rows: (first + positions.lowerBound)..<(first + positions.upperBound), topK: topK, logProbabilities: out)
    }
}
