import FleetContract
import Foundation
import HTTPTypes
import OpenAPIRuntime
import Testing

@testable import ServiceRuntime

/// What `ContractErrorMiddleware` reads from a contract and says about a refused value.
@Suite("Contract errors: parameters and fields named")
struct ContractErrorTests {
    static let document = #"""
        {
          "openapi": "3.1.0",
          "components": {
            "parameters": {"Window": {"name": "window", "in": "query", "schema": {"type": "string"}}},
            "schemas": {
              "Colour": {"type": "string", "enum": ["red", "green"]},
              "Thing": {
                "type": "object",
                "properties": {
                  "colour": {"$ref": "#/components/schemas/Colour"},
                  "parts": {"type": "array", "items": {"oneOf": [{"type": "object", "properties": {"size": {"enum": [1, 2]}}}]}}
                }
              }
            }
          },
          "paths": {
            "/v1/things/{thing_id}": {
              "parameters": [
                {"name": "thing_id", "in": "path", "required": true, "schema": {"type": "integer", "minimum": 1}},
                {"$ref": "#/components/parameters/Window"},
                {"name": "limit", "in": "query", "schema": {"type": "integer"}}
              ],
              "get": {
                "operationId": "getThing",
                "parameters": [
                  {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                  {"name": "by", "in": "query", "schema": {"type": "string", "enum": ["rate", "p99"]}},
                  {"name": "colour", "in": "query", "schema": {"$ref": "#/components/schemas/Colour"}},
                  {"name": "ratio", "in": "query", "schema": {"type": "number", "maximum": 1}},
                  {"name": "stale", "in": "query", "schema": {"type": "boolean"}}
                ]
              },
              "delete": {"operationId": "deleteThing"},
              "put": {
                "operationId": "replaceThing",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}
              }
            }
          }
        }
        """#

    /// The document as the middleware reads it.
    static let parsed = (try? JSONDecoder().decode(JSONValue.self, from: Data(document.utf8))) ?? .null

    @Test("an operation's parameters: the path's, references followed, the operation's own winning by name")
    func parameters() throws {
        let table = ContractParameter.byOperation(in: Self.parsed)
        let get = try #require(table["getThing"])
        #expect(get.map(\.name) == ["thing_id", "window", "limit", "by", "colour", "ratio", "stale"])
        #expect(get.first { $0.name == "limit" }?.maximum == 100, "the operation's limit replaces the path's")
        #expect(get.first { $0.name == "thing_id" }?.required == true && get.first { $0.name == "thing_id" }?.location == .path)
        #expect(table["deleteThing"]?.map(\.name) == ["thing_id", "window", "limit"])
        #expect(ContractParameter.byOperation(in: .string("not a document")).isEmpty)
    }

    @Test("why a value does not fit its schema, in the words of the other answers")
    func refusals() throws {
        let get = try #require(ContractParameter.byOperation(in: Self.parsed)["getThing"])
        func refusal(_ name: String, _ value: String) -> String? { get.first { $0.name == name }?.refusal(of: value) }
        #expect(refusal("limit", "ten") == "must be a whole number from 1 to 100")
        #expect(refusal("limit", "0") == "must be a whole number from 1 to 100")
        #expect(refusal("limit", "1.5") == "must be a whole number from 1 to 100")
        #expect(refusal("limit", "100") == nil)
        #expect(refusal("by", "latency") == "must be one of rate, p99")
        #expect(refusal("by", "p99") == nil)
        #expect(refusal("ratio", "2") == "must be a number of at most 1")
        #expect(refusal("ratio", "nan") == "must be a number of at most 1")
        #expect(refusal("ratio", "0.5") == nil)
        #expect(refusal("stale", "yes") == "must be true or false")
        #expect(refusal("window", "anything") == nil)
        #expect(refusal("colour", "blue") == "must be one of red, green", "a schema by reference")
    }

    @Test("a refused request names its field: a body's by its coding path, a parameter from the contract")
    func refusedRequests() {
        let middleware = ContractErrorMiddleware(document: Self.document)
        func refusal(_ path: String, _ underlying: any Error) -> APIError {
            let request = HTTPRequest(method: .get, scheme: nil, authority: nil, path: path)
            let metadata = ServerRequestMetadata(pathParameters: ["thing_id": "7"])
            let error = ServerError(
                operationID: "getThing", request: request, requestBody: nil, requestMetadata: metadata, causeDescription: "refused",
                underlyingError: underlying)
            return middleware.refusal(error, request: request, metadata: metadata, operationID: "getThing")
        }
        let missing = DecodingError.keyNotFound(Key("name"), .init(codingPath: [Key("items"), Key(intValue: 2)], debugDescription: ""))
        let body = refusal("/v1/things/7", missing)
        #expect(body.status == .badRequest && body.field == "items[2].name" && body.message == "is required", "\(body)")
        let wrong = DecodingError.typeMismatch(Int.self, .init(codingPath: [Key("scaling"), Key("replicas")], debugDescription: ""))
        #expect(refusal("/v1/things/7", wrong).field == "scaling.replicas")
        // The runtime's parameter errors carry no path: the contract says which value is wrong.
        let unnamed = DecodingError.typeMismatch(Int.self, .init(codingPath: [], debugDescription: "Failed to convert"))
        let parameter = refusal("/v1/things/7?by=rate&limit=ten", unnamed)
        #expect(parameter.field == "limit" && parameter.message == "must be a whole number from 1 to 100", "\(parameter)")
        let outsideEnum = refusal("/v1/things/7?by=colour", unnamed)
        #expect(outsideEnum.field == "by" && outsideEnum.message == "must be one of rate, p99", "\(outsideEnum)")
    }

    @Test("a body: its value outside an enum named with the values allowed; not JSON, not an object or missing, named (body)")
    func refusedBodies() throws {
        let body = try #require(ContractBody.byOperation(in: Self.parsed)["replaceThing"])
        #expect(body.required)
        #expect(body.allowedValues(at: [Key("colour")]) == ["red", "green"])
        #expect(body.allowedValues(at: [Key("parts"), Key(intValue: 3), Key("size")]) == ["1", "2"])
        #expect(body.allowedValues(at: [Key("parts")]) == nil)
        #expect(body.allowedValues(at: [Key("nothing")]) == nil)

        let middleware = ContractErrorMiddleware(document: Self.document)
        func refusal(_ underlying: any Error, empty: Bool = false) -> APIError {
            let request = HTTPRequest(method: .put, scheme: nil, authority: nil, path: "/v1/things/7")
            let metadata = ServerRequestMetadata(pathParameters: ["thing_id": "7"])
            let error = ServerError(
                operationID: "replaceThing", request: request, requestBody: nil, requestMetadata: metadata, causeDescription: "refused",
                underlyingError: underlying)
            return middleware.refusal(error, request: request, metadata: metadata, operationID: "replaceThing", bodyIsEmpty: empty)
        }
        let colour = DecodingError.dataCorrupted(.init(codingPath: [Key("colour")], debugDescription: "Cannot initialize Colour"))
        let refused = refusal(colour)
        #expect(refused.field == "colour" && refused.message == "must be one of red, green", "\(refused)")
        let notJSON = DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "not JSON"))
        #expect(refusal(notJSON).field == "(body)" && refusal(notJSON).message == "is not valid JSON")
        let array = DecodingError.typeMismatch([String: Any].self, .init(codingPath: [], debugDescription: "an array"))
        #expect(refusal(array).field == "(body)" && refusal(array).message == "must be a JSON object")
        let missing = ServerError(
            operationID: "replaceThing", request: HTTPRequest(method: .put, scheme: nil, authority: nil, path: "/v1/things/7"), requestBody: nil,
            requestMetadata: ServerRequestMetadata(pathParameters: ["thing_id": "7"]), causeDescription: "no body",
            underlyingError: CancellationError(), httpStatus: .badRequest,
            httpHeaderFields: [:], httpBody: nil)
        let none = middleware.refusal(
            missing, request: missing.request, metadata: missing.requestMetadata, operationID: "replaceThing", bodyIsEmpty: true)
        #expect(none.field == "(body)" && none.message == "a JSON body is required", "\(none)")
    }
}

/// A coding path's key, as a decoder gives it.
private struct Key: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init(intValue: Int) {
        stringValue = "\(intValue)"
        self.intValue = intValue
    }
}
