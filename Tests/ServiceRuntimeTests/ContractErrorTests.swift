import Foundation
import Testing

@testable import ServiceRuntime

/// What `ContractErrorMiddleware` reads from a contract and says about a refused value.
@Suite("Contract errors: parameters and fields named")
struct ContractErrorTests {
    static let document = #"""
        {
          "openapi": "3.1.0",
          "components": {"parameters": {"Window": {"name": "window", "in": "query", "schema": {"type": "string"}}}},
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
                  {"name": "ratio", "in": "query", "schema": {"type": "number", "maximum": 1}},
                  {"name": "stale", "in": "query", "schema": {"type": "boolean"}}
                ]
              },
              "delete": {"operationId": "deleteThing"}
            }
          }
        }
        """#

    @Test("an operation's parameters: the path's, references followed, the operation's own winning by name")
    func parameters() throws {
        let table = ContractParameter.byOperation(in: Data(Self.document.utf8))
        let get = try #require(table["getThing"])
        #expect(get.map(\.name) == ["thing_id", "window", "limit", "by", "ratio", "stale"])
        #expect(get.first { $0.name == "limit" }?.maximum == 100, "the operation's limit replaces the path's")
        #expect(get.first { $0.name == "thing_id" }?.required == true && get.first { $0.name == "thing_id" }?.location == .path)
        #expect(table["deleteThing"]?.map(\.name) == ["thing_id", "window", "limit"])
        #expect(ContractParameter.byOperation(in: Data("not json".utf8)).isEmpty)
    }

    @Test("why a value does not fit its schema, in the words of the other answers")
    func refusals() throws {
        let get = try #require(ContractParameter.byOperation(in: Data(Self.document.utf8))["getThing"])
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
    }

    @Test("a body's decoding error names its field, nested and indexed")
    func bodyFields() {
        struct Key: CodingKey {
            var stringValue: String
            var intValue: Int?
            init(_ string: String) { stringValue = string }
            init?(stringValue: String) { self.stringValue = stringValue }
            init(intValue: Int) {
                stringValue = "\(intValue)"
                self.intValue = intValue
            }
        }
        let missing = DecodingError.keyNotFound(Key("name"), .init(codingPath: [Key("items"), Key(intValue: 2)], debugDescription: ""))
        #expect(ContractErrorMiddleware.field(of: missing) == "items[2].name")
        #expect(ContractErrorMiddleware.reason(of: missing) == "is required")
        let wrong = DecodingError.typeMismatch(Int.self, .init(codingPath: [Key("scaling"), Key("replicas")], debugDescription: ""))
        #expect(ContractErrorMiddleware.field(of: wrong) == "scaling.replicas")
        #expect(ContractErrorMiddleware.reason(of: wrong) == "must be a whole number")
        #expect(ContractErrorMiddleware.field(of: .dataCorrupted(.init(codingPath: [], debugDescription: "not JSON"))) == nil)
    }
}
