import FleetContract

/// A compiled ``JSONSchema`` laid out for the streaming validator (`JSONSchema+Streaming.swift`):
/// plain structs in contiguous arrays that it reads through pointers, so that checking a value
/// costs no reference counting; member names as UTF-8 in one byte pool, compared with the bytes
/// of the document's keys; `$ref`s that only point elsewhere followed once, here.
///
/// Nil for a schema it cannot lay out exactly (a `$ref` beside other keywords, which would need
/// the value checked against two nodes at once; a cycle of bare `$ref`s; an object schema naming
/// more than 64 members, beyond the bitmask that tracks them); the streaming validator then
/// parses and validates the tree instead.
final class StreamingPlan: Sendable {
    /// Bits of ``Node/kinds``, one per JSON Schema type.
    enum Kinds {
        static let null: UInt8 = 1 << 0
        static let boolean: UInt8 = 1 << 1
        static let integer: UInt8 = 1 << 2
        static let number: UInt8 = 1 << 3
        static let string: UInt8 = 1 << 4
        static let array: UInt8 = 1 << 5
        static let object: UInt8 = 1 << 6

        static func bit(_ kind: JSONSchema.Kind) -> UInt8 {
            switch kind {
            case .null: null
            case .boolean: boolean
            case .integer: integer
            case .number: number
            case .string: string
            case .array: array
            case .object: object
            }
        }
    }

    /// The node that accepts everything (an absent or empty schema); the validator only parses there.
    static let anything: Int32 = 0
    /// In ``Node/additional``: members the node does not name are refused.
    static let forbidden: Int32 = -1
    /// In ``Member/child``: a name listed in `required` only, whose value `additionalProperties` checks.
    static let additional: Int32 = -2

    /// One schema node; absent keywords are nil, -1 or ``anything``.
    struct Node: Sendable {
        /// The node in ``JSONSchema/nodes``, for messages and for values checked as a tree.
        var source = 0
        var rejectsEverything = false
        /// ``Kinds`` bits of `type`; 0 without it.
        var kinds: UInt8 = 0
        /// `const`, as an index into ``StreamingPlan/constants``.
        var constant = -1
        /// `enum`, as a range of ``StreamingPlan/constants``; `allowedCount` is -1 without it.
        var allowedStart = 0
        var allowedCount = -1
        var minimum: Double?
        var maximum: Double?
        var exclusiveMinimum: Double?
        var exclusiveMaximum: Double?
        var minLength: Int?
        var maxLength: Int?
        /// An index into ``StreamingPlan/patterns``.
        var pattern = -1
        /// The start state of the pattern's deterministic automaton in ``StreamingPlan/transitions``,
        /// when it has one; -1 otherwise.
        var patternStart: Int32 = -1
        var minItems: Int?
        var maxItems: Int?
        var items = StreamingPlan.anything
        /// The names of `properties` and `required`, as a range of ``StreamingPlan/members``; a
        /// member's position in the range is its bit in the validator's mask of members seen.
        var membersStart = 0
        var membersCount = 0
        /// The bits of the names listed in `required`.
        var requiredMask: UInt64 = 0
        var additional = StreamingPlan.anything
        /// Every name is ASCII, so a key without escapes is one of them exactly when its bytes are
        /// (for other strings, Swift's equality is canonical equivalence: the validator asks ``slots``).
        var plainNames = true

        /// `const` or `enum`: an object or array value is then checked as a tree. Stored, not
        /// computed: a computed property of a struct read through a pointer copies the struct.
        var checksValues = false
    }

    /// A name of an object node, in ``StreamingPlan/names``, and the node of its value.
    struct Member: Sendable {
        var nameStart: Int
        var nameCount: Int
        /// The name's first 8 bytes (``prefix(of:)``): most keys are told apart by one comparison.
        var namePrefix: UInt64
        var child: Int32
    }

    /// Up to the first 8 bytes of `bytes`, little-endian, zero-filled.
    static func prefix(of bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var prefix: UInt64 = 0
        for index in 0..<min(8, bytes.count) { prefix |= UInt64(bytes[index]) << UInt64(8 * index) }
        return prefix
    }

    /// A value of `const` or `enum`; strings with their UTF-8 in ``StreamingPlan/names``.
    enum Constant: Sendable {
        case null
        case boolean(Bool)
        case number(Double)
        case string(String, start: Int, count: Int, isASCII: Bool)
        /// An object or array, never equal to a scalar.
        case container
    }

    enum StringPattern: Sendable {
        case bytes(BytePattern)
        /// A pattern ``BytePattern`` does not take: the tree's own, on a decoded `String`.
        case text(JSONSchema.Pattern)
    }

    let nodes: ContiguousArray<Node>
    let members: ContiguousArray<Member>
    let names: ContiguousArray<UInt8>
    let constants: [Constant]
    let patterns: [StringPattern]
    /// The deterministic automata of the patterns, one after the other:
    /// `transitions[state * 128 + byte]` is the next state (numbered across all of them), or -1.
    let transitions: ContiguousArray<Int32>
    /// Whether a string may end in each of those states.
    let accepting: ContiguousArray<Bool>
    /// Per node, each name's position in its member range, for keys that are not plain ASCII.
    let slots: [[String: Int]]
    let root: Int32

    init?(_ tree: [JSONSchema.Node]) {
        func hasKeywords(_ node: JSONSchema.Node) -> Bool {
            if case .allowed = node.additionalProperties {} else { return true }
            return node.rejectsEverything || !node.types.isEmpty || node.constant != nil || node.allowedValues != nil || node.minimum != nil
                || node.maximum != nil || node.exclusiveMinimum != nil || node.exclusiveMaximum != nil || node.minLength != nil
                || node.maxLength != nil || node.pattern != nil || node.minItems != nil || node.maxItems != nil || node.items != nil
                || !node.required.isEmpty || !node.properties.isEmpty
        }
        /// The plan node for tree node `index`, through bare references.
        func link(_ index: Int) -> Int32? {
            var target = index
            var steps = 0
            while let reference = tree[target].reference {
                guard !hasKeywords(tree[target]), steps < tree.count else { return nil }
                target = reference
                steps += 1
            }
            return hasKeywords(tree[target]) ? Int32(target + 1) : Self.anything
        }
        func constant(_ value: JSONValue, into names: inout ContiguousArray<UInt8>) -> Constant {
            switch value {
            case .null: return .null
            case .bool(let flag): return .boolean(flag)
            case .number(let number): return .number(number)
            case .string(let text):
                let start = names.count
                names.append(contentsOf: text.utf8)
                return .string(text, start: start, count: names.count - start, isASCII: text.utf8.allSatisfy { $0 < 0x80 })
            case .array, .object: return .container
            }
        }

        var nodes: ContiguousArray<Node> = [Node()]
        var members: ContiguousArray<Member> = []
        var names: ContiguousArray<UInt8> = []
        var constants: [Constant] = []
        var patterns: [StringPattern] = []
        var transitions: ContiguousArray<Int32> = []
        var accepting: ContiguousArray<Bool> = []
        var slots: [[String: Int]] = [[:]]
        for (index, source) in tree.enumerated() {
            var node = Node()
            node.source = index
            var nodeSlots: [String: Int] = [:]
            defer {
                nodes.append(node)
                slots.append(nodeSlots)
            }
            // Reached only through `link`, which refuses a reference beside other keywords.
            guard source.reference == nil else { continue }
            node.rejectsEverything = source.rejectsEverything
            node.kinds = source.types.reduce(0) { $0 | Kinds.bit($1) }
            if let value = source.constant {
                node.constant = constants.count
                constants.append(constant(value, into: &names))
            }
            if let values = source.allowedValues {
                node.allowedStart = constants.count
                node.allowedCount = values.count
                constants += values.map { constant($0, into: &names) }
            }
            node.checksValues = node.constant >= 0 || node.allowedCount >= 0
            node.minimum = source.minimum
            node.maximum = source.maximum
            node.exclusiveMinimum = source.exclusiveMinimum
            node.exclusiveMaximum = source.exclusiveMaximum
            node.minLength = source.minLength
            node.maxLength = source.maxLength
            if let pattern = source.pattern {
                node.pattern = patterns.count
                let bytePattern = BytePattern(pattern.source)
                patterns.append(bytePattern.map(StringPattern.bytes) ?? .text(pattern))
                if let automaton = bytePattern?.deterministic {
                    let base = Int32(accepting.count)
                    node.patternStart = base
                    transitions += automaton.transitions.map { $0 < 0 ? -1 : $0 + base }
                    accepting += automaton.accepting
                }
            }
            node.minItems = source.minItems
            node.maxItems = source.maxItems
            if let items = source.items {
                guard let child = link(items) else { return nil }
                node.items = child
            }
            switch source.additionalProperties {
            case .allowed: node.additional = Self.anything
            case .forbidden: node.additional = Self.forbidden
            case .schema(let schema):
                guard let child = link(schema) else { return nil }
                node.additional = child
            }
            let named = source.properties.keys.sorted() + source.required.filter { source.properties[$0] == nil }
            node.membersStart = members.count
            for name in named where nodeSlots[name] == nil {
                guard nodeSlots.count < 64 else { return nil }
                let child: Int32
                if let property = source.properties[name] {
                    guard let linked = link(property) else { return nil }
                    child = linked
                } else {
                    child = Self.additional
                }
                nodeSlots[name] = nodeSlots.count
                let start = names.count
                names.append(contentsOf: name.utf8)
                let prefix = Array(name.utf8).withUnsafeBufferPointer { Self.prefix(of: $0) }
                members.append(Member(nameStart: start, nameCount: names.count - start, namePrefix: prefix, child: child))
                node.plainNames = node.plainNames && name.utf8.allSatisfy { $0 < 0x80 }
            }
            node.membersCount = nodeSlots.count
            for name in source.required { node.requiredMask |= 1 << UInt64(nodeSlots[name]!) }
        }
        guard let root = link(0) else { return nil }
        self.nodes = nodes
        self.members = members
        self.names = names
        self.constants = constants
        self.patterns = patterns
        self.transitions = transitions
        self.accepting = accepting
        self.slots = slots
        self.root = root
    }
}
