import Foundation
import PerceptDatasets

/// What a command line says about a configuration, applied in this order over the typed
/// defaults (or a model's stored settings): the `--config` file, then the first-class flags and
/// the `--set` assignments. Ultralytics' `get_cfg(cfg, overrides)`, with types.
public struct ConfigOverrides: Sendable {
    /// A YAML or JSON file (`--config`).
    public var file: String?
    /// `KEY=VALUE` assignments (`--set`, repeatable).
    public var assignments: [String]
    /// First-class flags as (key, value) pairs, e.g. `("epochs", .integer(3))` for `--epochs 3`.
    public var flags: [(key: String, flag: String, value: ConfigValue)]

    public init(file: String? = nil, assignments: [String] = [], flags: [(key: String, flag: String, value: ConfigValue)] = []) {
        self.file = file; self.assignments = assignments; self.flags = flags
    }

    /// Whether anything at all is overridden.
    public var isEmpty: Bool { file == nil && assignments.isEmpty && flags.isEmpty }
}

/// A typed configuration that can be read from and written to YAML and overridden by key.
public protocol Configurable: Codable, Equatable, Sendable {
    /// Throws a `ConfigError` naming the key of a value out of range.
    func validate() throws
}

extension Configurable {
    public func validate() throws {}

    /// The configuration as YAML: what `--show-config` prints and `--config` reads back.
    public func yaml() -> String { ((try? ConfigValue(encoding: self)) ?? .table([:])).yaml() }

    /// "train.epochs: 8 stored, 10 given" for every key where this (stored) configuration and
    /// `given` differ, joined by "; ".
    public func differences(to given: Self) -> String {
        guard let a = try? ConfigValue(encoding: self), let b = try? ConfigValue(encoding: given) else { return "" }
        return a.leafPaths.compactMap { path -> String? in
            let x = a[path], y = b[path]
            return x == y ? nil : "\(path.joined(separator: ".")): \(x?.scalarText ?? "-") stored, \(y?.scalarText ?? "-") given"
        }.joined(separator: "; ")
    }

    /// Every key, dotted (`train.epochs`), sorted.
    public var keys: [String] {
        ((try? ConfigValue(encoding: self))?.leafPaths ?? []).map { $0.joined(separator: ".") }
    }

    /// This configuration with `overrides` applied, type- and range-checked.
    public func applying(_ overrides: ConfigOverrides) throws -> Self {
        var resolver = try ConfigResolver(self)
        if let file = overrides.file { try resolver.apply(file: file) }
        var assigned: [String: (source: String, value: ConfigValue)] = [:]
        func assign(_ key: String, _ value: ConfigValue, source: String) throws {
            let path = try resolver.path(of: key, source: source)
            let name = path.joined(separator: ".")
            let coerced = try resolver.coerce(value, at: path, source: source)
            if let earlier = assigned[name], earlier.value != coerced {
                throw ConfigError("\(source) and \(earlier.source) both set \(name), to different values; give one")
            }
            assigned[name] = (source, coerced)
            resolver.tree = resolver.tree.replacing(path, with: coerced)
        }
        for (key, flag, value) in overrides.flags { try assign(key, value, source: flag) }
        for assignment in overrides.assignments {
            guard let equals = assignment.firstIndex(of: "="), equals != assignment.startIndex else {
                throw ConfigError("--set takes KEY=VALUE, got '\(assignment)'")
            }
            let key = String(assignment[..<equals]).trimmingCharacters(in: .whitespaces)
            let text = String(assignment[assignment.index(after: equals)...])
            try assign(key, try ConfigValue.parse(yaml: text.isEmpty ? "\"\"" : text, source: "--set \(key)"), source: "--set \(key)")
        }
        let resolved: Self = try resolver.decode()
        try resolved.validate()
        return resolved
    }

    /// Reads a configuration from YAML over this one (keys it leaves out keep this one's values).
    public func reading(yaml text: String, source: String) throws -> Self {
        var resolver = try ConfigResolver(self)
        try resolver.merge(try ConfigValue.parse(yaml: text, source: source), source: source)
        let resolved: Self = try resolver.decode()
        try resolved.validate()
        return resolved
    }
}

/// Applies overrides to the tree of a typed configuration and decodes the result.
struct ConfigResolver<C: Codable> {
    var tree: ConfigValue
    let defaults: ConfigValue
    let names: [String: String]
    let leaves: [[String]]

    init(_ configuration: C) throws {
        defaults = try ConfigValue(encoding: configuration)
        tree = defaults
        names = try ConfigKey.names(of: configuration)
        leaves = defaults.leafPaths
    }

    mutating func apply(file path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError("\(path): cannot read the configuration file (missing or unreadable)")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw ConfigError("\(path): not UTF-8 text") }
        try merge(try ConfigValue.parse(yaml: text, source: path), source: path)
    }

    /// Sets every leaf that `given` holds; a top-level key that is no section may name a leaf
    /// by its own name where that is unique (`epochs: 3`).
    mutating func merge(_ given: ConfigValue, source: String) throws {
        guard case .table = given else { throw ConfigError("\(source): a configuration is a mapping of keys to values") }
        for path in given.leafPaths where !path.isEmpty {
            let value = given[path]!
            let target = defaults[path] != nil ? path : try self.path(of: path.joined(separator: "."), source: source)
            if case .table(let entries) = value, entries.isEmpty, case .table = defaults[target] ?? .table([:]) { continue }
            tree = tree.replacing(target, with: try coerce(value, at: target, source: source))
        }
    }

    /// The full path of `key`: a dotted path, or its last parts where only one key ends so.
    func path(of key: String, source: String) throws -> [String] {
        let parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard !parts.contains(where: \.isEmpty) else { throw ConfigError("\(source): '\(key)' is not a key") }
        let matches = leaves.filter { $0.count >= parts.count && Array($0.suffix(parts.count)) == parts }
        if matches.count == 1 { return matches[0] }
        if matches.count > 1 {
            throw ConfigError("\(source): '\(key)' is ambiguous: \(matches.map { $0.joined(separator: ".") }.joined(separator: ", "))")
        }
        throw ConfigError("\(source): unknown key '\(key)'" + suggestion(for: parts.last!))
    }

    /// "; did you mean X or Y?" from the keys nearest to `name`.
    func suggestion(for name: String) -> String {
        let scored = leaves.map { (path: $0.joined(separator: "."), distance: editDistance(name, $0.last!)) }
            .filter { $0.distance <= max(2, name.count / 3) || $0.path.contains(name) }
            .sorted { ($0.distance, $0.path) < ($1.distance, $1.path) }
        guard !scored.isEmpty else {
            return "; valid keys: " + leaves.map { $0.joined(separator: ".") }.joined(separator: ", ")
        }
        return "; did you mean " + scored.prefix(3).map(\.path).joined(separator: " or ") + "?"
    }

    /// Numbers given where the default is whole: Float fields, or integer fields given a
    /// fraction, which only decoding tells apart.
    var numbersAtWholeDefaults: [(path: [String], source: String, value: Double)] = []

    mutating func coerce(_ value: ConfigValue, at path: [String], source: String) throws -> ConfigValue {
        let current = defaults[path]!
        guard let converted = current.coerced(value) else {
            throw ConfigError("\(source): \(path.joined(separator: ".")) takes \(current.kind), got \(value.scalarText)")
        }
        if case .integer = current, case .number(let number) = converted { numbersAtWholeDefaults.append((path, source, number)) }
        return converted
    }

    func decode<T: Decodable>() throws -> T {
        do {
            return try tree.decode(T.self, keysOf: names)
        } catch let error as DecodingError {
            // A fraction for an integer field fails the whole decode: try each such value alone.
            for (path, source, number) in numbersAtWholeDefaults {
                let alone = defaults.replacing(path, with: .number(number))
                if (try? alone.decode(T.self, keysOf: names)) == nil {
                    throw ConfigError("\(source): \(path.joined(separator: ".")) takes an integer, got \(number)")
                }
            }
            throw ConfigError("configuration: \(describeConfig(error))")
        }
    }

    /// "train.optimizer: 'rmsprop' is not valid" rather than the DecodingError dump.
    private func describeConfig(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map(String.init) ?? ConfigKey.snakeCase($0.stringValue) }.joined(separator: ".")
        }
        switch error {
        case .dataCorrupted(let context), .typeMismatch(_, let context), .valueNotFound(_, let context):
            let at = path(context)
            let value = tree[at.split(separator: ".").map(String.init)]
            if case .number(let number)? = value { return "\(at) takes an integer, got \(number)" }
            if let value, case .string(let text) = value {
                return "\(at): '\(text)' is not a valid value" + (context.debugDescription.isEmpty ? "" : " (\(context.debugDescription))")
            }
            return "\(at): \(context.debugDescription)"
        case .keyNotFound(let key, let context):
            return "missing key '\((path(context).isEmpty ? "" : path(context) + "."))\(ConfigKey.snakeCase(key.stringValue))'"
        @unknown default:
            return "\(error)"
        }
    }
}

/// Levenshtein distance, for suggesting keys.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    guard !a.isEmpty else { return b.count }
    var previous = Array(0...b.count), current = previous
    for i in 1...a.count {
        current[0] = i
        for j in stride(from: 1, through: b.count, by: 1) {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}

/// Range checks that name the key.
public enum Check {
    public static func that(_ condition: Bool, _ key: String, _ requirement: String) throws {
        if !condition { throw ConfigError("\(key) \(requirement)") }
    }
}

/// A loaded model's decoding settings as a configuration of one `settings` section: what the
/// eval and predict commands' `--config`, `--set` and `--show-config` read and print.
public struct ModelSettings<S: Configurable>: Configurable {
    public var settings: S
    public init(_ settings: S) { self.settings = settings }
    public func validate() throws { try settings.validate() }
}
