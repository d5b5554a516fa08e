import FleetContract
package import Foundation
package import HTTPTypes
package import OpenAPIRuntime

/// Turns what a generated server (swift-openapi-generator) refuses into the answers every other
/// route gives: 400 with a JSON body naming the field.
///
/// The generated code decodes the path, the query and the body before a handler runs. A body's
/// `DecodingError` carries its coding path, which names the field; a query or path value that is
/// not of its schema's type (`limit=ten` for an integer) does not: swift-openapi-runtime decodes
/// each parameter from its own root and says only "Failed to convert to the requested type". So
/// the middleware reads the operation's parameters from the contract itself, the JSON the service
/// serves at `/openapi.json`, and names the first value its schema refuses.
package struct ContractErrorMiddleware: ServerMiddleware {
    private let parameters: [String: [ContractParameter]]

    /// `document`: the service's OpenAPI document as JSON.
    package init(document: String) {
        parameters = ContractParameter.byOperation(in: Data(document.utf8))
    }

    package func intercept(
        _ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        do {
            return try await next(request, body, metadata)
        } catch let error as ServerError where error.operationInput == nil {
            // Refused before the handler ran. What a handler throws is its own answer (an
            // APIError, a DomainError), which APIErrorMiddleware takes out of the ServerError.
            throw refusal(error, request: request, metadata: metadata, operationID: operationID)
        }
    }

    func refusal(_ error: ServerError, request: HTTPRequest, metadata: ServerRequestMetadata, operationID: String) -> APIError {
        let declared = parameters[operationID] ?? []
        // A body's field has a coding path; a parameter's has none, and is found below.
        if let decoding = error.underlyingError as? DecodingError, Self.namesField(decoding) {
            let problem = ContractError(decodingError: decoding)
            return .invalid(field: problem.field, problem.reason)
        }
        let query = Self.queryItems(of: request)
        for parameter in declared {
            let value: Substring? =
                switch parameter.location {
                case .query: query.last { $0.name == parameter.name }?.value
                case .path: metadata.pathParameters[parameter.name]
                }
            guard let value else {
                if parameter.required { return .invalid(field: parameter.name, "is required") }
                continue
            }
            if let reason = parameter.refusal(of: String(value)) { return .invalid(field: parameter.name, reason) }
        }
        if error.httpStatus.kind == .clientError {
            // A body that is not JSON at all, a missing body, an Accept nothing can satisfy.
            let code = error.httpStatus == .badRequest ? "invalid_request" : "http_\(error.httpStatus.code)"
            return APIError(error.httpStatus, code: code, message: error.causeDescription)
        }
        return APIError(.internalServerError, code: "internal", message: "internal error; see the service log")
    }

    private static func namesField(_ error: DecodingError) -> Bool {
        switch error {
        case .keyNotFound: true
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context): !context.codingPath.isEmpty
        @unknown default: false
        }
    }

    static func queryItems(of request: HTTPRequest) -> [(name: String, value: Substring)] {
        guard let path = request.path, let mark = path.firstIndex(of: "?") else { return [] }
        return path[path.index(after: mark)...].split(separator: "&").map { item in
            let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(pair[0]).removingPercentEncoding ?? String(pair[0])
            let raw = pair.count > 1 ? String(pair[1]).replacingOccurrences(of: "+", with: " ") : ""
            return (name, Substring(raw.removingPercentEncoding ?? raw))
        }
    }
}

/// One path or query parameter of an operation, as the contract declares it: enough of its
/// schema to say why a value is refused (its type, its allowed values, its bounds).
package struct ContractParameter: Sendable, Equatable {
    package enum Location: String, Sendable { case path, query }

    package var name: String
    package var location: Location
    package var required: Bool
    /// `integer`, `number`, `boolean`, `string`.
    package var type: String
    package var allowed: [String]?
    package var minimum: Double?
    package var maximum: Double?

    /// Why `value` does not fit the schema, or nil when it does.
    package func refusal(of value: String) -> String? {
        let bounds =
            switch (minimum, maximum) {
            case (let low?, let high?): "from \(Self.number(low)) to \(Self.number(high))"
            case (let low?, nil): "of at least \(Self.number(low))"
            case (nil, let high?): "of at most \(Self.number(high))"
            case (nil, nil): ""
            }
        switch type {
        case "integer":
            guard let number = Int(value) else { return "must be a whole number" + (bounds.isEmpty ? "" : " " + bounds) }
            if let minimum, Double(number) < minimum { return "must be a whole number \(bounds)" }
            if let maximum, Double(number) > maximum { return "must be a whole number \(bounds)" }
        case "number":
            guard let number = Double(value), number.isFinite else { return "must be a number" + (bounds.isEmpty ? "" : " " + bounds) }
            if let minimum, number < minimum { return "must be a number \(bounds)" }
            if let maximum, number > maximum { return "must be a number \(bounds)" }
        case "boolean":
            guard value == "true" || value == "false" else { return "must be true or false" }
        default: break
        }
        if let allowed, !allowed.contains(value) { return "must be one of " + allowed.joined(separator: ", ") }
        return nil
    }

    private static func number(_ value: Double) -> String {
        value.rounded() == value && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }

    /// Every operation's path and query parameters, by operation id, with `$ref`s to
    /// `#/components/parameters` followed; path-level parameters come before the operation's own.
    package static func byOperation(in document: Data) -> [String: [ContractParameter]] {
        guard let root = try? JSONSerialization.jsonObject(with: document) as? [String: Any] else { return [:] }
        let shared = (root["components"] as? [String: Any])?["parameters"] as? [String: Any] ?? [:]
        func resolve(_ item: Any) -> ContractParameter? {
            guard var object = item as? [String: Any] else { return nil }
            if let reference = object["$ref"] as? String {
                guard let target = shared[String(reference.split(separator: "/").last ?? "")] as? [String: Any] else { return nil }
                object = target
            }
            guard let name = object["name"] as? String, let location = (object["in"] as? String).flatMap(Location.init(rawValue:)) else {
                return nil
            }
            let schema = object["schema"] as? [String: Any] ?? [:]
            return ContractParameter(
                name: name, location: location, required: object["required"] as? Bool ?? false, type: schema["type"] as? String ?? "string",
                allowed: (schema["enum"] as? [Any])?.map { "\($0)" }, minimum: (schema["minimum"] as? NSNumber)?.doubleValue,
                maximum: (schema["maximum"] as? NSNumber)?.doubleValue)
        }
        var table: [String: [ContractParameter]] = [:]
        for case let pathItem as [String: Any] in (root["paths"] as? [String: Any] ?? [:]).values {
            let common = (pathItem["parameters"] as? [Any] ?? []).compactMap(resolve)
            for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
                guard let operation = pathItem[method] as? [String: Any], let id = operation["operationId"] as? String else { continue }
                let own = (operation["parameters"] as? [Any] ?? []).compactMap(resolve)
                table[id] = common.filter { parameter in !own.contains { $0.name == parameter.name && $0.location == parameter.location } } + own
            }
        }
        return table
    }
}
