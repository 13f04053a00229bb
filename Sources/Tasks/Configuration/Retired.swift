/// Options that earlier Percepts had and this one retired because they measured no gain
/// (models/README.md records each with its numbers). A model file that used one still loads
/// where it held the default value, and is refused by name otherwise.
enum Retired {
    /// Refuses `key` unless it is absent or holds `defaultValue`.
    static func refuse<K: CodingKey, V: Decodable & Equatable>(_ container: KeyedDecodingContainer<K>, _ key: K, unless defaultValue: V,
                                                              option: String) throws {
        guard let value = try? container.decodeIfPresent(V.self, forKey: key), value != defaultValue else {
            if container.contains(key), (try? container.decodeNil(forKey: key)) != true, (try? container.decode(V.self, forKey: key)) == nil {
                throw retired(key, in: container, option: option)
            }
            return
        }
        throw retired(key, in: container, option: option)
    }

    /// Refuses `key` unless it is absent (or null).
    static func refuseAny<K: CodingKey>(_ container: KeyedDecodingContainer<K>, _ key: K, option: String) throws {
        if container.contains(key), (try? container.decodeNil(forKey: key)) != true {
            throw retired(key, in: container, option: option)
        }
    }

    private static func retired<K: CodingKey>(_ key: K, in container: KeyedDecodingContainer<K>, option: String) -> DecodingError {
        DecodingError.dataCorrupted(.init(codingPath: container.codingPath + [key],
                                          debugDescription: "uses the \(option), which this Percept no longer has (it measured no gain); retrain without it"))
    }
}
