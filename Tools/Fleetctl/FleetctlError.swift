/// An error the tool explains to the operator in one line (`error: …`, exit status 2).
enum FleetctlError: Error, CustomStringConvertible {
    /// A service answered with an error body `{"error": {"code", "message", "field"}}`.
    case api(service: String, status: Int, code: String, message: String, field: String?)
    /// A service answered something other than the JSON the tool expects.
    case unexpectedResponse(service: String, detail: String)
    /// The service could not be reached at all.
    case unreachable(service: String, url: String, reason: String)
    /// Something the operator gave (a file, an argument) is not usable.
    case invalidInput(String)

    var description: String {
        switch self {
        case .api(_, _, _, let message, let field):
            return field.map { "\(message) (field: \($0))" } ?? message
        case .unexpectedResponse(let service, let detail):
            return "unexpected answer from the \(service): \(detail)"
        case .unreachable(let service, let url, let reason):
            return "cannot reach the \(service) at \(url): \(reason)"
        case .invalidInput(let message):
            return message
        }
    }

    /// The flag to use when the API names one of its fields that the tool sets from a flag.
    var hint: String? {
        switch self {
        case .api(_, _, _, _, "allow_offline"?):
            return "pass --allow-offline to deliver when the site's servers come back"
        case .api(_, _, _, _, "confirm"?):
            return "pass --yes to apply without the preview"
        case .api(_, _, _, _, "watchdog_seconds"?):
            return "--watchdog takes 1 to 86400 seconds"
        case .unreachable(let service, _, _):
            return "is the \(service) running? set its URL with --\(service) or $FLEETCTL_\(service.uppercased())_URL"
        default:
            return nil
        }
    }
}
