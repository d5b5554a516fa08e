import DeviceProtocol
import FleetContract
import Foundation
import Logging
import PostgresNIO
import ServiceRuntime

/// The deployments in PostgreSQL (schema `orchestrator`, migrations 7 and 8). Every change that
/// places or removes instances holds one advisory lock for its transaction, so two of them never
/// count the same free capacity twice, and writes new desired-state documents for the servers
/// whose instances it changed, in the same transaction.
struct PostgresDeploymentStore: Sendable {
    let client: PostgresClient
    let logger: Logger
    /// Told after a change wrote documents to the outbox, so that they go out at once.
    var wake: OutboxPublisher.Wake? = nil
    /// Told after any change the deployments' views may show (``DeploymentViewPublisher``).
    var viewsChanged: OutboxPublisher.Wake? = nil
    /// Told after documents went out or instances changed state (``RestartRoller``).
    var instancesChanged: OutboxPublisher.Wake? = nil

    /// Who the events of the orchestrator's own decisions name.
    static let orchestratorActor = "orchestrator"
    /// The advisory lock key of placement (any fixed number; only this store takes it).
    private static let placementLock: Int64 = 7_301_019

    func json(_ spec: DeploymentSpec) throws -> String {
        String(decoding: try ContractCoding.encoder.encode(spec), as: UTF8.self)
    }

    func spec(_ text: String) throws -> DeploymentSpec {
        try ContractCoding.decoder.decode(DeploymentSpec.self, from: Data(text.utf8))
    }

    // MARK: Changes

    /// Creates the deployment at revision 1 and places its instances on `servers`.
    /// `DomainError.conflict` on `name` when a live deployment has it.
    func create(
        name: String, spec: DeploymentSpec, artifact: DeploymentArtifact, actor: String, servers: [Placement.Server]
    ) async throws
        -> Deployment
    {
        let id = UUID()
        let artifactJSON = String(decoding: try ContractCoding.encoder.encode(artifact), as: UTF8.self)
        do {
            try await inPlacementTransaction { connection in
                try await connection.query(
                    """
                    INSERT INTO orchestrator.deployments (id, name, revision, spec, artifact)
                    VALUES (\(id), \(name), 1, \(try json(spec))::jsonb, \(artifactJSON)::jsonb)
                    """, logger: logger)
                try await recordRevision(of: id, 1, spec: spec, actor: actor, change: "created", on: connection)
                try await record(id, [("created", "created at revision 1 with \(spec.scaling.replicas) instance(s)", actor)], on: connection)
                try await reconcile(id, name: name, spec: spec, revision: 1, stopped: false, servers: servers, actor: actor, on: connection)
            }
        } catch let error as PSQLError where error.isUniqueViolation && error.serverInfo?[.constraintName] == "deployments_live_name" {
            throw DomainError.conflict("a deployment named '\(name)' exists already", field: "name")
        }
        return try await deployment(named: name)!
    }

    /// A new revision with `spec`, and `artifact` when the model version changes; the instances
    /// are placed or removed to match it; `kind` and `change` are its event; `staged` makes
    /// a change that restarts the instances a canary or blue-green update, as its strategy says. Nil when there is no such deployment.
    func update(
        name: String, spec: DeploymentSpec, artifact: DeploymentArtifact? = nil, actor: String, kind: String, change: String,
        servers: [Placement.Server], staged: Bool = false
    ) async throws -> Deployment? {
        let artifactJSON = try artifact.map { String(decoding: try ContractCoding.encoder.encode($0), as: UTF8.self) }
        let found = try await inPlacementTransaction { connection -> Bool in
            guard let (id, revision, stopped) = try await lockDeployment(name, on: connection) else { return false }
            let before = try await currentSpec(id, on: connection)
            if actor != AutoscalerLink.actor {
                // An operator's change: the last automatic rollback is behind the deployment now.
                try await connection.query("UPDATE orchestrator.deployments SET rolled_back_because = NULL WHERE id = \(id)", logger: logger)
            }
            if spec.restartsInstances(comparedTo: before) {
                // A staged update under way (canary or blue-green) ends here: its new instances go
                // at once, before any request reaches them again, and the old take every request.
                try await connection.query(
                    """
                    WITH canary AS (
                        UPDATE orchestrator.deployments SET canary_step = NULL, step_at = NULL, paused = false
                        WHERE id = \(id) AND canary_step IS NOT NULL RETURNING id
                    ) DELETE FROM orchestrator.deployment_instances
                    WHERE deployment_id IN (SELECT id FROM canary) AND spec_revision = \(revision)
                    """, logger: logger)
                try await connection.query("UPDATE orchestrator.deployment_instances SET weight = 100 WHERE deployment_id = \(id)", logger: logger)
                // A roll: the instances keep their revision's spec and `advanceRestarts` replaces
                // them (a rolling update, or a canary for a new model version with that strategy);
                // if it stalls it goes back to the last revision rolled out whole.
                try await connection.query(
                    "UPDATE orchestrator.deployments SET rolling_from = COALESCE(rolling_from, \(revision)) WHERE id = \(id)", logger: logger)
                if staged {
                    try await connection.query(
                        """
                        UPDATE orchestrator.deployments SET canary_step = 0, step_at = now(), paused = false, analysis = NULL, failed_checks = 0,
                            judged_at = NULL
                        WHERE id = \(id)
                        """,
                        logger: logger)
                }
            } else {
                // Nothing an agent runs changes: every instance runs the new revision as it is.
                try await connection.query(
                    "UPDATE orchestrator.deployment_instances SET spec_revision = \(revision + 1) WHERE deployment_id = \(id)", logger: logger)
            }
            try await writeRevision(
                of: id, revision + 1, spec: spec, artifactJSON: artifactJSON, actor: actor, kind: kind, change: change, on: connection)
            try await reconcile(id, name: name, spec: spec, revision: revision + 1, stopped: stopped, servers: servers, actor: actor, on: connection)
            try await placePending(servers: servers, on: connection)
            return true
        }
        return found ? try await deployment(named: name) : nil
    }

    /// Stops (every instance removed, the spec kept) or starts (placed again). Nil when there is
    /// no such deployment; doing what is already done changes nothing.
    func setStopped(name: String, _ stopped: Bool, actor: String, servers: [Placement.Server]) async throws -> Deployment? {
        let found = try await inPlacementTransaction { connection -> Bool in
            guard let (id, revision, wasStopped) = try await lockDeployment(name, on: connection) else { return false }
            guard wasStopped != stopped else { return true }
            // A stop ends a canary under way: started again, the deployment runs its newest revision.
            try await connection.query(
                """
                UPDATE orchestrator.deployments SET stopped = \(stopped), updated_at = now(),
                    canary_step = CASE WHEN \(stopped) THEN NULL ELSE canary_step END, paused = paused AND NOT \(stopped)
                WHERE id = \(id)
                """, logger: logger)
            try await record(id, [(stopped ? "stopped" : "started", stopped ? "stopped" : "started", actor)], on: connection)
            let spec = try await currentSpec(id, on: connection)
            try await reconcile(id, name: name, spec: spec, revision: revision, stopped: stopped, servers: servers, actor: actor, on: connection)
            try await placePending(servers: servers, on: connection)
            return true
        }
        return found ? try await deployment(named: name) : nil
    }

    /// Removes the instances and the configuration; the row, its revisions and events stay for the
    /// audit trail, and the name is free again.
    func delete(name: String, actor: String, servers: [Placement.Server]) async throws -> Bool {
        try await inPlacementTransaction { connection -> Bool in
            guard let (id, _, _) = try await lockDeployment(name, on: connection) else { return false }
            try await connection.query("DELETE FROM orchestrator.deployment_instances WHERE deployment_id = \(id)", logger: logger)
            try await connection.query(
                "UPDATE orchestrator.deployments SET deleted_at = now(), updated_at = now() WHERE id = \(id)", logger: logger)
            try await record(id, [("deleted", "deleted", actor)], on: connection)
            try await placePending(servers: servers, on: connection)
            return true
        }
    }

    /// Moves the instances off `offline` servers: each becomes pending (its reason naming the
    /// server) and is placed again where it fits. Returns how many moved.
    @discardableResult
    func evacuate(offline: Set<String>, servers: [Placement.Server]) async throws -> Int {
        guard !offline.isEmpty else { return 0 }
        return try await inPlacementTransaction { connection in
            var moved: [(id: String, deployment: UUID, server: String)] = []
            for try await row in try await connection.query(
                """
                UPDATE orchestrator.deployment_instances
                SET reason = 'its server ' || server_id || ' went offline', server_id = NULL, state = 'pending', address = NULL,
                    updated_at = now()
                WHERE server_id = ANY(\(Array(offline)))
                RETURNING id, deployment_id, substring(reason from 'its server (.*) went offline')
                """, logger: logger
            ).decode((String, UUID, String).self) {
                moved.append(row)
            }
            for (deployment, instances) in Dictionary(grouping: moved, by: \.deployment) {
                try await record(
                    deployment,
                    instances.map { ("moved", "instance \($0.id) left \($0.server), which went offline", Self.orchestratorActor) }, on: connection)
            }
            try await placePending(servers: servers, on: connection)
            return moved.count
        }
    }

    /// Places the pending instances of every live deployment that fit now, oldest first: after a
    /// change freed capacity, or when a server came online. Returns how many were placed.
    @discardableResult
    func placePending(servers: [Placement.Server]) async throws -> Int {
        try await inPlacementTransaction { connection in try await placePending(servers: servers, on: connection) }
    }

    @discardableResult
    private func placePending(servers: [Placement.Server], on connection: PostgresConnection) async throws -> Int {
        var pending: [(id: String, deployment: UUID, demand: Placement.Demand)] = []
        for try await (id, deployment, cpu, memory, gpus, type) in try await connection.query(
            """
            SELECT i.id, i.deployment_id, i.cpu_cores, i.memory_bytes, i.gpu_count, i.gpu_type
            FROM orchestrator.deployment_instances i JOIN orchestrator.deployments d ON d.id = i.deployment_id
            WHERE i.server_id IS NULL AND d.deleted_at IS NULL AND NOT d.stopped
            ORDER BY i.created_at, i.id
            """, logger: logger
        ).decode((String, UUID, Double, Int64, Int, String?).self) {
            pending.append((id, deployment, Placement.Demand(cpuCores: cpu, memoryBytes: memory, gpuCount: gpus, gpuType: type)))
        }
        guard !pending.isEmpty else { return 0 }
        var used = try await usage(on: connection)
        var spread: [UUID: [String: Int]] = [:]
        for try await (deployment, server, count) in try await connection.query(
            """
            SELECT deployment_id, server_id, count(*)::int FROM orchestrator.deployment_instances
            WHERE server_id IS NOT NULL AND deployment_id = ANY(\(Array(Set(pending.map(\.deployment))))) GROUP BY deployment_id, server_id
            """, logger: logger
        ).decode((UUID, String, Int).self) {
            spread[deployment, default: [:]][server] = count
        }
        var placedCount = 0
        for instance in pending {
            let placed = Placement.place(count: 1, demand: instance.demand, servers: servers, used: used, spread: spread[instance.deployment] ?? [:])
            guard let server = placed.servers.first else { continue }
            try await connection.query(
                """
                UPDATE orchestrator.deployment_instances SET server_id = \(server), state = 'assigned', reason = NULL, updated_at = now()
                WHERE id = \(instance.id)
                """, logger: logger)
            try await record(instance.deployment, [("placed", "placed instance \(instance.id) on \(server)", Self.orchestratorActor)], on: connection)
            used[server, default: Placement.Usage()].add(instance.demand)
            spread[instance.deployment, default: [:]][server, default: 0] += 1
            placedCount += 1
        }
        return placedCount
    }

    // MARK: Restarts

    /// Moves the instances of running deployments that run an older revision's spec to the
    /// current one: all at once where nothing an agent runs changed (the same instance goes on),
    /// otherwise as a rolling update (``RollingUpdate``): new instances start beside the old, placed
    /// on `servers`, and old ones go as the new become ready. A roll that made no progress for its
    /// `progress_deadline_seconds` is rolled back (``rollBackStalled``). Returns how many
    /// instances were moved, started or removed.
    @discardableResult
    func advanceRestarts(servers: [Placement.Server], figures: [String: DeploymentMetricsSnapshot] = [:]) async throws -> Int {
        try await inPlacementTransaction { connection in
            var moved = try await rollBackStalled(servers: servers, on: connection)
            moved += try await advanceCanaries(servers: servers, figures: figures, on: connection)
            var behind: [(deployment: UUID, name: String, revision: Int, spec: String, instance: String, runs: Int, runsSpec: String)] = []
            for try await row in try await connection.query(
                """
                SELECT d.id, d.name, d.revision, d.spec::text, i.id, i.spec_revision, r.spec::text
                FROM orchestrator.deployment_instances i JOIN orchestrator.deployments d ON d.id = i.deployment_id
                JOIN orchestrator.deployment_revisions r ON r.deployment_id = i.deployment_id AND r.revision = i.spec_revision
                WHERE d.deleted_at IS NULL AND NOT d.stopped AND i.spec_revision < d.revision AND d.canary_step IS NULL
                ORDER BY d.id, i.created_at, i.id
                """, logger: logger
            ).decode((UUID, String, Int, String, String, Int, String).self) {
                behind.append(row)
            }
            for (deployment, instances) in Dictionary(grouping: behind, by: \.deployment).sorted(by: { $0.key.uuidString < $1.key.uuidString }) {
                let current = try spec(instances[0].spec)
                let revision = instances[0].revision
                let (silent, restarting) = try instances.reduce(into: ([String](), [String]())) { lists, instance in
                    if current.restartsInstances(comparedTo: try spec(instance.runsSpec)) {
                        lists.1.append(instance.instance)
                    } else {
                        lists.0.append(instance.instance)
                    }
                }
                if !silent.isEmpty {
                    try await connection.query(
                        "UPDATE orchestrator.deployment_instances SET spec_revision = \(revision) WHERE id = ANY(\(silent))", logger: logger)
                    moved += silent.count
                }
                guard !restarting.isEmpty else { continue }
                moved += try await replaceStep(
                    deployment, name: instances[0].name, replacing: Set(restarting), spec: current, revision: revision, servers: servers,
                    on: connection)
            }
            try await finishRolls(on: connection)
            return moved
        }
    }

    /// Whether any running deployment has instances behind its revision: the roller asks before
    /// it fetches the servers from the registry.
    func hasInstancesBehind() async throws -> Bool {
        try await client.withConnection { connection in
            for try await found in try await connection.query(
                """
                SELECT EXISTS (
                    SELECT 1 FROM orchestrator.deployment_instances i JOIN orchestrator.deployments d ON d.id = i.deployment_id
                    WHERE d.deleted_at IS NULL AND NOT d.stopped AND i.spec_revision < d.revision)
                """, logger: logger
            ).decode(Bool.self) {
                return found
            }
            return false
        }
    }

    /// One step of a deployment's rolling update (``RollingUpdate/step(_:)``): old instances that
    /// are not ready go first (pending ones first), then ready ones, oldest first, then new ones
    /// start. Each change restarts the progress deadline's clock.
    private func replaceStep(
        _ id: UUID, name: String, replacing old: Set<String>, spec: DeploymentSpec, revision: Int, servers: [Placement.Server],
        on connection: PostgresConnection
    ) async throws -> Int {
        var instances: [(id: String, revision: Int, placed: Bool, ready: Bool)] = []
        for try await row in try await connection.query(
            """
            SELECT id, spec_revision, server_id IS NOT NULL, state = 'ready' FROM orchestrator.deployment_instances
            WHERE deployment_id = \(id) ORDER BY created_at, id
            """, logger: logger
        ).decode((String, Int, Bool, Bool).self) {
            instances.append(row)
        }
        let olds = instances.filter { old.contains($0.id) }
        let news = instances.filter { $0.revision == revision }
        let counts = RollingUpdate.Counts(
            oldReady: olds.count(where: \.ready), oldNotReady: olds.count { !$0.ready }, newReady: news.count(where: \.ready),
            newNotReady: news.count { !$0.ready })
        let roll = RollingUpdate(replicas: spec.scaling.replicas, strategy: spec.updateStrategy)
        let step = roll.step(counts)
        let removed =
            olds.filter { !$0.ready }.sorted { ($0.placed ? 1 : 0) < ($1.placed ? 1 : 0) }.prefix(step.removeOldNotReady).map(\.id)
            + olds.filter(\.ready).prefix(step.removeOldReady).map(\.id)
        guard !removed.isEmpty || step.add > 0 else { return 0 }
        if !removed.isEmpty {
            try await connection.query("DELETE FROM orchestrator.deployment_instances WHERE id = ANY(\(removed))", logger: logger)
            try await record(
                id, removed.map { ("replaced", "removed instance \($0), replaced by revision \(revision)", Self.orchestratorActor) },
                on: connection)
        }
        if step.add > 0 {
            try await addInstances(
                step.add, to: id, name: name, spec: spec, revision: revision, servers: servers, existing: Set(instances.map(\.id)),
                on: connection)
        }
        try await connection.query("UPDATE orchestrator.deployments SET progress_at = now() WHERE id = \(id)", logger: logger)
        return removed.count + step.add
    }

    /// Ends the rolls that are done: every instance on its deployment's revision and every
    /// placed one ready.
    private func finishRolls(on connection: PostgresConnection) async throws {
        try await connection.query(
            """
            UPDATE orchestrator.deployments d SET rolling_from = NULL
            WHERE rolling_from IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM orchestrator.deployment_instances i
                WHERE i.deployment_id = d.id AND (i.spec_revision < d.revision OR (i.server_id IS NOT NULL AND i.state <> 'ready')))
            """, logger: logger)
    }

    /// Rolls back each roll that made no progress for its `progress_deadline_seconds` (600 in
    /// specs stored before the field) while one of its instances is placed and not ready.
    private func rollBackStalled(servers: [Placement.Server], on connection: PostgresConnection) async throws -> Int {
        var stalled: [(id: UUID, name: String, revision: Int, from: Int, deadline: Int, instance: String, state: String, reason: String?)] = []
        for try await row in try await connection.query(
            """
            SELECT DISTINCT ON (d.id) d.id, d.name, d.revision, d.rolling_from,
                   COALESCE((d.spec->'update_strategy'->>'progress_deadline_seconds')::int, 600), i.id, i.state, i.reason
            FROM orchestrator.deployments d JOIN orchestrator.deployment_instances i
                ON i.deployment_id = d.id AND i.spec_revision = d.revision AND i.server_id IS NOT NULL AND i.state <> 'ready'
            WHERE d.rolling_from IS NOT NULL AND d.deleted_at IS NULL AND NOT d.stopped
              AND d.progress_at < now() - make_interval(secs => COALESCE((d.spec->'update_strategy'->>'progress_deadline_seconds')::int, 600))
            ORDER BY d.id, i.id
            """, logger: logger
        ).decode((UUID, String, Int, Int, Int, String, String, String?).self) {
            stalled.append(row)
        }
        var moved = 0
        for roll in stalled {
            let why =
                "no instance of revision \(roll.revision) became ready within \(roll.deadline) s (\(roll.instance): \(roll.reason ?? roll.state))"
            moved += try await rollBack(
                roll.id, name: roll.name, from: roll.revision, to: roll.from, because: why, servers: servers, on: connection)
        }
        return moved
    }

    /// Rolls a stalled change back: a new revision with the spec and artifact of `target` (the
    /// last revision rolled out whole) and the scaling of now, whose own roll has no deadline
    /// (nothing older to go back to). The instances of the stalled revision that are not ready
    /// are removed at once (they serve nothing) and as many start on the new revision, placed on
    /// `servers`; the old revision's instances run its spec already and stay; those of the stalled
    /// revision that are ready are replaced as for any change. Returns how many instances went.
    func rollBack(
        _ id: UUID, name: String, from stalled: Int, to target: Int, because why: String, servers: [Placement.Server],
        on connection: PostgresConnection
    ) async throws -> Int {
        var found: (spec: String, artifact: String?)?
        for try await row in try await connection.query(
            """
            SELECT spec::text, artifact::text FROM orchestrator.deployment_revisions WHERE deployment_id = \(id) AND revision = \(target)
            """, logger: logger
        ).decode((String, String?).self) {
            found = row
        }
        guard let found else { return 0 }
        let current = try await currentSpec(id, on: connection)
        var spec = try spec(found.spec)
        spec.scaling = current.scaling
        let revision = stalled + 1
        // A canary's new instances all go, ready or not: no request reaches them after this.
        var canary = false
        for try await step in try await connection.query(
            "SELECT canary_step FROM orchestrator.deployments WHERE id = \(id)", logger: logger
        ).decode(Int?.self) {
            canary = step != nil
        }
        try await connection.query(
            """
            UPDATE orchestrator.deployments SET rolling_from = NULL, canary_step = NULL, step_at = NULL, paused = false, failed_checks = 0,
                rolled_back_because = \(why)
            WHERE id = \(id)
            """, logger: logger)
        try await connection.query("UPDATE orchestrator.deployment_instances SET weight = 100 WHERE deployment_id = \(id)", logger: logger)
        try await writeRevision(
            of: id, revision, spec: spec, artifactJSON: found.artifact, actor: Self.orchestratorActor, kind: "rolled_back",
            change: "rolled back to revision \(target) (model version \(spec.modelVersion)): \(why)", on: connection)
        var removed = 0
        for try await count in try await connection.query(
            """
            WITH removed AS (
                DELETE FROM orchestrator.deployment_instances
                WHERE deployment_id = \(id) AND spec_revision = \(stalled) AND (state <> 'ready' OR \(canary))
                RETURNING 1
            ) SELECT count(*)::int FROM removed
            """, logger: logger
        ).decode(Int.self) {
            removed = count
        }
        try await reconcile(
            id, name: name, spec: spec, revision: revision, stopped: false, servers: servers, actor: Self.orchestratorActor, on: connection)
        logger.warning("deployment rolled back", metadata: ["deployment": "\(name)", "revision": "\(target)", "reason": "\(why)"])
        return removed
    }

    // MARK: Agents' reports

    /// What agents said of their instances: each instance's state, address, reason and restarts,
    /// recorded when the reporting agent is the instance's server now (a report from the server
    /// an instance left says nothing of it). A change to ready or failed is an event of its
    /// deployment. Returns how many instances changed.
    @discardableResult
    func recordInstanceReports(_ reports: [(agentID: String, instances: [AgentMessage.Report.InstanceReport])]) async throws -> Int {
        var reported: [String: (server: String, report: AgentMessage.Report.InstanceReport)] = [:]
        for (agent, instances) in reports {
            for instance in instances { reported[instance.instanceID] = (agent, instance) }
        }
        guard !reported.isEmpty else { return 0 }
        let ids = reported.keys.sorted()
        let changed = try await unwrappingRefusals {
            try await client.withTransaction(logger: logger) { connection in
                var changes: [(id: String, deployment: UUID, server: String, report: AgentMessage.Report.InstanceReport)] = []
                var events: [UUID: [(kind: String, message: String, actor: String)]] = [:]
                for try await (id, deployment, server, state, address, reason, restarts, specRevision) in try await connection.query(
                    """
                    SELECT id, deployment_id, server_id, state, address, reason, restarts, spec_revision FROM orchestrator.deployment_instances
                    WHERE id = ANY(\(ids)) ORDER BY id FOR UPDATE
                    """, logger: logger
                ).decode((String, UUID, String?, String, String?, String?, Int, Int).self) {
                    guard let (agent, report) = reported[id], server == agent else { continue }
                    // A report about the entry an instance had before its restart says nothing of it now.
                    if let reported = report.specRevision, reported < specRevision { continue }
                    guard state != report.state.rawValue || address != report.address || reason != report.reason || restarts != report.restarts
                    else { continue }
                    changes.append((id, deployment, agent, report))
                    if state != report.state.rawValue {
                        switch report.state {
                        case .ready:
                            events[deployment, default: []].append(
                                ("ready", "instance \(id) ready on \(agent) at \(report.address ?? "?")", Self.orchestratorActor))
                        case .failed:
                            events[deployment, default: []].append(
                                ("failed", "instance \(id) failed on \(agent): \(report.reason ?? "no reason given")", Self.orchestratorActor))
                        case .starting, .stopped:
                            break
                        }
                    }
                }
                guard !changes.isEmpty else { return 0 }
                try await connection.query(
                    """
                    UPDATE orchestrator.deployment_instances i SET state = t.s, address = NULLIF(t.a, ''), reason = NULLIF(t.r, ''),
                        restarts = t.n, updated_at = now()
                    FROM unnest(\(changes.map(\.id))::text[], \(changes.map(\.report.state.rawValue))::text[],
                                \(changes.map { $0.report.address ?? "" })::text[], \(changes.map { $0.report.reason ?? "" })::text[],
                                \(changes.map(\.report.restarts))::int[]) AS t (id, s, a, r, n)
                    WHERE i.id = t.id
                    """, logger: logger)
                for (deployment, list) in events.sorted(by: { $0.key.uuidString < $1.key.uuidString }) {
                    try await record(deployment, list, on: connection)
                }
                return changes.count
            }
        }
        if changed > 0 {
            viewsChanged?.signal()
            instancesChanged?.signal()
        }
        return changed
    }

    // MARK: Steps

    /// A transaction holding the placement lock; a refusal thrown inside comes out as itself. The
    /// servers whose instances the body changed (placed, removed, moved, stopped, or of a
    /// deployment whose revision changed) get new desired-state documents before it commits.
    func inPlacementTransaction<Result: Sendable>(_ body: (PostgresConnection) async throws -> Result) async throws -> Result {
        let (result, documents) = try await unwrappingRefusals {
            try await client.withTransaction(logger: logger) { connection in
                try await connection.query("SELECT pg_advisory_xact_lock(\(Self.placementLock))", logger: logger)
                let before = try await runningInstances(on: connection)
                let result = try await body(connection)
                let after = try await runningInstances(on: connection)
                let changed = Self.serversToTell(before: before, after: after)
                try await DesiredStateOutbox(logger: logger).enqueue(agents: changed, on: connection)
                return (result, changed.count)
            }
        }
        if documents > 0 {
            wake?.signal()
            instancesChanged?.signal()
        }
        viewsChanged?.signal()
        return result
    }

    /// What an agent's document says of an instance: where it runs and the revision whose spec
    /// the document carries.
    struct RunningInstance: Hashable, Sendable {
        var server: String
        var revision: Int
    }

    /// The instances the agents should run now: placed, of live deployments that are not stopped.
    private func runningInstances(on connection: PostgresConnection) async throws -> [String: RunningInstance] {
        var running: [String: RunningInstance] = [:]
        for try await (id, server, revision) in try await connection.query(
            """
            SELECT i.id, i.server_id, i.spec_revision FROM orchestrator.deployment_instances i JOIN orchestrator.deployments d ON d.id = i.deployment_id
            WHERE i.server_id IS NOT NULL AND NOT d.stopped AND d.deleted_at IS NULL
            """, logger: logger
        ).decode((String, String, Int).self) {
            running[id] = RunningInstance(server: server, revision: revision)
        }
        return running
    }

    /// The servers of the instances that came, went or changed between the two, in order.
    static func serversToTell(before: [String: RunningInstance], after: [String: RunningInstance]) -> [String] {
        var servers: Set<String> = []
        for (id, old) in before where after[id] != old { servers.insert(old.server) }
        for (id, new) in after where before[id] != new { servers.insert(new.server) }
        return servers.sorted()
    }

    /// The live deployment's id, revision and whether it is stopped, its row locked.
    func lockDeployment(_ name: String, on connection: PostgresConnection) async throws -> (UUID, Int, Bool)? {
        for try await row in try await connection.query(
            "SELECT id, revision, stopped FROM orchestrator.deployments WHERE name = \(name) AND deleted_at IS NULL FOR UPDATE", logger: logger
        ).decode((UUID, Int, Bool).self) {
            return row
        }
        return nil
    }

    func currentSpec(_ id: UUID, on connection: PostgresConnection) async throws -> DeploymentSpec {
        for try await text in try await connection.query(
            "SELECT spec::text FROM orchestrator.deployments WHERE id = \(id)", logger: logger
        ).decode(String.self) {
            return try spec(text)
        }
        throw DomainError.conflict("deployment \(id.lowercasedString) vanished during the change; try again")
    }

    /// Makes `revision` the deployment's with `spec` (and `artifactJSON`, when the model version
    /// changes), its progress starting now, with its revision row and its event.
    func writeRevision(
        of id: UUID, _ revision: Int, spec: DeploymentSpec, artifactJSON: String?, actor: String, kind: String, change: String,
        on connection: PostgresConnection
    ) async throws {
        try await connection.query(
            """
            UPDATE orchestrator.deployments SET spec = \(try json(spec))::jsonb, revision = \(revision),
                artifact = COALESCE(\(artifactJSON)::jsonb, artifact), progress_at = now(), updated_at = now()
            WHERE id = \(id)
            """, logger: logger)
        try await recordRevision(of: id, revision, spec: spec, actor: actor, change: change, on: connection)
        try await record(id, [(kind, "\(change) (revision \(revision))", actor)], on: connection)
    }

    private func recordRevision(
        of id: UUID, _ revision: Int, spec: DeploymentSpec, actor: String, change: String, on connection: PostgresConnection
    ) async throws {
        // With the deployment's artifact as it is now (the model version this revision runs).
        try await connection.query(
            """
            INSERT INTO orchestrator.deployment_revisions (deployment_id, revision, spec, actor, change, artifact)
            SELECT \(id), \(revision), \(try json(spec))::jsonb, \(actor), \(change), artifact FROM orchestrator.deployments WHERE id = \(id)
            """, logger: logger)
    }

    func record(_ id: UUID, _ events: [(kind: String, message: String, actor: String)], on connection: PostgresConnection) async throws {
        guard !events.isEmpty else { return }
        try await connection.query(
            """
            INSERT INTO orchestrator.deployment_events (deployment_id, kind, message, actor)
            SELECT \(id), k, m, a FROM unnest(\(events.map(\.kind))::text[], \(events.map(\.message))::text[], \(events.map(\.actor))::text[])
                AS t (k, m, a)
            """, logger: logger)
    }

    /// How many more instances of `demand` the fleet could place now, at most `wanted`, and why
    /// not all (the autoscaler's capacity question).
    func placeable(_ wanted: Int, demand: Placement.Demand, servers: [Placement.Server]) async throws -> Placement.Result {
        let used = try await client.withConnection { connection in try await usage(on: connection) }
        return Placement.place(count: wanted, demand: demand, servers: servers, used: used)
    }

    /// What the placed instances of every live deployment hold, per server.
    private func usage(on connection: PostgresConnection) async throws -> [String: Placement.Usage] {
        var usage: [String: Placement.Usage] = [:]
        for try await (server, cpu, memory, gpus, type) in try await connection.query(
            """
            SELECT i.server_id, sum(i.cpu_cores), sum(i.memory_bytes)::bigint, sum(i.gpu_count)::bigint, i.gpu_type
            FROM orchestrator.deployment_instances i
            WHERE i.server_id IS NOT NULL
            GROUP BY i.server_id, i.gpu_type
            """, logger: logger
        ).decode((String, Double, Int64, Int64, String?).self) {
            usage[server, default: Placement.Usage()].cpuCores += cpu
            usage[server, default: Placement.Usage()].memoryBytes += memory
            if let type, gpus > 0 { usage[server, default: Placement.Usage()].gpus[type, default: 0] += Int(gpus) }
        }
        return usage
    }

    /// Makes the deployment's instances what its spec wants: the surplus removed (pending ones
    /// first, then the newest), pending ones placed where they fit now, the missing ones placed
    /// or left pending with the reason. Each decision is an event.
    /// Places or removes instances so that the deployment has its wanted count, or while a roll
    /// replaces instances of older revisions, up to its surge above it. Surplus goes in this order:
    /// pending instances, older revisions', those not ready, the newest.
    private func reconcile(
        _ id: UUID, name: String, spec: DeploymentSpec, revision: Int, stopped: Bool, servers: [Placement.Server], actor: String,
        on connection: PostgresConnection
    ) async throws {
        var instances: [(id: String, server: String?, revision: Int, ready: Bool)] = []
        for try await row in try await connection.query(
            """
            SELECT id, server_id, spec_revision, state = 'ready' FROM orchestrator.deployment_instances WHERE deployment_id = \(id)
            ORDER BY created_at, id
            """, logger: logger
        ).decode((String, String?, Int, Bool).self) {
            instances.append(row)
        }
        let wanted = stopped ? 0 : spec.scaling.replicas
        var surge = stopped ? 0 : RollingUpdate(replicas: wanted, strategy: spec.updateStrategy).maxSurge
        // A canary's new instances are its own: the stable instances keep the wanted count.
        for try await canary in try await connection.query(
            "SELECT canary_step IS NOT NULL FROM orchestrator.deployments WHERE id = \(id)", logger: logger
        ).decode(Bool.self) where canary && !stopped {
            surge = instances.count { $0.revision == revision }
        }
        var events: [(kind: String, message: String, actor: String)] = []

        let order = instances.enumerated().sorted { a, b in
            let left = (a.element.server == nil ? 0 : 1, a.element.revision < revision ? 0 : 1, a.element.ready ? 1 : 0, -a.offset)
            let right = (b.element.server == nil ? 0 : 1, b.element.revision < revision ? 0 : 1, b.element.ready ? 1 : 0, -b.offset)
            return left < right
        }.map(\.element)
        var removed: [String] = []
        var kept = instances.count
        var older = instances.count { $0.revision < revision }
        for instance in order where kept > wanted + min(surge, older) {
            removed.append(instance.id)
            kept -= 1
            if instance.revision < revision { older -= 1 }
        }
        if !removed.isEmpty {
            try await connection.query("DELETE FROM orchestrator.deployment_instances WHERE id = ANY(\(removed))", logger: logger)
            if !stopped { events += removed.map { ("removed", "removed instance \($0)", actor) } }
            instances.removeAll { removed.contains($0.id) }
        }

        let demand = Placement.Demand(spec.resources)
        var used = try await usage(on: connection)
        var spread = instances.compactMap(\.server).reduce(into: [String: Int]()) { $0[$1, default: 0] += 1 }
        let pending = instances.filter { $0.server == nil }.map(\.id)
        if !pending.isEmpty {
            let placed = Placement.place(count: pending.count, demand: demand, servers: servers, used: used, spread: spread)
            for (instance, server) in zip(pending, placed.servers) {
                try await connection.query(
                    """
                    UPDATE orchestrator.deployment_instances SET server_id = \(server), state = 'assigned', reason = NULL, updated_at = now()
                    WHERE id = \(instance)
                    """, logger: logger)
                events.append(("placed", "placed instance \(instance) on \(server)", Self.orchestratorActor))
                used[server, default: Placement.Usage()].add(demand)
                spread[server, default: 0] += 1
            }
        }
        try await record(id, events, on: connection)

        let missing = wanted - instances.count
        if missing > 0 {
            try await addInstances(
                missing, to: id, name: name, spec: spec, revision: revision, servers: servers, existing: Set(instances.map(\.id)),
                on: connection)
        }
    }

    /// Adds `count` instances of `revision`, placed on `servers` where they fit (spread over them)
    /// and pending, with the reason, where they do not.
    func addInstances(
        _ count: Int, to id: UUID, name: String, spec: DeploymentSpec, revision: Int, servers: [Placement.Server], existing: Set<String>,
        on connection: PostgresConnection
    ) async throws {
        let demand = Placement.Demand(spec.resources)
        let used = try await usage(on: connection)
        var spread: [String: Int] = [:]
        for try await (server, instances) in try await connection.query(
            """
            SELECT server_id, count(*)::int FROM orchestrator.deployment_instances
            WHERE deployment_id = \(id) AND server_id IS NOT NULL GROUP BY server_id
            """, logger: logger
        ).decode((String, Int).self) {
            spread[server] = instances
        }
        let placed = Placement.place(count: count, demand: demand, servers: servers, used: used, spread: spread)
        // `<name>-<5 hex digits>`, unique among the deployment's instances (the only ones with
        // its prefix): short enough to read, drawn again on the rare collision.
        var taken = existing
        var ids: [String] = []
        while ids.count < count {
            let id = Self.instanceID(of: name)
            if taken.insert(id).inserted { ids.append(id) }
        }
        let targets: [String?] = placed.servers + Array(repeating: nil, count: placed.unplaced)
        try await connection.query(
            """
            INSERT INTO orchestrator.deployment_instances
                (id, deployment_id, revision, spec_revision, model_version, server_id, state, reason, cpu_cores, memory_bytes, gpu_count,
                 gpu_type)
            SELECT i, \(id), \(revision), \(revision), \(spec.modelVersion), NULLIF(s, ''), CASE WHEN s = '' THEN 'pending' ELSE 'assigned' END,
                   CASE WHEN s = '' THEN \(placed.reason) END, \(demand.cpuCores), \(demand.memoryBytes), \(demand.gpuCount),
                   \(demand.gpuType)
            FROM unnest(\(ids)::text[], \(targets.map { $0 ?? "" })::text[]) AS t (i, s)
            """, logger: logger)
        var events: [(kind: String, message: String, actor: String)] = []
        for (instance, server) in zip(ids, targets) {
            if let server { events.append(("placed", "placed instance \(instance) on \(server)", Self.orchestratorActor)) }
        }
        if placed.unplaced > 0, let reason = placed.reason {
            events.append(("pending", "\(placed.unplaced) instance(s) pending: \(reason)", Self.orchestratorActor))
        }
        try await record(id, events, on: connection)
    }

    /// `<name>-<5 hex digits>`, a new one at each call.
    private static func instanceID(of name: String) -> String {
        name + "-" + String(UUID().uuidString.lowercased().prefix(5))
    }

    // MARK: Reads

    private static let columns =
        "d.id, d.seq, d.name, d.revision, d.spec::text, d.stopped, d.created_at, d.updated_at, d.rolling_from, d.progress_at, d.canary_step, "
        + "d.step_at, d.paused, d.analysis, d.rolled_back_because"

    private func deployments(_ rows: PostgresRowSequence) async throws -> [Deployment] {
        var found: [Deployment] = []
        for try await (
            id, seq, name, revision, text, stopped, created, updated, rollingFrom, progressAt, canaryStep, stepAt, paused, analysis, because
        )
            in rows.decode((UUID, Int64, String, Int, String, Bool, Date, Date, Int?, Date, Int?, Date?, Bool, String?, String?).self)
        {
            found.append(
                Deployment(
                    id: id, seq: seq, name: name, revision: revision, spec: try spec(text), stopped: stopped, createdAt: created, updatedAt: updated,
                    instances: [], rollingFrom: rollingFrom, progressAt: progressAt, canaryStep: canaryStep, stepAt: stepAt, paused: paused,
                    analysis: analysis, rolledBackBecause: because))
        }
        guard !found.isEmpty else { return [] }
        var instances: [UUID: [DeploymentInstance]] = [:]
        for try await (deployment, id, server, state, reason, address, version, revision, specRevision, weight, restarts, updated)
            in try await client.query(
                """
                SELECT deployment_id, id, server_id, state, reason, address, model_version, revision, spec_revision, weight, restarts, updated_at
                FROM orchestrator.deployment_instances WHERE deployment_id = ANY(\(found.map(\.id))) ORDER BY created_at, id
                """, logger: logger
            ).decode((UUID, String, String?, String, String?, String?, String, Int, Int, Int, Int, Date).self)
        {
            instances[deployment, default: []].append(
                DeploymentInstance(
                    id: id, serverID: server, state: InstanceState(rawValue: state) ?? .pending, reason: reason, address: address,
                    modelVersion: version, revision: revision, runsRevision: specRevision, weight: weight, restarts: restarts, updatedAt: updated))
        }
        return found.map { deployment in
            var deployment = deployment
            deployment.instances = instances[deployment.id] ?? []
            return deployment
        }
    }

    func deployment(named name: String) async throws -> Deployment? {
        try await deployments(
            client.query(
                "SELECT \(unescaped: Self.columns) FROM orchestrator.deployments d WHERE d.name = \(name) AND d.deleted_at IS NULL", logger: logger)
        ).first
    }

    /// Every live deployment, for the load balancers' views.
    func allLive() async throws -> [Deployment] {
        try await deployments(
            client.query(
                "SELECT \(unescaped: Self.columns) FROM orchestrator.deployments d WHERE d.deleted_at IS NULL ORDER BY d.seq", logger: logger))
    }

    /// The names of deleted deployments that no live one has taken again.
    func deletedNames() async throws -> [String] {
        var names: [String] = []
        for try await name in try await client.query(
            """
            SELECT DISTINCT name FROM orchestrator.deployments d WHERE deleted_at IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM orchestrator.deployments l WHERE l.name = d.name AND l.deleted_at IS NULL)
            """, logger: logger
        ).decode(String.self) {
            names.append(name)
        }
        return names
    }

    /// Live deployments in creation order after position `after`; `next` is the last position
    /// when more follow.
    func list(limit: Int, after: Int64) async throws -> (items: [Deployment], next: Int64?) {
        let found = try await deployments(
            client.query(
                """
                SELECT \(unescaped: Self.columns) FROM orchestrator.deployments d
                WHERE d.deleted_at IS NULL AND d.seq > \(after) ORDER BY d.seq LIMIT \(limit + 1)
                """, logger: logger))
        let page = Array(found.prefix(limit))
        return (page, found.count > limit ? page.last?.seq : nil)
    }

    /// The newest `limit` events; nil when there is no such deployment.
    func events(of name: String, limit: Int) async throws -> [DeploymentEvent]? {
        guard let deployment = try await deployment(named: name) else { return nil }
        var events: [DeploymentEvent] = []
        for try await (kind, message, actor, at) in try await client.query(
            """
            SELECT kind, message, actor, at FROM orchestrator.deployment_events WHERE deployment_id = \(deployment.id)
            ORDER BY seq DESC LIMIT \(limit)
            """, logger: logger
        ).decode((String, String, String, Date).self) {
            events.append(DeploymentEvent(kind: kind, message: message, actor: actor, at: at))
        }
        return events
    }

    /// Every revision, newest first; nil when there is no such deployment.
    func revisions(of name: String) async throws -> [DeploymentRevision]? {
        guard let deployment = try await deployment(named: name) else { return nil }
        var revisions: [DeploymentRevision] = []
        for try await (revision, text, actor, change, at, artifact) in try await client.query(
            """
            SELECT revision, spec::text, actor, change, created_at, artifact::text FROM orchestrator.deployment_revisions
            WHERE deployment_id = \(deployment.id) ORDER BY revision DESC
            """, logger: logger
        ).decode((Int, String, String, String, Date, String?).self) {
            revisions.append(
                DeploymentRevision(
                    revision: revision, spec: try spec(text), actor: actor, change: change, createdAt: at,
                    artifact: try artifact.map { try ContractCoding.decoder.decode(DeploymentArtifact.self, from: Data($0.utf8)) }))
        }
        return revisions
    }
}

extension PSQLError {
    fileprivate var isUniqueViolation: Bool { serverInfo?[.sqlState] == "23505" }
}
