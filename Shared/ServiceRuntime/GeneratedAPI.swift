import FleetContract
package import Hummingbird
import OpenAPIHummingbird
package import OpenAPIRuntime
import OpenAPISupport

extension Router where Context == BasicRequestContext {
    /// Serves a service whose REST API is its contract's generated server (decision 91): the
    /// operations through `register` (the generated `registerHandlers`), with the contract's JSON
    /// options and its refusals named by ``ContractErrorMiddleware``, and the document itself at
    /// `GET /openapi.json`, a plain route.
    package func addContract(
        document: String,
        register: (_ transport: any ServerTransport, _ configuration: Configuration, _ middlewares: [any ServerMiddleware]) throws -> Void
    ) throws {
        get("/openapi.json") { _, _ in Response.openAPIDocument(document) }
        try register(self, .contract, [ContractErrorMiddleware(document: document)])
    }
}

extension Response {
    /// A service's contract as `GET /openapi.json` answers it (`<Name>OpenAPI.text`).
    package static func openAPIDocument(_ json: String) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: json)))
    }
}

/// A domain value as the generated type of its contract's answer (decision 92). One that does not
/// fit its schema is the service's own fault: APIErrorMiddleware logs the decoding error and
/// answers 500, and the handler tests, which read every answer, fail.
package func answer<Answer: Decodable>(_ value: some Encodable) throws -> Answer {
    try ContractCoding.recast(value, as: Answer.self)
}
