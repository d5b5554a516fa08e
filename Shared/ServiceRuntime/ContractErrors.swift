import FleetContract
import Foundation
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
        let parsed = (try? JSONDecoder().decode(JSONValue.self, from: Data(document.utf8))) ?? .null
        parameters = ContractParameter.byOperation(in: parsed)
        bodies = ContractBody.byOperation(in: parsed)
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
    /// `#/components/parameters` and `#/components/schemas` followed; path-level parameters come
    /// before the operation's own.
    static func byOperation(in document: JSONValue) -> [String: [ContractParameter]] {
        func resolve(_ item: JSONValue) -> ContractParameter? {
            let object = document.component("parameters", for: item) ?? item
            guard let name = object["name"]?.text, let location = object["in"]?.text.flatMap(Location.init(rawValue:)) else { return nil }
            let declared = object["schema"] ?? .object([:])
            let schema = document.component("schemas", for: declared) ?? declared
            return ContractParameter(
                name: name, location: location, required: object["required"] == .bool(true), type: schema["type"]?.text ?? "string",
                allowed: schema["enum"]?.items?.compactMap(\.enumText), minimum: schema["minimum"]?.number, maximum: schema["maximum"]?.number)
        }
        var table: [String: [ContractParameter]] = [:]
        for (pathItem, operation, id) in document.operations {
            let common = (pathItem["parameters"]?.items ?? []).compactMap(resolve)
            let own = (operation["parameters"]?.items ?? []).compactMap(resolve)
            table[id] = common.filter { parameter in !own.contains { $0.name == parameter.name && $0.location == parameter.location } } + own
        }
        return table
    }
}

/// An operation's JSON request body, as the contract declares it: whether it is required, and
/// its schema, to say which values a field outside an `enum` may take.
package struct ContractBody: Sendable {
    package var required: Bool
    var schema: JSONValue
    /// The whole contract, for `$ref`s to `#/components/schemas`.
    var document: JSONValue

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
        return candidates.flatMap(expanded).lazy.compactMap { $0["enum"]?.items?.compactMap(\.enumText) }.first
    }

    /// `schema` with its `$ref` followed, and the branches it is made of.
    private func expanded(_ schema: JSONValue) -> [JSONValue] {
        guard case .object(let members) = schema else { return [] }
        if let target = document.component("schemas", for: schema) { return expanded(target) }
        return [schema] + ["allOf", "oneOf", "anyOf"].flatMap { (members[$0]?.items ?? []).flatMap(expanded) }
    }

    /// Every operation's JSON request body, by operation id.
    static func byOperation(in document: JSONValue) -> [String: ContractBody] {
        var table: [String: ContractBody] = [:]
        for (_, operation, id) in document.operations {
            guard let requestBody = operation["requestBody"], let json = requestBody["content"]?["application/json"] else { continue }
            table[id] = ContractBody(required: requestBody["required"] == .bool(true), schema: json["schema"] ?? .object([:]), document: document)
        }
        return table
    }
}

/// Reading an OpenAPI document held as a `JSONValue`.
extension JSONValue {
    fileprivate subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    fileprivate var text: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    fileprivate var items: [JSONValue]? {
        if case .array(let values) = self { return values }
        return nil
    }

    /// A value of an `enum`, as a refusal lists it: `rate`, `2`.
    fileprivate var enumText: String? {
        switch self {
        case .string(let text): text
        case .number(let number): number.rounded() == number && abs(number) < 1e15 ? String(Int(number)) : String(number)
        default: nil
        }
    }

    /// What `item` points to when it is a `$ref` to `#/components/<section>/<name>`; nil otherwise.
    fileprivate func component(_ section: String, for item: JSONValue) -> JSONValue? {
        guard let reference = item["$ref"]?.text, reference.hasPrefix("#/components/\(section)/") else { return nil }
        return self["components"]?[section]?[String(reference.dropFirst("#/components/\(section)/".count))]
    }

    /// Every operation of the document: its path item, the operation, its id.
    fileprivate var operations: [(pathItem: JSONValue, operation: JSONValue, id: String)] {
        guard case .object(let paths)? = self["paths"] else { return [] }
        return paths.values.flatMap { pathItem in
            ["get", "put", "post", "delete", "patch", "head", "options"].compactMap { method in
                guard let operation = pathItem[method], let id = operation["operationId"]?.text else { return nil }
                return (pathItem, operation, id)
            }
        }
    }
}
