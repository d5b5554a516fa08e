import DeviceProtocol
import FleetContract
import Foundation
import Logging
import PostgresNIO
import ServiceRuntime

/// The orchestrator's data in PostgreSQL (schema `orchestrator`): each device's pipelines and
/// their history, each agent's desired-state generation, the operations with their devices, and
/// the outbox of desired-state documents.
struct PostgresOperationStore: OperationRepository {
    let client: PostgresClient
    let logger: Logger
    private var outbox: DesiredStateOutbox { DesiredStateOutbox(logger: logger) }

    private func json(_ value: some Encodable) throws -> String {
        String(decoding: try ContractCoding.encoder.encode(value), as: UTF8.self)
    }

    private func pipelines(_ text: String) throws -> [DesiredState.Pipeline] {
        try ContractCoding.decoder.decode([DesiredState.Pipeline].self, from: Data(text.utf8))
    }

    // MARK: Device pipelines

    /// What each of `deviceIDs` runs now, with its revision (devices never assigned are absent).
    func currentPipelines(_ deviceIDs: [UUID]) async throws -> [UUID: (pipelines: [DesiredState.Pipeline], revision: Int)] {
        var current: [UUID: (pipelines: [DesiredState.Pipeline], revision: Int)] = [:]
        var coder = PipelineListCoder()
        let rows = try await client.query(
            "SELECT device_id, pipelines::text, revision FROM orchestrator.device_pipelines WHERE device_id = ANY(\(deviceIDs))", logger: logger)
        for try await (id, text, revision) in rows.decode((UUID, String, Int).self) {
            current[id] = (try coder.pipelines(text), revision)
        }
        return current
    }

    func history(of deviceID: UUID) async throws -> [PipelineHistoryEntry] {
        var entries: [PipelineHistoryEntry] = []
        let rows = try await client.query(
            """
            SELECT revision, pipelines::text, operation_id, created_at FROM orchestrator.device_pipeline_history
            WHERE device_id = \(deviceID) ORDER BY revision DESC
            """, logger: logger)
        for try await (revision, text, operation, createdAt) in rows.decode((Int, String, UUID, Date).self) {
            entries.append(PipelineHistoryEntry(revision: revision, pipelines: try pipelines(text), operationID: operation, createdAt: createdAt))
        }
        return entries
    }

    // MARK: Applying an operation

    /// Commits the operation in one transaction: the devices' new pipelines and history, each
    /// affected agent's generation + 1 with its whole new desired-state document in the outbox,
    /// and the operation with its devices, all pending. Returns the agents' new generations and
    /// the operation as committed (every device pending: no need to count them again).
    @discardableResult
    func apply(_ operation: NewOperation) async throws -> (generations: [String: Int64], summary: OperationSummary) {
        let changes = operation.changes
        // Encoded once per distinct list: the devices' table, the operation's rows and the
        // documents all take the same text.
        var coder = PipelineListCoder()
        let after = try changes.map { try coder.json($0.after) }
        let lists = Lists(after: after, before: try changes.map { try coder.json($0.before) })
        return try await unwrappingRefusals {
            try await client.withTransaction(logger: logger) { connection in
                let createdAt = try await insertOperation(operation, on: connection)
                try await lockDevices(of: operation, on: connection)
                try await storeDevicePipelines(of: operation, lists: lists, on: connection)
                let agents = Array(Set(changes.map(\.device.serverID))).sorted()
                let generations = try await outbox.nextGenerations(of: agents, on: connection)
                // Each agent's whole document: every device of its server with the pipelines it runs
                // now, the changed ones from memory and the others as stored. The agents' rows, locked
                // by nextGenerations, serialise operations on one agent, so what is stored is current.
                var assignments: [String: [(key: String, pipelines: String)]] = [:]
                for (change, text) in zip(changes, after) where !change.after.isEmpty {
                    assignments[change.device.serverID, default: []].append((change.device.key, text))
                }
                try await outbox.enqueueDocuments(
                    of: agents, at: generations, changed: assignments, exceptDevices: changes.map(\.device.id), correlationID: operation.id,
                    on: connection)
                try await recordDevices(of: operation, lists: lists, generations: generations, on: connection)
                var counts = Dictionary(uniqueKeysWithValues: DeviceStatus.allCases.map { ($0.rawValue, 0) })
                counts[DeviceStatus.pending.rawValue] = changes.count
                let summary = OperationSummary(
                    id: operation.id, kind: operation.kind, actor: operation.actor, createdAt: createdAt, reverts: operation.reverts,
                    retries: operation.retries, watchdogSeconds: operation.watchdogSeconds, counts: counts, devices: changes.count, finished: false)
                return (generations, summary)
            }
        }
    }

    /// An operation's distinct pipeline lists, and each device's before and after list by position
    /// (from 1) among them: the devices of an assignment share one or a few.
    private struct Lists {
        var texts: [String]
        var after: [Int32]
        var before: [Int32]

        init(after: [String], before: [String]) {
            var distinct = DistinctTexts()
            self.after = after.map { distinct.position(of: $0) }
            self.before = before.map { distinct.position(of: $0) }
            texts = distinct.texts
        }
    }

    /// The operation's row; returns when it was created.
    private func insertOperation(_ operation: NewOperation, on connection: PostgresConnection) async throws -> Date {
        var createdAt = Date()
        for try await created in try await connection.query(
            """
            INSERT INTO orchestrator.operations (id, kind, actor, request, reverts, retries, watchdog_seconds)
            VALUES (\(operation.id), \(operation.kind.rawValue), \(operation.actor), \(operation.request)::jsonb, \(operation.reverts),
                    \(operation.retries), \(operation.watchdogSeconds))
            RETURNING created_at
            """, logger: logger
        ).decode(Date.self) {
            createdAt = created
        }
        return createdAt
    }

    /// Locks the devices' rows; a device another operation changed since the plan is a conflict.
    private func lockDevices(of operation: NewOperation, on connection: PostgresConnection) async throws {
        let ids = operation.changes.map(\.device.id)
        var locked: [UUID: Int] = [:]
        for try await (id, revision) in try await connection.query(
            "SELECT device_id, revision FROM orchestrator.device_pipelines WHERE device_id = ANY(\(ids)) ORDER BY device_id FOR UPDATE",
            logger: logger
        ).decode((UUID, Int).self) {
            locked[id] = revision
        }
        for id in ids where (locked[id] ?? 0) != (operation.revisions[id] ?? 0) {
            throw DomainError.changedMeanwhile(id)
        }
    }

    /// Each device's new pipelines at its next revision, and that revision in its history. Each
    /// distinct list is sent once and parsed into jsonb once (parsing the same list for each of
    /// 10,000 rows was a fifth of the commit); rows refer to it by position. The history row is
    /// written from what the upsert returns.
    private func storeDevicePipelines(of operation: NewOperation, lists: Lists, on connection: PostgresConnection) async throws {
        let changes = operation.changes
        try await connection.query(
            """
            WITH lists AS MATERIALIZED (SELECT i::int AS position, l::jsonb AS p FROM unnest(\(lists.texts)::text[]) WITH ORDINALITY AS l (l, i)),
            upserted AS (
                INSERT INTO orchestrator.device_pipelines (device_id, server_id, site_id, device_key, pipelines, revision)
                SELECT d, s, si, k, lists.p, 1
                FROM unnest(\(changes.map(\.device.id))::uuid[], \(changes.map(\.device.serverID))::text[], \(changes.map(\.device.siteID))::text[],
                            \(changes.map(\.device.key))::text[], \(lists.after)::int[]) AS t (d, s, si, k, ai)
                JOIN lists ON lists.position = t.ai
                ON CONFLICT (device_id) DO UPDATE SET
                    pipelines = excluded.pipelines, revision = orchestrator.device_pipelines.revision + 1,
                    server_id = excluded.server_id, site_id = excluded.site_id, device_key = excluded.device_key, updated_at = now()
                RETURNING device_id, revision, pipelines
            )
            INSERT INTO orchestrator.device_pipeline_history (device_id, revision, pipelines, operation_id)
            SELECT device_id, revision, pipelines, \(operation.id) FROM upserted
            """, logger: logger)
    }

    /// The operation's distinct lists once, and a `pending` row per device naming its lists by
    /// position, with its watchdog's deadline when its server is online.
    private func recordDevices(
        of operation: NewOperation, lists: Lists, generations: [String: Int64], on connection: PostgresConnection
    ) async throws {
        let changes = operation.changes
        try await connection.query(
            """
            INSERT INTO orchestrator.operation_lists (operation_id, position, pipelines)
            SELECT \(operation.id), i, l::jsonb FROM unnest(\(lists.texts)::text[]) WITH ORDINALITY AS l (l, i)
            """, logger: logger)
        try await connection.query(
            """
            INSERT INTO orchestrator.operation_devices
                (operation_id, device_id, server_id, site_id, device_key, device_name, generation, status, before_list, after_list, reachable,
                 deadline)
            SELECT \(operation.id), d, s, si, k, n, g, 'pending', bi, ai, r,
                   CASE WHEN r THEN now() + make_interval(secs => \(operation.watchdogSeconds)) END
            FROM unnest(\(changes.map(\.device.id))::uuid[], \(changes.map(\.device.serverID))::text[], \(changes.map(\.device.siteID))::text[],
                        \(changes.map(\.device.key))::text[], \(changes.map(\.device.name))::text[],
                        \(changes.map { generations[$0.device.serverID]! })::bigint[], \(lists.before)::int[],
                        \(lists.after)::int[], \(changes.map(\.device.reachable))::boolean[])
                 AS t (d, s, si, k, n, g, bi, ai, r)
            """, logger: logger)
    }

    // MARK: Delivery

    /// A transaction, run again (at most twice more) when PostgreSQL aborts it to break a
    /// deadlock. The report batches and the outbox's marking lock their rows in one order
    /// (`lockDeviceRows`), so they no longer deadlock each other; the watchdog's and the
    /// reconnect paths' updates still lock in no particular order (decision 46).
    private func withRetriedTransaction(_ body: (PostgresConnection) async throws -> Void) async throws {
        var attempt = 1
        while true {
            do {
                return try await client.withTransaction(logger: logger) { connection in try await body(connection) }
            } catch let error as PostgresTransactionError where attempt < 3 && error.isDeadlock {
                attempt += 1
                OrchestratorMetrics.transactionsRetried.increment()
                logger.info("a transaction was aborted to break a deadlock; running it again", metadata: ["attempt": "\(attempt)"])
            }
        }
    }

    struct OutboxEntry: Sendable {
        var seq: Int64
        var agentID: String
        var generation: Int64
        var document: String
    }

    func unsent(limit: Int) async throws -> [OutboxEntry] {
        var entries: [OutboxEntry] = []
        let rows = try await client.query(
            "SELECT seq, agent_id, generation, document FROM orchestrator.outbox WHERE sent_at IS NULL ORDER BY seq LIMIT \(limit)", logger: logger)
        for try await (seq, agent, generation, document) in rows.decode((Int64, String, Int64, String).self) {
            entries.append(OutboxEntry(seq: seq, agentID: agent, generation: generation, document: document))
        }
        return entries
    }

    /// Marks entries sent, and their operations' devices delivered.
    func markSent(_ entries: [OutboxEntry]) async throws {
        guard !entries.isEmpty else { return }
        try await withRetriedTransaction { connection in
            // Lost in a database crash, these entries are sent again: harmless (decision 38).
            try await connection.query("SET LOCAL synchronous_commit = off", logger: logger)
            try await connection.query("UPDATE orchestrator.outbox SET sent_at = now() WHERE seq = ANY(\(entries.map(\.seq)))", logger: logger)
            let (agents, generations) = (entries.map(\.agentID), entries.map(\.generation))
            try await lockDeviceRows(of: agents, upTo: generations, unsettled: .pending, on: connection)
            try await connection.query(
                """
                UPDATE orchestrator.operation_devices od SET status = 'delivered', updated_at = now()
                FROM unnest(\(agents)::text[], \(generations)::bigint[]) AS t (a, g)
                WHERE od.server_id = t.a AND od.generation <= t.g AND \(unescaped: UnsettledRows.pending.rawValue)
                """, logger: logger)
        }
    }

    /// Which unsettled rows a transaction updates, as literal SQL so that the planner can use the
    /// partial index `operation_devices_unsettled`.
    private enum UnsettledRows: String {
        /// The outbox marks these delivered.
        case pending = "od.status = 'pending'"
        /// A report settles these: not yet applied, or given up on by the watchdog.
        case awaitingReport = "od.status IN ('pending', 'delivered', 'timed_out')"
        /// On their way: the watchdog runs for these.
        case inFlight = "od.status IN ('pending', 'delivered')"
    }

    /// Locks the rows of these agents' devices up to each one's generation, in primary-key
    /// order. The outbox's marking and a report batch often cover the same agents; each updating
    /// them in its own plan's order, they deadlocked in most benchmark runs, and PostgreSQL only
    /// breaks a deadlock after `deadlock_timeout` (1 s). Taking the locks in one order first, the
    /// later of the two waits for the other instead.
    private func lockDeviceRows(
        of agents: [String], upTo generations: [Int64], unsettled: UnsettledRows, on connection: PostgresConnection
    ) async throws {
        try await connection.query(
            """
            SELECT 1 FROM orchestrator.operation_devices od
            JOIN unnest(\(agents)::text[], \(generations)::bigint[]) AS t (a, g) ON od.server_id = t.a AND od.generation <= t.g
            WHERE \(unescaped: unsettled.rawValue)
            ORDER BY od.operation_id, od.device_id
            FOR UPDATE OF od
            """, logger: logger)
    }

    /// An agent's report: the generation it applied, and the reasons of its devices whose
    /// pipelines failed, by device key.
    struct AgentReport: Sendable {
        var agentID: String
        var generation: Int64
        var failures: [String: String]
    }

    /// Agents' reports, each of a different agent, in one transaction: each agent's devices'
    /// unsettled rows up to the reported generation become applied, or failed with the reasons of
    /// their failed pipelines. Late reports also settle devices the watchdog had given up on.
    ///
    /// Applied means applied as sent: a report of a generation the orchestrator never sent the
    /// agent (above its desired one: a forged document, a restored database) settles nothing and
    /// is returned, for ``repairDrift(_:)``.
    func applyReports(_ reports: [AgentReport]) async throws -> [AgentReport] {
        guard !reports.isEmpty else { return [] }
        precondition(Set(reports.map(\.agentID)).count == reports.count, "one report per agent in a transaction")
        var drifted: [AgentReport] = []
        try await withRetriedTransaction { connection in
            // Lost in a database crash, a report is asked for again (decision 38).
            try await connection.query("SET LOCAL synchronous_commit = off", logger: logger)
            var desired: [String: Int64] = [:]
            for try await (agent, generation) in try await connection.query(
                "SELECT agent_id, generation FROM orchestrator.agents WHERE agent_id = ANY(\(reports.map(\.agentID)))", logger: logger
            ).decode((String, Int64).self) {
                desired[agent] = generation
            }
            drifted = reports.filter { $0.generation > desired[$0.agentID] ?? 0 }
            let inStep = reports.filter { $0.generation <= desired[$0.agentID] ?? 0 }
            let failed = inStep.flatMap { report in
                report.failures.keys.sorted().map { (report.agentID, $0, report.failures[$0]!, report.generation) }
            }
            let (agents, generations) = (inStep.map(\.agentID), inStep.map(\.generation))
            try await lockDeviceRows(of: agents, upTo: generations, unsettled: .awaitingReport, on: connection)
            if !failed.isEmpty {
                try await connection.query(
                    """
                    UPDATE orchestrator.operation_devices od SET status = 'failed', reason = f.r, updated_at = now()
                    FROM unnest(\(failed.map(\.0))::text[], \(failed.map(\.1))::text[], \(failed.map(\.2))::text[], \(failed.map(\.3))::bigint[])
                         AS f (a, k, r, g)
                    WHERE od.server_id = f.a AND od.device_key = f.k AND od.generation <= f.g
                      AND \(unescaped: UnsettledRows.awaitingReport.rawValue)
                    """, logger: logger)
            }
            try await connection.query(
                """
                UPDATE orchestrator.operation_devices od SET status = 'applied', reason = NULL, updated_at = now()
                FROM unnest(\(agents)::text[], \(generations)::bigint[]) AS t (a, g)
                WHERE od.server_id = t.a AND od.generation <= t.g AND \(unescaped: UnsettledRows.awaitingReport.rawValue)
                """, logger: logger)
            try await connection.query(
                """
                UPDATE orchestrator.agents ag SET applied_generation = greatest(ag.applied_generation, t.g)
                FROM unnest(\(agents)::text[], \(generations)::bigint[]) AS t (a, g)
                WHERE ag.agent_id = t.a
                """, logger: logger)
        }
        return drifted
    }

    /// An agent's in-progress report: it is applying `generation`, and has fetched this much.
    struct AgentProgress: Sendable {
        var agentID: String
        var generation: Int64
        var bytesFetched: Int64
        var bytesTotal: Int64?
    }

    /// Notes in-progress reports: each agent's progress is kept for the operation's devices to
    /// show, and the watchdog of its devices waiting for that generation starts again (it counts
    /// from the last sign of work, so a large download does not time out while it goes on). A
    /// report about a generation the agent has applied already, or was never sent, changes
    /// nothing.
    func noteProgress(_ progress: [AgentProgress]) async throws {
        guard !progress.isEmpty else { return }
        let agents = progress.map(\.agentID)
        let generations = progress.map(\.generation)
        try await withRetriedTransaction { connection in
            try await connection.query("SET LOCAL synchronous_commit = off", logger: logger)
            try await connection.query(
                """
                UPDATE orchestrator.agents ag SET progress_generation = t.g, progress_bytes = t.f, progress_total = NULLIF(t.n, -1),
                    progress_at = now()
                FROM unnest(\(agents)::text[], \(generations)::bigint[], \(progress.map(\.bytesFetched))::bigint[],
                            \(progress.map { $0.bytesTotal ?? -1 })::bigint[]) AS t (a, g, f, n)
                WHERE ag.agent_id = t.a AND ag.applied_generation < t.g AND t.g <= ag.generation
                """, logger: logger)
            try await lockDeviceRows(of: agents, upTo: generations, unsettled: .inFlight, on: connection)
            try await connection.query(
                """
                UPDATE orchestrator.operation_devices od
                SET deadline = greatest(od.deadline, now() + make_interval(secs => o.watchdog_seconds))
                FROM orchestrator.operations o, unnest(\(agents)::text[], \(generations)::bigint[]) AS t (a, g)
                WHERE o.id = od.operation_id AND od.server_id = t.a AND od.generation <= t.g AND od.deadline IS NOT NULL
                  AND \(unescaped: UnsettledRows.inFlight.rawValue)
                """, logger: logger)
        }
    }

    /// Agents that run a generation the orchestrator never sent them get the document of what
    /// they should run, at a generation past the one they reported: an agent ignores a
    /// generation at or below its own, and the gateway one below what the agent's topic holds.
    /// Their unsettled devices are settled by the report of that document.
    func repairDrift(_ drifted: [AgentReport]) async throws {
        guard !drifted.isEmpty else { return }
        let agents = drifted.map(\.agentID)
        try await withRetriedTransaction { connection in
            var generations: [String: Int64] = [:]
            for try await (agent, generation) in try await connection.query(
                """
                INSERT INTO orchestrator.agents (agent_id, generation) SELECT a, g FROM unnest(\(agents)::text[], \(drifted.map { $0.generation + 1 })::bigint[]) AS t (a, g)
                ON CONFLICT (agent_id) DO UPDATE SET generation = greatest(orchestrator.agents.generation + 1, excluded.generation), updated_at = now()
                RETURNING agent_id, generation
                """, logger: logger
            ).decode((String, Int64).self) {
                generations[agent] = generation
            }
            try await outbox.enqueueDocuments(of: agents, at: generations, changed: [:], exceptDevices: [], correlationID: nil, on: connection)
        }
    }

    /// An agent whose reports are behind the generation the orchestrator sent it.
    struct AgentBehind: Sendable, Equatable {
        var agentID: String
        var generation: Int64
    }

    /// Agents whose last report is behind their desired generation and whose latest document
    /// was sent more than `seconds` ago: the document, or the report, was lost on the way (a
    /// gateway or broker restart, retained messages lost with the broker's memory). Oldest
    /// changes first.
    func agentsBehind(sentBefore seconds: Int, limit: Int) async throws -> [AgentBehind] {
        var behind: [AgentBehind] = []
        let rows = try await client.query(
            """
            SELECT ag.agent_id, ag.generation FROM orchestrator.agents ag
            WHERE ag.applied_generation < ag.generation
              AND (ag.progress_at IS NULL OR ag.progress_at < now() - make_interval(secs => \(seconds))
                   OR ag.progress_generation <= ag.applied_generation)
              AND NOT EXISTS (
                  SELECT 1 FROM orchestrator.outbox o
                  WHERE o.agent_id = ag.agent_id AND (o.sent_at IS NULL OR o.sent_at > now() - make_interval(secs => \(seconds))))
            ORDER BY ag.updated_at LIMIT \(limit)
            """, logger: logger)
        for try await (agent, generation) in rows.decode((String, Int64).self) {
            behind.append(AgentBehind(agentID: agent, generation: generation))
        }
        return behind
    }

    /// The latest document of each of these agents.
    func latestDocuments(of agents: [String]) async throws -> [OutboxEntry] {
        var entries: [OutboxEntry] = []
        let rows = try await client.query(
            """
            SELECT DISTINCT ON (agent_id) seq, agent_id, generation, document FROM orchestrator.outbox
            WHERE agent_id = ANY(\(agents)) ORDER BY agent_id, seq DESC
            """, logger: logger)
        for try await (seq, agent, generation, document) in rows.decode((Int64, String, Int64, String).self) {
            entries.append(OutboxEntry(seq: seq, agentID: agent, generation: generation, document: document))
        }
        return entries
    }

    /// Devices not applied by their deadline become `timed_out`; returns how many.
    func expireOverdue() async throws -> Int {
        let rows = try await client.query(
            """
            UPDATE orchestrator.operation_devices od
            SET status = 'timed_out', reason = 'not applied within ' || o.watchdog_seconds || ' s', updated_at = now()
            FROM orchestrator.operations o
            WHERE o.id = od.operation_id AND od.status IN ('pending', 'delivered') AND od.deadline < now()
            RETURNING od.device_id
            """, logger: logger)
        var count = 0
        for try await _ in rows { count += 1 }
        return count
    }

    /// A server came online: the watchdog starts for its devices that were waiting offline.
    func startWatchdog(serverID: String) async throws {
        try await client.query(
            """
            UPDATE orchestrator.operation_devices od SET deadline = now() + make_interval(secs => o.watchdog_seconds)
            FROM orchestrator.operations o
            WHERE o.id = od.operation_id AND od.server_id = \(serverID) AND od.deadline IS NULL AND od.status IN ('pending', 'delivered')
            """, logger: logger)
    }

    // MARK: Reading operations

    private static let summaryQuery = """
        SELECT o.seq, o.id, o.kind, o.actor, o.created_at, o.reverts, o.retries, o.watchdog_seconds,
               count(*) FILTER (WHERE d.status = 'pending')::int, count(*) FILTER (WHERE d.status = 'delivered')::int,
               count(*) FILTER (WHERE d.status = 'applied')::int, count(*) FILTER (WHERE d.status = 'failed')::int,
               count(*) FILTER (WHERE d.status = 'timed_out')::int
        FROM orchestrator.operations o LEFT JOIN orchestrator.operation_devices d ON d.operation_id = o.id
        """

    private func summaries(_ rows: PostgresRowSequence) async throws -> [(Int64, OperationSummary)] {
        var found: [(Int64, OperationSummary)] = []
        for try await row in rows {
            let (seq, id, kind, actor, createdAt, reverts, retries, watchdog, pending, delivered, applied, failed, timedOut) = try row.decode(
                (Int64, UUID, String, String, Date, UUID?, UUID?, Int, Int, Int, Int, Int, Int).self)
            let counts = ["pending": pending, "delivered": delivered, "applied": applied, "failed": failed, "timed_out": timedOut]
            let total = counts.values.reduce(0, +)
            found.append(
                (
                    seq,
                    OperationSummary(
                        id: id, kind: OperationKind(rawValue: kind) ?? .assign, actor: actor, createdAt: createdAt, reverts: reverts,
                        retries: retries,
                        watchdogSeconds: watchdog, counts: counts, devices: total, finished: pending + delivered == 0)
                ))
        }
        return found
    }

    func operation(_ id: UUID) async throws -> OperationSummary? {
        let rows = try await client.query(
            PostgresQuery(unsafeSQL: Self.summaryQuery + " WHERE o.id = $1 GROUP BY o.id", binds: binds(id)), logger: logger)
        return try await summaries(rows).first?.1
    }

    /// Newest first; `before` is the cursor (the last seq of the previous page).
    func operations(limit: Int, before: Int64?) async throws -> (items: [OperationSummary], next: Int64?) {
        let rows = try await client.query(
            PostgresQuery(
                unsafeSQL: Self.summaryQuery + " WHERE o.seq < $1 GROUP BY o.id ORDER BY o.seq DESC LIMIT $2",
                binds: binds(before ?? Int64.max, limit + 1)), logger: logger)
        let found = try await summaries(rows)
        let page = Array(found.prefix(limit))
        return (page.map(\.1), found.count > limit ? page.last?.0 : nil)
    }

    func devices(of operationID: UUID, status: DeviceStatus? = nil) async throws -> [OperationDevice] {
        var devices: [OperationDevice] = []
        let rows = try await client.query(
            """
            SELECT od.device_id, od.device_name, od.site_id, od.server_id, od.generation, od.status, od.reason, od.updated_at,
                   ag.progress_bytes, ag.progress_total, ag.progress_at
            FROM orchestrator.operation_devices od
            LEFT JOIN orchestrator.agents ag ON ag.agent_id = od.server_id AND od.status IN ('pending', 'delivered')
                 AND ag.progress_generation >= od.generation AND ag.progress_generation > ag.applied_generation
            WHERE od.operation_id = \(operationID) AND (\(status?.rawValue)::text IS NULL OR od.status = \(status?.rawValue))
            ORDER BY od.site_id, od.server_id, od.device_key
            """, logger: logger)
        for try await (id, name, site, server, generation, status, reason, updatedAt, fetched, total, progressAt) in rows.decode(
            (UUID, String, String, String, Int64, String, String?, Date, Int64?, Int64?, Date?).self)
        {
            var progress: ApplyProgress?
            if let fetched, let progressAt { progress = ApplyProgress(bytesFetched: fetched, bytesTotal: total, reportedAt: progressAt) }
            devices.append(
                OperationDevice(
                    deviceID: id, deviceName: name, siteID: site, serverID: server, generation: generation,
                    status: DeviceStatus(rawValue: status) ?? .pending,
                    reason: reason, progress: progress, updatedAt: updatedAt))
        }
        return devices
    }

    /// Each device's pipelines before and after an operation, for revert and retry.
    func changes(of operationID: UUID) async throws -> [OperationChange] {
        var found: [OperationChange] = []
        let rows = try await client.query(
            """
            SELECT d.device_id, d.status, b.pipelines::text, a.pipelines::text FROM orchestrator.operation_devices d
            JOIN orchestrator.operation_lists b ON b.operation_id = d.operation_id AND b.position = d.before_list
            JOIN orchestrator.operation_lists a ON a.operation_id = d.operation_id AND a.position = d.after_list
            WHERE d.operation_id = \(operationID)
            """,
            logger: logger)
        var coder = PipelineListCoder()
        for try await (id, status, before, after) in rows.decode((UUID, String, String, String).self) {
            found.append(
                OperationChange(
                    deviceID: id, status: DeviceStatus(rawValue: status) ?? .pending, before: try coder.pipelines(before),
                    after: try coder.pipelines(after)))
        }
        return found
    }

    // MARK: Model versions in use

    /// The devices whose pipelines have a stage on `modelID` `version` now, for the registry's
    /// delete. A containment query without an index: deleting a version is rare, a scan of 100,000
    /// devices takes a fraction of a second, and a GIN index would cost every assignment's writes.
    func usage(of modelID: UUID, version: String) async throws -> ModelVersionUsage {
        // Stages are stored as the contract encodes them: the model id in UUID's own spelling.
        let stage = JSONValue.object(["model_id": .string(modelID.lowercasedString), "version": .string(version)])
        let pipeline = JSONValue.object(["stages": .array([stage])])
        let (pipelineText, devicesText) = (try json(pipeline), try json(JSONValue.array([pipeline])))
        let rows = try await client.query(
            """
            WITH users AS (
                SELECT device_id, server_id, device_key, pipelines FROM orchestrator.device_pipelines
                WHERE pipelines @> \(devicesText)::jsonb
            )
            SELECT u.device_id, u.server_id, u.device_key,
                   (SELECT p->>'name' FROM jsonb_array_elements(u.pipelines) p WHERE p @> \(pipelineText)::jsonb LIMIT 1),
                   (SELECT count(*) FROM users)
            FROM users u ORDER BY u.server_id, u.device_key LIMIT \(ModelVersionUsage.exampleLimit)
            """, logger: logger)
        var usage = ModelVersionUsage(devices: 0, examples: [])
        for try await (id, server, key, name, count) in rows.decode((UUID, String, String, String?, Int).self) {
            usage.devices = count
            usage.examples.append(ModelVersionUsage.User(deviceID: id, serverID: server, deviceKey: key, pipeline: name ?? ""))
        }
        return usage
    }

    private func binds(_ values: any PostgresDynamicTypeEncodable...) -> PostgresBindings {
        var bindings = PostgresBindings()
        for value in values { bindings.append(value) }
        return bindings
    }
}

extension PostgresTransactionError {
    /// Aborted by PostgreSQL to break a deadlock (SQLSTATE 40P01), in the body or at commit.
    fileprivate var isDeadlock: Bool {
        [closureError, commitError].contains { ($0 as? PSQLError)?.serverInfo?[.sqlState] == "40P01" }
    }
}

/// A refusal thrown inside a transaction, as itself: PostgresNIO wraps whatever the body throws in
/// a `PostgresTransactionError`, which would answer 500 instead of the 409 of a `DomainError`, and
/// hide a `PSQLError` (a unique violation) from the caller that turns it into one.
func unwrappingRefusals<Result: Sendable>(_ body: () async throws -> Result) async throws -> Result {
    do {
        return try await body()
    } catch let error as PostgresTransactionError {
        if let refusal = error.closureError as? DomainError { throw refusal }
        if let refusal = error.closureError as? PSQLError { throw refusal }
        throw error
    }
}
