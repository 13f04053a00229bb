import CHDF5
import Foundation

/// Element types Percept stores in HDF5 (converted by HDF5 when the file uses another width).
public enum HDF5ElementType: Sendable {
    case uint8, int32, int64, float32, float64

    var nativeType: hid_t {
        switch self {
        case .uint8: return percept_h5_native_uint8()
        case .int32: return percept_h5_native_int32()
        case .int64: return percept_h5_native_int64()
        case .float32: return percept_h5_native_float()
        case .float64: return percept_h5_native_double()
        }
    }

    /// Bytes per element in memory.
    public var size: Int {
        switch self {
        case .uint8: return 1
        case .int32, .float32: return 4
        case .int64, .float64: return 8
        }
    }
}

/// What an HDF5 dataset or attribute stores, as read from the file.
public struct HDF5TypeDescription: Sendable, CustomStringConvertible {
    public enum Kind: Sendable { case integer, float, string, other }
    public let kind: Kind
    /// Bytes per element (0 for variable-length strings).
    public let size: Int
    public let isSigned: Bool

    public var description: String {
        switch kind {
        case .integer: return "\(isSigned ? "int" : "uint")\(size * 8)"
        case .float: return "float\(size * 8)"
        case .string: return size == 0 ? "string" : "string\(size)"
        case .other: return "other"
        }
    }
}

/// One value of an HDF5 attribute as Percept reads it.
public enum HDF5AttributeValue: Sendable, Equatable, CustomStringConvertible {
    case integers([Int64])
    case floats([Double])
    case strings([String])

    public var description: String {
        func list<T>(_ values: [T]) -> String {
            values.count == 1 ? "\(values[0])" : "[" + values.map { "\($0)" }.joined(separator: ", ") + "]"
        }
        switch self {
        case .integers(let v): return list(v)
        case .floats(let v): return list(v)
        case .strings(let v): return v.count == 1 ? "\"\(v[0])\"" : "[" + v.map { "\"\($0)\"" }.joined(separator: ", ") + "]"
        }
    }
}

/// An open HDF5 id of any kind, closed when the last reference goes away.
final class HDF5Handle {
    let id: hid_t
    init(_ id: hid_t) { self.id = id }
    deinit { _ = percept_h5_close(id) }
}

/// The innermost message of this thread's HDF5 error stack, for error text.
func hdf5Reason() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    percept_h5_last_error(&buffer)
    let text = String(cString: buffer)
    return text.isEmpty ? "" : " (\(text))"
}

/// A group (or the file's root group): holds datasets, sub-groups and attributes.
public class HDF5Group {
    let handle: HDF5Handle
    /// The file this group belongs to, for error messages.
    public let path: String
    /// The group's name inside the file ("/" for the root).
    public let name: String

    init(handle: HDF5Handle, path: String, name: String) {
        self.handle = handle
        self.path = path
        self.name = name
    }

    func child(_ member: String) -> String {
        name == "/" ? "/" + member : name + "/" + member
    }

    func fail(_ problem: String) -> DatasetError { DatasetError(path, problem + hdf5Reason()) }

    /// Whether an object exists at `member` (a name or a relative path).
    public func contains(_ member: String) -> Bool {
        percept_h5_exists(handle.id, member) > 0
    }

    /// Names of the direct members, in name order.
    public func memberNames() throws -> [String] {
        let count = percept_h5_group_member_count(handle.id)
        guard count >= 0 else { throw fail("cannot list group '\(name)'") }
        var names: [String] = []
        for index in 0..<count {
            guard let pointer = percept_h5_group_member_name(handle.id, UInt64(index)) else {
                throw fail("cannot read member \(index) of group '\(name)'")
            }
            names.append(String(cString: pointer))
            free(pointer)
        }
        return names
    }

    /// Whether `member` is a group (false for datasets and missing members).
    public func isGroup(_ member: String) -> Bool {
        guard contains(member) else { return false }
        let id = percept_h5_object_open(handle.id, member)
        guard id >= 0 else { return false }
        defer { _ = percept_h5_close(id) }
        return percept_h5_object_kind(id) == 1
    }

    /// Opens the sub-group `member`.
    public func group(_ member: String) throws -> HDF5Group {
        guard contains(member) else { throw DatasetError(path, "missing group '\(child(member))'") }
        let id = percept_h5_object_open(handle.id, member)
        guard id >= 0 else { throw fail("cannot open group '\(child(member))'") }
        let handle = HDF5Handle(id)
        guard percept_h5_object_kind(id) == 1 else { throw DatasetError(path, "'\(child(member))' is not a group") }
        return HDF5Group(handle: handle, path: path, name: child(member))
    }

    /// Creates the sub-group `member` (and missing parents).
    @discardableResult
    public func createGroup(_ member: String) throws -> HDF5Group {
        let id = percept_h5_group_create(handle.id, member)
        guard id >= 0 else { throw fail("cannot create group '\(child(member))'") }
        return HDF5Group(handle: HDF5Handle(id), path: path, name: child(member))
    }

    /// Opens the dataset `member`.
    public func dataset(_ member: String) throws -> HDF5Dataset {
        guard contains(member) else { throw DatasetError(path, "missing dataset '\(child(member))'") }
        let id = percept_h5_dataset_open(handle.id, member)
        guard id >= 0 else { throw fail("'\(child(member))' is not a readable dataset") }
        return try HDF5Dataset(handle: HDF5Handle(id), path: path, name: child(member))
    }

    /// Creates a dataset of `shape`. With `chunkShape` it is chunked (needed to extend it
    /// later; `growable` makes the first dimension unlimited), byte-shuffled and gzipped.
    @discardableResult
    public func createDataset(_ member: String, type: HDF5ElementType, shape: [Int],
                              chunkShape: [Int]? = nil, growable: Bool = false,
                              gzipLevel: Int = 4) throws -> HDF5Dataset {
        if let chunkShape {
            precondition(chunkShape.count == shape.count && chunkShape.allSatisfy { $0 > 0 },
                         "chunk shape \(chunkShape) does not fit shape \(shape)")
        }
        let dims = shape.map { Int64($0) }
        var maximum = dims
        if growable, !maximum.isEmpty { maximum[0] = -1 }
        let chunk = chunkShape?.map { Int64($0) }
        let id: hid_t = dims.withUnsafeBufferPointer { dimsBuffer in
            maximum.withUnsafeBufferPointer { maxBuffer in
                if let chunk {
                    return chunk.withUnsafeBufferPointer { chunkBuffer in
                        percept_h5_dataset_create(handle.id, member, type.nativeType, Int32(dims.count),
                                                  dimsBuffer.baseAddress, maxBuffer.baseAddress,
                                                  chunkBuffer.baseAddress, 1, Int32(gzipLevel))
                    }
                }
                return percept_h5_dataset_create(handle.id, member, type.nativeType, Int32(dims.count),
                                                 dimsBuffer.baseAddress, maxBuffer.baseAddress, nil, 0, 0)
            }
        }
        guard id >= 0 else { throw fail("cannot create dataset '\(child(member))' of shape \(shape)") }
        return try HDF5Dataset(handle: HDF5Handle(id), path: path, name: child(member))
    }

    // MARK: attributes

    /// Whether the attribute `attribute` is attached here.
    public func hasAttribute(_ attribute: String) -> Bool {
        percept_h5_attribute_exists(handle.id, attribute) > 0
    }

    /// Names of all attributes attached here, in name order.
    public func attributeNames() throws -> [String] {
        try HDF5Group.attributeNames(of: handle.id) { fail($0) }
    }

    static func attributeNames(of id: hid_t, fail: (String) -> DatasetError) throws -> [String] {
        let count = percept_h5_attribute_total(id)
        guard count >= 0 else { throw fail("cannot list attributes") }
        var names: [String] = []
        for index in 0..<count {
            guard let pointer = percept_h5_attribute_name(id, UInt64(index)) else {
                throw fail("cannot read attribute name \(index)")
            }
            names.append(String(cString: pointer))
            free(pointer)
        }
        return names
    }

    /// Writes a UTF-8 string attribute (replacing one of the same name).
    public func setAttribute(_ attribute: String, _ value: String) throws {
        try setAttribute(attribute, strings: [value], scalar: true)
    }

    /// Writes a 1-D array of UTF-8 strings as an attribute.
    public func setAttribute(_ attribute: String, strings values: [String], scalar: Bool = false) throws {
        let copies = values.map { strdup($0) }
        defer { copies.forEach { free($0) } }
        let pointers = copies.map { UnsafePointer<CChar>($0) }
        let status = pointers.withUnsafeBufferPointer {
            percept_h5_attribute_write_strings(handle.id, attribute, scalar ? -1 : Int64(values.count), $0.baseAddress)
        }
        guard status >= 0 else { throw fail("cannot write attribute '\(attribute)' on '\(name)'") }
    }

    /// Writes an integer attribute (a scalar).
    public func setAttribute(_ attribute: String, _ value: Int) throws {
        try setAttribute(attribute, integers: [Int64(value)], scalar: true)
    }

    /// Writes a float attribute (a scalar).
    public func setAttribute(_ attribute: String, _ value: Double) throws {
        try setAttribute(attribute, floats: [value], scalar: true)
    }

    /// Writes a 1-D (or, with `scalar`, a single) int64 attribute.
    public func setAttribute(_ attribute: String, integers values: [Int64], scalar: Bool = false) throws {
        let status = values.withUnsafeBufferPointer {
            percept_h5_attribute_write_numbers(handle.id, attribute, percept_h5_native_int64(),
                                               scalar ? -1 : Int64(values.count), $0.baseAddress)
        }
        guard status >= 0 else { throw fail("cannot write attribute '\(attribute)' on '\(name)'") }
    }

    /// Writes a 1-D (or, with `scalar`, a single) float64 attribute.
    public func setAttribute(_ attribute: String, floats values: [Double], scalar: Bool = false) throws {
        let status = values.withUnsafeBufferPointer {
            percept_h5_attribute_write_numbers(handle.id, attribute, percept_h5_native_double(),
                                               scalar ? -1 : Int64(values.count), $0.baseAddress)
        }
        guard status >= 0 else { throw fail("cannot write attribute '\(attribute)' on '\(name)'") }
    }

    /// Reads any attribute: integers, floats or strings.
    public func attribute(_ attribute: String) throws -> HDF5AttributeValue {
        try HDF5Group.readAttribute(of: handle.id, attribute, owner: name, path: path)
    }

    static func readAttribute(of id: hid_t, _ attribute: String, owner: String, path: String) throws -> HDF5AttributeValue {
        guard percept_h5_attribute_exists(id, attribute) > 0 else {
            throw DatasetError(path, "missing attribute '\(attribute)' on '\(owner)'")
        }
        let attributeID = percept_h5_attribute_open(id, attribute)
        guard attributeID >= 0 else { throw DatasetError(path, "cannot open attribute '\(attribute)' on '\(owner)'" + hdf5Reason()) }
        let handle = HDF5Handle(attributeID)
        var isScalar: Int32 = 0
        let count = percept_h5_attribute_count(handle.id, &isScalar)
        var typeClass: Int32 = 0, size = 0, isSigned: Int32 = 0
        guard count >= 0, percept_h5_type_info(handle.id, 1, &typeClass, &size, &isSigned) >= 0 else {
            throw DatasetError(path, "cannot read attribute '\(attribute)' on '\(owner)'" + hdf5Reason())
        }
        let n = Int(count)
        switch typeClass {
        case 0:
            var values = [Int64](repeating: 0, count: n)
            let status = values.withUnsafeMutableBufferPointer {
                percept_h5_attribute_read_numbers(handle.id, percept_h5_native_int64(), $0.baseAddress)
            }
            guard status >= 0 else { throw DatasetError(path, "cannot read attribute '\(attribute)' on '\(owner)'" + hdf5Reason()) }
            return .integers(values)
        case 1:
            var values = [Double](repeating: 0, count: n)
            let status = values.withUnsafeMutableBufferPointer {
                percept_h5_attribute_read_numbers(handle.id, percept_h5_native_double(), $0.baseAddress)
            }
            guard status >= 0 else { throw DatasetError(path, "cannot read attribute '\(attribute)' on '\(owner)'" + hdf5Reason()) }
            return .floats(values)
        case 2:
            var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: max(n, 1))
            let status = pointers.withUnsafeMutableBufferPointer {
                percept_h5_attribute_read_strings(handle.id, Int64(n), $0.baseAddress)
            }
            defer { pointers.forEach { free($0) } }
            guard status >= 0 else { throw DatasetError(path, "cannot read attribute '\(attribute)' on '\(owner)'" + hdf5Reason()) }
            return .strings(pointers.prefix(n).map { $0.map { String(cString: $0) } ?? "" })
        default:
            throw DatasetError(path, "attribute '\(attribute)' on '\(owner)' has an unsupported type")
        }
    }

    /// A string attribute (a scalar or a one-element array).
    public func stringAttribute(_ attribute: String) throws -> String {
        guard case .strings(let values) = try self.attribute(attribute), values.count == 1 else {
            throw DatasetError(path, "attribute '\(attribute)' on '\(name)' is not a string")
        }
        return values[0]
    }

    /// A 1-D string array attribute.
    public func stringsAttribute(_ attribute: String) throws -> [String] {
        guard case .strings(let values) = try self.attribute(attribute) else {
            throw DatasetError(path, "attribute '\(attribute)' on '\(name)' is not a list of strings")
        }
        return values
    }

    /// An integer attribute (a scalar or a one-element array).
    public func integerAttribute(_ attribute: String) throws -> Int {
        guard case .integers(let values) = try self.attribute(attribute), values.count == 1 else {
            throw DatasetError(path, "attribute '\(attribute)' on '\(name)' is not an integer")
        }
        return Int(values[0])
    }

    /// A numeric attribute as a Double (integers convert).
    public func numberAttribute(_ attribute: String) throws -> Double {
        switch try self.attribute(attribute) {
        case .floats(let values) where values.count == 1: return values[0]
        case .integers(let values) where values.count == 1: return Double(values[0])
        default: throw DatasetError(path, "attribute '\(attribute)' on '\(name)' is not a number")
        }
    }
}

/// An open HDF5 file; its root group is the file itself. Closed when released or by `close()`.
public final class HDF5File: HDF5Group {
    /// Opens an existing file for reading (or, with `writable`, for changes).
    public init(openingPath path: String, writable: Bool = false) throws {
        guard FileManager.default.fileExists(atPath: path) else { throw DatasetError(path, "no such file") }
        guard percept_h5_is_hdf5(path) > 0 else { throw DatasetError(path, "not an HDF5 file") }
        let id = percept_h5_file_open(path, writable ? 1 : 0)
        guard id >= 0 else { throw DatasetError(path, "cannot open HDF5 file" + hdf5Reason()) }
        super.init(handle: HDF5Handle(id), path: path, name: "/")
    }

    /// Creates (truncating) a file at `path`.
    public init(creatingPath path: String) throws {
        let id = percept_h5_file_create(path)
        guard id >= 0 else { throw DatasetError(path, "cannot create HDF5 file" + hdf5Reason()) }
        super.init(handle: HDF5Handle(id), path: path, name: "/")
    }

    /// Flushes buffered writes to disk.
    public func flush() throws {
        guard percept_h5_flush(handle.id) >= 0 else { throw fail("cannot flush") }
    }
}

/// An open HDF5 dataset: shape, type, and reads/writes of whole rows (hyperslabs along the
/// first dimension).
public final class HDF5Dataset {
    let handle: HDF5Handle
    /// The file, for error messages.
    public let path: String
    /// Full name inside the file.
    public let name: String
    /// Current shape; the first dimension grows with `append`.
    public private(set) var shape: [Int]
    /// The element type stored in the file.
    public let storedType: HDF5TypeDescription

    init(handle: HDF5Handle, path: String, name: String) throws {
        self.handle = handle
        self.path = path
        self.name = name
        var dims = [Int64](repeating: 0, count: 32)
        let rank = percept_h5_dataset_shape(handle.id, &dims)
        guard rank >= 0 else { throw DatasetError(path, "cannot read the shape of '\(name)'" + hdf5Reason()) }
        shape = dims.prefix(Int(rank)).map { Int($0) }
        var typeClass: Int32 = 0, size = 0, isSigned: Int32 = 0
        guard percept_h5_type_info(handle.id, 0, &typeClass, &size, &isSigned) >= 0 else {
            throw DatasetError(path, "cannot read the type of '\(name)'" + hdf5Reason())
        }
        let kinds: [HDF5TypeDescription.Kind] = [.integer, .float, .string, .other]
        storedType = HDF5TypeDescription(kind: kinds[Int(typeClass)], size: size, isSigned: isSigned != 0)
    }

    /// Elements in one row (product of all dimensions after the first).
    public var rowElements: Int { shape.dropFirst().reduce(1, *) }

    /// Elements in `rows` (default: the whole dataset), after checking, before anything is
    /// allocated, that they can be read: a number type of at most 8 bytes, and no more bytes
    /// than the file could hold at deflate's best ratio (1032:1), so that a hostile header
    /// (an element type of gigabytes, a shape of 10^10 elements) fails with an error.
    public func checkedElementCount(rows: Range<Int>? = nil) throws -> Int {
        guard storedType.kind == .integer || storedType.kind == .float, (1...8).contains(storedType.size) else {
            throw DatasetError(path, "'\(name)' stores elements of type \(storedType), not a number type Percept reads")
        }
        let dimensions = rows.map { [$0.count] + shape.dropFirst() } ?? shape
        var count = 1, overflow = false
        for dimension in dimensions where !overflow { (count, overflow) = count.multipliedReportingOverflow(by: dimension) }
        let (bytes, tooMany) = count.multipliedReportingOverflow(by: storedType.size)
        let fileBytes = fileSize(atPath: path) ?? Int.max / 1032
        guard !overflow, !tooMany, bytes <= 1032 * fileBytes else {
            throw DatasetError(path, "'\(name)' declares \(shape) \(storedType) elements\(rows.map { " (rows \($0))" } ?? ""), which a file of \(fileBytes) bytes cannot hold")
        }
        return count
    }

    /// Chunk shape (nil when contiguous), gzip level (0 when none) and whether shuffled.
    public func layout() throws -> (chunk: [Int]?, gzipLevel: Int, shuffle: Bool) {
        var chunk = [Int64](repeating: 0, count: 32)
        var level: Int32 = 0, shuffle: Int32 = 0
        let rank = percept_h5_dataset_layout(handle.id, &chunk, &level, &shuffle)
        guard rank >= 0 else { throw DatasetError(path, "cannot read the layout of '\(name)'" + hdf5Reason()) }
        return (rank == 0 ? nil : chunk.prefix(Int(rank)).map { Int($0) }, Int(level), shuffle != 0)
    }

    /// Attribute names attached to this dataset.
    public func attributeNames() throws -> [String] {
        try HDF5Group.attributeNames(of: handle.id) { DatasetError(path, "'\(name)': " + $0 + hdf5Reason()) }
    }

    /// Reads one attribute of this dataset.
    public func attribute(_ attribute: String) throws -> HDF5AttributeValue {
        try HDF5Group.readAttribute(of: handle.id, attribute, owner: name, path: path)
    }

    /// Writes a string attribute on this dataset.
    public func setAttribute(_ attribute: String, _ value: String) throws {
        let copy = strdup(value)
        defer { free(copy) }
        var pointer = UnsafePointer<CChar>(copy)
        guard percept_h5_attribute_write_strings(handle.id, attribute, -1, &pointer) >= 0 else {
            throw DatasetError(path, "cannot write attribute '\(attribute)' on '\(name)'" + hdf5Reason())
        }
    }

    /// Reads rows `rows` into `buffer`, converting to `type`; the buffer holds exactly
    /// `rows.count * rowElements` elements of `type`.
    public func readRows(_ rows: Range<Int>, as type: HDF5ElementType, into buffer: UnsafeMutableRawPointer) throws {
        guard let first = shape.first, rows.lowerBound >= 0, rows.upperBound <= first else {
            throw DatasetError(path, "rows \(rows) outside '\(name)' of shape \(shape)")
        }
        guard percept_h5_dataset_rows(handle.id, type.nativeType, Int64(rows.lowerBound), Int64(rows.count), buffer, 0) >= 0 else {
            throw DatasetError(path, "cannot read rows \(rows.lowerBound)..<\(rows.upperBound) of '\(name)'" + hdf5Reason())
        }
    }

    /// Reads the rows of `runs` (ascending, disjoint, non-empty ranges) as one union hyperslab,
    /// one after another, converting to `type`.
    public func readRows<T>(runs: [Range<Int>], as type: HDF5ElementType, element: T.Type = T.self) throws -> [T] {
        precondition(MemoryLayout<T>.stride == type.size, "element type does not match \(type)")
        if runs.count == 1 { return try readRows(runs[0], as: type) }
        guard let first = shape.first, runs.allSatisfy({ $0.lowerBound >= 0 && $0.upperBound <= first && !$0.isEmpty }) else {
            throw DatasetError(path, "row runs outside '\(name)' of shape \(shape)")
        }
        let rows = runs.reduce(0) { $0 + $1.count }
        let count = rows * shape.dropFirst().reduce(1, *)
        let starts = runs.map { Int64($0.lowerBound) }, counts = runs.map { Int64($0.count) }
        return try [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0, percept_h5_dataset_row_runs(handle.id, type.nativeType, starts, counts, Int32(runs.count),
                                                      UnsafeMutableRawPointer(buffer.baseAddress!)) < 0 {
                throw DatasetError(path, "cannot read \(rows) rows in \(runs.count) runs of '\(name)'" + hdf5Reason())
            }
            initialized = count
        }
    }

    /// Writes rows `rows` (which must lie inside the current shape) from `buffer`.
    public func writeRows(_ rows: Range<Int>, as type: HDF5ElementType, from buffer: UnsafeRawPointer) throws {
        guard let first = shape.first, rows.lowerBound >= 0, rows.upperBound <= first else {
            throw DatasetError(path, "rows \(rows) outside '\(name)' of shape \(shape)")
        }
        guard percept_h5_dataset_rows(handle.id, type.nativeType, Int64(rows.lowerBound), Int64(rows.count),
                                      UnsafeMutableRawPointer(mutating: buffer), 1) >= 0 else {
            throw DatasetError(path, "cannot write rows \(rows.lowerBound)..<\(rows.upperBound) of '\(name)'" + hdf5Reason())
        }
    }

    /// Writes the whole dataset (any rank, including scalars) from `buffer`.
    public func writeAll(as type: HDF5ElementType, from buffer: UnsafeRawPointer) throws {
        guard percept_h5_dataset_rows(handle.id, type.nativeType, 0, Int64(shape.first ?? 1),
                                      UnsafeMutableRawPointer(mutating: buffer), 1) >= 0 else {
            throw DatasetError(path, "cannot write '\(name)'" + hdf5Reason())
        }
    }

    /// Reads the whole dataset (any rank, including scalars) into `buffer`.
    public func readAll(as type: HDF5ElementType, into buffer: UnsafeMutableRawPointer) throws {
        guard percept_h5_dataset_rows(handle.id, type.nativeType, 0, Int64(shape.first ?? 1), buffer, 0) >= 0 else {
            throw DatasetError(path, "cannot read '\(name)'" + hdf5Reason())
        }
    }

    /// Appends `count` rows from `buffer` to a growable dataset.
    public func append(count: Int, as type: HDF5ElementType, from buffer: UnsafeRawPointer) throws {
        guard count > 0 else { return }
        var newShape = shape
        newShape[0] += count
        let dims = newShape.map { Int64($0) }
        guard percept_h5_dataset_extend(handle.id, Int32(dims.count), dims) >= 0 else {
            throw DatasetError(path, "cannot extend '\(name)' to \(newShape)" + hdf5Reason())
        }
        let start = shape[0]
        shape = newShape
        try writeRows(start..<(start + count), as: type, from: buffer)
    }

    /// Reads rows into a new array of `T` (which must match `type` in size).
    public func readRows<T>(_ rows: Range<Int>, as type: HDF5ElementType, element: T.Type = T.self) throws -> [T] {
        precondition(MemoryLayout<T>.stride == type.size, "element type does not match \(type)")
        let count = try checkedElementCount(rows: rows)
        return try [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 { try readRows(rows, as: type, into: UnsafeMutableRawPointer(buffer.baseAddress!)) }
            initialized = count
        }
    }

    /// Reads the whole dataset into a new array.
    public func readAll<T>(as type: HDF5ElementType, element: T.Type = T.self) throws -> [T] {
        precondition(MemoryLayout<T>.stride == type.size, "element type does not match \(type)")
        let count = try checkedElementCount()
        return try [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 { try readAll(as: type, into: UnsafeMutableRawPointer(buffer.baseAddress!)) }
            initialized = count
        }
    }
}
