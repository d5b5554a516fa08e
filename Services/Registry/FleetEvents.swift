import FleetContract
import Foundation
import Logging
import MQTT
import Metrics
import PostgresNIO
import ServiceLifecycle
import ServiceRuntime

/// What a hello or presence event did to the inventory.
enum EventOutcome: String, Sendable {
    case applied
    /// Older than what is stored: ignored.
    case stale
    /// A presence event for an agent that never said hello.
    case unknownAgent = "unknown_agent"
}

/// Applies the device gateway's agent events to the inventory: a hello registers or updates a
/// server and reconciles its devices; a presence event sets it online or offline.
struct InventoryUpdater: Sendable {
    let client: PostgresClient
    let logger: Logger

    /// Devices added and devices newly gone, for the change events.
    struct HelloResult: Sendable {
        var outcome: EventOutcome
        var added: [String] = []
        var gone: [String] = []
    }

    /// Applies hellos of different agents in one transaction, in set-based statements, and
    /// returns each one's result in order. One transaction per hello (six statements each, eight
    /// at once) took the registry 3.6 ms of CPU a hello, and kept 1,000 servers from being online
    /// until 1.5–3 s after the gateway had them all (decision 49).
    func apply(_ hellos: [AgentHello]) async throws -> [HelloResult] {
        guard !hellos.isEmpty else { return [] }
        precondition(Set(hellos.map(\.agentID)).count == hellos.count, "one hello per agent in a transaction")
        return try await client.withTransaction(logger: logger) { connection -> [HelloResult] in
            // A hello is the agent's whole account of itself, repeated on every connect and every
            // 5 minutes: one lost in a database crash is told again, so its commit does not wait
            // for the disk (the wait capped a 1,000-agent fleet's registration, decision 37).
            try await connection.query("SET LOCAL synchronous_commit = off", logger: logger)
            let fresh = try await lockServers(keepingNewer: hellos, on: connection)
            guard !fresh.isEmpty else { return hellos.map { _ in HelloResult(outcome: .stale) } }
            try await storeSites(of: fresh, on: connection)
            try await storeServers(of: fresh, on: connection)
            let results = try await reconcileDevices(of: fresh, on: connection)
            return hellos.map { results[$0.agentID] ?? HelloResult(outcome: .stale) }
        }
    }

    /// Locks the known servers' rows, in one order, so that two gateways' copies of one hello (or
    /// two batches) serialise without deadlocking; returns the hellos newer than each server's last.
    private func lockServers(keepingNewer hellos: [AgentHello], on connection: PostgresConnection) async throws -> [AgentHello] {
        var previous: [String: Date] = [:]
        for try await (id, helloAt) in try await connection.query(
            "SELECT id, hello_at FROM registry.servers WHERE id = ANY(\(hellos.map(\.agentID))) ORDER BY id FOR UPDATE",
            logger: logger
        ).decode((String, Date?).self) {
            previous[id] = helloAt
        }
        return hellos.filter { hello in previous[hello.agentID].map { $0 < hello.observedAt } ?? true }
    }

    /// The sites, without locking them against their other hellos: an upsert's DO UPDATE locks the
    /// row FOR UPDATE until commit even when nothing changes, which conflicts with the FOR KEY
    /// SHARE lock each server row takes on its site (the foreign key), so a site's hellos ran one
    /// after the other (decision 48). An UPDATE that matches no row locks nothing; a rename takes
    /// FOR NO KEY UPDATE, which does not conflict.
    private func storeSites(of hellos: [AgentHello], on connection: PostgresConnection) async throws {
        var siteNames: [String: String] = [:]
        for hello in hellos { siteNames[hello.site.id] = hello.site.name }
        // In one order too: two transactions inserting the same new sites wait for each other.
        let siteIDs = siteNames.keys.sorted()
        let names = siteIDs.map { siteNames[$0]! }
        try await connection.query(
            "INSERT INTO registry.sites (id, name) SELECT * FROM unnest(\(siteIDs)::text[], \(names)::text[]) ON CONFLICT (id) DO NOTHING",
            logger: logger)
        try await connection.query(
            """
            UPDATE registry.sites s SET name = t.name FROM unnest(\(siteIDs)::text[], \(names)::text[]) AS t (id, name)
            WHERE s.id = t.id AND s.name IS DISTINCT FROM t.name
            """, logger: logger)
    }

    /// Each server as its hello describes it. A hello means the agent is connected: online, unless
    /// a newer presence event said otherwise.
    private func storeServers(of hellos: [AgentHello], on connection: PostgresConnection) async throws {
        let gpus = try hellos.map { String(decoding: try ContractCoding.encoder.encode($0.capacity.gpus), as: UTF8.self) }
        try await connection.query(
            """
            INSERT INTO registry.servers (id, site_id, name, agent_version, cpu_cores, memory_bytes, gpus, supports_pipelines,
                                          online, last_seen, hello_at, presence_at)
            SELECT id, site_id, name, agent_version, cpu_cores, memory_bytes, gpus::jsonb, supports_pipelines, true, observed_at,
                   observed_at, observed_at
            FROM unnest(\(hellos.map(\.agentID))::text[], \(hellos.map(\.site.id))::text[], \(hellos.map(\.serverName))::text[],
                        \(hellos.map(\.agentVersion))::text[], \(hellos.map(\.capacity.cpuCores))::float8[],
                        \(hellos.map(\.capacity.memoryBytes))::bigint[], \(gpus)::text[], \(hellos.map(\.supportsPipelines))::boolean[],
                        \(hellos.map(\.observedAt))::timestamptz[])
                 AS t (id, site_id, name, agent_version, cpu_cores, memory_bytes, gpus, supports_pipelines, observed_at)
            ON CONFLICT (id) DO UPDATE SET
                site_id = excluded.site_id, name = excluded.name, agent_version = excluded.agent_version,
                cpu_cores = excluded.cpu_cores, memory_bytes = excluded.memory_bytes, gpus = excluded.gpus,
                supports_pipelines = excluded.supports_pipelines, hello_at = excluded.hello_at,
                online = CASE WHEN registry.servers.presence_at IS NULL OR registry.servers.presence_at < excluded.hello_at
                              THEN true ELSE registry.servers.online END,
                last_seen = greatest(registry.servers.last_seen, excluded.last_seen),
                presence_at = greatest(registry.servers.presence_at, excluded.presence_at)
            """,
            logger: logger
        )
    }

    /// Every listed device in one statement, and the devices a server no longer lists marked gone
    /// (never deleted); returns each server's devices added and newly gone. An operator's name for
    /// a device stays; the agent's name is only the first one.
    private func reconcileDevices(of hellos: [AgentHello], on connection: PostgresConnection) async throws -> [String: HelloResult] {
        var known: [String: [String: Bool]] = [:]
        for try await (server, key, gone) in try await connection.query(
            "SELECT server_id, key, gone FROM registry.devices WHERE server_id = ANY(\(hellos.map(\.agentID)))",
            logger: logger
        ).decode((String, String, Bool).self) {
            known[server, default: [:]][key] = gone
        }
        let listed = hellos.flatMap { hello in hello.devices.map { (hello.agentID, hello.site.id, $0) } }
        try await connection.query(
            """
            INSERT INTO registry.devices (id, server_id, site_id, key, name, kind)
            SELECT gen_random_uuid(), server_id, site_id, key, name, kind
            FROM unnest(\(listed.map(\.0))::text[], \(listed.map(\.1))::text[], \(listed.map(\.2.key))::text[],
                        \(listed.map(\.2.name))::text[], \(listed.map(\.2.kind))::text[])
                 AS t (server_id, site_id, key, name, kind)
            ON CONFLICT (server_id, key) DO UPDATE SET
                kind = excluded.kind, site_id = excluded.site_id, gone = false,
                updated_at = CASE WHEN registry.devices.gone THEN now() ELSE registry.devices.updated_at END
            """,
            logger: logger
        )
        var results: [String: HelloResult] = [:]
        var gone: [(server: String, key: String)] = []
        for hello in hellos {
            let devices = known[hello.agentID] ?? [:]
            let keys = Set(hello.devices.map(\.key))
            var result = HelloResult(outcome: .applied)
            result.added = hello.devices.map(\.key).filter { devices[$0] != false }
            result.gone = devices.filter { key, isGone in !isGone && !keys.contains(key) }.map(\.key).sorted()
            gone += result.gone.map { (hello.agentID, $0) }
            results[hello.agentID] = result
        }
        if !gone.isEmpty {
            try await connection.query(
                """
                UPDATE registry.devices d SET gone = true, updated_at = now()
                FROM unnest(\(gone.map(\.server))::text[], \(gone.map(\.key))::text[]) AS t (server_id, key)
                WHERE d.server_id = t.server_id AND d.key = t.key
                """, logger: logger)
        }
        return results
    }

    func apply(_ presence: AgentPresence) async throws -> EventOutcome {
        let rows = try await client.query(
            """
            UPDATE registry.servers
            SET online = \(presence.state == .online), presence_at = \(presence.observedAt),
                last_seen = greatest(last_seen, \(presence.observedAt))
            WHERE id = \(presence.agentID) AND (presence_at IS NULL OR presence_at < \(presence.observedAt))
            RETURNING id
            """,
            logger: logger
        )
        if try await rows.decode(String.self).first(where: { _ in true }) != nil { return .applied }
        let exists =
            try await client.query("SELECT 1 FROM registry.servers WHERE id = \(presence.agentID)", logger: logger)
            .decode(Int.self).first(where: { _ in true }) != nil
        return exists ? .stale : .unknownAgent
    }
}

/// Consumes the gateway's hello and presence events (shared between registry replicas) and
/// publishes the registry's change events after each applied one.
struct AgentEventConsumer: Service {
    let mqtt: MQTTClient
    let database: DatabaseService
    let updater: InventoryUpdater
    let events: RegistryEvents
    let loops: LoopHealth
    /// The bound of each database step (``LoopHealth``).
    let stepTimeout: Duration
    let logger: Logger
    /// Set once both subscriptions are acknowledged: `/ready` waits for it, since agent events
    /// published before are not kept for the registry.
    let subscribed: SubscriptionFlag

    func run() async throws {
        try await database.waitUntilMigrated()
        let hellos = try await mqtt.subscribe(to: Topic.agentHelloEvents.shared(by: "registry"), qos: .atLeastOnce)
        let presences = try await mqtt.subscribe(to: Topic.agentPresenceEvents.shared(by: "registry"), qos: .atLeastOnce)
        subscribed.set(true)
        defer { subscribed.set(false) }
        await consumeUntilShutdown([hellos, presences]) { group in
            group.addTask { await hellos.forEachBatch(upTo: Self.hellosPerBatch) { await handleHellos($0) } }
            group.addTask { for await message in presences { await handlePresence(message) } }
        }
    }

    /// Hellos taken at once: whatever is queued when the consumer comes back for more.
    static let hellosPerBatch = 256
    /// Devices in one transaction: a hello may list up to 10,000.
    static let devicesPerTransaction = 20_000

    private func count(_ kind: String, _ outcome: String) {
        RegistryMetrics.agentEvents(kind, outcome).increment()
    }

    /// The message's payload, checked; nil (dropped, logged and counted) when it is malformed.
    private func decoded<Payload: ContractPayload>(
        _ message: MQTTMessage, kind: String, check: (Payload) throws -> Payload
    ) -> Payload? {
        do {
            return try check(Envelope<Payload>.decode(from: message.payload).payload)
        } catch {
            count(kind, "malformed")
            logger.warning("dropped a malformed agent event", metadata: ["kind": "\(kind)", "reason": "\(error)"])
            return nil
        }
    }

    /// Applies a batch of hellos in as few transactions as it takes (``InventoryUpdater/apply(_:)``)
    /// and announces what changed. Of one agent's hellos in a batch, the newest is applied; the
    /// others are older than it, so stale. A transaction that fails is tried again one hello at a
    /// time, so that one hello the database refuses does not lose the others.
    func handleHellos(_ messages: [MQTTMessage]) async {
        var newest: [String: AgentHello] = [:]
        var order: [String] = []
        for message in messages {
            guard let hello: AgentHello = decoded(message, kind: "hello", check: validated) else { continue }
            guard let kept = newest[hello.agentID] else {
                newest[hello.agentID] = hello
                order.append(hello.agentID)
                continue
            }
            count("hello", EventOutcome.stale.rawValue)
            if kept.observedAt < hello.observedAt { newest[hello.agentID] = hello }
        }
        var transaction: [AgentHello] = []
        var devices = 0
        for hello in order.map({ newest[$0]! }) {
            if !transaction.isEmpty && devices + hello.devices.count > Self.devicesPerTransaction {
                await apply(transaction)
                (transaction, devices) = ([], 0)
            }
            transaction.append(hello)
            devices += hello.devices.count
        }
        await apply(transaction)
    }

    private func apply(_ hellos: [AgentHello]) async {
        guard !hellos.isEmpty else { return }
        let results: [InventoryUpdater.HelloResult]
        do {
            results = try await loops.step("hellos", within: stepTimeout) { try await updater.apply(hellos) }
        } catch {
            // One by one helps when the database refused one hello, not when it did not answer.
            guard hellos.count > 1, !(error is StepTimedOut) else {
                for _ in hellos { count("hello", "failed") }
                logger.error(
                    "could not apply agent hellos; their agents send them again",
                    metadata: ["hellos": "\(hellos.count)", "first_agent_id": "\(hellos[0].agentID)", "error": "\(String(reflecting: error))"])
                return
            }
            logger.warning(
                "could not apply a batch of agent hellos; applying them one by one", metadata: ["hellos": "\(hellos.count)", "error": "\(error)"])
            for hello in hellos { await apply([hello]) }
            return
        }
        for (hello, result) in zip(hellos, results) {
            count("hello", result.outcome.rawValue)
            guard result.outcome == .applied else {
                logger.info("ignored a stale agent hello", metadata: ["agent_id": "\(hello.agentID)"])
                continue
            }
            logger.info(
                "agent hello applied",
                metadata: [
                    "agent_id": "\(hello.agentID)", "site": "\(hello.site.id)", "added": "\(result.added.count)", "gone": "\(result.gone.count)",
                ]
            )
            await events.publish(RegistryChange(kind: .serverPresence, serverID: hello.agentID, online: true))
            for key in result.added {
                await events.publish(RegistryChange(kind: .deviceChanged, serverID: hello.agentID, deviceKey: key, change: "added"))
            }
            for key in result.gone {
                await events.publish(RegistryChange(kind: .deviceChanged, serverID: hello.agentID, deviceKey: key, change: "gone"))
            }
        }
    }

    func handlePresence(_ message: MQTTMessage) async {
        let presence: AgentPresence? = decoded(message, kind: "presence") { presence in
            _ = try Validate.identifier(presence.agentID, field: "payload.agent_id")
            return presence
        }
        guard let presence else { return }
        do {
            let outcome = try await loops.step("presence", within: stepTimeout) { try await updater.apply(presence) }
            count("presence", outcome.rawValue)
            if outcome == .applied {
                await events.publish(RegistryChange(kind: .serverPresence, serverID: presence.agentID, online: presence.state == .online))
            } else {
                logger.info("ignored an agent presence event", metadata: ["agent_id": "\(presence.agentID)", "outcome": "\(outcome.rawValue)"])
            }
        } catch {
            count("presence", "failed")
            logger.error("could not apply a presence event", metadata: ["agent_id": "\(presence.agentID)", "error": "\(String(reflecting: error))"])
        }
    }

    /// Field checks an envelope cannot make: ids that become topic levels, sizes, duplicates.
    private func validated(_ hello: AgentHello) throws -> AgentHello {
        var hello = hello
        _ = try Validate.identifier(hello.agentID, field: "payload.agent_id")
        _ = try Validate.identifier(hello.site.id, field: "payload.site.id")
        hello.site.name = try Validate.name(hello.site.name, field: "payload.site.name")
        hello.serverName = try Validate.name(hello.serverName, field: "payload.server_name")
        guard hello.capacity.cpuCores >= 0, hello.capacity.memoryBytes >= 0, hello.capacity.gpus.allSatisfy({ $0.count >= 0 }) else {
            throw APIError.invalid(field: "payload.capacity", "must not be negative")
        }
        guard hello.devices.count <= 10_000 else { throw APIError.invalid(field: "payload.devices", "at most 10000 devices") }
        guard Set(hello.devices.map(\.key)).count == hello.devices.count else {
            throw APIError.invalid(field: "payload.devices", "device keys must be unique")
        }
        for (index, device) in hello.devices.enumerated() {
            guard (1...128).contains(device.key.count) else {
                throw APIError.invalid(field: "payload.devices[\(index)].key", "must be 1 to 128 characters")
            }
            hello.devices[index].name = try Validate.name(device.name, field: "payload.devices[\(index)].name")
        }
        return hello
    }
}

/// Publishes the registry's change events. They are announcements after the fact (QoS 1, not
/// retained); a consumer that needs the state asks the registry.
final class RegistryEvents: Service, RegistryChangePublishing {
    let mqtt: MQTTClient
    let logger: Logger
    private let queue: AsyncStream<RegistryChange>
    private let enqueue: AsyncStream<RegistryChange>.Continuation

    init(mqtt: MQTTClient, logger: Logger) {
        self.mqtt = mqtt
        self.logger = logger
        (queue, enqueue) = AsyncStream.makeStream()
    }

    /// Queues the event; ``run()`` publishes the queue in order. Whoever changed something does
    /// not wait for the broker's acknowledgement (a hello with ten new devices is eleven events).
    func publish(_ change: RegistryChange) async {
        enqueue.yield(change)
    }

    /// Publishes until graceful shutdown, then drains what is queued (the services that queue
    /// events stop before this one).
    func run() async throws {
        await withGracefulShutdownHandler {
            for await change in self.queue {
                await self.send(change)
            }
        } onGracefulShutdown: {
            self.enqueue.finish()
        }
    }

    private func send(_ change: RegistryChange) async {
        let topic = Topic.registryEvent(RegistryEventKind(rawValue: change.kind) ?? .deviceChanged).path
        do {
            try await mqtt.publish(
                topic, payload: try Envelope(payload: change).encoded(), qos: .atLeastOnce,
                properties: MQTTProperties(contentType: "application/json"))
        } catch {
            logger.warning("could not publish a registry event", metadata: ["kind": "\(change.kind)", "error": "\(error)"])
        }
    }
}

/// The registry's own metrics, each name spelled once (docs/registry.md).
enum RegistryMetrics {
    /// Agents' hellos, presence and revocations handled, by kind and outcome (`applied`, `malformed`, ...).
    static func agentEvents(_ kind: String, _ outcome: String) -> Counter {
        Counter(label: "registry_agent_events_total", dimensions: [("kind", kind), ("outcome", outcome)])
    }
}
