import ArgumentParser
import Datasets
import Foundation

/// `percept inspect`: what a dataset or model file holds.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print what a Percept dataset or model file holds.")

    @Argument(help: "HDF5 file.") var file: String

    func run() throws {
        do {
            print(try Inspector.describe(path: file))
        } catch let error as DatasetError {
            FileHandle.standardError.write("error: \(error)\n".data(using: .utf8)!)
            throw ExitCode.failure
        }
    }
}
