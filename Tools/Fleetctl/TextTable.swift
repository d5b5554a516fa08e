import FleetContract
import Foundation

/// A plain-text table for a terminal: an upper-case header and columns two spaces apart, numbers
/// aligned right. Long cells are cut with "…" so that the columns stay readable, except in the
/// last column, which pushes no other column (a failure's reason is read in full).
struct TextTable {
    var headers: [String]
    /// Columns (by position) aligned right.
    var numeric: Set<Int> = []
    var maximumCellWidth = 60
    private(set) var rows: [[String]] = []

    init(_ headers: String..., numeric: Set<Int> = []) {
        self.headers = headers
        self.numeric = numeric
    }

    mutating func add(_ cells: String...) {
        rows.append(cells)
    }

    mutating func add(_ cells: [String]) {
        rows.append(cells)
    }

    func render() -> String {
        let last = headers.count - 1
        let lines =
            [headers.map { $0.uppercased() }] + rows.map { row in row.enumerated().map { $0.offset == last ? flat($0.element) : cut($0.element) } }
        var widths = Array(repeating: 0, count: headers.count)
        for line in lines {
            for (column, cell) in line.enumerated() where column < widths.count {
                widths[column] = max(widths[column], cell.count)
            }
        }
        return lines.map { line -> String in
            var text = ""
            for (column, cell) in line.enumerated() where column < widths.count {
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                let isLast = column == min(line.count, widths.count) - 1
                if numeric.contains(column) {
                    text += padding + cell
                } else {
                    text += isLast ? cell : cell + padding
                }
                if !isLast { text += "  " }
            }
            // An empty last cell leaves the padding of the one before it.
            while text.last == " " { text.removeLast() }
            return text
        }.joined(separator: "\n")
    }

    private func cut(_ cell: String) -> String {
        let line = flat(cell)
        guard line.count > maximumCellWidth else { return line }
        return String(line.prefix(maximumCellWidth - 1)) + "…"
    }

    private func flat(_ cell: String) -> String {
        cell.replacingOccurrences(of: "\n", with: " ")
    }
}

/// How values are written in tables and messages.
enum Format {
    /// `2026-11-23 07:00:00Z`.
    static func date(_ date: Date?) -> String {
        guard let date else { return "-" }
        return date.formatted(.iso8601.dateSeparator(.dash).timeSeparator(.colon).dateTimeSeparator(.space))
    }

    static func yesNo(_ value: Bool) -> String { value ? "yes" : "no" }

    /// A whole number without its `.0`, else as Swift writes it.
    static func number(_ value: Double) -> String { value.rounded() == value && abs(value) < 1e15 ? String(Int(value)) : String(value) }

    static func list(_ values: [String], empty: String = "-") -> String {
        values.isEmpty ? empty : values.joined(separator: ", ")
    }

    /// A size in bytes, in binary units (`12.3 MiB`).
    static func bytes(_ count: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(count) B" : String(format: "%.1f %@", value, units[unit])
    }

    /// A JSON value compactly (`0.4`, `640`, `"text"`, `[1,2]`), whole numbers without a
    /// fraction.
    static func json(_ value: JSONValue) -> String {
        switch value {
        case .null: return "null"
        case .bool(let flag): return flag ? "true" : "false"
        case .number(let number):
            if number.rounded() == number, abs(number) < 1e15 { return String(Int64(number)) }
            return String(number)
        case .string(let text): return quoted(text)
        case .array(let items): return "[" + items.map(json).joined(separator: ",") + "]"
        case .object(let members):
            return "{" + members.sorted { $0.key < $1.key }.map { "\(quoted($0.key)):\(json($0.value))" }.joined(separator: ",") + "}"
        }
    }

    /// A JSON value indented by two spaces, keys sorted: the `--output json` form, stable from
    /// run to run so that scripts and diffs can rely on it.
    static func prettyJSON(_ value: JSONValue, indent: String = "") -> String {
        let inner = indent + "  "
        switch value {
        case .array(let items) where !items.isEmpty:
            return "[\n" + items.map { inner + prettyJSON($0, indent: inner) }.joined(separator: ",\n") + "\n\(indent)]"
        case .object(let members) where !members.isEmpty:
            let lines = members.sorted { $0.key < $1.key }.map { "\(inner)\(quoted($0.key)): \(prettyJSON($0.value, indent: inner))" }
            return "{\n" + lines.joined(separator: ",\n") + "\n\(indent)}"
        default:
            return json(value)
        }
    }

    /// Settings as `key=value` pairs in key order.
    static func settings(_ settings: [String: JSONValue]) -> String {
        settings.isEmpty ? "-" : settings.sorted { $0.key < $1.key }.map { "\($0.key)=\(json($0.value))" }.joined(separator: " ")
    }

    /// Settings of a generated type (the registry's `ModelSettings`, a stage's settings), as their
    /// JSON shows them.
    static func settings(_ settings: some Encodable) -> String {
        self.settings(members(of: settings))
    }

    /// The members of a generated type's JSON object; none when it is not one.
    static func members(of value: some Encodable) -> [String: JSONValue] {
        guard case .object(let members)? = try? ContractCoding.recast(value, as: JSONValue.self) else { return [:] }
        return members
    }

    private static func quoted(_ text: String) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        guard let data = try? encoder.encode(text) else { return "\"\(text)\"" }
        return String(decoding: data, as: UTF8.self)
    }
}
