import ChildProcesses
import Foundation
import TestSupport
import Testing

@testable import Registry

@Suite("Registry OpenAPI document")
struct RegistryAPIDocumentTests {
    private var document: [String: Any] {
        get throws {
            try #require(try JSONSerialization.jsonObject(with: OpenAPIDocument.json) as? [String: Any])
        }
    }

    @Test("every served route is documented, and every documented path is served")
    func routesMatch() throws {
        let paths = try #require(try document["paths"] as? [String: [String: Any]])
        let documented = Set(
            paths.flatMap { path, operations in
                operations.keys.filter { ["get", "post", "put", "patch", "delete"].contains($0) }.map { "\($0.uppercased()) \(path)" }
            })
        let served = Set(RegistryAPI.routes.map { "\($0.method.rawValue) \($0.path)" })
        #expect(served.subtracting(documented).isEmpty, "served but not documented: \(served.subtracting(documented).sorted())")
        #expect(documented.subtracting(served).isEmpty, "documented but not served: \(documented.subtracting(served).sorted())")
    }

    @Test("the document is valid OpenAPI 3.1 (openapi-spec-validator)")
    func valid() throws {
        #expect(try document["openapi"] as? String == "3.1.0")
        let environment = try TestEnvironment.current()
        let file = try environment.makeScratchDirectory("openapi").appendingPathComponent("registry.json")
        try OpenAPIDocument.json.write(to: file)
        let output = environment.scratch.appendingPathComponent("openapi-\(UUID().uuidString).log")
        let validator = try ChildProcess(
            executable: "/usr/bin/env",
            arguments: ["python3", "-m", "openapi_spec_validator", file.path],
            environment: ProcessInfo.processInfo.environment,
            outputFile: output
        )
        let status = try #require(try validator.waitForExitSync(timeout: 60))
        #expect(status == 0, "openapi-spec-validator: \(validator.output)")
    }
}
