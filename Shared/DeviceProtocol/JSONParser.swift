package import FleetContract
package import Foundation

/// A strict JSON parser (RFC 8259) into ``JSONValue``, for the device gateway's inbound path.
///
/// The gateway checks every agent message against a JSON Schema before anything decodes it, so it
/// needs the document as a tree. Foundation's `JSONSerialization` builds `NSDictionary`s of
/// `NSNumber`s, which cost more than the rest of the gateway's work per telemetry message; this
/// parser walks the bytes once and builds Swift values. It rejects what RFC 8259 rejects: trailing
/// commas, comments, leading zeros, unescaped control characters, invalid UTF-8, lone surrogates,
/// duplicate keys (the schema could not see both), and anything after the value but whitespace;
/// and, stricter than RFC 8259, U+0000 in a string (`\u0000`), which no service can store.
package struct JSONParser {
    /// Why a document did not parse, with the byte offset where it went wrong.
    package struct Failure: Error, Sendable, Equatable, CustomStringConvertible {
        package var offset: Int
        package var reason: String
        package var description: String { "\(reason) at byte \(offset)" }
    }

    /// Objects and arrays nested deeper than this are refused, so a hostile document cannot
    /// exhaust the stack.
    package static let maximumDepth = 64

    package static func parse(_ data: Data) throws(Failure) -> JSONValue {
        let result: Result<JSONValue, Failure> = data.withUnsafeBytes { raw in
            var parser = Cursor(bytes: raw.bindMemory(to: UInt8.self))
            do throws(Failure) {
                parser.skipWhitespace()
                let value = try parser.value(depth: 0)
                parser.skipWhitespace()
                guard parser.index == parser.bytes.count else { throw parser.failure("unexpected data after the JSON value") }
                return .success(value)
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Internal, not private: the streaming validator (`JSONSchema+Streaming.swift`) hands the rare strings with
    /// escapes, and the values it checks as a tree, to this very code, so that both paths decode and refuse alike.
    struct Cursor {
        let bytes: UnsafeBufferPointer<UInt8>
        var index = 0

        func failure(_ reason: String) -> Failure { Failure(offset: index, reason: reason) }

        mutating func skipWhitespace() {
            while index < bytes.count {
                switch bytes[index] {
                case 0x20, 0x09, 0x0A, 0x0D: index += 1
                default: return
                }
            }
        }

        mutating func value(depth: Int) throws(Failure) -> JSONValue {
            guard index < bytes.count else { throw failure("unexpected end of the document") }
            switch bytes[index] {
            case UInt8(ascii: "{"): return try object(depth: depth + 1)
            case UInt8(ascii: "["): return try array(depth: depth + 1)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .null
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
            default: throw failure("unexpected character")
            }
        }

        mutating func literal(_ word: StaticString) throws(Failure) {
            let count = word.utf8CodeUnitCount
            guard index + count <= bytes.count else { throw failure("unexpected end of the document") }
            for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] {
                throw failure("unexpected character")
            }
            index += count
        }

        mutating func object(depth: Int) throws(Failure) -> JSONValue {
            guard depth <= JSONParser.maximumDepth else { throw failure("nested deeper than \(JSONParser.maximumDepth) levels") }
            index += 1
            var members: [String: JSONValue] = [:]
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
                index += 1
                return .object(members)
            }
            while true {
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw failure("expected a member name") }
                let keyOffset = index
                let key = try string()
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw failure("expected ':'") }
                index += 1
                skipWhitespace()
                let member = try value(depth: depth)
                guard members.updateValue(member, forKey: key) == nil else {
                    throw Failure(offset: keyOffset, reason: "duplicate member '\(key)'")
                }
                skipWhitespace()
                guard index < bytes.count else { throw failure("unexpected end of the document") }
                switch bytes[index] {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "}"):
                    index += 1
                    return .object(members)
                default: throw failure("expected ',' or '}'")
                }
            }
        }

        mutating func array(depth: Int) throws(Failure) -> JSONValue {
            guard depth <= JSONParser.maximumDepth else { throw failure("nested deeper than \(JSONParser.maximumDepth) levels") }
            index += 1
            var elements: [JSONValue] = []
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(elements)
            }
            while true {
                skipWhitespace()
                elements.append(try value(depth: depth))
                skipWhitespace()
                guard index < bytes.count else { throw failure("unexpected end of the document") }
                switch bytes[index] {
                case UInt8(ascii: ","): index += 1
                case UInt8(ascii: "]"):
                    index += 1
                    return .array(elements)
                default: throw failure("expected ',' or ']'")
                }
            }
        }

        mutating func number() throws(Failure) -> Double {
            let start = index
            if bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count, Self.isDigit(bytes[index]) else { throw failure("expected a digit") }
            if bytes[index] == UInt8(ascii: "0") {
                index += 1
                if index < bytes.count, Self.isDigit(bytes[index]) { throw failure("leading zeros are not allowed") }
            } else {
                while index < bytes.count, Self.isDigit(bytes[index]) { index += 1 }
            }
            var isInteger = true
            if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                isInteger = false
                index += 1
                guard index < bytes.count, Self.isDigit(bytes[index]) else { throw failure("expected a digit after '.'") }
                while index < bytes.count, Self.isDigit(bytes[index]) { index += 1 }
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
                isInteger = false
                index += 1
                if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
                guard index < bytes.count, Self.isDigit(bytes[index]) else { throw failure("expected a digit in the exponent") }
                while index < bytes.count, Self.isDigit(bytes[index]) { index += 1 }
            }
            let text = UnsafeBufferPointer(rebasing: bytes[start..<index])
            // Short integers, by far the most common numbers here, without going through text.
            if isInteger, text.count <= 15 {
                var value: Int64 = 0
                var negative = false
                for byte in text {
                    if byte == UInt8(ascii: "-") { negative = true } else { value = value * 10 + Int64(byte &- 48) }
                }
                return Double(negative ? -value : value)
            }
            guard let value = Double(String(decoding: text, as: UTF8.self)), value.isFinite else {
                throw Failure(offset: start, reason: "number out of range")
            }
            return value
        }

        mutating func string() throws(Failure) -> String {
            index += 1
            let start = index
            // Fast path: no escapes, all bytes printable; validated as UTF-8 once at the end.
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\"") {
                    let slice = UnsafeBufferPointer(rebasing: bytes[start..<index])
                    index += 1
                    guard let text = String(validating: slice, as: UTF8.self) else {
                        throw Failure(offset: start, reason: "invalid UTF-8 in a string")
                    }
                    return text
                }
                if byte == UInt8(ascii: "\\") { break }
                guard byte >= 0x20 else { throw failure("unescaped control character in a string") }
                index += 1
            }
            var scalars = Array(UnsafeBufferPointer(rebasing: bytes[start..<index]))
            while index < bytes.count {
                let byte = bytes[index]
                switch byte {
                case UInt8(ascii: "\""):
                    index += 1
                    guard let text = String(validating: scalars, as: UTF8.self) else {
                        throw Failure(offset: start, reason: "invalid UTF-8 in a string")
                    }
                    return text
                case UInt8(ascii: "\\"):
                    index += 1
                    guard index < bytes.count else { throw failure("unexpected end of the document") }
                    let escaped = bytes[index]
                    index += 1
                    switch escaped {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scalars.append(escaped)
                    case UInt8(ascii: "b"): scalars.append(0x08)
                    case UInt8(ascii: "f"): scalars.append(0x0C)
                    case UInt8(ascii: "n"): scalars.append(0x0A)
                    case UInt8(ascii: "r"): scalars.append(0x0D)
                    case UInt8(ascii: "t"): scalars.append(0x09)
                    case UInt8(ascii: "u"): scalars.append(contentsOf: try unicodeEscape())
                    default: throw failure("invalid escape")
                    }
                default:
                    guard byte >= 0x20 else { throw failure("unescaped control character in a string") }
                    scalars.append(byte)
                    index += 1
                }
            }
            throw failure("unterminated string")
        }

        /// `\uXXXX` (after the `u`), with a following low surrogate when it is a high one; the scalar as UTF-8.
        mutating func unicodeEscape() throws(Failure) -> [UInt8] {
            var code = try hex4()
            // Valid JSON, but no text with it can be stored (PostgreSQL refuses it), and one
            // report with it once cost other agents' reports their batch: refused at the door.
            guard code != 0 else { throw failure("U+0000 (\\u0000) in a string") }
            if (0xD800...0xDBFF).contains(code) {
                guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                    throw failure("lone surrogate in a string")
                }
                index += 2
                let low = try hex4()
                guard (0xDC00...0xDFFF).contains(low) else { throw failure("lone surrogate in a string") }
                code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
            } else if (0xDC00...0xDFFF).contains(code) {
                throw failure("lone surrogate in a string")
            }
            guard let scalar = Unicode.Scalar(code) else { throw failure("invalid \\u escape") }
            return Array(String(Character(scalar)).utf8)
        }

        mutating func hex4() throws(Failure) -> UInt32 {
            guard index + 4 <= bytes.count else { throw failure("unexpected end of the document") }
            var code: UInt32 = 0
            for _ in 0..<4 {
                let byte = bytes[index]
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
                default: throw failure("invalid \\u escape")
                }
                code = code << 4 | UInt32(digit)
                index += 1
            }
            return code
        }

        static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
    }
}
