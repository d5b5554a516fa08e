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
/// serves at `/openapi.json`, and names the first value its schema refuses; a body value outside
/// its schema's `enum` is named with the values the schema allows, as ``JSONBody`` does.
///
/// Before the generated code reads a body, the middleware applies ``JSONBody``'s limits: at most
/// ``JSONBody/maximumSize`` bytes (413), and no U+0000 in any string, which PostgreSQL cannot store
/// (400 naming the field).
package struct ContractErrorMiddleware: ServerMiddleware {
    private let parameters: [String: [ContractParameter]]
    private let bodies: [String: ContractBody]

    /// `document`: the service's OpenAPI document as JSON.
    package init(document: String) {
        let data = Data(document.utf8)
        parameters = ContractParameter.byOperation(in: data)
        bodies = ContractBody.byOperation(in: data)
    }

    package func intercept(
        _ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        var bytes: Data?
        if let body {
            do {
                bytes = try await Data(collecting: body, upTo: JSONBody.maximumSize)
            } catch {
                // swift-openapi-runtime's own (private) TooManyBytesError; or a client gone, which
                // reads no answer.
                throw APIError(.contentTooLarge, code: "too_large", message: "the body is larger than \(JSONBody.maximumSize) bytes")
            }
            if let bytes, let field = JSONBody.fieldWithNUL(in: bytes) {
                throw APIError.invalid(field: field, "must not contain the NUL character (U+0000): no text with it can be stored")
            }
        }
        do {
            // An empty body is no body: an operation whose body may be left out gets nil.
            return try await next(request, bytes.flatMap { $0.isEmpty ? nil : HTTPBody($0) }, metadata)
        } catch let error as ServerError where error.operationInput == nil {
            // Refused before the handler ran. What a handler throws is its own answer (an
            // APIError, a DomainError), which APIErrorMiddleware takes out of the ServerError.
            throw refusal(error, request: request, metadata: metadata, operationID: operationID, bodyIsEmpty: bytes?.isEmpty ?? true)
        }
    }

    func refusal(
        _ error: ServerError, request: HTTPRequest, metadata: ServerRequestMetadata, operationID: String, bodyIsEmpty: Bool = false
    ) -> APIError {
        let declared = parameters[operationID] ?? []
        // A body's field has a coding path; a parameter's has none, and is found below.
        let decoding = error.underlyingError as? DecodingError
        if let decoding, Self.namesField(decoding) {
            let problem = ContractError(decodingError: decoding)
            if case .dataCorrupted(let context) = decoding, let allowed = bodies[operationID]?.allowedValues(at: context.codingPath) {
                return .invalid(field: problem.field, "must be one of " + allowed.joined(separator: ", "))
            }
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
        if let body = bodies[operationID] {
            if bodyIsEmpty, body.required { return .invalid(field: "(body)", "a JSON body is required") }
            // The body as a whole: not JSON, or not the object its schema is.
            if let decoding {
                let problem = ContractError(decodingError: decoding)
                return .invalid(field: "(body)", problem.reason == "is not valid JSON" ? problem.reason : "must be a JSON object")
            }
        }
        switch error.httpStatus {
        case .unsupportedMediaType:
            return APIError(.unsupportedMediaType, code: "unsupported_media_type", message: "the body must be JSON (Content-Type: application/json)")
        case let status where status.kind == .clientError:
            // An Accept nothing can satisfy, a header the contract requires.
            let code = status == .badRequest ? "invalid_request" : "http_\(status.code)"
            return APIError(status, code: code, message: error.causeDescription)
        default:
            return APIError(.internalServerError, code: "internal", message: "internal error; see the service log")
        }
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
        let schemas = (root["components"] as? [String: Any])?["schemas"] as? [String: Any] ?? [:]
        func resolve(_ item: Any) -> ContractParameter? {
            guard var object = item as? [String: Any] else { return nil }
            if let reference = object["$ref"] as? String {
                guard let target = shared[String(reference.split(separator: "/").last ?? "")] as? [String: Any] else { return nil }
                object = target
            }
            guard let name = object["name"] as? String, let location = (object["in"] as? String).flatMap(Location.init(rawValue:)) else {
                return nil
            }
            var schema = object["schema"] as? [String: Any] ?? [:]
            if let reference = schema["$ref"] as? String, let target = schemas[String(reference.split(separator: "/").last ?? "")] as? [String: Any] {
                schema = target
            }
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

/// An operation's JSON request body, as the contract declares it: whether it is required, and
/// its schema, to say which values a field outside an `enum` may take.
package struct ContractBody: Sendable {
    package var required: Bool
    var schema: JSONValue
    /// `#/components/schemas`, for `$ref`s.
    var components: [String: JSONValue]

    /// The `enum` of the schema at `codingPath` in the body, following `$ref`s, `properties`,
    /// `items`, `additionalProperties` and the branches of `allOf`, `oneOf` and `anyOf`.
    package func allowedValues(at codingPath: [any CodingKey]) -> [String]? {
        var candidates = [schema]
        for key in codingPath {
            candidates = candidates.flatMap(expanded).flatMap { schema -> [JSONValue] in
                guard case .object(let members) = schema else { return [] }
                if key.intValue != nil { return members["items"].map { [$0] } ?? [] }
                if case .object(let properties)? = members["properties"], let property = properties[key.stringValue] { return [property] }
                if case .object? = members["additionalProperties"] { return [members["additionalProperties"]!] }
                return []
            }
        }
        for case .object(let members) in candidates.flatMap(expanded) {
            if case .array(let values)? = members["enum"] {
                return values.compactMap { value in
                    switch value {
                    case .string(let text): text
                    case .number(let number): number.rounded() == number ? String(Int(number)) : String(number)
                    default: nil
                    }
                }
            }
        }
        return nil
    }

    /// `schema` with its `$ref` followed, and the branches it is made of.
    private func expanded(_ schema: JSONValue) -> [JSONValue] {
        guard case .object(let members) = schema else { return [] }
        if case .string(let reference)? = members["$ref"], let name = reference.split(separator: "/").last,
            let target = components[String(name)]
        {
            return expanded(target)
        }
        var found = [schema]
        for keyword in ["allOf", "oneOf", "anyOf"] {
            if case .array(let branches)? = members[keyword] { found += branches.flatMap(expanded) }
        }
        return found
    }

    /// Every operation's JSON request body, by operation id.
    package static func byOperation(in document: Data) -> [String: ContractBody] {
        guard case .object(let root)? = try? JSONDecoder().decode(JSONValue.self, from: document) else { return [:] }
        var components: [String: JSONValue] = [:]
        if case .object(let parts)? = root["components"], case .object(let schemas)? = parts["schemas"] { components = schemas }
        var table: [String: ContractBody] = [:]
        guard case .object(let paths)? = root["paths"] else { return [:] }
        for case .object(let pathItem) in paths.values {
            for case .object(let operation) in pathItem.values {
                guard case .string(let id)? = operation["operationId"], case .object(let requestBody)? = operation["requestBody"],
                    case .object(let content)? = requestBody["content"], case .object(let json)? = content["application/json"]
                else { continue }
                var required = false
                if case .bool(let flag)? = requestBody["required"] { required = flag }
                table[id] = ContractBody(required: required, schema: json["schema"] ?? .object([:]), components: components)
            }
        }
        return table
    }
}
