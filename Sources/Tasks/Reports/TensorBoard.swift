import Foundation
import PerceptDatasets

/// Writes TensorBoard event files (`events.out.tfevents.*`) of scalars, by our own writer of the
/// record format: each record is its length (uint64, little-endian), the masked CRC32C of the
/// length, the bytes, and their masked CRC32C; each record holds an `Event` protocol buffer
/// (`wall_time` = 1, `step` = 2, `file_version` = 3, `summary` = 5 holding `Value`s of `tag` = 1
/// and `simple_value` = 2). TensorBoard, tbparse and TensorFlow read them.
public final class TensorBoardWriter {
    public let path: String
    private let handle: FileHandle

    /// Starts (or, `appending`, continues) the event file in `folder`.
    public init(folder: String, appending existing: String? = nil) throws {
        if let existing, FileManager.default.fileExists(atPath: existing) {
            path = existing
            guard let handle = FileHandle(forWritingAtPath: existing) else { throw DatasetError(existing, "cannot append to the event file") }
            handle.seekToEndOfFile()
            self.handle = handle
            return
        }
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"
        path = folder + "/events.out.tfevents.\(Int(Date().timeIntervalSince1970)).\(host).\(getpid()).percept"
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw DatasetError(path, "cannot create the event file")
        }
        self.handle = handle
        var event = ProtoWriter()
        event.double(1, Date().timeIntervalSince1970)
        event.string(3, "brain.Event:2")
        try write(event.bytes)
    }

    deinit { try? handle.close() }

    /// One scalar per tag at `step`.
    public func add(_ scalars: [(tag: String, value: Double)], step: Int, wallTime: Date = Date()) throws {
        var summary = ProtoWriter()
        for (tag, value) in scalars {
            var entry = ProtoWriter()
            entry.string(1, tag)
            entry.float(2, Float(value))
            summary.message(1, entry.bytes)
        }
        var event = ProtoWriter()
        event.double(1, wallTime.timeIntervalSince1970)
        event.int(2, Int64(step))
        event.message(5, summary.bytes)
        try write(event.bytes)
    }

    private func write(_ data: [UInt8]) throws {
        var length = UInt64(data.count).littleEndian
        let lengthBytes = withUnsafeBytes(of: &length) { Array($0) }
        var record = lengthBytes
        record += Self.littleEndian(Self.maskedCRC(lengthBytes))
        record += data
        record += Self.littleEndian(Self.maskedCRC(data))
        handle.write(Data(record))
        try handle.synchronize()
    }

    static func littleEndian(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8((value >> (8 * $0)) & 0xFF) } }

    /// TFRecord's mask of a CRC32C: rotated right by 15 bits plus a constant.
    static func maskedCRC(_ bytes: [UInt8]) -> UInt32 {
        let crc = crc32c(bytes)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }

    /// CRC-32C (Castagnoli), reflected polynomial 0x82F63B78.
    static func crc32c(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = crcTable[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    private static let crcTable: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 { value = value & 1 != 0 ? (value >> 1) ^ 0x82F6_3B78 : value >> 1 }
        return value
    }
}

/// Protocol buffer wire format, the few field kinds an `Event` needs.
struct ProtoWriter {
    private(set) var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }

    mutating func key(_ field: Int, _ wireType: UInt64) { varint(UInt64(field) << 3 | wireType) }

    mutating func double(_ field: Int, _ value: Double) {
        key(field, 1)
        bytes += withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) }
    }

    mutating func float(_ field: Int, _ value: Float) {
        key(field, 5)
        bytes += withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) }
    }

    mutating func int(_ field: Int, _ value: Int64) {
        key(field, 0)
        varint(UInt64(bitPattern: value))
    }

    mutating func string(_ field: Int, _ value: String) { message(field, Array(value.utf8)) }

    mutating func message(_ field: Int, _ value: [UInt8]) {
        key(field, 2)
        varint(UInt64(value.count))
        bytes += value
    }
}
