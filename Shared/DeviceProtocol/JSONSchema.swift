package import FleetContract
package import Foundation

/// A JSON Schema (draft 2020-12) compiled for validation, for the subset of keywords the device
/// protocol's schemas use.
///
/// The schemas in `Shared/DeviceProtocol/Schemas/` are the protocol's definition for device
/// makers, and the gateway checks every inbound message against them, so the two cannot drift.
/// Supported: `type`, `enum`, `const`, `properties`, `required`, `additionalProperties`, `items`,
/// `minItems`, `maxItems`, `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`,
/// `minLength`, `maxLength`, `pattern`, `$defs` and local `$ref`s (`#/$defs/<name>`); `format` and
/// the other annotations are read and ignored. A schema using any other keyword is refused when it
/// is compiled, so nobody can believe a rule is enforced when it is not. `scripts/check-protocol`
/// checks the same schemas and the documentation's examples with the reference Python validator.
package struct JSONSchema: Sendable {
    /// The schema itself is wrong (a bug of ours, found when the schema is loaded).
    package struct DefinitionError: Error, Sendable, CustomStringConvertible {
        package var pointer: String
        package var reason: String
        package var description: String { "schema \(pointer): \(reason)" }
    }

    /// The compiled tree, read by the tree validator below and by the streaming one
    /// (`JSONSchema+Streaming.swift`), which falls back to it for the rare values it does not check itself.
    let nodes: [Node]
    /// The same schema for ``validate(json:capturingScalarsOf:)``; nil when it uses a form the streaming validator
    /// does not take (then that method parses and validates the tree).
    let plan: StreamingPlan?

    package init(_ document: JSONValue) throws(DefinitionError) {
        var compiler = Compiler(root: document)
        _ = try compiler.compile(document, pointer: "#")
        nodes = compiler.nodes
        plan = StreamingPlan(nodes)
    }

    package init(data: Data) throws(DefinitionError) {
        let document: JSONValue
        do {
            document = try JSONParser.parse(data)
        } catch {
            throw DefinitionError(pointer: "#", reason: "is not JSON: \(error)")
        }
        try self.init(document)
    }

    /// Checks `value`; the first violation names the field (`payload.devices[2].key`) and the rule.
    package func validate(_ value: JSONValue) throws(ContractError) {
        do throws(Violation) {
            try validate(value, node: 0)
        } catch {
            throw ContractError(field: error.field, reason: error.reason)
        }
    }

    // MARK: Validation

    /// A violation on its way up: each container level adds its step to the path, so valid
    /// documents (nearly all of them) never build a path string.
    struct Violation: Error {
        /// Innermost step first.
        var reversedPath: [String] = []
        var reason: String

        var field: String {
            guard !reversedPath.isEmpty else { return "(root)" }
            return reversedPath.reversed().reduce(into: "") { path, step in
                path += step.hasPrefix("[") || path.isEmpty ? step : ".\(step)"
            }
        }

        func prepending(_ step: String) -> Violation {
            var copy = self
            copy.reversedPath.append(step)
            return copy
        }
    }

    func validate(_ value: JSONValue, node index: Int) throws(Violation) {
        let node = nodes[index]
        func fail(_ reason: String) -> Violation { Violation(reason: reason) }

        if node.rejectsEverything { throw fail("is not allowed") }
        if let reference = node.reference { try validate(value, node: reference) }
        if !node.types.isEmpty, !node.types.contains(where: { $0.matches(value) }) {
            throw fail("expected \(node.types.map(\.description).joined(separator: " or ")), got \(Kind.describe(value))")
        }
        if let constant = node.constant, !Self.equal(constant, value) { throw fail("must be \(Self.render(constant))") }
        if let allowed = node.allowedValues, !allowed.contains(where: { Self.equal($0, value) }) {
            throw fail("must be one of \(allowed.map(Self.render).joined(separator: ", "))")
        }

        switch value {
        case .number(let number):
            if let minimum = node.minimum, number < minimum { throw fail("must be at least \(Self.render(.number(minimum)))") }
            if let maximum = node.maximum, number > maximum { throw fail("must be at most \(Self.render(.number(maximum)))") }
            if let bound = node.exclusiveMinimum, number <= bound { throw fail("must be greater than \(Self.render(.number(bound)))") }
            if let bound = node.exclusiveMaximum, number >= bound { throw fail("must be less than \(Self.render(.number(bound)))") }
        case .string(let text):
            if node.minLength != nil || node.maxLength != nil {
                let length = text.unicodeScalars.count
                if let minimum = node.minLength, length < minimum {
                    throw fail(minimum == 1 ? "must not be empty" : "must be at least \(minimum) characters long")
                }
                if let maximum = node.maxLength, length > maximum { throw fail("must be at most \(maximum) characters long") }
            }
            if let pattern = node.pattern, !pattern.matches(text) { throw fail("must match \(pattern.source)") }
        case .array(let elements):
            if let minimum = node.minItems, elements.count < minimum { throw fail("must have at least \(minimum) items") }
            if let maximum = node.maxItems, elements.count > maximum { throw fail("must have at most \(maximum) items") }
            if let items = node.items {
                for position in elements.indices {
                    do throws(Violation) {
                        try validate(elements[position], node: items)
                    } catch {
                        throw error.prepending("[\(position)]")
                    }
                }
            }
        case .object(let members):
            for name in node.required where members[name] == nil {
                throw Violation(reversedPath: [name], reason: "is required")
            }
            do throws(Violation) {
                for (name, member) in members { try validate(member: member, named: name, in: node) }
            } catch {
                // Report the first violation in name order, so that it does not depend on hashing.
                for name in members.keys.sorted() { try validate(member: members[name]!, named: name, in: node) }
                throw error
            }
        case .null, .bool:
            break
        }
    }

    private func validate(member: JSONValue, named name: String, in node: Node) throws(Violation) {
        do throws(Violation) {
            if let property = node.properties[name] {
                try validate(member, node: property)
            } else {
                switch node.additionalProperties {
                case .allowed: break
                case .forbidden: throw Violation(reason: "is not a known field")
                case .schema(let schema): try validate(member, node: schema)
                }
            }
        } catch {
            throw error.prepending(name)
        }
    }

    /// JSON equality: numbers by value, objects regardless of member order.
    private static func equal(_ lhs: JSONValue, _ rhs: JSONValue) -> Bool { lhs == rhs }

    static func render(_ value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool(let flag): "\(flag)"
        case .number(let number): number.rounded() == number && abs(number) < 1e15 ? "\(Int64(number))" : "\(number)"
        case .string(let text): "'\(text)'"
        case .array, .object: "the given value"
        }
    }

    // MARK: Compiled form

    enum Kind: String, CustomStringConvertible {
        case null, boolean, integer, number, string, array, object

        var description: String {
            switch self {
            case .null: "null"
            case .boolean: "a boolean"
            case .integer: "an integer"
            case .number: "a number"
            case .string: "a string"
            case .array: "an array"
            case .object: "an object"
            }
        }

        func matches(_ value: JSONValue) -> Bool {
            switch (self, value) {
            case (.null, .null), (.boolean, .bool), (.number, .number), (.string, .string), (.array, .array), (.object, .object): true
            case (.integer, .number(let number)): number.rounded(.towardZero) == number
            default: false
            }
        }

        static func describe(_ value: JSONValue) -> String {
            switch value {
            case .null: "null"
            case .bool: "a boolean"
            case .number: "a number"
            case .string: "a string"
            case .array: "an array"
            case .object: "an object"
            }
        }
    }

    enum Additional {
        case allowed
        case forbidden
        case schema(Int)
    }

    /// `NSRegularExpression` is immutable once made and documented as safe to use from several
    /// threads at once, which is why the box may be `@unchecked Sendable`.
    final class Pattern: @unchecked Sendable {
        let source: String
        /// Anchored runs of character classes and literals (ids, UUIDs, hashes: most patterns
        /// here) are matched directly; ICU costs microseconds per call, and a telemetry message
        /// holds a dozen ids.
        private let simple: SimplePattern?
        private let expression: NSRegularExpression

        init(_ source: String) throws {
            self.source = source
            // JSON Schema patterns are ECMA 262, where `$` matches only at the very end; in ICU it
            // also matches before a final line break, which would let "plant-a\n" pass as an id.
            var compiled = source
            if compiled.hasSuffix("$") && !compiled.hasSuffix("\\$") {
                compiled = String(compiled.dropLast()) + "\\z"
            }
            self.expression = try NSRegularExpression(pattern: compiled)
            self.simple = SimplePattern(source)
        }

        func matches(_ text: String) -> Bool {
            if let simple { return simple.matches(text) }
            return expression.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
        }
    }

    /// A compiled schema; a class so that walking the tree copies references, not the arrays
    /// and dictionaries inside. Immutable: the compiler fills a ``Spec`` and makes the node of it.
    final class Node: Sendable {
        let rejectsEverything: Bool
        let reference: Int?
        let types: [Kind]
        let constant: JSONValue?
        let allowedValues: [JSONValue]?
        let minimum: Double?
        let maximum: Double?
        let exclusiveMinimum: Double?
        let exclusiveMaximum: Double?
        let minLength: Int?
        let maxLength: Int?
        let pattern: Pattern?
        let minItems: Int?
        let maxItems: Int?
        let items: Int?
        let required: [String]
        let properties: [String: Int]
        let additionalProperties: Additional

        init(_ spec: Spec = Spec()) {
            rejectsEverything = spec.rejectsEverything
            reference = spec.reference
            types = spec.types
            constant = spec.constant
            allowedValues = spec.allowedValues
            minimum = spec.minimum
            maximum = spec.maximum
            exclusiveMinimum = spec.exclusiveMinimum
            exclusiveMaximum = spec.exclusiveMaximum
            minLength = spec.minLength
            maxLength = spec.maxLength
            pattern = spec.pattern
            minItems = spec.minItems
            maxItems = spec.maxItems
            items = spec.items
            required = spec.required
            properties = spec.properties
            additionalProperties = spec.additionalProperties
        }
    }

    /// A node's keywords while the compiler reads them.
    struct Spec {
        var rejectsEverything: Bool = false
        var reference: Int?
        var types: [Kind] = []
        var constant: JSONValue?
        var allowedValues: [JSONValue]?
        var minimum: Double?
        var maximum: Double?
        var exclusiveMinimum: Double?
        var exclusiveMaximum: Double?
        var minLength: Int?
        var maxLength: Int?
        var pattern: Pattern?
        var minItems: Int?
        var maxItems: Int?
        var items: Int?
        var required: [String] = []
        var properties: [String: Int] = [:]
        var additionalProperties: Additional = Additional.allowed
    }

    private struct Compiler {
        static let annotations: Set<String> = [
            "$schema", "$id", "$comment", "title", "description", "format", "examples", "default", "deprecated", "readOnly", "writeOnly",
        ]

        let root: JSONValue
        var nodes: [Node] = []
        /// `$defs` already compiled (or being compiled), by pointer, so recursive schemas terminate.
        var definitions: [String: Int] = [:]

        init(root: JSONValue) { self.root = root }

        mutating func compile(_ schema: JSONValue, pointer: String) throws(DefinitionError) -> Int {
            let index = nodes.count
            nodes.append(Node())
            var node = Spec()
            switch schema {
            case .bool(let accepts):
                node.rejectsEverything = !accepts
                nodes[index] = Node(node)
                return index
            case .object(let keywords):
                for (keyword, value) in keywords.sorted(by: { $0.key < $1.key }) {
                    let here = "\(pointer)/\(keyword)"
                    func number() throws(DefinitionError) -> Double {
                        guard case .number(let number) = value else { throw DefinitionError(pointer: here, reason: "must be a number") }
                        return number
                    }
                    func count() throws(DefinitionError) -> Int {
                        let number = try number()
                        guard number >= 0, number.rounded() == number else {
                            throw DefinitionError(pointer: here, reason: "must be a non-negative integer")
                        }
                        return Int(number)
                    }
                    switch keyword {
                    case _ where Self.annotations.contains(keyword):
                        break
                    case "$defs":
                        // Compiled when referenced.
                        guard case .object = value else { throw DefinitionError(pointer: here, reason: "must be an object") }
                    case "$ref":
                        guard case .string(let reference) = value else { throw DefinitionError(pointer: here, reason: "must be a string") }
                        node.reference = try resolve(reference, at: here)
                    case "type":
                        let names: [JSONValue]
                        if case .array(let list) = value { names = list } else { names = [value] }
                        for name in names {
                            guard case .string(let text) = name, let kind = Kind(rawValue: text) else {
                                throw DefinitionError(pointer: here, reason: "unknown type \(name)")
                            }
                            node.types.append(kind)
                        }
                    case "const": node.constant = value
                    case "enum":
                        guard case .array(let values) = value else { throw DefinitionError(pointer: here, reason: "must be an array") }
                        node.allowedValues = values
                    case "minimum": node.minimum = try number()
                    case "maximum": node.maximum = try number()
                    case "exclusiveMinimum": node.exclusiveMinimum = try number()
                    case "exclusiveMaximum": node.exclusiveMaximum = try number()
                    case "minLength": node.minLength = try count()
                    case "maxLength": node.maxLength = try count()
                    case "minItems": node.minItems = try count()
                    case "maxItems": node.maxItems = try count()
                    case "pattern":
                        guard case .string(let source) = value, let pattern = try? Pattern(source) else {
                            throw DefinitionError(pointer: here, reason: "must be a valid regular expression")
                        }
                        node.pattern = pattern
                    case "items": node.items = try compile(value, pointer: here)
                    case "required":
                        guard case .array(let names) = value else { throw DefinitionError(pointer: here, reason: "must be an array") }
                        for name in names {
                            guard case .string(let text) = name else { throw DefinitionError(pointer: here, reason: "must hold strings") }
                            node.required.append(text)
                        }
                    case "properties":
                        guard case .object(let properties) = value else { throw DefinitionError(pointer: here, reason: "must be an object") }
                        for (name, property) in properties.sorted(by: { $0.key < $1.key }) {
                            node.properties[name] = try compile(property, pointer: "\(here)/\(name)")
                        }
                    case "additionalProperties":
                        switch value {
                        case .bool(true): node.additionalProperties = .allowed
                        case .bool(false): node.additionalProperties = .forbidden
                        default: node.additionalProperties = .schema(try compile(value, pointer: here))
                        }
                    default:
                        throw DefinitionError(pointer: here, reason: "the keyword '\(keyword)' is not supported by this validator")
                    }
                }
            default:
                throw DefinitionError(pointer: pointer, reason: "a schema must be an object or a boolean")
            }
            nodes[index] = Node(node)
            return index
        }

        mutating func resolve(_ reference: String, at pointer: String) throws(DefinitionError) -> Int {
            let prefix = "#/$defs/"
            guard reference.hasPrefix(prefix) else {
                throw DefinitionError(pointer: pointer, reason: "only local references '#/$defs/<name>' are supported, not '\(reference)'")
            }
            if let known = definitions[reference] { return known }
            let name = String(reference.dropFirst(prefix.count))
            guard case .object(let keywords) = root, case .object(let defined)? = keywords["$defs"], let schema = defined[name] else {
                throw DefinitionError(pointer: pointer, reason: "'\(reference)' is not defined")
            }
            // Reserve the slot first so that a definition referring to itself resolves to it.
            let index = nodes.count
            nodes.append(Node())
            definitions[reference] = index
            let compiled = try compile(schema, pointer: reference)
            var reference = Spec()
            reference.reference = compiled
            nodes[index] = Node(reference)
            return index
        }
    }
}

/// A pattern of the form `^(atom quantifier?)*$`, where an atom is a character class without
/// negation (`[A-Za-z0-9._-]`) or a literal character, and a quantifier is `{n}`, `{m,n}`, `?`, `*`
/// or `+`. Anything else (groups, alternation, `.`, escapes like `\S`) is not simple: nil, and
/// the caller uses a regular expression engine. Matching backtracks, and is exact.
struct SimplePattern: Sendable {
    private struct Piece: Sendable {
        var ranges: [ClosedRange<UInt32>]
        var minimum: Int
        var maximum: Int

        func accepts(_ scalar: Unicode.Scalar) -> Bool { ranges.contains { $0.contains(scalar.value) } }
    }

    private let pieces: [Piece]

    init?(_ pattern: String) {
        var scalars = Array(pattern.unicodeScalars)
        guard scalars.first == "^", scalars.last == "$", scalars.count >= 2 else { return nil }
        scalars = Array(scalars[1..<(scalars.count - 1)])
        guard scalars.last != "\\" else { return nil }
        var pieces: [Piece] = []
        var index = 0
        func literal(_ scalar: Unicode.Scalar) -> [ClosedRange<UInt32>] { [scalar.value...scalar.value] }
        while index < scalars.count {
            var ranges: [ClosedRange<UInt32>]
            switch scalars[index] {
            case "[":
                index += 1
                guard index < scalars.count, scalars[index] != "^" else { return nil }
                ranges = []
                while index < scalars.count, scalars[index] != "]" {
                    var low = scalars[index]
                    if low == "\\" {
                        index += 1
                        guard index < scalars.count, !"dDsSwWbB".unicodeScalars.contains(scalars[index]) else { return nil }
                        low = scalars[index]
                    }
                    if index + 2 < scalars.count, scalars[index + 1] == "-", scalars[index + 2] != "]" {
                        let high = scalars[index + 2]
                        guard high != "\\", low.value <= high.value else { return nil }
                        ranges.append(low.value...high.value)
                        index += 3
                    } else {
                        ranges += literal(low)
                        index += 1
                    }
                }
                guard index < scalars.count else { return nil }
                index += 1
            case "\\":
                index += 1
                guard index < scalars.count, !"dDsSwWbBnrtfv0123456789".unicodeScalars.contains(scalars[index]) else { return nil }
                ranges = literal(scalars[index])
                index += 1
            case "(", ")", "|", ".", "{", "}", "?", "*", "+", "^", "$", "]":
                return nil
            default:
                ranges = literal(scalars[index])
                index += 1
            }
            var minimum = 1
            var maximum = 1
            if index < scalars.count {
                switch scalars[index] {
                case "?": (minimum, maximum) = (0, 1); index += 1
                case "*": (minimum, maximum) = (0, Int.max); index += 1
                case "+": (minimum, maximum) = (1, Int.max); index += 1
                case "{":
                    guard let close = scalars[index...].firstIndex(of: "}") else { return nil }
                    let bounds = String(String.UnicodeScalarView(scalars[(index + 1)..<close])).split(
                        separator: ",", omittingEmptySubsequences: false)
                    guard bounds.count == 1 || bounds.count == 2, let low = Int(bounds[0]) else { return nil }
                    let high = bounds.count == 1 ? low : Int(bounds[1])
                    guard let high, low <= high else { return nil }
                    (minimum, maximum) = (low, high)
                    index = close + 1
                default: break
                }
            }
            pieces.append(Piece(ranges: ranges, minimum: minimum, maximum: maximum))
        }
        self.pieces = pieces
    }

    func matches(_ text: String) -> Bool {
        let scalars = Array(text.unicodeScalars)
        return match(piece: 0, at: 0, in: scalars)
    }

    private func match(piece index: Int, at position: Int, in scalars: [Unicode.Scalar]) -> Bool {
        guard index < pieces.count else { return position == scalars.count }
        let piece = pieces[index]
        var count = 0
        while count < piece.maximum, position + count < scalars.count, piece.accepts(scalars[position + count]) { count += 1 }
        while count >= piece.minimum {
            if match(piece: index + 1, at: position + count, in: scalars) { return true }
            count -= 1
        }
        return false
    }
}
