import FleetContract
import Foundation
import Hummingbird
import Logging
import MQTT
import PostgresNIO
import RegistryContract
import ServiceLifecycle
import ServiceRuntime

/// An API key as the registry lists it: never its token.
struct APIKey: Encodable, Sendable {
    var id: UUID
    var name: String
    var role: APIRole
    var createdAt: Date
    var expiresAt: Date?
    var revokedAt: Date?

    var status: String {
        if revokedAt != nil { return "revoked" }
        if let expiresAt, expiresAt <= Date() { return "expired" }
        return "active"
    }

    private enum CodingKeys: String, CodingKey {
        case id, name, role, status
        case createdAt = "created_at"
        case expiresAt = "expires_at"
        case revokedAt = "revoked_at"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(name, forKey: .name)
        try container.encode(role, forKey: .role)
        try container.encode(status, forKey: .status)
        try container.encode(createdAt, forKey: .createdAt)
        try container.encode(expiresAt, forKey: .expiresAt)
        try container.encode(revokedAt, forKey: .revokedAt)
    }
}

/// Keys in `registry.api_keys`: their names, roles and revocations. The tokens themselves are
/// signed, not stored.
struct APIKeyStore: Sendable {
    let client: PostgresClient
    let logger: Logger

    private static let columns = "id, name, role, created_at, expires_at, revoked_at"

    private func decode(_ rows: PostgresRowSequence) async throws -> [APIKey] {
        var keys: [APIKey] = []
        for try await (id, name, role, created, expires, revoked) in rows.decode((UUID, String, String, Date, Date?, Date?).self) {
            keys.append(
                APIKey(id: id, name: name, role: APIRole(rawValue: role) ?? .viewer, createdAt: created, expiresAt: expires, revokedAt: revoked))
        }
        return keys
    }

    func create(name: String, role: APIRole, expiresAt: Date?) async throws -> APIKey {
        let rows = try await client.query(
            """
            INSERT INTO registry.api_keys (id, name, role, expires_at) VALUES (\(UUID()), \(name), \(role.rawValue), \(expiresAt))
            RETURNING \(unescaped: Self.columns)
            """, logger: logger)
        guard let key = try await decode(rows).first else { preconditionFailure("INSERT … RETURNING returned no row") }
        return key
    }

    func all() async throws -> [APIKey] {
        try await decode(try await client.query("SELECT \(unescaped: Self.columns) FROM registry.api_keys ORDER BY seq", logger: logger))
    }

    func revoke(id: UUID) async throws -> APIKey? {
        let rows = try await client.query(
            "UPDATE registry.api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = \(id) RETURNING \(unescaped: Self.columns)",
            logger: logger)
        return try await decode(rows).first
    }

    /// The ids of the revoked keys that have not expired (an expired key is refused anyway).
    func revokedIDs() async throws -> [String] {
        let rows = try await client.query(
            "SELECT id FROM registry.api_keys WHERE revoked_at IS NOT NULL AND (expires_at IS NULL OR expires_at > now()) ORDER BY seq",
            logger: logger)
        var ids: [String] = []
        for try await id in rows.decode(UUID.self) { ids.append(id.uuidString.lowercased()) }
        return ids
    }

    /// Whether an admin key is active.
    func hasActiveAdmin() async throws -> Bool {
        let rows = try await client.query(
            """
            SELECT count(*) FROM registry.api_keys
            WHERE role = 'admin' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
            """, logger: logger)
        for try await count in rows.decode(Int64.self) { return count > 0 }
        return false
    }
}

/// `/v1/keys`: API keys made, listed and revoked (admin only; docs/security.md).
struct APIKeysAPI: Sendable {
    let store: APIKeyStore
    let signer: APIKeySigner
    let revocations: APIKeyRevocationPublisher
    let logger: Logger

    /// A key made: the record and its token, shown this once.
    struct Created: Encodable, Sendable {
        var key: APIKey
        var token: String
    }

    func create(name: String, role: APIRole, expiresInDays: Double?) async throws -> Created {
        let name = try Validate.name(name, field: "name")
        if let days = expiresInDays, !(days > 0 && days <= 3650) {
            throw APIError.invalid(field: "expires_in_days", "must be above 0 and at most 3650")
        }
        let key = try await store.create(name: name, role: role, expiresAt: expiresInDays.map { Date().addingTimeInterval($0 * 86_400) })
        let token = signer.mint(APIPrincipal(keyID: key.id.uuidString.lowercased(), name: key.name, role: key.role, expiresAt: key.expiresAt))
        logger.notice("API key created", metadata: ["key": "\(key.name)", "role": "\(role.rawValue)", "by": "\(APIPrincipal.current?.name ?? "-")"])
        return Created(key: key, token: token)
    }

    /// Revokes a key and publishes the revoked list: every service refuses the key once it has it.
    func revoke(id: UUID) async throws -> APIKey {
        guard let key = try await store.revoke(id: id) else { throw APIError.notFound("no API key \(id.uuidString.lowercased())") }
        try await revocations.publish()
        logger.notice("API key revoked", metadata: ["key": "\(key.name)", "by": "\(APIPrincipal.current?.name ?? "-")"])
        return key
    }
}

extension RegistryAPI {
    private func keysAPI() throws(APIError) -> APIKeysAPI {
        guard let keys else {
            throw APIError.notFound("API keys are off: the registry runs without MODELFLEET_API_SIGNING_KEY_FILE (docs/security.md)")
        }
        return keys
    }

    func createAPIKey(_ input: Operations.CreateAPIKey.Input) async throws -> Operations.CreateAPIKey.Output {
        let keys = try keysAPI()
        let body =
            switch input.body {
            case .json(let json): json
            }
        let created = try await keys.create(name: body.name, role: try ContractCoding.recast(body.role), expiresInDays: body.expiresInDays)
        return .created(.init(body: .json(try answer(created))))
    }

    func listAPIKeys(_ input: Operations.ListAPIKeys.Input) async throws -> Operations.ListAPIKeys.Output {
        .ok(.init(body: .json(try answer(Page(items: try await keysAPI().store.all(), nextCursor: nil)))))
    }

    func revokeAPIKey(_ input: Operations.RevokeAPIKey.Input) async throws -> Operations.RevokeAPIKey.Output {
        let keys = try keysAPI()
        return .ok(.init(body: .json(try answer(try await keys.revoke(id: try Validate.uuid(input.path.keyId, field: "key_id"))))))
    }
}

/// Publishes the revoked keys (retained) on ``Topic/apiKeyRevocations``.
struct APIKeyRevocationPublisher: Sendable {
    let store: APIKeyStore
    let mqtt: MQTTClient

    func publish() async throws {
        let event = Envelope(payload: APIKeyRevocations(revoked: try await store.revokedIDs()))
        try await mqtt.publish(Topic.apiKeyRevocations.path, payload: try event.encoded(), qos: .atLeastOnce, retain: true)
    }
}

/// At start, once migrated: the first admin key, when there is none and
/// `MODELFLEET_BOOTSTRAP_KEY_FILE` names a file that does not exist yet (written with mode 0600,
/// said in the log); and the revoked list, published again.
struct APIKeyBootstrap: Service {
    let database: DatabaseService
    let store: APIKeyStore
    let signer: APIKeySigner
    let revocations: APIKeyRevocationPublisher
    let bootstrapFile: String?
    let logger: Logger

    func run() async throws {
        try await database.waitUntilMigrated()
        if let bootstrapFile, !FileManager.default.fileExists(atPath: bootstrapFile), try await !store.hasActiveAdmin() {
            let key = try await store.create(name: "bootstrap-admin", role: .admin, expiresAt: nil)
            let token = signer.mint(APIPrincipal(keyID: key.id.uuidString.lowercased(), name: key.name, role: .admin, expiresAt: nil))
            let descriptor = open(bootstrapFile, O_WRONLY | O_CREAT | O_EXCL, 0o600)
            guard descriptor >= 0 else {
                logger.error("could not write the bootstrap admin key", metadata: ["file": "\(bootstrapFile)", "errno": "\(errno)"])
                _ = try await store.revoke(id: key.id)
                return
            }
            let bytes = Array((token + "\n").utf8)
            _ = write(descriptor, bytes, bytes.count)
            close(descriptor)
            logger.notice("the first admin API key is in \(bootstrapFile) (mode 0600); make your own keys with it and revoke it")
        }
        // Retried until the broker takes it: a service started meanwhile must learn the list.
        while !Task.isCancelled {
            do {
                try await revocations.publish()
                break
            } catch {
                logger.warning("could not publish the revoked API keys; trying again", metadata: ["error": "\(error)"])
                try? await Task.sleep(for: .seconds(1))
            }
        }
        // A service that returns would stop the others.
        try? await gracefulShutdown()
    }
}
