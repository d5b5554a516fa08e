import Foundation
package import Hummingbird
package import HummingbirdTesting

/// An answer of a service's router in process (`app.test(.router)`), with its JSON read.
package struct RouterAnswer {
    package var status: HTTPResponse.Status
    package var json: [String: Any]?
    package var body: String

    package var error: [String: Any]? { json?["error"] as? [String: Any] }
    package var errorField: String? { error?["field"] as? String }
    package var errorCode: String? { error?["code"] as? String }
    package var items: [[String: Any]] { json?["items"] as? [[String: Any]] ?? [] }
}

/// The handlers' tests' client: JSON in, ``RouterAnswer`` out.
package struct RouterClient {
    package let client: any TestClientProtocol

    package init(_ client: any TestClientProtocol) { self.client = client }

    /// `body`, when given, is sent as `contentType`.
    package func call(
        _ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil, contentType: String = "application/json"
    ) async throws -> RouterAnswer {
        let response = try await client.execute(
            uri: uri, method: method, headers: body == nil ? [:] : [.contentType: contentType], body: body.map { ByteBuffer(string: $0) })
        let text = String(buffer: response.body)
        return RouterAnswer(status: response.status, json: try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], body: text)
    }

    package func get(_ uri: String) async throws -> RouterAnswer { try await call(.get, uri) }
}
