import Foundation

extension Converter {
    // MARK: Tags CSV

    /// Converts a folder of PNG or JPEG images plus a CSV to a tagging file. The image column is
    /// `imageColumn` (default: the column named image, image_name, filename, file_name or path,
    /// else the first); the tags are the `tagsColumn` (default: a column named tags), split by
    /// `separator` (default: detected, see `TagsCSV.Separator`), or, without a tags column, every
    /// other column is a tag of 0/1 values (one-hot). With `declaredTags` any other tag is an
    /// error; without, the tags are the sorted union of those used (one-hot: the columns).
    public static func tags(images directory: String, csv csvPath: String, declaredTags: [String]? = nil,
                            imageColumn: String? = nil, tagsColumn: String? = nil, separator: TagsCSV.Separator? = nil,
                            output: String, options: ConversionOptions = ConversionOptions()) throws -> ConversionSummary {
        let rows = try CSV.read(path: csvPath)
        guard let header = rows.first else { throw DatasetError(csvPath, "empty input: no header line") }
        let names = header.fields.map { $0.trimmingCharacters(in: .whitespaces) }
        func column(_ name: String) throws -> Int {
            guard let index = names.firstIndex(where: { $0.lowercased() == name.lowercased() }) else {
                throw DatasetError(csvPath, "line \(header.line): no column '\(name)' in the header '\(names.joined(separator: ","))'")
            }
            return index
        }
        let imageIndex = try imageColumn.map(column)
            ?? names.firstIndex { ["image", "image_name", "filename", "file_name", "path"].contains($0.lowercased()) } ?? 0
        let tagsIndex = try tagsColumn.map(column) ?? names.firstIndex { $0.lowercased() == "tags" }
        let oneHot = tagsIndex == nil ? names.indices.filter { $0 != imageIndex } : []
        guard tagsIndex != nil || !oneHot.isEmpty else {
            throw DatasetError(csvPath, "line \(header.line): no tags column and no one-hot columns beside the image column")
        }
        if tagsIndex == imageIndex { throw DatasetError(csvPath, "the image and tags columns are the same column '\(names[imageIndex])'") }
        if let bad = declaredTags?.first(where: { tag in TagsCSV.Separator.allCases.contains { tag.contains($0.character) && $0 != .space } }) {
            throw DatasetError(csvPath, "declared tag '\(bad)' contains a tag separator (';', '|' or ',')")
        }
        let chosen = separator ?? TagsCSV.Separator.detect(fields: rows.dropFirst().compactMap { row in
            tagsIndex.flatMap { $0 < row.fields.count ? row.fields[$0] : nil }
        }, declaredTags: declaredTags ?? [])
        var records: [(line: Int, path: String, tags: [String])] = []
        // A second row for the same image: identical tags merge, other tags are an error.
        var recordOfPath: [String: Int] = [:]
        var merged: [(line: Int, repeats: Int)] = []
        for row in rows.dropFirst() {
            guard row.fields.count == names.count else {
                throw DatasetError(csvPath, "line \(row.line): expected \(names.count) fields (\(names.joined(separator: ","))), found \(row.fields.count)")
            }
            let name = row.fields[imageIndex].trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty else { throw DatasetError(csvPath, "line \(row.line): empty image name") }
            guard let path = findImage(named: name, in: directory) else {
                throw DatasetError(csvPath, "line \(row.line): image '\(name)' not found in \(directory)")
            }
            let tags: [String]
            if let tagsIndex {
                tags = chosen.split(row.fields[tagsIndex])
            } else {
                tags = try oneHot.compactMap { index in
                    switch row.fields[index].trimmingCharacters(in: .whitespaces) {
                    case "1": return names[index]
                    case "0", "": return nil
                    case let value: throw DatasetError(csvPath, "line \(row.line): one-hot column '\(names[index])' holds '\(value)', not 0 or 1")
                    }
                }
            }
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
        let tagNames = declaredTags ?? (tagsIndex == nil ? oneHot.map { names[$0] } : Array(Set(records.flatMap(\.tags))).sorted())
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
                let image = try loadImage(record.path, channels: channels, size: options.size, letterbox: options.letterbox)
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
        if tagsIndex == nil {
            summary.notes.append("tags from \(oneHot.count) one-hot columns")
        } else if separator == nil {
            summary.notes.append("tags separated by \(chosen.description) (detected; --separator chooses)")
        }
        if let first = merged.first {
            summary.notes.append("merged \(merged.count) duplicate rows (\(merged.count > 1 ? "the first: " : "")line \(first.line) repeats line \(first.repeats))")
        }
        return summary
    }
}


/// The tags field of a tags CSV (read by `convert tags`, written by `tag predict`).
///
/// The tags of a row are separated by one character for the whole file: `;`, `|` or `,` (a
/// comma inside a quoted field), whichever the file's tags fields use first in that order, else
/// spaces and tabs (the Kaggle Planet format, whose names hold no spaces); a declared tag name
/// that holds a space makes a file without any separator use `;` (so one such name is one tag).
/// Whitespace around each name is trimmed and empty names are dropped, so a trailing separator
/// is allowed. Tag names cannot contain the separator.
public enum TagsCSV {
    /// What `tag predict` writes between tags.
    public static let separator: Character = ";"

    public enum Separator: String, CaseIterable, Sendable, CustomStringConvertible {
        case semicolon = ";", pipe = "|", comma = ",", space = " "

        public var character: Character { Character(rawValue) }
        public var description: String { self == .space ? "spaces" : "'\(rawValue)'" }

        /// The separator of a file whose tags fields are `fields`.
        public static func detect(fields: [String], declaredTags: [String]) -> Separator {
            for candidate in [Separator.semicolon, .pipe, .comma] where fields.contains(where: { $0.contains(candidate.character) }) {
                return candidate
            }
            return declaredTags.contains { $0.contains(where: \.isWhitespace) } ? .semicolon : .space
        }

        /// The tag names of one field.
        public func split(_ field: String) -> [String] {
            let parts = self == .space ? field.split(whereSeparator: { $0 == " " || $0 == "\t" })
                : field.split(separator: character)
            return parts.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
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
