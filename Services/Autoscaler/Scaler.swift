import FleetContract
import Foundation
import Logging
import MQTT
import Metrics
import ServiceLifecycle
import ServiceRuntime
import Synchronization

/// Decides each autoscaled deployment's replicas from the metrics aggregator's snapshots (every
/// second) and the orchestrator's views, and publishes the changes for the orchestrator to apply
/// (docs/autoscaler.md).
///
/// Replicas divide the deployments by rendezvous hashing over their retained service statuses
/// (``ReplicaMembership``): only a deployment's owner decides for it, so no tick is decided twice.
/// After a decision the owner waits for the view that applies it (or 10 s) before deciding again,
/// so one change is not asked for twice while the orchestrator places it.
final class Scaler: Service, Sendable {
    static let service = "autoscaler"
    /// How long a decision waits for the orchestrator's view to show it.
    static let applyTimeout = 10.0
    /// Decisions kept per deployment for `GET /v1/deployments/{name}/autoscaling`.
    static let historyLength = 100

    /// One deployment as the autoscaler knows it.
    struct Entry: Sendable {
        var view: AutoscalingView
        var policy = ScalingPolicy()
        /// The latest evaluation, whether or not it changed anything.
        var latest: (at: Date, decision: ScalingPolicy.Decision, observation: ScalingPolicy.Observation?)?
        /// Published changes, newest last.
        var decisions: [(at: Date, decision: ScalingDecision)] = []
        /// A change published and not yet in the view: (replicas, when).
        var awaiting: (replicas: Int, since: Double)?
    }

    private let mqtt: MQTTClient
    private let logger: Logger
    private let state = Mutex<[String: Entry]>([:])
    private let membership: Mutex<ReplicaMembership>
    private let capacityTimeout: Duration

    init(mqtt: MQTTClient, instance: String, logger: Logger, capacityTimeout: Duration = .seconds(2)) {
        self.mqtt = mqtt
        self.logger = logger
        self.capacityTimeout = capacityTimeout
        membership = Mutex(ReplicaMembership(me: instance))
    }

    func entry(_ deployment: String) -> Entry? { state.withLock { $0[deployment] } }
    var replicas: [String] { membership.withLock { $0.replicas } }
    func owner(of deployment: String) -> String { membership.withLock { $0.owner(of: deployment) } }

    func run() async throws {
        let peers = try await mqtt.subscribe(to: Topic.serviceInstanceTopics(of: try TopicLevel(Self.service)).path, qos: .atLeastOnce)
        let views = try await mqtt.subscribe(to: Topic.everyAutoscalingDeployment.path, qos: .atLeastOnce)
        let snapshots = try await mqtt.subscribe(to: Topic.everyDeploymentMetrics.path, qos: .atMostOnce, bufferCapacity: 4_096)
        await consumeUntilShutdown([peers, views, snapshots]) { group in
            group.addTask {
                for await message in peers where message.topic.hasSuffix("/status") {
                    guard let status = try? Envelope<ServiceStatus>.decode(from: message.payload).payload else { continue }
                    self.membership.withLock { $0.update(instance: status.instance, online: status.state == .online) }
                }
            }
            group.addTask { for await message in views { self.receiveView(message) } }
            group.addTask { for await message in snapshots { await self.receiveSnapshot(message) } }
        }
    }

    // MARK: Inputs

    private func receiveView(_ message: MQTTMessage) {
        guard let name = message.topic.split(separator: "/").last.map(String.init) else { return }
        guard !message.payload.isEmpty else {
            state.withLock { $0[name] = nil }
            return
        }
        guard let view = try? Envelope<AutoscalingView>.decode(from: message.payload).payload, view.deployment == name,
            view.minReplicas >= 1, view.maxReplicas >= view.minReplicas
        else {
            AutoscalerMetrics.dropped("view").increment()
            logger.warning("dropped an autoscaling view that does not decode or does not add up", metadata: ["topic": "\(message.topic)"])
            return
        }
        state.withLock { entries in
            var entry = entries[name] ?? Entry(view: view)
            entry.view = view
            if let awaiting = entry.awaiting, awaiting.replicas == view.replicas { entry.awaiting = nil }
            entries[name] = entry
        }
    }

    private func receiveSnapshot(_ message: MQTTMessage) async {
        guard let snapshot = try? Envelope<DeploymentMetricsSnapshot>.decode(from: message.payload).payload else {
            AutoscalerMetrics.dropped("snapshot").increment()
            return
        }
        guard membership.withLock({ $0.owns(snapshot.deployment) }) else { return }
        let figures = snapshot.figures
        var utilization: [ScalingPolicy.Metric: Double] = [:]
        utilization[.cpu] = figures.cpuUtilization
        utilization[.memory] = figures.memoryUtilization
        utilization[.gpu] = figures.gpuUtilization
        // Requests per second per instance, where the rate is measured at all.
        let instances = Double(max(snapshot.instances, 1))
        if (figures.requestSamples ?? 0) > 0 { utilization[.requests] = figures.requestsPerSecond / instances }
        // Requests in flight per instance, where they are measured (absent: the metric is missing).
        utilization[.inFlight] = figures.inFlight.map { $0 / instances }
        var burst: [ScalingPolicy.Metric: Double] = [:]
        if let recent = snapshot.burst, (recent.requestSamples ?? 0) > 0 { burst[.requests] = recent.requestsPerSecond / instances }
        burst[.inFlight] = snapshot.burst?.inFlight.map { $0 / instances }
        burst[.cpu] = snapshot.burst?.cpuUtilization
        burst[.memory] = snapshot.burst?.memoryUtilization
        burst[.gpu] = snapshot.burst?.gpuUtilization
        let observation = ScalingPolicy.Observation(
            instances: snapshot.instances, ready: snapshot.readyInstances, utilization: utilization, burstUtilization: burst,
            dataAgeSeconds: snapshot.newestDataAgeSeconds)
        await evaluate(snapshot.deployment, observation, now: Date())
    }

    // MARK: Deciding

    /// Runs the policy for `deployment`; publishes a change, limited to what the fleet can place.
    func evaluate(_ deployment: String, _ observation: ScalingPolicy.Observation?, now: Date) async {
        let clock = now.timeIntervalSince1970
        let evaluated = state.withLock { entries -> (AutoscalingView, ScalingPolicy.Decision)? in
            guard var entry = entries[deployment], entry.view.enabled else { return nil }
            if let awaiting = entry.awaiting {
                guard clock - awaiting.since > Self.applyTimeout else { return nil }
                entry.awaiting = nil
            }
            let decision = entry.policy.decide(entry.view, observation, now: clock)
            entry.latest = (now, decision, observation)
            entries[deployment] = entry
            return (entry.view, decision)
        }
        guard let (view, proposed) = evaluated, proposed.desired != view.replicas else { return }
        var decision = proposed
        if decision.desired > view.replicas {
            let (placeable, why) = await capacity(deployment, wanted: decision.desired - view.replicas)
            decision = ScalingPolicy.limit(decision, current: view.replicas, placeable: placeable, why: why)
            if decision.desired == view.replicas {
                state.withLock { $0[deployment]?.latest = (now, decision, observation) }
                return
            }
        }
        let change = ScalingDecision(
            deployment: deployment, revision: view.revision, from: view.replicas, to: decision.desired, reason: decision.reason)
        do {
            try await mqtt.publish(
                Topic.autoscalingDecisions.path, payload: try Envelope(payload: change).encoded(), qos: .atLeastOnce,
                properties: MQTTProperties(contentType: "application/json"))
        } catch {
            logger.warning("could not publish an autoscaling decision", metadata: ["deployment": "\(deployment)", "error": "\(error)"])
            return
        }
        AutoscalerMetrics.decisions(change.to > change.from ? "up" : "down").increment()
        logger.info(
            "autoscaling", metadata: ["deployment": "\(deployment)", "from": "\(change.from)", "to": "\(change.to)", "reason": "\(change.reason)"])
        state.withLock { entries in
            entries[deployment]?.latest = (now, decision, observation)
            entries[deployment]?.awaiting = (change.to, clock)
            entries[deployment]?.decisions.append((now, change))
            if let count = entries[deployment]?.decisions.count, count > Self.historyLength {
                entries[deployment]?.decisions.removeFirst(count - Self.historyLength)
            }
        }
    }

    /// What the orchestrator says the fleet can place; on no answer, everything (the orchestrator
    /// leaves what it cannot place pending, with its reason).
    private func capacity(_ deployment: String, wanted: Int) async -> (Int, String?) {
        do {
            let answer = try await mqtt.request(
                Topic.capacityRequests.path, payload: try Envelope(payload: CapacityQuestion(deployment: deployment, wanted: wanted)).encoded(),
                timeout: capacityTimeout)
            let capacity = try Envelope<CapacityAnswer>.decode(from: answer.payload).payload
            return (min(capacity.placeable, wanted), capacity.reason)
        } catch {
            AutoscalerMetrics.capacityUnknown.increment()
            logger.warning(
                "no capacity answer from the orchestrator; asking for all", metadata: ["deployment": "\(deployment)", "error": "\(error)"])
            return (wanted, nil)
        }
    }
}

/// The autoscaler's own metrics, each name spelled once.
enum AutoscalerMetrics {
    static func decisions(_ direction: String) -> Counter { Counter(label: "autoscaler_decisions_total", dimensions: [("direction", direction)]) }
    static func dropped(_ kind: String) -> Counter { Counter(label: "autoscaler_dropped_total", dimensions: [("kind", kind)]) }
    static var capacityUnknown: Counter { Counter(label: "autoscaler_capacity_unknown_total") }
}
