import FleetContract
import Foundation
package import Hummingbird

/// Reading JSON request bodies, with errors that name the field.
package enum JSONBody {
    /// The largest body the APIs read.
    package static let maximumSize = 1 << 20

    /// Decodes the body as `T`; a missing, oversized, malformed or mistyped body is a 400 naming
    /// the field (`labels[2]: expected a string`).
    package static func decode<T: Decodable>(_ type: T.Type, from request: Request, context: some RequestContext) async throws -> T {
        guard let value = try await decodeIfPresent(type, from: request, context: context) else {
            throw APIError.invalid(field: "(body)", "a JSON body is required")
        }
        return value
    }

    /// As ``decode(_:from:context:)``, for a body that may be left out: nil when it is empty.
    package static func decodeIfPresent<T: Decodable>(_ type: T.Type, from request: Request, context: some RequestContext) async throws -> T? {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: maximumSize)
        } catch {
            throw APIError(.contentTooLarge, code: "too_large", message: "the body is larger than \(maximumSize) bytes")
        }
        guard buffer.readableBytes > 0 else { return nil }
        let data = Data(buffer.readableBytesView)
        if let field = fieldWithNUL(in: data) {
            throw APIError.invalid(field: field, "must not contain the NUL character (U+0000): no text with it can be stored")
        }
        do {
            return try ContractCoding.decoder.decode(T.self, from: data)
        } catch let error as DecodingError {
            let problem = ContractError(decodingError: error)
            throw APIError.invalid(field: problem.field == "(root)" ? "(body)" : problem.field, problem.reason)
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError.invalid(field: "(body)", "\(error)")
        }
    }

    /// A request body a generated server decoded, as the domain's type `T` (decision 92): what
    /// `T`'s decoder refuses beyond the contract's schema (a UUID that is not one, a domain rule
    /// in `init(from:)`) is a 400 naming the field, as ``decode(_:from:context:)`` answers it.
    package static func recast<T: Decodable>(_ body: some Encodable, as type: T.Type) throws -> T {
        do {
            return try ContractCoding.recast(body, as: type)
        } catch let error as DecodingError {
            let problem = ContractError(decodingError: error)
            throw APIError.invalid(field: problem.field == "(root)" ? "(body)" : problem.field, problem.reason)
        }
    }

    /// The path of the first string (or key) in the body that holds U+0000, which PostgreSQL
    /// cannot store in text (it answered 500 for a model's description); nil when there is none.
    /// Only a body with the escape `\u0000` somewhere is parsed a second time.
    static func fieldWithNUL(in data: Data) -> String? {
        guard data.firstRange(of: Data(#"\u0000"#.utf8)) != nil,
            let value = try? ContractCoding.decoder.decode(JSONValue.self, from: data)
        else { return nil }
        return fieldWithNUL(in: value, at: "")
    }

    private static func fieldWithNUL(in value: JSONValue, at path: String) -> String? {
        switch value {
        case .string(let text):
            return text.contains("\u{0}") ? (path.isEmpty ? "(body)" : path) : nil
        case .array(let items):
            for (index, item) in items.enumerated() {
                if let found = fieldWithNUL(in: item, at: "\(path)[\(index)]") { return found }
            }
            return nil
        case .object(let members):
            for key in members.keys.sorted() {
                let field = path.isEmpty ? key : "\(path).\(key)"
                if key.contains("\u{0}") { return field }
                if let found = fieldWithNUL(in: members[key]!, at: field) { return found }
            }
            return nil
        case .null, .bool, .number:
            return nil
        }
    }
}
