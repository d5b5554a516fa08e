import TestSupport
import Testing

@testable import Orchestrator

@Suite("Orchestrator OpenAPI document")
struct OrchestratorAPIDocumentTests {
    @Test("every served route is documented, and every documented path is served")
    func routesMatch() throws {
        let documented = try OpenAPIDocumentCheck.documentedRoutes(OrchestratorOpenAPI.json)
        let served = Set(
            OrchestratorAPI.routes.map { "\($0.method.rawValue) \($0.path)" } + DeploymentAPI.routes.map { "\($0.method.rawValue) \($0.path)" })
        #expect(served.subtracting(documented).isEmpty, "served but not documented: \(served.subtracting(documented).sorted())")
        #expect(documented.subtracting(served).isEmpty, "documented but not served: \(documented.subtracting(served).sorted())")
    }
}
