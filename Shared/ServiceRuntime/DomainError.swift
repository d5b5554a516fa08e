import Hummingbird

/// What a service's stores and clients refuse, in the domain's words. They do not speak HTTP:
/// ``APIErrorMiddleware`` answers each case with its status, code and field, in one place.
package enum DomainError: Error, Sendable, Equatable {
    /// Something with this name or key exists already, or changed meanwhile: 409 with `code`.
    case conflict(String, field: String? = nil, code: String = "conflict")
    /// A field names something that is not there: 400 `invalid_field`.
    case unknownReference(String, field: String)
    /// A service this one must ask did not answer: 503 with `code` (`orchestrator_unavailable`).
    case unavailable(code: String, String)

    /// The answer a client gets.
    package var apiError: APIError {
        switch self {
        case .conflict(let message, let field, let code): APIError(.conflict, code: code, message: message, field: field)
        case .unknownReference(let message, let field): APIError.invalid(field: field, message)
        case .unavailable(let code, let message): APIError(.serviceUnavailable, code: code, message: message)
        }
    }
}
