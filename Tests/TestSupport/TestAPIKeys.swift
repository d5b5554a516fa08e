package import Foundation
package import ServiceRuntime

/// API keys for the tests, signed with the run's secret as the registry signs its keys.
package enum TestAPIKeys {
    /// The key every test request carries unless it says otherwise: an admin named `test-admin`
    /// (the orchestrator's audit trail says `key:test-admin`). Nil outside `scripts/test`.
    package static let admin: String? = try? mint(role: .admin, name: "test-admin")

    /// A new key of `role`, expiring at `expiresAt` (never when nil).
    package static func mint(role: APIRole, name: String, id: String = UUID().uuidString.lowercased(), expiresAt: Date? = nil) throws -> String {
        let environment = try TestEnvironment.current()
        let signer = try APIKeySigner.load(path: environment.apiSigningKey.path, variable: "MODELFLEET_API_SIGNING_KEY_FILE")
        return signer.mint(APIPrincipal(keyID: id, name: name, role: role, expiresAt: expiresAt))
    }
}
