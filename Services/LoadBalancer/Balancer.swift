import FleetContract
import Foundation
import LoadBalancerContract
import Logging
import MQTT
import Metrics
import ServiceLifecycle
import ServiceRuntime
import Synchronization

/// Keeps HAProxy in step with the deployments' views (``LoadBalancerView``, retained on the
/// bus by the orchestrator): servers come, go and change weight through the runtime API; a
/// deployment added, removed or changed in its settings (algorithm, health check, stickiness,
/// stopped) rewrites the configuration and reloads HAProxy, coalesced. A server removed is
/// drained first (no new requests; up to ``drainTimeout`` for those under way) and then deleted.
/// HAProxy that dies is started again with what the views say now.
final class Balancer: Service, Sendable {
    let mqtt: MQTTClient
    let haproxy: HAProxy
    let settings: HAProxyConfig.Settings
    /// Where clients reach this replica's HAProxy (`MODELFLEET_LB_PUBLIC_URL`), for `/v1/endpoints`.
    let publicURL: String
    let instance: String
    private let logger: Logger

    private struct State {
        /// What the orchestrator says, by deployment.
        var wanted: [String: LoadBalancerView] = [:]
        /// What HAProxy has.
        var applied: [String: LoadBalancerView] = [:]
        /// Servers being drained before they are deleted: "backend/server" → when to give up waiting.
        var draining: [String: ContinuousClock.Instant] = [:]
        /// The last figures read from HAProxy.
        var figures = LoadBalancerFigures(replica: "", deployments: [])
        /// Whether `wanted` was received at least once since the start (for `/ready`).
        var synced = false
    }

    private let state = Mutex(State())
    private let wake = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))

    static let drainTimeout = Duration.seconds(10)

    init(mqtt: MQTTClient, haproxy: HAProxy, publicURL: String, instance: String, logger: Logger) {
        self.mqtt = mqtt
        self.haproxy = haproxy
        self.settings = haproxy.settings
        self.publicURL = publicURL
        self.instance = instance
        self.logger = logger
    }

    var isSynced: Bool { state.withLock { $0.synced } }

    func run() async throws {
        let views = try await mqtt.subscribe(to: Topic.everyLoadBalancerDeployment.path, qos: .atLeastOnce)
        try await haproxy.start(config: HAProxyConfig.render([], settings: settings))
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { for await message in views { self.receive(message) } }
                group.addTask { await self.synchronise() }
                group.addTask { await self.measure() }
            }
        }
        await haproxy.stop()
    }

    // MARK: Views

    private func receive(_ message: MQTTMessage) {
        guard let name = message.topic.split(separator: "/").last.map(String.init) else { return }
        if message.payload.isEmpty {
            state.withLock { $0.wanted[name] = nil }
        } else {
            do {
                let view = try Envelope<LoadBalancerView>.decode(from: message.payload).payload
                guard view.deployment == name, LoadBalancerView.isSafePath(view.healthCheckPath), view.servers.allSatisfy(Self.acceptable) else {
                    throw HAProxy.Failure(description: "a view whose deployment or servers cannot be served")
                }
                state.withLock { $0.wanted[name] = view }
            } catch {
                LoadBalancerMetrics.invalidViews.increment()
                logger.warning("dropped an invalid deployment view", metadata: ["topic": "\(message.topic)", "error": "\(error)"])
                return
            }
        }
        state.withLock { $0.synced = true }
        wake.continuation.yield()
    }

    /// A server HAProxy can take: an instance id and an IPv4 `host:port` that cannot break the
    /// configuration's syntax.
    static func acceptable(_ server: LoadBalancerView.Server) -> Bool {
        let parts = server.address.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1]), (1...65_535).contains(port) else { return false }
        let octets = parts[0].split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4, octets.allSatisfy({ Int($0).map { (0...255).contains($0) } ?? false }) else { return false }
        return !server.instanceID.isEmpty && server.instanceID.utf8.allSatisfy { $0.isASCIIIdentifierByte }
    }

    // MARK: Synchronising HAProxy

    /// Brings HAProxy to the views after each change (50 ms apart at most once a burst settles),
    /// and every second anyway (a dead HAProxy, drains to finish).
    private func synchronise() async {
        while !Task.isCancelled {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { for await _ in self.wake.stream { return } }
                group.addTask { try? await Task.sleep(for: .seconds(1)) }
                await group.next()
                group.cancelAll()
            }
            try? await Task.sleep(for: .milliseconds(50))
            do {
                try await applyOnce()
            } catch is CancellationError {
                return
            } catch {
                LoadBalancerMetrics.syncFailures.increment()
                logger.warning("could not bring HAProxy in step; reloading it whole next", metadata: ["error": "\(error)"])
                // What HAProxy has is not known any more: the next pass rewrites and reloads it all.
                state.withLock { $0.applied = [:] }
            }
        }
    }

    private func applyOnce() async throws {
        let (wanted, applied) = state.withLock { ($0.wanted, $0.applied) }
        if !haproxy.isRunning {
            LoadBalancerMetrics.haproxyRestarts.increment()
            logger.warning("haproxy is not running; starting it again")
            try await haproxy.start(config: HAProxyConfig.render(Array(wanted.values), settings: settings))
            state.withLock {
                $0.applied = wanted; $0.draining = [:]
            }
            return
        }
        let shapes = { (views: [String: LoadBalancerView]) in views.mapValues(HAProxyConfig.BackendShape.init) }
        if shapes(wanted) != shapes(applied) {
            let config = HAProxyConfig.render(Array(wanted.values), settings: settings)
            try await haproxy.check(config)
            try await haproxy.reload(config: config)
            LoadBalancerMetrics.reloads.increment()
            state.withLock {
                $0.applied = wanted; $0.draining = [:]
            }
            logger.info("haproxy reloaded", metadata: ["deployments": "\(wanted.count)"])
            return
        }
        for (name, view) in wanted.sorted(by: { $0.key < $1.key }) where view.state == .serving {
            try await applyServers(of: view, over: applied[name]!)
        }
        try await finishDrains()
    }

    /// The servers of one backend through the runtime API: added, reweighted, moved, drained.
    private func applyServers(of view: LoadBalancerView, over old: LoadBalancerView) async throws {
        let backend = HAProxyConfig.backendName(view.deployment)
        let before = Dictionary(uniqueKeysWithValues: old.servers.map { ($0.instanceID, $0) })
        let after = Dictionary(uniqueKeysWithValues: view.servers.map { ($0.instanceID, $0) })
        var changed = false
        for (id, server) in after.sorted(by: { $0.key < $1.key }) {
            let key = "\(backend)/\(id)"
            if let previous = before[id] {
                let wasDraining = state.withLock { $0.draining.removeValue(forKey: key) != nil }
                if previous.address != server.address {
                    let parts = server.address.split(separator: ":")
                    try await run("set server \(key) addr \(parts[0]) port \(parts[1])")
                }
                if previous.weight != server.weight || wasDraining {
                    try await run("set server \(key) weight \(server.weight)")
                }
                if wasDraining { try await run("set server \(key) state ready") }
            } else if state.withLock({ $0.draining.removeValue(forKey: key) != nil }) {
                // Removed and back before its drain ended: it is still in HAProxy.
                try await run("set server \(key) weight \(server.weight)")
                try await run("set server \(key) state ready")
            } else {
                try await run("add server \(key) \(HAProxyConfig.serverOptions(server, view: view, settings: settings))")
                try await run("enable health \(key)")
                try await run("enable server \(key)")
                changed = true
            }
        }
        for id in before.keys.sorted() where after[id] == nil {
            let key = "\(backend)/\(id)"
            try await run("set server \(key) state drain")
            state.withLock { $0.draining[key] = ContinuousClock.now + Self.drainTimeout }
        }
        if changed && view.stickySessions { try await run("enable dynamic-cookie backend \(backend)") }
        state.withLock { $0.applied[view.deployment] = view }
    }

    /// Deletes the drained servers: no connection left, or the drain timed out.
    private func finishDrains() async throws {
        let draining = state.withLock { $0.draining }
        guard !draining.isEmpty else { return }
        let current = try await serverSessions()
        for (key, deadline) in draining.sorted(by: { $0.key < $1.key }) {
            guard (current[key] ?? 0) == 0 || ContinuousClock.now >= deadline else { continue }
            try await run("set server \(key) state maint")
            _ = try await haproxy.command("shutdown sessions server \(key)")
            try await run("del server \(key)")
            state.withLock { _ = $0.draining.removeValue(forKey: key) }
        }
    }

    /// A runtime API command whose answer must not be an error.
    private func run(_ command: String) async throws {
        let answer = try await haproxy.command(command).trimmingCharacters(in: .whitespacesAndNewlines)
        let refusals = ["No such", "Unknown", "error", "Require", "cannot", "Can't", "not found", "invalid", "Invalid"]
        if refusals.contains(where: { answer.contains($0) }) && !answer.contains("New server registered") {
            throw HAProxy.Failure(description: "HAProxy refused '\(command)': \(answer)")
        }
        LoadBalancerMetrics.runtimeCommands.increment()
    }

    // MARK: Figures

    /// Current sessions per "backend/server", from `show stat`.
    private func serverSessions() async throws -> [String: Int] {
        let rows = HAProxyStats.parse(try await haproxy.command("show stat"))
        return Dictionary(rows.filter { $0.kind == .server }.map { ("\($0.proxy)/\($0.name)", $0.currentSessions) }, uniquingKeysWith: { $1 })
    }

    /// Every second: HAProxy's figures per deployment and server, kept for `/v1/endpoints` and
    /// published for the metrics aggregator.
    private func measure() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            guard haproxy.isRunning, let text = try? await haproxy.command("show stat") else { continue }
            let figures = HAProxyStats.figures(HAProxyStats.parse(text), replica: instance)
            state.withLock { $0.figures = figures }
            try? await mqtt.publish(
                Topic.loadBalancerFigures.path, payload: try Envelope(payload: figures).encoded(), qos: .atMostOnce,
                properties: MQTTProperties(contentType: "application/json"))
        }
    }

    // MARK: Endpoints

    /// What `/v1/endpoints` shows: each deployment this replica serves, with its servers' health,
    /// in the contract's types (openapi.yaml, generated into LoadBalancerContract).
    func endpoints() -> [Components.Schemas.Endpoint] {
        let (wanted, figures) = state.withLock { ($0.wanted, $0.figures) }
        let byDeployment = Dictionary(figures.deployments.map { ($0.deployment, $0) }, uniquingKeysWith: { $1 })
        return wanted.values.sorted { $0.deployment < $1.deployment }.map { view in
            let measured = byDeployment[view.deployment]
            let servers = view.servers.sorted { $0.instanceID < $1.instanceID }.map { server in
                let figure = measured?.servers.first { $0.instanceID == server.instanceID }
                // HAProxy's word for its health: `UP`, `DOWN`, `MAINT`, `DRAIN`, `no check`, with
                // a transition (`UP 1/3`) while a health check changes its mind.
                return Components.Schemas.EndpointServer(
                    instanceId: server.instanceID, address: server.address, weight: server.weight, version: server.version,
                    health: figure?.status ?? "unknown", requestsTotal: figure?.requestsTotal ?? 0)
            }
            return Components.Schemas.Endpoint(
                deployment: view.deployment, url: "\(publicURL)/d/\(view.deployment)/", state: Self.contractState(view.state),
                algorithm: Self.contractAlgorithm(view.algorithm), stickySessions: view.stickySessions, healthCheckPath: view.healthCheckPath,
                requestsTotal: measured?.requestsTotal ?? 0, activeConnections: measured?.activeConnections ?? 0, servers: servers)
        }
    }

    private static func contractState(_ state: LoadBalancerView.State) -> Components.Schemas.Endpoint.StatePayload {
        switch state {
        case .serving: .serving
        case .stopped: .stopped
        case .disabled: .disabled
        }
    }

    private static func contractAlgorithm(_ algorithm: LoadBalancerView.Algorithm) -> Components.Schemas.Endpoint.AlgorithmPayload {
        switch algorithm {
        case .roundRobin: .roundRobin
        case .leastConnections: .leastConnections
        case .ipHash: .ipHash
        }
    }
}

extension UInt8 {
    fileprivate var isASCIIIdentifierByte: Bool {
        (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(self) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(self)
            || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self) || self == UInt8(ascii: "-") || self == UInt8(ascii: "_")
            || self == UInt8(ascii: ".")
    }
}
