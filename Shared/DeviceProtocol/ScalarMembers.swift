package import FleetContract
import Foundation

/// The string, number, boolean and null members of one object of a validated document (the
/// envelope's `payload`), which is what the gateway reads of a message besides forwarding it.
///
/// The streaming validator keeps where each lies in the document's bytes (and each number's
/// value) rather than a `String` per member: a valid message costs one small array, and a member
/// is decoded only when asked for, by `JSONParser`'s own code, so it reads exactly as the tree
/// would have it.
package struct ScalarMembers: Sendable {
    enum Kind: Sendable {
        case string, number, `true`, `false`, null
    }

    /// One member in the document's bytes: the key between its quotes, and the value's first byte.
    struct Located: Sendable {
        var keyStart: Int
        var keyEnd: Int
        /// ASCII without escapes: the bytes are the key.
        var keyIsPlain: Bool
        var valueStart: Int
        var kind: Kind
        /// A string value in ASCII without escapes.
        var valueIsPlain: Bool
        /// The value of a number, as the parser makes it.
        var number: Double
    }

    private enum Storage: Sendable {
        /// Positions in the document (a `Data` shares its bytes, it does not copy them).
        case located(Data, [Located])
        /// Values taken from a parsed tree (the channels that are checked as a tree).
        case values([String: JSONValue])
    }

    private let storage: Storage

    init(document: Data, located: [Located]) {
        storage = .located(document, located)
    }

    /// The scalar members of `object`, when it is an object.
    package init(scalarsOf object: JSONValue?) {
        guard case .object(let members)? = object else {
            storage = .values([:])
            return
        }
        storage = .values(
            members.filter { _, value in
                switch value {
                case .null, .bool, .number, .string: true
                case .array, .object: false
                }
            })
    }

    /// The member `name`, when it is a string, number, boolean or null; names compare as Swift
    /// strings do (as the tree's dictionary would look them up).
    package func value(named name: String) -> JSONValue? {
        switch storage {
        case .values(let values):
            return values[name]
        case .located(let document, let located):
            return document.withUnsafeBytes { raw -> JSONValue? in
                let bytes = raw.bindMemory(to: UInt8.self)
                guard let member = Self.find(name, in: located, bytes) else { return nil }
                switch member.kind {
                case .string: return Self.decodedString(at: member.valueStart, in: bytes).map(JSONValue.string)
                case .number: return .number(member.number)
                case .true: return .bool(true)
                case .false: return .bool(false)
                case .null: return .null
                }
            }
        }
    }

    /// Whether the member `name` is the string `text`, compared without decoding it when both are
    /// plain ASCII (the gateway's check of `payload.agent_id` against the topic).
    package func hasString(_ text: String, named name: String) -> Bool {
        switch storage {
        case .values(let values):
            return values[name] == .string(text)
        case .located(let document, let located):
            return document.withUnsafeBytes { raw in
                let bytes = raw.bindMemory(to: UInt8.self)
                guard let member = Self.find(name, in: located, bytes), member.kind == .string else { return false }
                if member.valueIsPlain, text.utf8.allSatisfy({ $0 < 0x80 }) {
                    // The closing quote is where a plain string of the same length would end.
                    let start = member.valueStart + 1
                    let end = start + text.utf8.count
                    return end < bytes.count && bytes[end] == UInt8(ascii: "\"") && text.utf8.elementsEqual(bytes[start..<end])
                }
                return Self.decodedString(at: member.valueStart, in: bytes) == text
            }
        }
    }

    private static func find(_ name: String, in located: [Located], _ bytes: UnsafeBufferPointer<UInt8>) -> Located? {
        // Two ASCII strings are equal exactly when their bytes are. With anything else, Swift's
        // equality is canonical equivalence (U+212A KELVIN SIGN equals "K"): compared as Strings.
        let nameIsASCII = name.utf8.allSatisfy { $0 < 0x80 }
        for member in located {
            if member.keyIsPlain && nameIsASCII {
                if member.keyEnd - member.keyStart == name.utf8.count && name.utf8.elementsEqual(bytes[member.keyStart..<member.keyEnd]) {
                    return member
                }
            } else if decodedString(at: member.keyStart - 1, in: bytes) == name {
                return member
            }
        }
        return nil
    }

    /// The string whose opening quote is at `offset`, decoded by `JSONParser` (it parsed before).
    private static func decodedString(at offset: Int, in bytes: UnsafeBufferPointer<UInt8>) -> String? {
        var cursor = JSONParser.Cursor(bytes: bytes, index: offset)
        return try? cursor.string()
    }
}
