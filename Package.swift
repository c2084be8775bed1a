// swift-tools-version:6.0
// Chorus: multi-teacher on-policy distillation on CPU (OpenBLAS + zstd).
import PackageDescription

/// Release builds get -Ounchecked on the hot numeric modules only where the kernels
/// bounds-check by construction; everything else keeps Swift's checks.
let numericFlags: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release))]

/// The SIMD kernels of ChorusKernels are compiled for AVX-512F + AVX2 + FMA: without -mfma swiftc
/// lowers `SIMD16<Float>.addProduct` to one `fmaf` call per lane, and AVX-512's 32 registers
/// hold an 8-row tile (the bf16 product: ~170-200 GFLOP/s per core against ~60 with AVX2's 16
/// registers, which spill). ChorusTensor calls them only after `CPUFeatures` found the instructions,
/// and otherwise takes the portable f32 path.
let kernelFlags: [SwiftSetting] = [
    .unsafeFlags(["-Xcc", "-mavx512f", "-Xcc", "-mavx2", "-Xcc", "-mfma"]),
    .unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release)),
]

let package = Package(
    name: "Chorus",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "chorus", targets: ["chorus"]),
        .library(name: "ChorusModel", targets: ["ChorusModel"]),
        // The HTTP server of `chorus serve` (swift-nio), a product of its own so that building
        // `chorus` (make demo) does not build swift-nio; `chorus serve` runs it.
        .executable(name: "chorus-serve", targets: ["chorus-serve"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // System libraries, found through pkg-config (Debian: libopenblas-dev, libzstd-dev).
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),

        // The shared basics (score record, atomic writes, seeded RNG, JSON text): no dependencies.
        .target(name: "ChorusCore"),
        // The one strict TOML reader (run files, pool manifests); apart from ChorusCore so the
        // tensor and tokenizer layers do not link TOMLKit (toml++).
        .target(name: "ChorusConfig", dependencies: ["ChorusCore", "TOMLKit"]),
        // Vectorised Swift kernels that need instructions beyond the x86-64 baseline (no dependencies).
        .target(name: "ChorusKernels", swiftSettings: kernelFlags),
        .target(name: "ChorusTensor", dependencies: ["CBLAS", "ChorusCore", "ChorusKernels"], swiftSettings: numericFlags),
        .target(name: "ChorusTokenizer", dependencies: ["ChorusCore"]),
        .target(name: "ChorusModel", dependencies: ["ChorusCore", "ChorusTensor", "ChorusTokenizer"], swiftSettings: numericFlags),
        .target(name: "ChorusCache", dependencies: ["CZstd", "ChorusCore", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "ChorusTeachers", dependencies: ["ChorusCore", "ChorusModel", "ChorusTokenizer", "ChorusCache", "ChorusConfig"]),
        // Verifiable tasks: prompt datasets, reward checkers, the evaluator (mean@k, best@k).
        .target(name: "ChorusTasks", dependencies: ["ChorusCore", "ChorusModel", "ChorusTokenizer"]),
        .target(name: "ChorusTraining", dependencies: ["ChorusCore", "ChorusModel", "ChorusTokenizer", "ChorusTeachers", "ChorusConfig", "ChorusTasks"], swiftSettings: numericFlags),
        // Reports: run directories (metrics.jsonl) to self-contained HTML with inline SVG plots.
        .target(name: "ChorusReport", dependencies: ["ChorusCore"]),
        .executableTarget(
            name: "chorus",
            dependencies: [
                "ChorusCore", "ChorusTensor", "ChorusModel", "ChorusTokenizer", "ChorusCache", "ChorusTeachers", "ChorusTraining", "ChorusTasks", "ChorusReport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // `chorus serve`: a vLLM-compatible scoring server over a checkpoint (swift-nio HTTP/1.1).
        .target(name: "ChorusServe", dependencies: [
            "ChorusCore", "ChorusModel", "ChorusTeachers", "ChorusTensor",
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        .executableTarget(name: "chorus-serve", dependencies: [
            "ChorusServe", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Helpers shared by the test targets (temporary directories, running `chorus`).
        .target(name: "ChorusTestSupport", dependencies: ["ChorusCore", "ChorusModel", "ChorusTokenizer"], path: "Tests/ChorusTestSupport"),
        .testTarget(name: "ChorusCoreTests", dependencies: ["ChorusCore", "ChorusTestSupport"]),
        .testTarget(name: "ChorusTensorTests", dependencies: ["ChorusTensor"]),
        .testTarget(name: "ChorusModelTests", dependencies: ["ChorusModel", "ChorusTestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "ChorusTokenizerTests", dependencies: ["ChorusTokenizer", "ChorusTestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "ChorusCacheTests", dependencies: ["ChorusCache", "ChorusCore", "ChorusTestSupport"]),
        .testTarget(name: "ChorusTeachersTests", dependencies: ["ChorusTeachers", "ChorusTestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "ChorusTasksTests", dependencies: ["ChorusTasks", "ChorusModel", "ChorusTokenizer", "ChorusCore", "ChorusTestSupport"]),
        .testTarget(name: "ChorusServeTests", dependencies: ["ChorusServe", "ChorusTeachers", "ChorusTestSupport"]),
        // The report tests train a tiny real run for `chorus inspect` and open the pages in chromium.
        .testTarget(name: "ChorusReportTests", dependencies: ["ChorusReport", "ChorusCore", "ChorusModel", "ChorusTokenizer", "ChorusTraining", "ChorusTestSupport"]),
        .testTarget(name: "ChorusTrainingTests", dependencies: ["ChorusTraining", "ChorusTasks", "ChorusTestSupport"], resources: [.copy("Fixtures")]),
    ],
    swiftLanguageModes: [.v5]
)
