import ChildProcesses
package import Foundation

/// The checks every service's OpenAPI document gets: it describes exactly the routes the
/// service serves, and `openapi-spec-validator` accepts it as OpenAPI 3.1.
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

    /// The document's `openapi` version.
    package static func version(_ json: Data) throws -> String? {
        (try JSONSerialization.jsonObject(with: json) as? [String: Any])?["openapi"] as? String
    }

    /// Runs openapi-spec-validator on the document; its exit status (0: valid) and output.
    package static func validate(_ json: Data, name: String) throws -> (status: Int32?, output: String) {
        let environment = try TestEnvironment.current()
        let file = try environment.makeScratchDirectory("openapi").appendingPathComponent("\(name).json")
        try json.write(to: file)
        let validator = try ChildProcess(
            executable: "/usr/bin/env",
            arguments: ["python3", "-m", "openapi_spec_validator", file.path],
            environment: ProcessInfo.processInfo.environment,
            outputFile: environment.scratch.appendingPathComponent("openapi-\(UUID().uuidString).log")
        )
        return (try validator.waitForExitSync(timeout: 60), validator.output)
    }
}
