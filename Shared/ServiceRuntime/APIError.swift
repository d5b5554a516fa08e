import Foundation
package import Hummingbird
import Logging
import OpenAPIRuntime

/// An error a client of a REST API caused, answered as
/// `{"error": {"code": "...", "message": "...", "field": "..."}}` with a 4xx status.
package struct APIError: Error, HTTPResponseError, Sendable {
    package var status: HTTPResponse.Status
    package var code: String
    package var message: String
    package var field: String?
    /// Headers of the answer besides the JSON body's (`WWW-Authenticate` on a 401).
    package var headers: HTTPFields

    package init(_ status: HTTPResponse.Status, code: String, message: String, field: String? = nil, headers: HTTPFields = [:]) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers
    }

    package static func notFound(_ message: String) -> APIError { APIError(.notFound, code: "not_found", message: message) }
    package static func invalid(field: String, _ message: String) -> APIError {
        APIError(.badRequest, code: "invalid_field", message: message, field: field)
    }

    package func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = try JSONResponse(Body(error: .init(code: code, message: message, field: field)), status: status).response(
            from: request, context: context)
        response.headers.append(contentsOf: headers)
        return response
    }

    private struct Body: Encodable, Sendable {
        struct Detail: Encodable, Sendable {
            var code: String
            var message: String
            var field: String?
        }

        var error: Detail
    }
}

/// Turns every error into the JSON error body: API errors as they are, domain errors as
/// ``DomainError/apiError`` says, Hummingbird's own HTTP errors (unknown route, bad method) with
/// their status, anything else as a 500 that is logged with its details and answered without them.
package struct APIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    package init() {}

    package func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            try Self.refuseNUL(in: request)
            return try await next(request, context)
        } catch {
            throw Self.answer(for: error, request: request, context: context)
        }
    }

    private static func answer(for error: any Error, request: Request, context: Context) -> APIError {
        switch error {
        case let error as APIError: return error
        case let error as DomainError: return error.apiError
        case let error as HTTPError:
            let code = error.status == .notFound ? "not_found" : "http_\(error.status.code)"
            return APIError(error.status, code: code, message: error.body ?? error.status.reasonPhrase)
        // A generated server's route (swift-openapi-generator) wraps what its handler threw, and
        // what ContractErrorMiddleware made of a refused request.
        case let error as ServerError: return answer(for: error.underlyingError, request: request, context: context)
        default:
            context.logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(String(reflecting: error))"])
            return APIError(.internalServerError, code: "internal", message: "internal error; see the service log")
        }
    }

    /// U+0000 in the path or a query parameter (`%00`) is refused before any handler: PostgreSQL
    /// cannot take it in text, and a lookup by such a name answered 500.
    private static func refuseNUL(in request: Request) throws {
        let uri = request.uri
        let reason = "must not contain the NUL character (U+0000, %00)"
        if uri.path.contains("\u{0}") || uri.path.range(of: "%00") != nil {
            throw APIError.invalid(field: "(path)", reason)
        }
        for (name, value) in uri.queryParameters where name.contains("\u{0}") || value.contains("\u{0}") {
            throw APIError.invalid(field: String(name), reason)
        }
    }
}
