import Logging
import TestSupport
import Testing

@testable import Orchestrator

@Suite("Orchestrator OpenAPI document")
struct OrchestratorAPIDocumentTests {
    @Test("every served route is documented, and every documented path is served: generated, plain, and the document")
    func routesMatch() throws {
        let documented = try OpenAPIDocumentCheck.documentedRoutes(OrchestratorOpenAPI.json)
        let registry = InMemoryRegistry()
        let api = OrchestratorAPI(
            store: InMemoryOperationRepository(), registry: registry, resolver: PipelineResolver(registry: registry), committed: {},
            logger: Logger(label: "document"))
        let generated = try OpenAPIDocumentCheck.generatedRoutes { try api.registerHandlers(on: $0) }
        let plain = Set(DeploymentAPI.plainRoutes.map { "\($0.method.rawValue) \($0.path)" })
        #expect(generated.isDisjoint(with: plain), "served twice: \(generated.intersection(plain).sorted())")
        let served = generated.union(plain).union(["GET /openapi.json"])
        #expect(served.subtracting(documented).isEmpty, "served but not documented: \(served.subtracting(documented).sorted())")
        #expect(documented.subtracting(served).isEmpty, "documented but not served: \(documented.subtracting(served).sorted())")
    }
}
