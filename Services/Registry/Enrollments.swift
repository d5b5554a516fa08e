import FleetContract
import Foundation
import Hummingbird
import Logging
import MQTT
import PostgresNIO
import RegistryContract
import ServiceRuntime

/// An agent's enrolment: the broker account it connects with (username = agent id). The
/// password is shown once, in the answer to the enrolment, and kept only as the broker's hash.
struct Enrollment: Encodable, Sendable {
    var agentID: String
    var siteID: String
    var enrolledAt: Date
    var revokedAt: Date?

    var status: String { revokedAt == nil ? "active" : "revoked" }

    private enum CodingKeys: String, CodingKey {
        case agentID = "agent_id"
        case siteID = "site_id"
        case status
        case enrolledAt = "enrolled_at"
        case revokedAt = "revoked_at"
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(agentID, forKey: .agentID)
        try container.encode(siteID, forKey: .siteID)
        try container.encode(status, forKey: .status)
        try container.encode(enrolledAt, forKey: .enrolledAt)
        try container.encode(revokedAt, forKey: .revokedAt)
    }
}

/// The answer to an enrolment: the record, the credentials (this once) and a starting
/// configuration file for the agent (`docs/edge-agent.md`), to edit for its capacity and devices.
struct NewEnrollment: Encodable, Sendable {
    struct Configuration: Encodable, Sendable {
        struct Capacity: Encodable, Sendable {
            var cpuCores: Double
            var memoryBytes: Int64
            var gpus: [AgentHello.GPU]
            private enum CodingKeys: String, CodingKey {
                case cpuCores = "cpu_cores"
                case memoryBytes = "memory_bytes"
                case gpus
            }
        }

        var agentID: String
        var site: AgentHello.Site
        var serverName: String
        var mqttURL: String
        var mqttUsername: String
        var mqttPassword: String
        var capacity: Capacity
        var devices: [AgentHello.Device]

        private enum CodingKeys: String, CodingKey {
            case agentID = "agent_id"
            case site
            case serverName = "server_name"
            case mqttURL = "mqtt_url"
            case mqttUsername = "mqtt_username"
            case mqttPassword = "mqtt_password"
            case capacity, devices
        }
    }

    var enrollment: Enrollment
    var mqttUsername: String
    var mqttPassword: String
    var configuration: Configuration

    private enum CodingKeys: String, CodingKey {
        case enrollment
        case mqttUsername = "mqtt_username"
        case mqttPassword = "mqtt_password"
        case configuration
    }
}

/// Enrolments in `registry.agent_enrollments`; the broker's dynamic security plugin holds the
/// accounts themselves.
struct EnrollmentStore: Sendable {
    let client: PostgresClient
    let logger: Logger

    private static let columns = "agent_id, site_id, enrolled_at, revoked_at"

    private func decode(_ rows: PostgresRowSequence) async throws -> [(seq: Int64, Enrollment)] {
        var found: [(Int64, Enrollment)] = []
        for try await (seq, agent, site, enrolled, revoked) in rows.decode((Int64, String, String, Date, Date?).self) {
            found.append((seq, Enrollment(agentID: agent, siteID: site, enrolledAt: enrolled, revokedAt: revoked)))
        }
        return found
    }

    func enrollment(agentID: String) async throws -> Enrollment? {
        let rows = try await client.query(
            "SELECT seq, \(unescaped: Self.columns) FROM registry.agent_enrollments WHERE agent_id = \(agentID)", logger: logger)
        return try await decode(rows).first?.1
    }

    /// Records a new enrolment (or a renewed one: a new time, no longer revoked).
    func enroll(agentID: String, siteID: String) async throws -> Enrollment {
        let rows = try await client.query(
            """
            INSERT INTO registry.agent_enrollments (agent_id, site_id) VALUES (\(agentID), \(siteID))
            ON CONFLICT (agent_id) DO UPDATE SET site_id = EXCLUDED.site_id, enrolled_at = now(), revoked_at = NULL,
                seq = nextval('registry.agent_enrollments_seq_seq')
            RETURNING seq, \(unescaped: Self.columns)
            """, logger: logger)
        guard let enrollment = try await decode(rows).first?.1 else { preconditionFailure("INSERT … RETURNING returned no row") }
        return enrollment
    }

    /// Marks the enrolment revoked (keeping the first revocation's time); nil when there is none.
    func revoke(agentID: String) async throws -> Enrollment? {
        let rows = try await client.query(
            """
            UPDATE registry.agent_enrollments SET revoked_at = coalesce(revoked_at, now()) WHERE agent_id = \(agentID)
            RETURNING seq, \(unescaped: Self.columns)
            """, logger: logger)
        return try await decode(rows).first?.1
    }

    /// Enrolments in the order of their last enrolment after position `after`.
    func list(site: String?, active: Bool?, limit: Int, after: Int64) async throws -> Page<Enrollment> {
        let rows = try await client.query(
            """
            SELECT seq, \(unescaped: Self.columns) FROM registry.agent_enrollments
            WHERE seq > \(after) AND (\(site)::text IS NULL OR site_id = \(site))
              AND (\(active)::boolean IS NULL OR (revoked_at IS NULL) = \(active))
            ORDER BY seq LIMIT \(limit + 1)
            """, logger: logger)
        let found = try await decode(rows)
        let page = found.prefix(limit)
        return Page(items: page.map(\.1), nextCursor: found.count > limit ? page.last.map { Cursor.encode($0.seq) } : nil)
    }
}

/// `/v1/enrollments`: agents' broker accounts, made and revoked live in the broker
/// (docs/security.md).
struct EnrollmentAPI: Sendable {
    let store: EnrollmentStore
    let accounts: AgentAccounts
    /// Where the revocations are announced (``Topic/agentRevocations``).
    let mqtt: MQTTClient
    let inventory: any RegistryRepository
    /// The broker address written into agents' configuration files.
    let agentMQTTURL: String
    let logger: Logger

    /// Enrols `agentID` at `siteID`: its broker account, then the record. An agent enrolled
    /// already is refused unless `replace`, which gives it a new password.
    func enroll(agentID: String, siteID: String, serverName: String?, replace: Bool) async throws -> NewEnrollment {
        let agentID = try Validate.identifier(agentID, field: "agent_id")
        let siteID = try Validate.identifier(siteID, field: "site_id")
        let serverName = try serverName.map { name throws(APIError) in try Validate.name(name, field: "server_name") } ?? agentID
        if !replace, let existing = try await store.enrollment(agentID: agentID), existing.revokedAt == nil {
            throw APIError(
                .conflict, code: "already_enrolled",
                message:
                    "agent '\(agentID)' is enrolled since \(existing.enrolledAt); revoke it first, or pass \"replace\": true for new credentials",
                field: "agent_id")
        }
        // The broker first: an enrolment recorded is one the broker knows. A failure after it
        // leaves an account without a record, which the next enrolment replaces.
        let password = Self.newPassword()
        try await changeAccounts { () async throws(AgentAccountsError) in
            try await accounts.enroll(TopicLevel(uncheckedAgentID: agentID), password: password)
        }
        let enrollment = try await store.enroll(agentID: agentID, siteID: siteID)
        logger.notice("agent enrolled", metadata: ["agent_id": "\(agentID)", "site_id": "\(siteID)"])
        let siteName = try await inventory.site(id: siteID)?.name ?? siteID
        return NewEnrollment(
            enrollment: enrollment, mqttUsername: agentID, mqttPassword: password,
            configuration: .init(
                agentID: agentID, site: AgentHello.Site(id: siteID, name: siteName), serverName: serverName, mqttURL: agentMQTTURL,
                mqttUsername: agentID, mqttPassword: password, capacity: .init(cpuCores: 4, memoryBytes: 8 << 30, gpus: []), devices: []))
    }

    func enrollment(agentID: String) async throws -> Enrollment {
        let id = try Validate.identifier(agentID, field: "agent_id")
        guard let enrollment = try await store.enrollment(agentID: id) else { throw APIError.notFound("agent '\(id)' was never enrolled") }
        return enrollment
    }

    /// Removes the broker account (which disconnects the agent) and marks the enrolment revoked.
    /// Revoking again is harmless: the account is removed again.
    func revoke(agentID: String) async throws -> Enrollment {
        let id = try Validate.identifier(agentID, field: "agent_id")
        guard try await store.enrollment(agentID: id) != nil else { throw APIError.notFound("agent '\(id)' was never enrolled") }
        try await changeAccounts { () async throws(AgentAccountsError) in try await accounts.revoke(TopicLevel(uncheckedAgentID: id)) }
        guard let enrollment = try await store.revoke(agentID: id) else { throw APIError.notFound("agent '\(id)' was never enrolled") }
        logger.notice("agent enrollment revoked", metadata: ["agent_id": "\(id)"])
        await announceRevocation(enrollment)
        return enrollment
    }

    /// Tells the gateways, which then take the agent as offline: the broker's kick has no will.
    /// Not announced (the broker unreachable right after the revocation): the gateways see the
    /// agent go silent, and offline after their heartbeat timeout.
    private func announceRevocation(_ enrollment: Enrollment) async {
        do {
            let event = Envelope(payload: AgentRevocation(agentID: enrollment.agentID, revokedAt: enrollment.revokedAt ?? Date()))
            try await mqtt.publish(Topic.agentRevocations.path, payload: try event.encoded(), qos: .atLeastOnce)
        } catch {
            logger.warning("could not announce a revocation", metadata: ["agent_id": "\(enrollment.agentID)", "error": "\(error)"])
        }
    }

    /// 503 `broker_unavailable` when the broker's plugin cannot be reached or refuses.
    private func changeAccounts(_ change: () async throws(AgentAccountsError) -> Void) async throws(APIError) {
        do {
            try await change()
        } catch {
            logger.error("the broker's accounts could not be changed", metadata: ["error": "\(error)"])
            throw APIError(.serviceUnavailable, code: "broker_unavailable", message: "\(error)")
        }
    }

    /// 32 random bytes, URL-safe base64: the password an agent is given.
    static func newPassword() -> String {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        return Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}

extension TopicLevel {
    /// An id already checked by `Validate.identifier`.
    fileprivate init(uncheckedAgentID value: String) throws(AgentAccountsError) {
        do {
            try self.init(value)
        } catch {
            throw AgentAccountsError.refused(command: "enroll", reason: error.reason)
        }
    }
}

extension RegistryAPI {
    private func enrollmentAPI() throws(APIError) -> EnrollmentAPI {
        guard let enrollments else { throw APIError.notFound("this registry serves no enrolments") }
        return enrollments
    }

    func enrollAgent(_ input: Operations.EnrollAgent.Input) async throws -> Operations.EnrollAgent.Output {
        let enrollments = try enrollmentAPI()
        let body =
            switch input.body {
            case .json(let json): json
            }
        let enrolled = try await enrollments.enroll(
            agentID: body.agentId, siteID: body.siteId, serverName: body.serverName, replace: body.replace ?? false)
        return .created(.init(body: .json(try answer(enrolled))))
    }

    func listEnrollments(_ input: Operations.ListEnrollments.Input) async throws -> Operations.ListEnrollments.Output {
        let enrollments = try enrollmentAPI()
        let query = input.query
        let site = try query.siteId.map { text throws(APIError) in try Validate.identifier(text, field: "site_id") }
        let page = try await enrollments.store.list(
            site: site, active: query.status.map { $0 == .active }, limit: try Validate.limit(query.limit), after: try Cursor.decode(query.cursor))
        return .ok(.init(body: .json(try answer(page))))
    }

    func getEnrollment(_ input: Operations.GetEnrollment.Input) async throws -> Operations.GetEnrollment.Output {
        .ok(.init(body: .json(try answer(try await enrollmentAPI().enrollment(agentID: input.path.agentId)))))
    }

    func revokeEnrollment(_ input: Operations.RevokeEnrollment.Input) async throws -> Operations.RevokeEnrollment.Output {
        .ok(.init(body: .json(try answer(try await enrollmentAPI().revoke(agentID: input.path.agentId)))))
    }
}
