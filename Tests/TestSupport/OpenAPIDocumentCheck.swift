package import Foundation
import HTTPTypes
package import OpenAPIRuntime
import Synchronization

/// The check every service's OpenAPI document gets in Swift: it describes exactly the routes the
/// service serves. That it is valid OpenAPI 3.1, and that the service's answers match it, is
/// `scripts/check-contracts`'s part.
package enum OpenAPIDocumentCheck {
    /// `METHOD /path` of every operation in the document.
    package static func documentedRoutes(_ json: Data) throws -> Set<String> {
        let document = try JSONSerialization.jsonObject(with: json) as? [String: Any]
        let paths = document?["paths"] as? [String: [String: Any]] ?? [:]
        return Set(
            paths.flatMap { path, operations in
                operations.keys.filter { ["get", "post", "put", "patch", "delete"].contains($0) }.map { "\($0.uppercased()) \(path)" }
            })
    }

    /// The routes a generated server (swift-openapi-generator's `registerHandlers`) serves, as
    /// `GET /v1/models/{model_id}`: `register` is given a transport that records them.
    package static func generatedRoutes(
        _ register: (_ transport: any ServerTransport) throws -> Void
    ) rethrows -> Set<String> {
        let transport = RecordingTransport()
        try register(transport)
        return transport.routes.withLock { $0 }
    }

    private final class RecordingTransport: ServerTransport {
        let routes = Mutex<Set<String>>([])

        func register(
            _ handler: @escaping @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?),
            method: HTTPRequest.Method, path: String
        ) throws {
            routes.withLock { _ = $0.insert("\(method.rawValue) \(path)") }
        }
    }
}
