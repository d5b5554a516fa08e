package import Foundation

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
}
