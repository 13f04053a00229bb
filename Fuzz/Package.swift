// swift-tools-version:5.10
// Coverage-guided fuzz targets (libFuzzer) for Percept's readers of untrusted files. A package
// of its own, depending on Percept by path, so that Percept's `swift build` and `swift test`
// never build them. Build and run with scripts/fuzz.sh.
import PackageDescription

// SwiftPM names a path dependency after its folder, which differs between checkouts.
let root = Context.packageDirectory + "/.."
let percept = String(Context.packageDirectory.split(separator: "/").dropLast().last ?? "Percept")

let readers = ["PNG", "JPEG", "EXIF", "Mask", "IDX", "COCO", "Tags", "HDF5"]

let package = Package(
    name: "PerceptFuzz",
    dependencies: [.package(path: root)],
    targets: [
        .target(name: "FuzzSupport", dependencies: [.product(name: "Percept", package: percept)]),
    ] + readers.map { reader in
        .executableTarget(name: "Fuzz\(reader)", dependencies: ["FuzzSupport", .product(name: "Percept", package: percept)])
    }
)
