import XCTest
@testable import ChorusReport

final class ComparisonReportTests: XCTestCase {
    func testEscape() {
        XCTAssertEqual(ComparisonReport.escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;")
    }
}
