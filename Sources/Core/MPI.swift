import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Open MPI, loaded at run time: a process started by `mpirun` finds `libmpi.so.40` and joins
/// the job; everything else (the default build, the tests, every command without `mpirun`)
/// neither links nor needs MPI.
///
/// Why loading rather than linking: Percept's one binary then runs alone or as a rank, the
/// default build and the README's commands need no MPI package, and no second product or
/// build flag can drift from the first. The price is binding the few calls and handles used
/// here by name, against Open MPI's ABI (`libmpi.so.40`, stable across Open MPI 3.x-5.x): its
/// handles are the addresses of the exported `ompi_mpi_*` objects, as its `mpi.h` defines them.
public final class MPICommunicator: Communicator {
    public let rank: Int, size: Int

    private typealias Handle = UnsafeMutableRawPointer
    private let comm: Handle, float: Handle, double: Handle, byte: Handle, sum: Handle
    private let allreduce: @convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int32, Handle, Handle, Handle) -> Int32
    private let bcast: @convention(c) (UnsafeMutableRawPointer?, Int32, Handle, Int32, Handle) -> Int32
    private let mpiAbort: @convention(c) (Handle, Int32) -> Int32
    private let mpiFinalize: @convention(c) () -> Int32
    private var finalized = false

    /// The library names tried, newest ABI first.
    static let libraries = ["libmpi.so.40", "libmpi.so"]

    /// Whether this process was started by Open MPI's launcher (`mpirun`/`mpiexec`).
    public static var launchedByMPIRun: Bool { ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil }

    /// Loads Open MPI and initialises it (`MPI_Init_thread`, serialised: only the thread that
    /// runs the training loop calls MPI).
    public static func join() throws -> MPICommunicator { try MPICommunicator() }

    private init() throws {
        var library: UnsafeMutableRawPointer?
        var errors: [String] = []
        for name in Self.libraries {
            // Global: Open MPI's own plug-ins resolve their symbols against libmpi.
            library = dlopen(name, RTLD_NOW | RTLD_GLOBAL)
            if library != nil { break }
            errors.append(dlerror().map { String(cString: $0) } ?? name)
        }
        guard let library else {
            throw MPIError("started by mpirun but Open MPI's library cannot be loaded (\(errors.joined(separator: "; "))): install it with `bash scripts/setup.sh --mpi` (Debian: openmpi-bin, libopenmpi3)")
        }
        func symbol(_ name: String) throws -> UnsafeMutableRawPointer {
            guard let address = dlsym(library, name) else { throw MPIError("Open MPI's library has no \(name): Percept needs Open MPI 3 or later") }
            return address
        }
        func function<T>(_ name: String, _ type: T.Type) throws -> T { unsafeBitCast(try symbol(name), to: type) }

        let initThread = try function("MPI_Init_thread", (@convention(c) (UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?, Int32, UnsafeMutablePointer<Int32>) -> Int32).self)
        let commRank = try function("MPI_Comm_rank", (@convention(c) (Handle, UnsafeMutablePointer<Int32>) -> Int32).self)
        let commSize = try function("MPI_Comm_size", (@convention(c) (Handle, UnsafeMutablePointer<Int32>) -> Int32).self)
        allreduce = try function("MPI_Allreduce", (@convention(c) (UnsafeRawPointer?, UnsafeMutableRawPointer?, Int32, Handle, Handle, Handle) -> Int32).self)
        bcast = try function("MPI_Bcast", (@convention(c) (UnsafeMutableRawPointer?, Int32, Handle, Int32, Handle) -> Int32).self)
        mpiAbort = try function("MPI_Abort", (@convention(c) (Handle, Int32) -> Int32).self)
        mpiFinalize = try function("MPI_Finalize", (@convention(c) () -> Int32).self)
        comm = try symbol("ompi_mpi_comm_world")
        float = try symbol("ompi_mpi_float")
        double = try symbol("ompi_mpi_double")
        byte = try symbol("ompi_mpi_byte")
        sum = try symbol("ompi_mpi_op_sum")

        // MPI_THREAD_SERIALIZED is 2 in Open MPI's mpi.h.
        var provided: Int32 = 0
        guard initThread(nil, nil, 2, &provided) == 0 else { throw MPIError("MPI_Init_thread failed") }
        var r: Int32 = 0, s: Int32 = 0
        _ = commRank(comm, &r)
        _ = commSize(comm, &s)
        rank = Int(r); size = Int(s)
    }

    /// MPI_IN_PLACE is (void *) 1 in Open MPI's mpi.h.
    private static let inPlace = UnsafeRawPointer(bitPattern: 1)

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        // MPI counts are Int32: large buffers go in slices.
        var start = 0
        while start < count {
            let n = min(count - start, Int(Int32.max))
            _ = allreduce(Self.inPlace, buffer + start, Int32(n), float, sum, comm)
            start += n
        }
    }

    public func allreduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) {
        _ = allreduce(Self.inPlace, buffer, Int32(count), double, sum, comm)
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, count: Int, root: Int) {
        var start = 0
        while start < count {
            let n = min(count - start, Int(Int32.max))
            _ = bcast(buffer + start, Int32(n), byte, Int32(root), comm)
            start += n
        }
    }

    public func abort(code: Int32) -> Never {
        _ = mpiAbort(comm, code)
        exit(code)
    }

    public func finalize() {
        guard !finalized else { return }
        finalized = true
        _ = mpiFinalize()
    }
}

public struct MPIError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
