import Foundation

extension Converter {
    // MARK: Tags CSV

    /// Converts a folder of PNG or JPEG images plus a CSV (`image,tags`) to a tagging file; how the
    /// tags field is split is `TagsCSV`'s rule. With `declaredTags` any other tag is an error;
    /// without, the tags are the sorted union of those used.
    public static func tags(images directory: String, csv csvPath: String, declaredTags: [String]? = nil,
                            output: String, options: ConversionOptions = ConversionOptions()) throws -> ConversionSummary {
        let rows = try CSV.read(path: csvPath)
        guard let header = rows.first else { throw DatasetError(csvPath, "empty input: no header line") }
        guard header.fields.map({ $0.trimmingCharacters(in: .whitespaces).lowercased() }) == ["image", "tags"] else {
            throw DatasetError(csvPath, "line \(header.line): header must be 'image,tags', found '\(header.fields.joined(separator: ","))'")
        }
        if let bad = declaredTags?.first(where: { $0.contains(TagsCSV.separator) }) {
            throw DatasetError(csvPath, "declared tag '\(bad)' contains '\(TagsCSV.separator)', which separates tags")
        }
        let semicolons = TagsCSV.usesSeparator(fields: rows.dropFirst().compactMap { $0.fields.count == 2 ? $0.fields[1] : nil },
                                               declaredTags: declaredTags ?? [])
        var records: [(line: Int, path: String, tags: [String])] = []
        // A second row for the same image: identical tags merge, other tags are an error.
        var recordOfPath: [String: Int] = [:]
        var merged: [(line: Int, repeats: Int)] = []
        for row in rows.dropFirst() {
            guard row.fields.count == 2 else {
                throw DatasetError(csvPath, "line \(row.line): expected 2 fields (image,tags), found \(row.fields.count)")
            }
            let name = row.fields[0].trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty else { throw DatasetError(csvPath, "line \(row.line): empty image name") }
            guard let path = findImage(named: name, in: directory) else {
                throw DatasetError(csvPath, "line \(row.line): image '\(name)' not found in \(directory)")
            }
            let tags = TagsCSV.split(row.fields[1], separator: semicolons)
            if let earlier = recordOfPath[path].map({ records[$0] }) {
                guard Set(earlier.tags) == Set(tags) else {
                    throw DatasetError(csvPath, "image '\(name)' has two rows with different tags: line \(earlier.line) and line \(row.line)")
                }
                merged.append((row.line, earlier.line))
                continue
            }
            recordOfPath[path] = records.count
            records.append((row.line, path, tags))
        }
        guard !records.isEmpty else { throw DatasetError(csvPath, "empty input: no image rows") }
        let tagNames = declaredTags ?? Array(Set(records.flatMap(\.tags))).sorted()
        guard !tagNames.isEmpty else { throw DatasetError(csvPath, "no tags used and none declared") }
        let tagIndex = Dictionary(tagNames.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
        var indices: [[Int]] = []
        for record in records {
            indices.append(try record.tags.map { tag in
                guard let index = tagIndex[tag] else {
                    throw DatasetError(csvPath, "line \(record.line): tag '\(tag)' is not among the \(tagNames.count) declared tags")
                }
                return index
            })
        }
        let channels = options.channels ?? 3
        let size = try options.size ?? firstSize(records[0].path)
        let writer = try DatasetWriter(path: output, task: .tagging, channels: channels, height: size.height, width: size.width,
                                       tagCount: tagNames.count, source: "tags: \(directory), \(lastComponent(csvPath))",
                                       overwrite: options.overwrite)
        var perTag = [Int](repeating: 0, count: tagNames.count)
        do {
            for (index, record) in records.enumerated() {
                let image = try loadImage(record.path, channels: channels, size: options.size)
                try writer.append(image: image, tagIndices: indices[index], source: record.path)
                for tag in Set(indices[index]) { perTag[tag] += 1 }
                options.progress?(index + 1, records.count)
            }
            try writer.finish(classNames: tagNames)
        } catch {
            writer.abandon()
            throw error
        }
        var summary = ConversionSummary(output: output, task: .tagging, count: records.count, channels: channels,
                                        height: size.height, width: size.width, classNames: tagNames, perClass: perTag)
        if let first = merged.first {
            summary.notes.append("merged \(merged.count) duplicate rows (\(merged.count > 1 ? "the first: " : "")line \(first.line) repeats line \(first.repeats))")
        }
        return summary
    }
}


/// The tags field of an `image,tags` CSV (read by `convert tags`, written by `tag predict`).
///
/// The rule: the tags of a row are separated by `;` when the file uses `;`, that is when any
/// row's tags field contains a `;` or a declared tag name contains a space or tab; otherwise
/// they are separated by spaces and tabs (the Kaggle Planet format, whose names hold no
/// spaces). With `;`, whitespace around each name is trimmed and empty names are dropped, so
/// a trailing `;` is allowed. Tag names cannot contain `;`.
public enum TagsCSV {
    public static let separator: Character = ";"

    /// Whether a file with these tags fields (and declared names) separates tags with `;`.
    static func usesSeparator(fields: [String], declaredTags: [String]) -> Bool {
        fields.contains { $0.contains(separator) } || declaredTags.contains { $0.contains(where: \.isWhitespace) }
    }

    /// The tag names of one field.
    static func split(_ field: String, separator semicolons: Bool) -> [String] {
        guard semicolons else { return field.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init) }
        return field.split(separator: separator).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    /// The tags field for `tags`, read back as exactly these names by the rule above: names
    /// joined by `;`, and a single name that holds a space followed by `;` so that the file
    /// uses `;` even when no row has two tags. (Quote the field as any CSV field if needed.)
    public static func field(_ tags: [String]) -> String {
        let joined = tags.joined(separator: String(separator))
        return tags.count == 1 && joined.contains(where: \.isWhitespace) ? joined + String(separator) : joined
    }
}

/// A minimal CSV reader: comma separated, double-quoted fields may hold commas and "" quotes.
enum CSV {
    struct Row { let line: Int; let fields: [String] }

    static func read(path: String) throws -> [Row] {
        try parse(readData(path), path: path)
    }

    /// The rows of CSV `data`; `path` only names the source in errors.
    static func parse(_ data: Data, path: String) throws -> [Row] {
        guard let text = String(data: data, encoding: .utf8) else { throw DatasetError(path, "not UTF-8 text") }
        var rows: [Row] = []
        for (index, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0.isNewline }).enumerated() {
            let line = rawLine
            if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            var fields: [String] = []
            var field = ""
            var quoted = false
            var characters = line.makeIterator()
            var pending: Character? = nil
            while let character = pending ?? characters.next() {
                pending = nil
                if quoted {
                    if character == "\"" {
                        if let next = characters.next() {
                            if next == "\"" { field.append("\"") } else { quoted = false; pending = next }
                        } else { quoted = false }
                    } else { field.append(character) }
                } else if character == "\"" && field.isEmpty {
                    quoted = true
                } else if character == "," {
                    fields.append(field); field = ""
                } else {
                    field.append(character)
                }
            }
            if quoted { throw DatasetError(path, "line \(index + 1): unterminated quoted field") }
            fields.append(field)
            rows.append(Row(line: index + 1, fields: fields))
        }
        return rows
    }
}
