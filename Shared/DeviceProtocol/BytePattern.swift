/// A schema `pattern` that runs over the UTF-8 bytes of a JSON string where they lie in the
/// document, so that the streaming validator checks the ids, UUIDs and timestamps of every message
/// without making a `String` of each, nor asking ICU (microseconds a call) about the timestamp.
///
/// Only anchored patterns (`^…$`) made of ASCII literals, non-negated classes of ASCII characters,
/// groups with alternation, and greedy quantifiers (`?`, `*`, `+`, `{n}`, `{n,}`, `{m,n}`) are taken;
/// anything else is nil, and the caller uses ``JSONSchema/Pattern`` (ICU), which stays the
/// reference. Because every atom is ASCII, a string holding any other character cannot match,
/// neither here (no atom takes a byte from 0x80) nor in ICU, so bytes and Unicode scalars give the
/// same answer. Without back-references, look-arounds and possessive quantifiers, whether a regular
/// expression matches the whole string is a property of its language, so an automaton gives ICU's
/// answer whatever order ICU tries things in.
struct BytePattern: Sendable {
    /// A set of ASCII bytes, one bit each.
    struct ByteSet: Sendable, Equatable {
        var low: UInt64 = 0
        var high: UInt64 = 0

        func contains(_ byte: UInt8) -> Bool {
            if byte < 64 { return low >> UInt64(byte) & 1 == 1 }
            if byte < 128 { return high >> UInt64(byte - 64) & 1 == 1 }
            return false
        }

        mutating func insert(_ range: ClosedRange<UInt8>) {
            for byte in range {
                if byte < 64 { low |= 1 << UInt64(byte) } else { high |= 1 << UInt64(byte - 64) }
            }
        }
    }

    /// A run of one class, as `SimplePattern` has it: most patterns are a few of these.
    private struct Piece: Sendable {
        var set: ByteSet
        var minimum: Int
        var maximum: Int
    }

    /// One step of a Thompson automaton: take a byte of `set` and go on with the next
    /// instruction, or fork, or jump, or accept.
    private struct Instruction: Sendable {
        enum Operation: Sendable { case take, split, jump, accept }
        var operation: Operation
        var set = ByteSet()
        var first = 0
        var second = 0
    }

    /// The automaton made deterministic (subset construction, once, at init): one table look-up
    /// per byte, where the automaton below follows a set of states per byte. Every pattern of
    /// the protocol has one; a pattern whose deterministic automaton would be large (counted
    /// repetitions of groups, say) keeps the other strategies.
    struct Deterministic: Sendable {
        /// `transitions[state * 128 + byte]`: the state after an ASCII `byte`, or -1 when no
        /// string going on from there can match. No state takes a byte from 0x80.
        let transitions: [Int32]
        /// Whether the string may end in each state.
        let accepting: [Bool]

        var stateCount: Int { accepting.count }

        static let maximumStates = 1_024

        func matches(_ text: UnsafeBufferPointer<UInt8>) -> Bool {
            transitions.withUnsafeBufferPointer { transitions in
                accepting.withUnsafeBufferPointer { Self.run(text, from: 0, transitions: transitions, accepting: $0) }
            }
        }

        /// Whether `text`, taken from state `start` of `transitions` (laid out as above, possibly
        /// several automata one after the other, as ``StreamingPlan`` has them), ends in an
        /// accepting state.
        static func run(
            _ text: UnsafeBufferPointer<UInt8>, from start: Int, transitions: UnsafeBufferPointer<Int32>, accepting: UnsafeBufferPointer<Bool>
        ) -> Bool {
            var state = start
            for byte in text {
                // No state takes a byte from 0x80 (every atom is ASCII).
                guard byte < 0x80 else { return false }
                let next = transitions[state &* 128 &+ Int(byte)]
                guard next >= 0 else { return false }
                state = Int(next)
            }
            return accepting[state]
        }
    }

    private enum Strategy: Sendable {
        case deterministic(Deterministic)
        /// Classes with counts and nothing else: matched greedily with backtracking, like `SimplePattern`.
        case pieces([Piece])
        /// Anything with groups: a set of automaton states per byte, linear in the string's length.
        case automaton([Instruction])
    }

    private let strategy: Strategy

    /// Counted repetitions are unrolled; a pattern that would need more states than this is left to ICU.
    private static let maximumInstructions = 2_048

    /// `determinise: false` keeps the other strategies, for the tests that hold them to ICU too.
    init?(_ source: String, determinise: Bool = true) {
        var bytes = Array(source.utf8)
        guard bytes.count >= 2, bytes.first == UInt8(ascii: "^"), bytes.last == UInt8(ascii: "$"), bytes.allSatisfy({ $0 < 0x80 }) else { return nil }
        bytes = Array(bytes[1..<(bytes.count - 1)])
        // `\$` at the end is a literal dollar, and `\\$` is one that `JSONSchema.Pattern` leaves to
        // ICU's own `$` (which also matches before a final line break): neither is taken.
        guard bytes.last != UInt8(ascii: "\\") else { return nil }
        var parser = Parser(bytes: bytes)
        guard let expression = parser.sequence(), parser.index == bytes.count else { return nil }
        var program: [Instruction] = []
        let emitted = Self.emit(expression, into: &program)
        program.append(Instruction(operation: .accept))
        if determinise, emitted, program.count <= Self.maximumInstructions, let deterministic = Self.determinise(program) {
            strategy = .deterministic(deterministic)
        } else if let pieces = Self.pieces(expression) {
            strategy = .pieces(pieces)
        } else {
            guard emitted, program.count <= Self.maximumInstructions else { return nil }
            strategy = .automaton(program)
        }
    }

    /// The deterministic automaton, when the pattern has one; the streaming validator copies its
    /// table into the plan's, where checking a string needs no reference counting.
    var deterministic: Deterministic? {
        if case .deterministic(let automaton) = strategy { return automaton }
        return nil
    }

    /// Whether `text` (the UTF-8 of a string) matches as a whole.
    func matches(_ text: UnsafeBufferPointer<UInt8>) -> Bool {
        switch strategy {
        case .deterministic(let automaton):
            return automaton.matches(text)
        case .pieces(let pieces):
            return pieces.withUnsafeBufferPointer { match(pieces: $0, piece: 0, at: 0, in: text) }
        case .automaton(let program):
            return program.withUnsafeBufferPointer { run($0, over: text) }
        }
    }

    func matches(_ text: some Collection<UInt8>) -> Bool {
        let bytes = Array(text)
        return bytes.withUnsafeBufferPointer { matches($0) }
    }

    // MARK: Matching

    private func match(pieces: UnsafeBufferPointer<Piece>, piece index: Int, at position: Int, in text: UnsafeBufferPointer<UInt8>) -> Bool {
        guard index < pieces.count else { return position == text.count }
        let piece = pieces[index]
        var count = 0
        while count < piece.maximum, position + count < text.count, piece.set.contains(text[position + count]) { count += 1 }
        while count >= piece.minimum {
            if match(pieces: pieces, piece: index + 1, at: position + count, in: text) { return true }
            count -= 1
        }
        return false
    }

    private func run(_ program: UnsafeBufferPointer<Instruction>, over text: UnsafeBufferPointer<UInt8>) -> Bool {
        let words = (program.count + 63) / 64
        // Two state sets of at most 2,048 bits: 512 bytes, on the stack.
        return withUnsafeTemporaryAllocation(of: UInt64.self, capacity: 2 * words) { storage in
            var current = UnsafeMutableBufferPointer(rebasing: storage[0..<words])
            var next = UnsafeMutableBufferPointer(rebasing: storage[words..<(2 * words)])
            current.update(repeating: 0)
            Self.add(0, to: current, program)
            for byte in text {
                next.update(repeating: 0)
                var alive = false
                for word in 0..<words {
                    var bits = current[word]
                    while bits != 0 {
                        let state = word * 64 + bits.trailingZeroBitCount
                        bits &= bits - 1
                        let instruction = program[state]
                        if instruction.operation == .take, instruction.set.contains(byte) {
                            Self.add(state + 1, to: next, program)
                            alive = true
                        }
                    }
                }
                guard alive else { return false }
                swap(&current, &next)
            }
            let accept = program.count - 1
            return current[accept / 64] >> UInt64(accept % 64) & 1 == 1
        }
    }

    /// Adds `state` and every state it reaches without taking a byte; a state already in the set
    /// is not followed again, which also ends loops of empty groups.
    private static func add(_ state: Int, to set: UnsafeMutableBufferPointer<UInt64>, _ program: UnsafeBufferPointer<Instruction>) {
        let bit: UInt64 = 1 << UInt64(state % 64)
        guard set[state / 64] & bit == 0 else { return }
        set[state / 64] |= bit
        let instruction = program[state]
        switch instruction.operation {
        case .split:
            add(instruction.first, to: set, program)
            add(instruction.second, to: set, program)
        case .jump:
            add(instruction.first, to: set, program)
        case .take, .accept:
            break
        }
    }

    // MARK: Compiling

    /// Subset construction: each state of the result is a set of the program's states (closed
    /// under splits and jumps), numbered in the order they are found, the start first; nil when
    /// it would have more than ``Deterministic/maximumStates``.
    private static func determinise(_ program: [Instruction]) -> Deterministic? {
        let words = (program.count + 63) / 64
        let accept = program.count - 1
        // Only the states that take a byte or accept tell two sets apart; the splits and jumps
        // that led to them are left out, so that one set of positions is one state.
        var significant = [UInt64](repeating: 0, count: words)
        for (state, instruction) in program.enumerated() where instruction.operation == .take || instruction.operation == .accept {
            significant[state / 64] |= 1 << UInt64(state % 64)
        }
        return program.withUnsafeBufferPointer { program -> Deterministic? in
            func closure(_ states: (UnsafeMutableBufferPointer<UInt64>) -> Void) -> [UInt64] {
                var set = [UInt64](repeating: 0, count: words)
                set.withUnsafeMutableBufferPointer { states($0) }
                for word in 0..<words { set[word] &= significant[word] }
                return set
            }
            let start = closure { add(0, to: $0, program) }
            var numbers: [[UInt64]: Int32] = [start: 0]
            var sets = [start]
            var transitions: [Int32] = []
            var accepting: [Bool] = []
            var next = 0
            while next < sets.count {
                let current = sets[next]
                next += 1
                accepting.append(current[accept / 64] >> UInt64(accept % 64) & 1 == 1)
                for byte in UInt8(0)..<0x80 {
                    var alive = false
                    let target = closure { target in
                        for word in 0..<words {
                            var bits = current[word]
                            while bits != 0 {
                                let state = word * 64 + bits.trailingZeroBitCount
                                bits &= bits - 1
                                if program[state].operation == .take, program[state].set.contains(byte) {
                                    add(state + 1, to: target, program)
                                    alive = true
                                }
                            }
                        }
                    }
                    guard alive else {
                        transitions.append(-1)
                        continue
                    }
                    if let known = numbers[target] {
                        transitions.append(known)
                    } else {
                        guard sets.count < Deterministic.maximumStates else { return nil }
                        numbers[target] = Int32(sets.count)
                        transitions.append(Int32(sets.count))
                        sets.append(target)
                    }
                }
            }
            return Deterministic(transitions: transitions, accepting: accepting)
        }
    }

    private indirect enum Expression {
        case set(ByteSet)
        case sequence([Expression])
        case alternation([Expression])
        case repetition(Expression, minimum: Int, maximum: Int?)
    }

    private static func pieces(_ expression: Expression) -> [Piece]? {
        guard case .sequence(let items) = expression else { return nil }
        var pieces: [Piece] = []
        for item in items {
            switch item {
            case .set(let set): pieces.append(Piece(set: set, minimum: 1, maximum: 1))
            case .repetition(.set(let set), minimum: let minimum, maximum: let maximum):
                pieces.append(Piece(set: set, minimum: minimum, maximum: maximum ?? Int.max))
            default: return nil
            }
        }
        return pieces
    }

    /// Appends the instructions of `expression`; false when the program grows too large.
    private static func emit(_ expression: Expression, into program: inout [Instruction]) -> Bool {
        guard program.count <= maximumInstructions else { return false }
        switch expression {
        case .set(let set):
            program.append(Instruction(operation: .take, set: set))
        case .sequence(let items):
            for item in items {
                guard emit(item, into: &program) else { return false }
            }
        case .alternation(let choices):
            var jumps: [Int] = []
            for (position, choice) in choices.enumerated() {
                let isLast = position == choices.count - 1
                let split = program.count
                if !isLast { program.append(Instruction(operation: .split, first: split + 1)) }
                guard emit(choice, into: &program) else { return false }
                if !isLast {
                    jumps.append(program.count)
                    program.append(Instruction(operation: .jump))
                    program[split].second = program.count
                }
            }
            for jump in jumps { program[jump].first = program.count }
        case .repetition(let body, let minimum, let maximum):
            for _ in 0..<minimum {
                guard emit(body, into: &program) else { return false }
            }
            if let maximum {
                // Nested optionals, (x(x(x)?)?)?: once one is skipped, all the rest are, so a state
                // set holds a couple of states, not all of them.
                var splits: [Int] = []
                for _ in minimum..<maximum {
                    splits.append(program.count)
                    program.append(Instruction(operation: .split, first: program.count + 1))
                    guard emit(body, into: &program) else { return false }
                }
                for split in splits { program[split].second = program.count }
            } else {
                let loop = program.count
                program.append(Instruction(operation: .split, first: loop + 1))
                guard emit(body, into: &program) else { return false }
                program.append(Instruction(operation: .jump, first: loop))
                program[loop].second = program.count
            }
        }
        return program.count <= maximumInstructions
    }

    /// The pattern syntax between `^` and `$`, refusing whatever ICU might read differently.
    private struct Parser {
        let bytes: [UInt8]
        var index = 0

        /// Characters that stand for themselves outside a class.
        static let literals = Set("-_:/@,;=~!%#&'\"<> ".utf8)
        /// Characters that stand for themselves inside a class (`-` between two is a range).
        static let classLiterals = Set("._+/@,;=~!%#".utf8)

        static func isAlphanumeric(_ byte: UInt8) -> Bool {
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                || (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
        }

        /// `\` and a punctuation character is that character, in ICU and in ECMA 262 alike;
        /// `\` and a letter or digit is a class, an anchor or a control character: not taken.
        static func isEscapable(_ byte: UInt8) -> Bool { byte > 0x20 && byte < 0x7F && !isAlphanumeric(byte) }

        /// Atoms with their quantifiers, until `)` or `|` or the end.
        mutating func sequence() -> Expression? {
            var items: [Expression] = []
            while index < bytes.count, bytes[index] != UInt8(ascii: ")"), bytes[index] != UInt8(ascii: "|") {
                guard let atom = atom(), let item = quantified(atom) else { return nil }
                items.append(item)
            }
            return .sequence(items)
        }

        mutating func atom() -> Expression? {
            let byte = bytes[index]
            index += 1
            switch byte {
            case UInt8(ascii: "("):
                guard index < bytes.count, bytes[index] != UInt8(ascii: "?") else { return nil }
                var choices: [Expression] = []
                while true {
                    guard let choice = sequence(), index < bytes.count else { return nil }
                    choices.append(choice)
                    let separator = bytes[index]
                    index += 1
                    if separator == UInt8(ascii: ")") { break }
                }
                return choices.count == 1 ? choices[0] : .alternation(choices)
            case UInt8(ascii: "["):
                return characterClass()
            case UInt8(ascii: "\\"):
                guard index < bytes.count, Self.isEscapable(bytes[index]) else { return nil }
                index += 1
                return .set(Self.single(bytes[index - 1]))
            default:
                guard Self.isAlphanumeric(byte) || Self.literals.contains(byte) else { return nil }
                return .set(Self.single(byte))
            }
        }

        static func single(_ byte: UInt8) -> ByteSet {
            var set = ByteSet()
            set.insert(byte...byte)
            return set
        }

        /// After `[`: members until `]`. No negation, no nested sets or set operations, no
        /// POSIX names, no spaces (ICU's sets can ignore them): only what every engine reads alike.
        mutating func characterClass() -> Expression? {
            guard index < bytes.count, bytes[index] != UInt8(ascii: "^"), bytes[index] != UInt8(ascii: ":"), bytes[index] != UInt8(ascii: "]") else {
                return nil
            }
            var set = ByteSet()
            while true {
                guard index < bytes.count else { return nil }
                if bytes[index] == UInt8(ascii: "]") {
                    index += 1
                    return .set(set)
                }
                guard let low = classMember() else { return nil }
                if index + 1 < bytes.count, bytes[index] == UInt8(ascii: "-"), bytes[index + 1] != UInt8(ascii: "]") {
                    index += 1
                    guard let high = classMember(), low <= high else { return nil }
                    set.insert(low...high)
                } else {
                    set.insert(low...low)
                }
            }
        }

        mutating func classMember() -> UInt8? {
            let byte = bytes[index]
            index += 1
            if byte == UInt8(ascii: "\\") {
                guard index < bytes.count, Self.isEscapable(bytes[index]) else { return nil }
                index += 1
                return bytes[index - 1]
            }
            if byte == UInt8(ascii: "-") {
                // Only first or last, where it is itself; `--` is an operator in ICU's sets.
                let isFirst = index >= 2 && bytes[index - 2] == UInt8(ascii: "[")
                let isLast = index < bytes.count && bytes[index] == UInt8(ascii: "]")
                return isFirst || isLast ? byte : nil
            }
            return Self.isAlphanumeric(byte) || Self.classLiterals.contains(byte) ? byte : nil
        }

        /// `atom` with the quantifier that follows it, if any. Lazy and possessive forms, and
        /// quantifiers of quantifiers, are not taken.
        mutating func quantified(_ atom: Expression) -> Expression? {
            guard index < bytes.count else { return atom }
            let minimum: Int
            let maximum: Int?
            switch bytes[index] {
            case UInt8(ascii: "?"): (minimum, maximum) = (0, 1)
            case UInt8(ascii: "*"): (minimum, maximum) = (0, nil)
            case UInt8(ascii: "+"): (minimum, maximum) = (1, nil)
            case UInt8(ascii: "{"):
                guard let bounds = counts() else { return nil }
                (minimum, maximum) = bounds
            default: return atom
            }
            index += 1
            if index < bytes.count, "?*+{".utf8.contains(bytes[index]) { return nil }
            return .repetition(atom, minimum: minimum, maximum: maximum)
        }

        /// `{n}`, `{n,}` or `{m,n}` at `index`; leaves `index` on the `}`.
        mutating func counts() -> (Int, Int?)? {
            index += 1
            func number() -> Int? {
                var value = 0
                var digits = 0
                while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]), digits < 4 {
                    value = value * 10 + Int(bytes[index] - UInt8(ascii: "0"))
                    digits += 1
                    index += 1
                }
                return digits > 0 ? value : nil
            }
            guard let low = number(), index < bytes.count else { return nil }
            var high: Int? = low
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                high = nil
                if index < bytes.count, bytes[index] != UInt8(ascii: "}") {
                    guard let bound = number(), low <= bound else { return nil }
                    high = bound
                }
            }
            guard index < bytes.count, bytes[index] == UInt8(ascii: "}") else { return nil }
            return (low, high)
        }
    }
}
