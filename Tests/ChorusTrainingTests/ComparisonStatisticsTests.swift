import ChorusTraining
import XCTest

final class ComparisonStatisticsTests: XCTestCase {
    typealias S = ComparisonStatistics

    func testMeanStd() {
        let (m, s) = S.meanStd([2, 4, 4, 4, 5, 5, 7, 9])
        XCTAssertEqual(m, 5, accuracy: 1e-12)
        XCTAssertEqual(s, (32.0 / 7).squareRoot(), accuracy: 1e-12)   // sample std, n − 1
        XCTAssertEqual(S.meanStd([3]).std, 0)
        XCTAssertTrue(S.meanStd([]).mean.isNaN)
    }

    func testTCriticalValues() {
        XCTAssertEqual(S.tCritical95(df: 1), 12.706)
        XCTAssertEqual(S.tCritical95(df: 2), 4.303)
        XCTAssertEqual(S.tCritical95(df: 30), 2.042)
        XCTAssertEqual(S.tCritical95(df: 40), 2.021, accuracy: 1e-9)
        XCTAssertEqual(S.tCritical95(df: 120), 1.980, accuracy: 1e-9)
        XCTAssertEqual(S.tCritical95(df: 50), 2.009, accuracy: 0.002)    // true 2.0086
        XCTAssertEqual(S.tCritical95(df: 1_000_000), 1.960, accuracy: 0.001)
        for df in 1..<200 { XCTAssertGreaterThanOrEqual(S.tCritical95(df: df), S.tCritical95(df: df + 1)) }
    }

    func testPairedComparison() {
        // Differences 1, 2, 3: mean 2, std 1, t = 2 / (1/√3) = 3.464 < 4.303 (2 df): not significant.
        let p = S.paired([1, 2, 3])
        XCTAssertEqual(p.meanDifference, 2)
        XCTAssertEqual(p.t!, 2 * 3.0.squareRoot(), accuracy: 1e-12)
        XCTAssertFalse(p.significant)
        // 10, 11, 12: t = 11·√3 = 19.05 > 4.303.
        XCTAssertTrue(S.paired([10, 11, 12]).significant)
        XCTAssertTrue(S.paired([-10, -11, -12]).significant)
        // One seed, or no spread: t undefined, never marked.
        XCTAssertNil(S.paired([5]).t)
        XCTAssertNil(S.paired([0, 0, 0]).t)
        XCTAssertFalse(S.paired([0, 0, 0]).significant)
    }

    func testK1NegativeWindow() {
        XCTAssertFalse(S.k1Negative([0.5, 0.2, 0.01, 0.3]))
        XCTAssertTrue(S.k1Negative([0.5, 0.2, -0.01, 0.3]))   // windows of 1 step
        // 20 steps: windows of 2; one negative step inside a positive window is not flagged.
        XCTAssertFalse(S.k1Negative([Double](repeating: 0.1, count: 19) + [-0.05]))
        XCTAssertTrue(S.k1Negative([Double](repeating: 0.1, count: 18) + [-0.05, -0.2]))
        XCTAssertFalse(S.k1Negative([]))
    }

    func testGradNormSpikes() {
        var g = [Double](repeating: 1, count: 10)
        g[7] = 10.5
        XCTAssertEqual(S.gradNormSpikes(g), [8])
        g[7] = 9.5
        XCTAssertEqual(S.gradNormSpikes(g), [])
        // Too early to judge: fewer than 5 earlier norms.
        XCTAssertEqual(S.gradNormSpikes([1, 100, 1, 1, 1, 1]), [])
    }

    func testCollapse() {
        XCTAssertTrue(S.collapsed([0.1, 0.4, 0.15], retention: false))
        XCTAssertFalse(S.collapsed([0.1, 0.4, 0.25], retention: false))
        XCTAssertFalse(S.collapsed([0.02, 0.08, 0.01], retention: false))   // below the 10-point floor
        XCTAssertTrue(S.collapsed([0.99, 0.95, 0.85], retention: true))    // 14 points below step 0
        XCTAssertFalse(S.collapsed([0.99, 0.95, 0.90], retention: true))
    }
}
