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
        do {
            return try ContractCoding.decoder.decode(T.self, from: Data(buffer.readableBytesView))
        } catch let error as DecodingError {
            let problem = ContractError(decodingError: error)
            throw APIError.invalid(field: problem.field == "(root)" ? "(body)" : problem.field, problem.reason)
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError.invalid(field: "(body)", "\(error)")
        }
    }
}
