package import FleetContract
package import Foundation

extension JSONSchema {
    /// Why ``validate(json:capturingScalarsOf:)`` refused a document: what `JSONParser.parse` or
    /// ``validate(_:)`` would have thrown.
    package enum StreamingFailure: Error, Sendable, Equatable, CustomStringConvertible {
        /// Not JSON (RFC 8259), as ``JSONParser/parse(_:)`` says.
        case malformed(JSONParser.Failure)
        /// JSON that breaks the schema: the first violation, as ``validate(_:)`` names it.
        case violation(ContractError)

        package var description: String {
            switch self {
            case .malformed(let failure): "\(failure)"
            case .violation(let error): "\(error)"
            }
        }
    }

    /// Checks the JSON text `data` against the schema while parsing it, in one pass over the
    /// bytes and without building a ``JSONValue`` tree: the device gateway's hot path, where the
    /// tree cost more than everything else it does per message.
    ///
    /// It accepts and refuses exactly what ``JSONParser/parse(_:)`` followed by ``validate(_:)``
    /// does, with the same failure (offset and reason) or the same first violation (field and
    /// reason): the first malformed byte wins over any violation, as it does when the parse comes
    /// first. On the way it keeps the positions of the string, number, boolean and null members of
    /// the object that is the root's member `member` (the envelope's `payload`), for reading later.
    package func validate(json data: Data, capturingScalarsOf member: String? = nil) throws(StreamingFailure) -> ScalarMembers {
        guard let plan else { return try validateAsTree(json: data, capturingScalarsOf: member) }
        let outcome = data.withUnsafeBytes { raw in
            plan.validate(raw.bindMemory(to: UInt8.self), schema: self, capturing: member)
        }
        return ScalarMembers(document: data, located: try outcome.get())
    }

    /// ``JSONParser/parse(_:)`` then ``validate(_:)``, for a schema without a ``StreamingPlan``.
    func validateAsTree(json data: Data, capturingScalarsOf member: String?) throws(StreamingFailure) -> ScalarMembers {
        let document: JSONValue
        do {
            document = try JSONParser.parse(data)
        } catch {
            throw .malformed(error)
        }
        do {
            try validate(document)
        } catch {
            throw .violation(error)
        }
        guard let member, case .object(let root) = document else { return ScalarMembers(scalarsOf: nil) }
        return ScalarMembers(scalarsOf: root[member])
    }
}

extension StreamingPlan {
    /// The captured members of a valid document, or why it was refused.
    fileprivate typealias Outcome = Result<[ScalarMembers.Located], JSONSchema.StreamingFailure>

    fileprivate func validate(_ bytes: UnsafeBufferPointer<UInt8>, schema: JSONSchema, capturing member: String?) -> Outcome {
        nodes.withUnsafeBufferPointer { nodes in
            members.withUnsafeBufferPointer { members in
                names.withUnsafeBufferPointer { names in
                    transitions.withUnsafeBufferPointer { transitions in
                        accepting.withUnsafeBufferPointer { accepting in
                            // One entry per member, and one per node for an object's first member.
                            withUnsafeTemporaryAllocation(of: Int8.self, capacity: members.count + nodes.count) { successors in
                                successors.initialize(repeating: -1)
                                var validator = StreamingValidator(
                                    bytes: bytes, nodes: nodes, members: members, names: names, transitions: transitions, accepting: accepting,
                                    successors: successors, plan: self, schema: schema, member: member)
                                return validator.validateDocument(capturing: member)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Its helpers are `mutating` even where they only read: called from a mutating method, a
/// non-mutating one gets a copy of the validator (over a hundred bytes, a `memcpy` per value, measured),
/// where a mutating one gets its address.
///
/// The streaming validator: `JSONParser`'s grammar, checks and failures, byte for byte (each
/// function mirrors the parser's, and hands it the rare strings with escapes), with the schema's
/// checks made as each value ends. A value's first violation is returned, not thrown, so that the
/// rest of the document is still parsed: a malformed byte later on must win, as it does when the
/// whole document is parsed first.
private struct StreamingValidator {
    /// What an object is, for capturing scalar members.
    enum Role {
        case plain
        /// The root: its member named `member` is the object whose scalars are captured.
        case root
        /// That object.
        case capture
    }

    /// A string that parsed: its bytes between the quotes, and how to read them.
    struct StringToken {
        enum Form {
            /// ASCII, no escapes: the bytes are the string.
            case ascii
            /// Valid UTF-8 beyond ASCII, no escapes: the bytes are the string.
            case utf8
            /// With escapes, decoded by `JSONParser`.
            case decoded(String)
        }

        var start: Int
        var end: Int
        var form: Form
    }

    enum Scalar {
        case null
        case boolean(Bool)
        case number(Double)
        case string(StringToken)
    }

    let bytes: UnsafeBufferPointer<UInt8>
    var index = 0
    // The plan's arrays, read through pointers for the length of one document.
    let nodes: UnsafeBufferPointer<StreamingPlan.Node>
    let members: UnsafeBufferPointer<StreamingPlan.Member>
    let names: UnsafeBufferPointer<UInt8>
    let transitions: UnsafeBufferPointer<Int32>
    let accepting: UnsafeBufferPointer<Bool>
    /// The slot of the member that followed each member the last time in this document (at the
    /// member's index in ``StreamingPlan/members``), and of each object node's first member (at
    /// `members.count` plus the node's index); -1 for none yet. The members of an array's objects
    /// come in the same order, item after item: asked first, it spares the search.
    let successors: UnsafeMutableBufferPointer<Int8>
    let plan: StreamingPlan
    let schema: JSONSchema
    /// The root's member whose scalar members are captured.
    let member: String?
    var captured: [ScalarMembers.Located] = []
    /// The last number read, and whether the last string read was plain ASCII: for capturing.
    var lastNumber = 0.0
    var lastStringIsPlain = false

    init(
        bytes: UnsafeBufferPointer<UInt8>, nodes: UnsafeBufferPointer<StreamingPlan.Node>, members: UnsafeBufferPointer<StreamingPlan.Member>,
        names: UnsafeBufferPointer<UInt8>, transitions: UnsafeBufferPointer<Int32>, accepting: UnsafeBufferPointer<Bool>,
        successors: UnsafeMutableBufferPointer<Int8>, plan: StreamingPlan, schema: JSONSchema, member: String?
    ) {
        self.bytes = bytes
        self.nodes = nodes
        self.members = members
        self.names = names
        self.transitions = transitions
        self.accepting = accepting
        self.successors = successors
        self.plan = plan
        self.schema = schema
        self.member = member
    }

    /// The whole document: one value and nothing after it but whitespace.
    mutating func validateDocument(capturing member: String?) -> Result<[ScalarMembers.Located], JSONSchema.StreamingFailure> {
        do throws(JSONParser.Failure) {
            skipWhitespace()
            let violation = try value(plan.root, depth: 0, role: member == nil ? .plain : .root)
            skipWhitespace()
            guard index == bytes.count else { throw failure("unexpected data after the JSON value") }
            if let violation { return .failure(.violation(ContractError(field: violation.field, reason: violation.reason))) }
            return .success(captured)
        } catch {
            return .failure(.malformed(error))
        }
    }

    typealias Violation = JSONSchema.Violation
    typealias Failure = JSONParser.Failure

    func failure(_ reason: String) -> Failure { Failure(offset: index, reason: reason) }

    // The grammar's small steps are `JSONParser.Cursor`'s own, run at this position: one grammar
    // for both paths.

    mutating func skipWhitespace() {
        var cursor = JSONParser.Cursor(bytes: bytes, index: index)
        cursor.skipWhitespace()
        index = cursor.index
    }

    // MARK: Values

    /// Parses the value at `index` and checks it against plan node `nodeIndex`; its first violation.
    mutating func value(_ nodeIndex: Int32, depth: Int, role: Role) throws(Failure) -> Violation? {
        guard index < bytes.count else { throw failure("unexpected end of the document") }
        let node = nodes.baseAddress! + Int(nodeIndex)
        if node.pointee.rejectsEverything {
            _ = try value(StreamingPlan.anything, depth: depth, role: role)
            return Violation(reason: "is not allowed")
        }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            if node.pointee.checksValues { return try valueAsTree(node, depth: depth, role: role) }
            guard node.pointee.kinds == 0 || node.pointee.kinds & StreamingPlan.Kinds.object != 0 else {
                _ = try value(StreamingPlan.anything, depth: depth, role: role)
                return typeViolation(node, got: "an object")
            }
            return try object(node, depth: depth + 1, role: role)
        case UInt8(ascii: "["):
            if node.pointee.checksValues { return try valueAsTree(node, depth: depth, role: role) }
            guard node.pointee.kinds == 0 || node.pointee.kinds & StreamingPlan.Kinds.array != 0 else {
                _ = try value(StreamingPlan.anything, depth: depth, role: role)
                return typeViolation(node, got: "an array")
            }
            return try array(node, depth: depth + 1)
        case UInt8(ascii: "\""):
            let token = try string()
            return stringViolation(node, token)
        case UInt8(ascii: "t"):
            try literal("true")
            return scalarViolation(node, .boolean(true))
        case UInt8(ascii: "f"):
            try literal("false")
            return scalarViolation(node, .boolean(false))
        case UInt8(ascii: "n"):
            try literal("null")
            return scalarViolation(node, .null)
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            let number = try self.number()
            lastNumber = number
            return numberViolation(node, number)
        default:
            throw failure("unexpected character")
        }
    }

    /// An object or array where the node has `const` or `enum`: parsed into a tree by
    /// `JSONParser` and checked by the tree validator (any check may come first there).
    mutating func valueAsTree(_ node: UnsafePointer<StreamingPlan.Node>, depth: Int, role: Role) throws(Failure) -> Violation? {
        if role != .plain {
            // Capture as usual, then read the value again.
            let start = index
            _ = try value(StreamingPlan.anything, depth: depth, role: role)
            index = start
        }
        var cursor = JSONParser.Cursor(bytes: bytes, index: index)
        let tree = try cursor.value(depth: depth)
        index = cursor.index
        do {
            try schema.validate(tree, node: node.pointee.source)
        } catch {
            return error
        }
        return nil
    }

    mutating func object(_ node: UnsafePointer<StreamingPlan.Node>, depth: Int, role: Role) throws(Failure) -> Violation? {
        guard depth <= JSONParser.maximumDepth else { throw failure("nested deeper than \(JSONParser.maximumDepth) levels") }
        index += 1
        // Members the node names, by their bit; others by name, which is rarer (and a violation
        // when the node forbids them), so they may cost a `String` and a set.
        var seen: UInt64 = 0
        var others: Set<String>?
        var first: (name: String, violation: Violation)?
        // Where the slot of this member is remembered for the next object of this node.
        var successor = members.count + (node - nodes.baseAddress!)
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return missingRequired(node, seen: seen)
        }
        while true {
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw failure("expected a member name") }
            let keyOffset = index
            let key = try string()
            let slot = self.slot(of: key, in: node, expected: Int(successors[successor]))
            if slot >= 0 {
                successors[successor] = Int8(slot)
                successor = node.pointee.membersStart + slot
            }
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw failure("expected ':'") }
            index += 1
            skipWhitespace()
            var child = slot >= 0 ? members[node.pointee.membersStart + slot].child : StreamingPlan.additional
            if child == StreamingPlan.additional { child = node.pointee.additional }
            let childRole: Role = role == .root && isCapturedMember(key) ? .capture : .plain
            let valueStart = index
            var violation: Violation?
            if child == StreamingPlan.forbidden {
                _ = try value(StreamingPlan.anything, depth: depth, role: childRole)
                violation = Violation(reason: "is not a known field")
            } else {
                violation = try value(child, depth: depth, role: childRole)
            }
            // Duplicates are refused once the value has parsed, as `JSONParser` does.
            if slot >= 0 {
                let bit: UInt64 = 1 << UInt64(slot)
                guard seen & bit == 0 else { throw duplicate(key, at: keyOffset) }
                seen |= bit
            } else {
                if others == nil { others = [] }
                guard others!.insert(text(of: key)).inserted else { throw duplicate(key, at: keyOffset) }
            }
            if let found = violation {
                // The tree validator reports the first violation in name order.
                let name = text(of: key)
                if first.map({ name < $0.name }) ?? true { first = (name, found.prepending(name)) }
            }
            if role == .capture { capture(key, valueAt: valueStart) }
            skipWhitespace()
            guard index < bytes.count else { throw failure("unexpected end of the document") }
            switch bytes[index] {
            case UInt8(ascii: ","):
                index += 1
            case UInt8(ascii: "}"):
                index += 1
                // `required` is checked before the members.
                return missingRequired(node, seen: seen) ?? first?.violation
            default:
                throw failure("expected ',' or '}'")
            }
        }
    }

    /// The position of `key` among the node's names, or -1; the slot `expected` (if not -1) is
    /// tried first.
    mutating func slot(of key: StringToken, in node: UnsafePointer<StreamingPlan.Node>, expected: Int) -> Int {
        let count = node.pointee.membersCount
        guard count > 0 else { return -1 }
        if case .ascii = key.form, node.pointee.plainNames {
            let length = key.end - key.start
            let prefix = self.prefix(at: key.start, count: length)
            let start = node.pointee.membersStart
            if expected >= 0, isName(members[start + expected], of: key, length: length, prefix: prefix) { return expected }
            for slot in 0..<count where isName(members[start + slot], of: key, length: length, prefix: prefix) { return slot }
            return -1
        }
        return plan.slots[node - nodes.baseAddress!][text(of: key)] ?? -1
    }

    /// Whether the plain ASCII `key` (`length` bytes, starting with `prefix`) is `name`.
    mutating func isName(_ name: StreamingPlan.Member, of key: StringToken, length: Int, prefix: UInt64) -> Bool {
        guard name.nameCount == length, name.namePrefix == prefix else { return false }
        return length <= 8 || equalBytes(names, at: name.nameStart + 8, bytes, at: key.start + 8, count: length - 8)
    }

    /// ``StreamingPlan/prefix(of:)`` of the `count` bytes at `start`: one load where eight bytes follow.
    mutating func prefix(at start: Int, count: Int) -> UInt64 {
        guard start + 8 <= bytes.count else { return StreamingPlan.prefix(of: UnsafeBufferPointer(rebasing: bytes[start..<(start + count)])) }
        let word = UInt64(littleEndian: UnsafeRawPointer(bytes.baseAddress! + start).loadUnaligned(as: UInt64.self))
        return count >= 8 ? word : word & ((1 << UInt64(count * 8)) &- 1)
    }

    mutating func missingRequired(_ node: UnsafePointer<StreamingPlan.Node>, seen: UInt64) -> Violation? {
        let required = node.pointee.requiredMask
        guard seen & required != required else { return nil }
        let slots = plan.slots[node - nodes.baseAddress!]
        for name in schema.nodes[node.pointee.source].required where seen & (1 << UInt64(slots[name]!)) == 0 {
            return Violation(reversedPath: [name], reason: "is required")
        }
        return nil
    }

    func duplicate(_ key: StringToken, at offset: Int) -> Failure {
        Failure(offset: offset, reason: "duplicate member '\(text(of: key))'")
    }

    mutating func isCapturedMember(_ key: StringToken) -> Bool {
        guard let member else { return false }
        if case .ascii = key.form {
            return key.end - key.start == member.utf8.count && member.utf8.elementsEqual(bytes[key.start..<key.end])
        }
        return text(of: key) == member
    }

    mutating func capture(_ key: StringToken, valueAt start: Int) {
        let kind: ScalarMembers.Kind
        switch bytes[start] {
        case UInt8(ascii: "\""): kind = .string
        case UInt8(ascii: "t"): kind = .true
        case UInt8(ascii: "f"): kind = .false
        case UInt8(ascii: "n"): kind = .null
        case UInt8(ascii: "{"), UInt8(ascii: "["): return
        default: kind = .number
        }
        var keyIsPlain = false
        if case .ascii = key.form { keyIsPlain = true }
        captured.append(
            ScalarMembers.Located(
                keyStart: key.start, keyEnd: key.end, keyIsPlain: keyIsPlain, valueStart: start, kind: kind,
                valueIsPlain: kind == .string && lastStringIsPlain, number: kind == .number ? lastNumber : 0))
    }

    mutating func array(_ node: UnsafePointer<StreamingPlan.Node>, depth: Int) throws(Failure) -> Violation? {
        guard depth <= JSONParser.maximumDepth else { throw failure("nested deeper than \(JSONParser.maximumDepth) levels") }
        index += 1
        var count = 0
        var first: Violation?
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return countViolation(node, count)
        }
        let items = node.pointee.items
        while true {
            skipWhitespace()
            if let violation = try value(items, depth: depth, role: .plain), first == nil { first = violation.prepending("[\(count)]") }
            count += 1
            skipWhitespace()
            guard index < bytes.count else { throw failure("unexpected end of the document") }
            switch bytes[index] {
            case UInt8(ascii: ","):
                index += 1
            case UInt8(ascii: "]"):
                index += 1
                // `minItems` and `maxItems` are checked before the items.
                return countViolation(node, count) ?? first
            default:
                throw failure("expected ',' or ']'")
            }
        }
    }

    mutating func countViolation(_ node: UnsafePointer<StreamingPlan.Node>, _ count: Int) -> Violation? {
        if let minimum = node.pointee.minItems, count < minimum { return Violation(reason: "must have at least \(minimum) items") }
        if let maximum = node.pointee.maxItems, count > maximum { return Violation(reason: "must have at most \(maximum) items") }
        return nil
    }

    // MARK: Scalars

    mutating func typeViolation(_ node: UnsafePointer<StreamingPlan.Node>, got kind: String) -> Violation {
        let expected = schema.nodes[node.pointee.source].types.map(\.description).joined(separator: " or ")
        return Violation(reason: "expected \(expected), got \(kind)")
    }

    /// `const`, then `enum`, as the tree validator checks them after `type`.
    mutating func valuesViolation(_ node: UnsafePointer<StreamingPlan.Node>, _ scalar: Scalar) -> Violation? {
        if node.pointee.constant >= 0, !equal(plan.constants[node.pointee.constant], scalar),
            let constant = schema.nodes[node.pointee.source].constant
        {
            return Violation(reason: "must be \(JSONSchema.render(constant))")
        }
        guard node.pointee.allowedCount >= 0 else { return nil }
        let allowed = node.pointee.allowedStart..<(node.pointee.allowedStart + node.pointee.allowedCount)
        if !allowed.contains(where: { equal(plan.constants[$0], scalar) }), let values = schema.nodes[node.pointee.source].allowedValues {
            return Violation(reason: "must be one of \(values.map(JSONSchema.render).joined(separator: ", "))")
        }
        return nil
    }

    /// `JSONValue` equality: numbers by value, strings by Swift's (canonical) equality, which is
    /// byte equality when both are ASCII.
    mutating func equal(_ constant: StreamingPlan.Constant, _ scalar: Scalar) -> Bool {
        switch (constant, scalar) {
        case (.null, .null): return true
        case (.boolean(let expected), .boolean(let flag)): return expected == flag
        case (.number(let expected), .number(let number)): return expected == number
        case (.string(let expected, let start, let count, let isASCII), .string(let token)):
            if case .ascii = token.form, isASCII {
                return token.end - token.start == count && equalBytes(names, at: start, bytes, at: token.start, count: count)
            }
            return text(of: token) == expected
        default: return false
        }
    }

    mutating func scalarViolation(_ node: UnsafePointer<StreamingPlan.Node>, _ scalar: Scalar) -> Violation? {
        let kinds = node.pointee.kinds
        if case .boolean = scalar {
            if kinds != 0 && kinds & StreamingPlan.Kinds.boolean == 0 { return typeViolation(node, got: "a boolean") }
        } else if kinds != 0 && kinds & StreamingPlan.Kinds.null == 0 {
            return typeViolation(node, got: "null")
        }
        return node.pointee.checksValues ? valuesViolation(node, scalar) : nil
    }

    mutating func numberViolation(_ node: UnsafePointer<StreamingPlan.Node>, _ number: Double) -> Violation? {
        let kinds = node.pointee.kinds
        if kinds != 0 && kinds & StreamingPlan.Kinds.number == 0
            && (kinds & StreamingPlan.Kinds.integer == 0 || number.rounded(.towardZero) != number)
        {
            return typeViolation(node, got: "a number")
        }
        if node.pointee.checksValues, let violation = valuesViolation(node, .number(number)) { return violation }
        if let minimum = node.pointee.minimum, number < minimum {
            return Violation(reason: "must be at least \(JSONSchema.render(.number(minimum)))")
        }
        if let maximum = node.pointee.maximum, number > maximum {
            return Violation(reason: "must be at most \(JSONSchema.render(.number(maximum)))")
        }
        if let bound = node.pointee.exclusiveMinimum, number <= bound {
            return Violation(reason: "must be greater than \(JSONSchema.render(.number(bound)))")
        }
        if let bound = node.pointee.exclusiveMaximum, number >= bound {
            return Violation(reason: "must be less than \(JSONSchema.render(.number(bound)))")
        }
        return nil
    }

    mutating func stringViolation(_ node: UnsafePointer<StreamingPlan.Node>, _ token: StringToken) -> Violation? {
        let kinds = node.pointee.kinds
        if kinds != 0 && kinds & StreamingPlan.Kinds.string == 0 { return typeViolation(node, got: "a string") }
        if node.pointee.checksValues, let violation = valuesViolation(node, .string(token)) { return violation }
        if node.pointee.minLength != nil || node.pointee.maxLength != nil {
            let length = scalarCount(of: token)
            if let minimum = node.pointee.minLength, length < minimum {
                return Violation(reason: minimum == 1 ? "must not be empty" : "must be at least \(minimum) characters long")
            }
            if let maximum = node.pointee.maxLength, length > maximum { return Violation(reason: "must be at most \(maximum) characters long") }
        }
        if node.pointee.pattern >= 0, !matches(node, token) {
            return Violation(reason: "must match \(schema.nodes[node.pointee.source].pattern!.source)")
        }
        return nil
    }

    /// Whether `token` matches the node's pattern: through its deterministic automaton in the
    /// plan's table, one look-up per byte, when it has one.
    mutating func matches(_ node: UnsafePointer<StreamingPlan.Node>, _ token: StringToken) -> Bool {
        let start = node.pointee.patternStart
        guard start >= 0 else { return matches(plan.patterns[node.pointee.pattern], token) }
        switch token.form {
        case .ascii, .utf8:
            let text = UnsafeBufferPointer(rebasing: bytes[token.start..<token.end])
            return BytePattern.Deterministic.run(text, from: Int(start), transitions: transitions, accepting: accepting)
        case .decoded:
            return matches(plan.patterns[node.pointee.pattern], token)
        }
    }

    mutating func matches(_ pattern: StreamingPlan.StringPattern, _ token: StringToken) -> Bool {
        switch (pattern, token.form) {
        case (.bytes(let pattern), .ascii), (.bytes(let pattern), .utf8):
            return pattern.matches(UnsafeBufferPointer(rebasing: bytes[token.start..<token.end]))
        case (.bytes(let pattern), .decoded(let text)):
            return pattern.matches(text.utf8)
        case (.text(let pattern), _):
            return pattern.matches(text(of: token))
        }
    }

    /// Unicode scalars, as `minLength` and `maxLength` count them.
    mutating func scalarCount(of token: StringToken) -> Int {
        switch token.form {
        case .ascii: return token.end - token.start
        case .utf8: return bytes[token.start..<token.end].reduce(0) { $0 + ($1 & 0xC0 == 0x80 ? 0 : 1) }
        case .decoded(let text): return text.unicodeScalars.count
        }
    }

    func text(of token: StringToken) -> String {
        switch token.form {
        case .ascii, .utf8: String(decoding: UnsafeBufferPointer(rebasing: bytes[token.start..<token.end]), as: UTF8.self)
        case .decoded(let text): text
        }
    }

    // MARK: Grammar (as JSONParser.Cursor)

    mutating func literal(_ word: StaticString) throws(Failure) {
        var cursor = JSONParser.Cursor(bytes: bytes, index: index)
        try cursor.literal(word)
        index = cursor.index
    }

    /// The string at `index` (on its opening quote). Plain strings are scanned here; the first
    /// escape hands the whole string to `JSONParser`, whose scan up to there is the same as this one.
    mutating func string() throws(Failure) -> StringToken {
        index += 1
        let start = index
        var isASCII = true
        while true {
            // Eight bytes at a time, to the first that is not plain ASCII text.
            while index + 8 <= bytes.count {
                let word = UInt64(littleEndian: UnsafeRawPointer(bytes.baseAddress! + index).loadUnaligned(as: UInt64.self))
                let flagged = Self.notPlainText(word)
                if flagged == 0 {
                    index += 8
                } else {
                    index += flagged.trailingZeroBitCount / 8
                    break
                }
            }
            guard index < bytes.count else { break }
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let end = index
                index += 1
                lastStringIsPlain = isASCII
                if isASCII { return StringToken(start: start, end: end, form: .ascii) }
                guard Self.isValidUTF8(UnsafeBufferPointer(rebasing: bytes[start..<end])) else {
                    throw Failure(offset: start, reason: "invalid UTF-8 in a string")
                }
                return StringToken(start: start, end: end, form: .utf8)
            }
            if byte == UInt8(ascii: "\\") {
                var cursor = JSONParser.Cursor(bytes: bytes, index: start - 1)
                let text = try cursor.string()
                index = cursor.index
                lastStringIsPlain = false
                return StringToken(start: start, end: index - 1, form: .decoded(text))
            }
            guard byte >= 0x20 else { throw failure("unescaped control character in a string") }
            if byte >= 0x80 { isASCII = false }
            index += 1
        }
        throw failure("unterminated string")
    }

    /// The high bit of each byte of `word` (eight bytes of the document, the first lowest) that is
    /// a quote, a backslash, a control character or not ASCII. The lowest bit set is exact: a
    /// subtraction's borrow can only flag a byte above one already flagged.
    static func notPlainText(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        /// Bytes that are zero.
        func zeros(_ value: UInt64) -> UInt64 { (value &- ones) & ~value & highs }
        let quotes = zeros(word ^ (ones &* 0x22))
        let backslashes = zeros(word ^ (ones &* 0x5C))
        let controls = (word &- ones &* 0x20) & ~word & highs
        return quotes | backslashes | controls | (word & highs)
    }

    /// Powers of ten that are exact doubles.
    static let exactPowersOfTen: [Double] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ]

    /// The number at `index`, the same `Double` as `JSONParser` makes: its integer path for short
    /// integers, exact arithmetic where that is correctly rounded too (up to 2^53 scaled by an
    /// exact power of ten: Clinger's fast path), and `Double(String)` otherwise.
    mutating func number() throws(Failure) -> Double {
        let start = index
        var negative = false
        if bytes[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        guard index < bytes.count, isDigit(bytes[index]) else { throw failure("expected a digit") }
        var significand: UInt64 = 0
        var digits = 0
        var exponent = 0
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            if index < bytes.count, isDigit(bytes[index]) { throw failure("leading zeros are not allowed") }
        } else {
            while index < bytes.count, isDigit(bytes[index]) {
                if digits < 19 { significand = significand * 10 + UInt64(bytes[index] &- 48) }
                digits += 1
                index += 1
            }
        }
        var isInteger = true
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            isInteger = false
            index += 1
            guard index < bytes.count, isDigit(bytes[index]) else { throw failure("expected a digit after '.'") }
            while index < bytes.count, isDigit(bytes[index]) {
                if digits < 19 { significand = significand * 10 + UInt64(bytes[index] &- 48) }
                if significand > 0 { digits += 1 }
                exponent -= 1
                index += 1
            }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            isInteger = false
            index += 1
            var exponentSign = 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                if bytes[index] == UInt8(ascii: "-") { exponentSign = -1 }
                index += 1
            }
            guard index < bytes.count, isDigit(bytes[index]) else { throw failure("expected a digit in the exponent") }
            var written = 0
            while index < bytes.count, isDigit(bytes[index]) {
                if written < 100_000 { written = written * 10 + Int(bytes[index] &- 48) }
                index += 1
            }
            exponent += exponentSign * written
        }
        if isInteger, index - start <= 15 {
            let magnitude = Int64(significand)
            return Double(negative ? -magnitude : magnitude)
        }
        if digits <= 19, significand <= 1 << 53, (-22...22).contains(exponent) {
            var value = Double(significand)
            if exponent < 0 { value /= Self.exactPowersOfTen[-exponent] } else { value *= Self.exactPowersOfTen[exponent] }
            return negative ? -value : value
        }
        let text = UnsafeBufferPointer(rebasing: bytes[start..<index])
        guard let value = Double(String(decoding: text, as: UTF8.self)), value.isFinite else {
            throw Failure(offset: start, reason: "number out of range")
        }
        return value
    }

    func isDigit(_ byte: UInt8) -> Bool { JSONParser.Cursor.isDigit(byte) }

    /// Whether `bytes` is well-formed UTF-8 (The Unicode Standard, table 3-7), as
    /// `String(validating:as:)` decides: no overlong forms, no surrogates, nothing above U+10FFFF.
    static func isValidUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var index = 0
        while index < bytes.count {
            let lead = bytes[index]
            if lead < 0x80 {
                index += 1
                continue
            }
            let length: Int
            var secondRange: ClosedRange<UInt8> = 0x80...0xBF
            switch lead {
            case 0xC2...0xDF: length = 2
            case 0xE0: (length, secondRange) = (3, 0xA0...0xBF)
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED: (length, secondRange) = (3, 0x80...0x9F)
            case 0xF0: (length, secondRange) = (4, 0x90...0xBF)
            case 0xF1...0xF3: length = 4
            case 0xF4: (length, secondRange) = (4, 0x80...0x8F)
            default: return false
            }
            guard index + length <= bytes.count, secondRange.contains(bytes[index + 1]) else { return false }
            for offset in 2..<length where bytes[index + offset] & 0xC0 != 0x80 { return false }
            index += length
        }
        return true
    }
}

/// Whether `count` bytes of `left` from `leftStart` equal those of `right` from `rightStart`.
private func equalBytes(
    _ left: UnsafeBufferPointer<UInt8>, at leftStart: Int, _ right: UnsafeBufferPointer<UInt8>, at rightStart: Int, count: Int
) -> Bool {
    for offset in 0..<count where left[leftStart + offset] != right[rightStart + offset] { return false }
    return true
}
