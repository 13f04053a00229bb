import ArgumentParser
import Foundation
import PerceptTasks

/// `percept inspect`: what a dataset or model file holds.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print what a Percept dataset or model file holds (for a model: its configuration as YAML).")

    @Argument(help: "HDF5 file.") var file: String

    func run() throws { print(try Inspector.describe(path: file)) }
}
