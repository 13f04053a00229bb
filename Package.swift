// swift-tools-version:5.10
import PackageDescription

let package = Package(
    name: "Percept",
    products: [
        .library(name: "Percept", targets: ["PerceptCore", "PerceptDatasets", "PerceptTasks"]),
        .executable(name: "percept", targets: ["PerceptCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // YAML for configuration files (`--config`, `--show-config`).
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // System libraries, found through pkg-config (Debian: libopenblas-dev, libhdf5-dev, libpng-dev).
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5",
                       providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng16",
                       providers: [.apt(["libpng-dev"])]),
        // libjpeg-turbo's TurboJPEG API decodes JPEG files (Debian: libturbojpeg0-dev).
        .systemLibrary(name: "CTurboJPEG", path: "Sources/CTurboJPEG", pkgConfig: "libturbojpeg",
                       providers: [.apt(["libturbojpeg0-dev"])]),
        // zlib reads gzipped IDX files (Debian: zlib1g-dev, pulled in by libhdf5-dev).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),

        // Hand-written SIMD kernels (AVX2+FMA chosen at run time, portable C otherwise).
        .target(name: "CKernels"),
        .target(name: "PerceptCore", dependencies: ["CBLAS", "CKernels"], path: "Sources/Core", linkerSettings: [.linkedLibrary("m")]),
        .target(name: "PerceptDatasets", dependencies: ["PerceptCore", "CHDF5", "CPNG", "CTurboJPEG", "CZlib",
                                                  .product(name: "Yams", package: "Yams")], path: "Sources/Datasets"),
        .target(name: "PerceptTasks", dependencies: ["PerceptCore", "PerceptDatasets", .product(name: "Yams", package: "Yams")],
                path: "Sources/Tasks"),
        .executableTarget(
            name: "PerceptCLI",
            dependencies: ["PerceptCore", "PerceptDatasets", "PerceptTasks",
                           .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        // The programs of docs/library.md, built with the package so that they never rot.
        .executableTarget(name: "percept-examples", dependencies: ["PerceptCore", "PerceptDatasets", "PerceptTasks"],
                          path: "Sources/Examples"),

        .testTarget(name: "CoreTests", dependencies: ["PerceptCore", "CKernels"]),
        .testTarget(name: "DatasetsTests", dependencies: ["PerceptDatasets", "PerceptTasks", "PerceptCore", "CZlib"]),
        .testTarget(name: "TasksTests", dependencies: ["PerceptTasks", "PerceptDatasets", "PerceptCore", "CKernels"], exclude: ["Fixtures"]),
        // Runs the built `percept` executable; `swift test` builds it along with the tests.
        .testTarget(name: "CLITests", dependencies: ["PerceptTasks", "PerceptDatasets", "PerceptCore"]),
    ]
)
