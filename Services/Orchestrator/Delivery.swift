import DeviceProtocol
import FleetContract
import Foundation
import Logging
import MQTT
import PostgresNIO
import ServiceLifecycle
import ServiceRuntime
import Synchronization

/// Publishes the outbox to the gateways, in order, after commit and again after a crash: what is
/// committed is sent at least once. A desired state sent twice is harmless (the gateway does not
/// publish a generation the agent's topic already has, and the agent ignores one it applied).
struct OutboxPublisher: Service {
    let mqtt: MQTTClient
    let database: DatabaseService
    let store: PostgresOperationStore
    let wake: Wake
    let loops: LoopHealth
    /// The bound of each database step (``LoopHealth``).
    let stepTimeout: Duration
    let logger: Logger

    static let loop = "outbox"

    /// Wakes the publisher after a commit, so that it does not wait for its next poll.
    final class Wake: Sendable {
        private let signalled = Atomic<Bool>(false)

        func signal() { signalled.store(true, ordering: .releasing) }

        /// Returns soon after a signal (within 5 ms), or after `timeout`.
        func wait(timeout: Duration) async {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline && !Task.isCancelled {
                if signalled.exchange(false, ordering: .acquiringAndReleasing) { return }
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
    }

    func run() async throws {
        try await database.waitUntilMigrated()
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    let entries = try await loops.step(Self.loop, within: stepTimeout) { try await store.unsent(limit: 2_000) }
                    if entries.isEmpty {
                        await wake.wait(timeout: .seconds(1))
                        continue
                    }
                    // A chunk of agents at a time, each chunk marked sent while the next is
                    // published. Marking all at the end held the row locks of every device of a
                    // large operation for a second while the first agents' reports waited on them.
                    var marking: Task<Void, any Error>?
                    for chunk in Self.chunks(of: entries, agentsPerChunk: Self.agentsPerChunk) {
                        try await loops.step(Self.loop, within: stepTimeout) { try await Self.publish(chunk, with: mqtt) }
                        try await marking?.value
                        marking = Task { try await loops.step(Self.loop, within: stepTimeout) { try await store.markSent(chunk) } }
                    }
                    try await marking?.value
                    OrchestratorMetrics.desiredStatesPublished.increment(by: entries.count)
                } catch is CancellationError {
                    return
                } catch {
                    // The step that failed has told `loops`.
                    logger.warning("could not publish the outbox; retrying", metadata: ["error": "\(error)"])
                    try? await Task.sleep(for: .seconds(1))
                }
            }
        }
    }

    /// Agents whose documents are published, then marked sent, together.
    static let agentsPerChunk = 128

    /// The entries in outbox order, cut between agents: each agent's entries stay in one chunk, in
    /// order, so that one agent's documents never race each other.
    static func chunks(of entries: [PostgresOperationStore.OutboxEntry], agentsPerChunk: Int) -> [[PostgresOperationStore.OutboxEntry]] {
        var chunkOfAgent: [String: Int] = [:]
        var chunks: [[PostgresOperationStore.OutboxEntry]] = []
        var agentsInLastChunk = 0
        for entry in entries {
            if let index = chunkOfAgent[entry.agentID] {
                chunks[index].append(entry)
                continue
            }
            if chunks.isEmpty || agentsInLastChunk == agentsPerChunk {
                chunks.append([])
                agentsInLastChunk = 0
            }
            agentsInLastChunk += 1
            chunkOfAgent[entry.agentID] = chunks.count - 1
            chunks[chunks.count - 1].append(entry)
        }
        return chunks
    }

    /// Agents in parallel (64 at a time), each agent's documents one after the other in outbox order.
    static func publish(_ entries: [PostgresOperationStore.OutboxEntry], with mqtt: MQTTClient) async throws {
        var byAgent: [String: [PostgresOperationStore.OutboxEntry]] = [:]
        var order: [String] = []
        for entry in entries {
            if byAgent[entry.agentID] == nil { order.append(entry.agentID) }
            byAgent[entry.agentID, default: []].append(entry)
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            var running = 0
            for agent in order {
                if running == 64 {
                    try await group.next()
                    running -= 1
                }
                running += 1
                let documents = byAgent[agent]!
                group.addTask {
                    for entry in documents {
                        try await mqtt.publish(
                            Topic.agentDesiredStateRequests.path, payload: Data(entry.document.utf8), qos: .atLeastOnce,
                            properties: MQTTProperties(contentType: "application/json"))
                    }
                }
            }
            try await group.waitForAll()
        }
    }
}

/// Settles operations' devices: agents' reports (applied or failed), the watchdog (timed out),
/// and the registry's server-presence events (the watchdog of devices accepted offline starts
/// when their server comes back). Keeps the agents level with their desired states: an agent
/// behind is sent its document again, one ahead (drift) a newer one.
struct DeliveryTracker: Service {
    let mqtt: MQTTClient
    let database: DatabaseService
    let store: PostgresOperationStore
    /// Where the agents' word on their deployment instances is recorded.
    let deployments: PostgresDeploymentStore
    /// Wakes the outbox publisher after a drift repair wrote documents.
    let wake: OutboxPublisher.Wake
    let loops: LoopHealth
    /// The bound of each database step (``LoopHealth``).
    let stepTimeout: Duration
    let logger: Logger
    /// For `/ready`: reports published before the subscription are not kept for the orchestrator.
    let subscribed: SubscriptionFlag
    let republishing = RepublishState()

    enum Loop {
        static let reports = "reports"
        static let watchdog = "watchdog"
        static let reconciler = "reconciler"
    }

    func run() async throws {
        try await database.waitUntilMigrated()
        let reports = try await mqtt.subscribe(to: Topic.agentReportEvents.shared(by: "orchestrator"), qos: .atLeastOnce, bufferCapacity: 100_000)
        let presence = try await mqtt.subscribe(to: Topic.registryEvent(.serverPresence).shared(by: "orchestrator"), qos: .atLeastOnce)
        subscribed.set(true)
        defer { subscribed.set(false) }
        await consumeUntilShutdown([reports, presence]) { group in
            // One transaction at a time settles every report queued by then: one report per
            // transaction, even eight at once, fell behind 1,000 agents reporting together.
            group.addTask { await reports.forEachBatch(upTo: Self.reportsPerTransaction) { await handleReports($0) } }
            group.addTask { for await message in presence { await handleServerPresence(message) } }
        } background: {
            await withDiscardingTaskGroup { group in
                group.addTask { await republishToAgentsBehind() }
                group.addTask { await expireOverdueDevices() }
            }
        }
    }

    /// Once a second: devices not applied within their watchdog become `timed_out`.
    private func expireOverdueDevices() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            do {
                let expired = try await loops.step(Loop.watchdog, within: stepTimeout) { try await store.expireOverdue() }
                if expired > 0 {
                    OrchestratorMetrics.devicesTimedOut.increment(by: expired)
                    logger.warning("devices not applied within their watchdog", metadata: ["count": "\(expired)"])
                }
            } catch is CancellationError {
                return
            } catch {
                logger.warning("watchdog failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Once a second: agents whose reports are behind the generation sent to them get their
    /// latest document again (the gateway publishes it again; an agent that has it already just
    /// reports), with a backoff per agent (``RepublishSchedule``), whatever their devices'
    /// statuses say: a device the watchdog gave up on is still brought level.
    private func republishToAgentsBehind() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            do {
                let behind = try await loops.step(Loop.reconciler, within: stepTimeout) {
                    try await store.agentsBehind(sentBefore: Self.reportGraceSeconds, limit: 10_000)
                }
                let due = republishing.due(behind, at: ContinuousClock.now)
                guard !due.isEmpty else { continue }
                let entries = try await loops.step(Loop.reconciler, within: stepTimeout) { try await store.latestDocuments(of: due) }
                try await loops.step(Loop.reconciler, within: stepTimeout) { try await OutboxPublisher.publish(entries, with: mqtt) }
                OrchestratorMetrics.desiredStatesRepublished.increment(by: entries.count)
                logger.info("sent agents behind their desired state their documents again", metadata: ["agents": "\(entries.count)"])
            } catch is CancellationError {
                return
            } catch {
                logger.warning("could not send agents behind their desired state their documents again", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Seconds a document is given to be applied and reported before it is sent again.
    static let reportGraceSeconds = 5

    /// The most reports one transaction settles.
    static let reportsPerTransaction = 256

    /// Settles a batch of reports in as few transactions as keep their order: a report of an
    /// agent already in the transaction starts the next one.
    private func handleReports(_ messages: [MQTTMessage]) async {
        var transactions: [[PostgresOperationStore.AgentReport]] = [[]]
        var agents: Set<String> = []
        var progress: [String: PostgresOperationStore.AgentProgress] = [:]
        var instances: [(agentID: String, instances: [AgentMessage.Report.InstanceReport])] = []
        for message in messages {
            let report: AgentMessage.Report
            do {
                report = try Envelope<AgentMessage.Report>.decode(from: message.payload).payload
            } catch {
                OrchestratorMetrics.reports(.invalid).increment()
                logger.warning("dropped an invalid agent report", metadata: ["error": "\(error)"])
                continue
            }
            if let applying = report.applying {
                // In progress: settles nothing. The latest of an agent's in the batch is enough.
                progress[report.agentID] = PostgresOperationStore.AgentProgress(
                    agentID: report.agentID, generation: Int64(report.generation), bytesFetched: applying.bytesFetched,
                    bytesTotal: applying.bytesTotal)
                continue
            }
            if let reported = report.instances, !reported.isEmpty { instances.append((report.agentID, reported)) }
            var failures: [String: String] = [:]
            for device in report.devices {
                let failed = device.pipelines.filter { $0.state == .failed }
                if !failed.isEmpty {
                    failures[device.deviceKey] = failed.map { "pipeline \($0.pipelineID): \($0.reason ?? "failed")" }.joined(separator: "; ")
                }
            }
            if !agents.insert(report.agentID).inserted {
                transactions.append([])
                agents = [report.agentID]
            }
            transactions[transactions.count - 1].append(
                PostgresOperationStore.AgentReport(agentID: report.agentID, generation: Int64(report.generation), failures: failures))
        }
        for reports in transactions where !reports.isEmpty {
            await record(reports)
        }
        if !progress.isEmpty { await recordProgress(Array(progress.values)) }
        if !instances.isEmpty { await recordInstances(instances) }
    }

    /// Records what agents said of their deployment instances, tried again while the database
    /// refuses it (a lost connection, a deadlock): every report carries each instance's whole
    /// state, and agents running instances repeat theirs every 10 s, so a loss is repaired soon.
    private func recordInstances(_ reports: [(agentID: String, instances: [AgentMessage.Report.InstanceReport])]) async {
        for attempt in 1...Self.reportAttempts {
            do {
                _ = try await loops.step(Loop.reports, within: stepTimeout) { try await deployments.recordInstanceReports(reports) }
                return
            } catch is CancellationError {
                return
            } catch {
                logger.warning(
                    "deployment instance reports not recorded",
                    metadata: ["agents": "\(reports.count)", "attempt": "\(attempt)", "error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    /// Notes in-progress reports, once: a lost one costs nothing but its figures, since the
    /// agent sends the next in a few seconds.
    private func recordProgress(_ progress: [PostgresOperationStore.AgentProgress]) async {
        do {
            try await loops.step(Loop.reports, within: stepTimeout) { try await store.noteProgress(progress) }
            OrchestratorMetrics.reports(.inProgress).increment(by: progress.count)
        } catch is CancellationError {
            return
        } catch {
            logger.warning("in-progress reports not recorded", metadata: ["agents": "\(progress.count)", "error": "\(error)"])
        }
    }

    /// Records reports in one transaction, tried again while the database is away (a lost
    /// connection fails the step), and split in halves when the database refuses the batch, so
    /// that only a report it cannot store is lost (an agent's text PostgreSQL refuses must not
    /// cost other agents their reports). Reports not recorded are asked for again by the
    /// reconciler, whose documents the agents answer with their reports.
    private func record(_ reports: [PostgresOperationStore.AgentReport]) async {
        var attempt = 1
        while true {
            do {
                let drifted = try await loops.step(Loop.reports, within: stepTimeout) { try await store.applyReports(reports) }
                OrchestratorMetrics.reports(.applied).increment(by: reports.count - drifted.count)
                OrchestratorMetrics.reports(.drift).increment(by: drifted.count)
                if !drifted.isEmpty { await repair(drifted) }
                return
            } catch is CancellationError {
                return
            } catch let error where Self.isRefusal(error) && reports.count > 1 {
                let half = reports.count / 2
                await record(Array(reports[..<half]))
                await record(Array(reports[half...]))
                return
            } catch {
                let refused = Self.isRefusal(error)
                guard !refused, attempt < Self.reportAttempts, !Task.isCancelled else {
                    OrchestratorMetrics.reports(refused ? .refused : .error).increment(
                        by: reports.count)
                    logger.warning(
                        refused ? "the database refused an agent report; dropped" : "could not record agent reports; their agents are asked again",
                        metadata: ["agents": "\(reports.count)", "first_agent_id": "\(reports[0].agentID)", "error": "\(error)"])
                    return
                }
                attempt += 1
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// Attempts at recording a batch of reports while the database is away.
    static let reportAttempts = 3

    /// The server ran the statement and refused it (bad data): running it again cannot help.
    /// Deadlocks are retried by the store itself; a lost connection or a timeout has no server
    /// answer.
    private static func isRefusal(_ error: any Error) -> Bool {
        let underlying = (error as? PostgresTransactionError).flatMap { $0.closureError ?? $0.commitError } ?? error
        guard let error = underlying as? PSQLError, let state = error.serverInfo?[.sqlState] else { return false }
        // Class 22 (data exception: invalid byte sequence, a NUL in text) and 23 (integrity).
        return state.hasPrefix("22") || state.hasPrefix("23")
    }

    /// Agents that reported a generation never sent to them get a newer document of what they
    /// should run.
    private func repair(_ drifted: [PostgresOperationStore.AgentReport]) async {
        for report in drifted {
            logger.warning(
                "an agent reported a generation the orchestrator never sent it; sending it what it should run",
                metadata: ["agent_id": "\(report.agentID)", "generation": "\(report.generation)"])
        }
        do {
            try await loops.step(Loop.reports, within: stepTimeout) { try await store.repairDrift(drifted) }
            OrchestratorMetrics.driftRepairs.increment(by: drifted.count)
            wake.signal()
        } catch {
            logger.warning("could not repair drifted agents; their next report tries again", metadata: ["error": "\(error)"])
        }
    }

    private func handleServerPresence(_ message: MQTTMessage) async {
        guard let change = try? Envelope<RegistryChange>.decode(from: message.payload).payload, change.online == true, let server = change.serverID
        else {
            return
        }
        // Back online, the agent is sent its document at once if it is behind, not after its backoff.
        republishing.cameOnline(server)
        do {
            try await loops.step(Loop.watchdog, within: stepTimeout) { try await store.startWatchdog(serverID: server) }
        } catch {
            logger.warning("could not start the watchdog of a server's devices", metadata: ["server_id": "\(server)", "error": "\(error)"])
        }
    }
}

/// The reconciler's backoff, shared by its loop and the presence events.
final class RepublishState: Sendable {
    private let schedule = Mutex(RepublishSchedule())

    func due(_ behind: [PostgresOperationStore.AgentBehind], at now: ContinuousClock.Instant) -> [String] {
        schedule.withLock { $0.due(behind, at: now) }
    }

    func cameOnline(_ agentID: String) { schedule.withLock { $0.cameOnline(agentID) } }
}
