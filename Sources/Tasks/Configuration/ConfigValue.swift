import Foundation
import Yams

/// A configuration as a tree of plain values: what `--config` files, `--set` and `--show-config`
/// read and write. Every typed configuration converts to one (through its `Codable` conformance,
/// with snake_case keys) and back, so overrides are applied to the tree and type-checked when the
/// tree is decoded into the typed struct again.
public indirect enum ConfigValue: Equatable, Sendable {
    case bool(Bool)
    case integer(Int)
    case number(Double)
    case string(String)
    case list([ConfigValue])
    case table([String: ConfigValue])

    /// What a value of this kind is called in error messages.
    var kind: String {
        switch self {
        case .bool: "true or false"
        case .integer: "an integer"
        case .number: "a number"
        case .string: "a string"
        case .list: "a list"
        case .table: "a section"
        }
    }

    /// `other` converted to this value's kind where that loses nothing (an integer where a number
    /// goes, a scalar where a string goes, a lone value where a list goes); nil when it cannot be.
    func coerced(_ other: ConfigValue) -> ConfigValue? {
        switch (self, other) {
        case (.bool, .bool), (.integer, .integer), (.number, .number), (.string, .string): return other
        case (.number, .integer(let i)): return .number(Double(i))
        // A whole default may belong to a Float field (JSON writes 1.0 as 1): decoding the
        // typed struct decides, and names the key if it is an integer field.
        case (.integer, .number): return other
        case (.string, .integer(let i)): return .string(String(i))
        case (.string, .number(let d)): return .string(String(d))
        case (.string, .bool(let b)): return .string(String(b))
        case (.list(let items), .list(let given)):
            // An empty default list takes any items (their kind is checked when decoding).
            guard let model = items.first else { return other }
            let converted = given.compactMap { model.coerced($0) }
            return converted.count == given.count ? .list(converted) : nil
        case (.list(let items), _):
            guard let model = items.first else { return .list([other]) }
            return model.coerced(other).map { .list([$0]) }
        case (.table, .table): return other
        default: return nil
        }
    }
}

// MARK: Typed values <-> trees

extension ConfigValue {
    /// The tree of an encodable value, with its keys in snake_case.
    public init<T: Encodable>(encoding value: T) throws {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .custom { path in SnakeKey(ConfigKey.snakeCase(path.last!.stringValue)) }
        self = try JSONDecoder().decode(ConfigValue.self, from: encoder.encode(value))
    }

    /// Decodes this tree (snake_case keys) into `T`, whose keys are those of `reference`'s tree.
    func decode<T: Decodable>(_ type: T.Type, keysOf reference: [String: String]) throws -> T {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .custom { path in SnakeKey(reference[path.last!.stringValue] ?? path.last!.stringValue) }
        return try decoder.decode(T.self, from: JSONEncoder().encode(self))
    }

    /// This tree with every key in snake_case (for trees read from camelCase JSON).
    public func snakeCased() -> ConfigValue {
        switch self {
        case .table(let entries):
            return .table(Dictionary(entries.map { (ConfigKey.snakeCase($0.key), $0.value.snakeCased()) }, uniquingKeysWith: { a, _ in a }))
        case .list(let items): return .list(items.map { $0.snakeCased() })
        default: return self
        }
    }

    /// The value at a dotted path, or nil.
    subscript(path: [String]) -> ConfigValue? {
        guard let first = path.first else { return self }
        guard case .table(let entries) = self, let next = entries[first] else { return nil }
        return next[Array(path.dropFirst())]
    }

    /// This tree with the value at `path` replaced.
    func replacing(_ path: [String], with value: ConfigValue) -> ConfigValue {
        guard let first = path.first, case .table(var entries) = self else { return value }
        entries[first] = (entries[first] ?? .table([:])).replacing(Array(path.dropFirst()), with: value)
        return .table(entries)
    }

    /// The dotted paths of every leaf (a list counts as a leaf), sorted.
    var leafPaths: [[String]] {
        guard case .table(let entries) = self else { return [[]] }
        return entries.keys.sorted().flatMap { key in entries[key]!.leafPaths.map { [key] + $0 } }
    }
}

extension ConfigValue: Codable {
    public init(from decoder: any Decoder) throws {
        if let keyed = try? decoder.container(keyedBy: SnakeKey.self) {
            var entries: [String: ConfigValue] = [:]
            for key in keyed.allKeys { entries[key.stringValue] = try keyed.decode(ConfigValue.self, forKey: key) }
            self = .table(entries)
        } else if var unkeyed = try? decoder.unkeyedContainer() {
            var items: [ConfigValue] = []
            while !unkeyed.isAtEnd { items.append(try unkeyed.decode(ConfigValue.self)) }
            self = .list(items)
        } else {
            let single = try decoder.singleValueContainer()
            if let b = try? single.decode(Bool.self) { self = .bool(b) }
            else if let i = try? single.decode(Int.self) { self = .integer(i) }
            else if let d = try? single.decode(Double.self) { self = .number(d) }
            else { self = .string(try single.decode(String.self)) }
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .bool(let b): var c = encoder.singleValueContainer(); try c.encode(b)
        case .integer(let i): var c = encoder.singleValueContainer(); try c.encode(i)
        case .number(let d): var c = encoder.singleValueContainer(); try c.encode(d)
        case .string(let s): var c = encoder.singleValueContainer(); try c.encode(s)
        case .list(let items): var c = encoder.unkeyedContainer(); for item in items { try c.encode(item) }
        case .table(let entries):
            var c = encoder.container(keyedBy: SnakeKey.self)
            for (key, value) in entries { try c.encode(value, forKey: SnakeKey(key)) }
        }
    }
}

struct SnakeKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { return nil }
}

/// Key spelling: Swift's camelCase property names as the snake_case keys users type.
public enum ConfigKey {
    /// `nmsIoU` -> `nms_iou`, `stemStride` -> `stem_stride`, `categoryIDs` -> `category_ids`.
    public static func snakeCase(_ name: String) -> String {
        var text = name
        for (acronym, word) in [("IoU", "Iou"), ("IDs", "Ids"), ("ID", "Id")] { text = text.replacingOccurrences(of: acronym, with: word) }
        var out = ""
        for (i, ch) in text.enumerated() {
            if ch.isUppercase {
                if i > 0 { out += "_" }
                out += ch.lowercased()
            } else {
                out.append(ch)
            }
        }
        return out
    }

    /// snake_case key -> the coding key it came from, for every key of `value`'s tree.
    static func names<T: Encodable>(of value: T) throws -> [String: String] {
        let recorder = KeyRecorder()
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .custom { path in
            let name = path.last!.stringValue
            recorder.names[snakeCase(name)] = name
            return SnakeKey(name)
        }
        _ = try encoder.encode(value)
        return recorder.names
    }
}

/// Collects key names while a configuration is encoded.
private final class KeyRecorder: @unchecked Sendable { var names: [String: String] = [:] }

// MARK: YAML

extension ConfigValue {
    /// Parses YAML (or JSON, which is YAML) text; `source` names it in errors.
    public static func parse(yaml text: String, source: String) throws -> ConfigValue {
        let loaded: Any?
        do { loaded = try Yams.load(yaml: text) } catch {
            throw ConfigError("\(source): not valid YAML: \(String(describing: error).split(separator: "\n").first ?? "")")
        }
        guard let loaded else { return .table([:]) }
        return try convert(loaded, source: source, at: [])
    }

    private static func convert(_ any: Any, source: String, at path: [String]) throws -> ConfigValue {
        switch any {
        case let b as Bool: return .bool(b)
        case let i as Int: return .integer(i)
        case let d as Double: return .number(d)
        case let s as String: return .string(s)
        case let items as [Any]:
            return .list(try items.enumerated().map { try convert($1, source: source, at: path + [String($0)]) })
        case let entries as [AnyHashable: Any]:
            var table: [String: ConfigValue] = [:]
            for (key, value) in entries {
                let name = String(describing: key.base)
                table[name] = try convert(value, source: source, at: path + [name])
            }
            return .table(table)
        default:
            let at = path.isEmpty ? "" : " at '\(path.joined(separator: "."))'"
            throw ConfigError("\(source): a value\(at) is empty or of an unsupported kind (\(type(of: any)))")
        }
    }

    /// YAML text of this tree: sections as indented blocks, lists in flow style, keys sorted.
    public func yaml() -> String {
        guard case .table(let entries) = self else { return scalarText + "\n" }
        var lines: [String] = []
        func emit(_ entries: [String: ConfigValue], indent: String) {
            for key in entries.keys.sorted() {
                let value = entries[key]!
                if case .table(let inner) = value, !inner.isEmpty {
                    lines.append("\(indent)\(key):")
                    emit(inner, indent: indent + "  ")
                } else {
                    lines.append("\(indent)\(key): \(value.scalarText)")
                }
            }
        }
        emit(entries, indent: "")
        return lines.joined(separator: "\n") + "\n"
    }

    /// One value in YAML flow style.
    var scalarText: String {
        switch self {
        case .bool(let b): return b ? "true" : "false"
        case .integer(let i): return String(i)
        case .number(let d):
            // Floats travel as Double: print the shortest text that reads back as the same Float.
            let f = Float(d)
            if Double(f) == d || Double(String(f)) == d || Float(String(f)) == f, f.isFinite {
                let text = String(f)
                return text.contains(".") || text.contains("e") ? text : text + ".0"
            }
            return String(d)
        case .string(let s):
            let plain = !s.isEmpty && s.allSatisfy { $0.isLetter || $0.isNumber || "-_./+".contains($0) }
                && Double(s) == nil && !["true", "false", "yes", "no", "on", "off", "null", "~"].contains(s.lowercased())
            if plain { return s }
            let escaped = s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            return "\"\(escaped)\""
        case .list(let items): return "[" + items.map(\.scalarText).joined(separator: ", ") + "]"
        case .table(let entries):
            return "{" + entries.keys.sorted().map { "\($0): \(entries[$0]!.scalarText)" }.joined(separator: ", ") + "}"
        }
    }
}

/// A configuration the user gave that cannot be used: printed as one `error:` line.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
