import TestSupport
import Testing

@testable import Registry

@Suite("Registry OpenAPI document")
struct RegistryAPIDocumentTests {
    @Test("every served route is documented, and every documented path is served")
    func routesMatch() throws {
        let documented = try OpenAPIDocumentCheck.documentedRoutes(OpenAPIDocument.json)
        let served = Set(
            RegistryAPI.routes.map { "\($0.method.rawValue) \($0.path)" } + EnrollmentAPI.routes.map { "\($0.method.rawValue) \($0.path)" }
                + APIKeysAPI.routes.map { "\($0.method.rawValue) \($0.path)" })
        #expect(served.subtracting(documented).isEmpty, "served but not documented: \(served.subtracting(documented).sorted())")
        #expect(documented.subtracting(served).isEmpty, "documented but not served: \(documented.subtracting(served).sorted())")
    }
}
