import FleetContract
import Foundation
import Logging
import MQTT
import Metrics
import ServiceLifecycle
import ServiceRuntime

/// The orchestrator's side of the autoscaler (docs/autoscaler.md): answers its capacity questions
/// and applies its decisions.
///
/// A decision is applied only while the deployment is as the autoscaler saw it: the same
/// revision, autoscaling on, not stopped, `from` replicas, `to` within its bounds. Anything else
/// (an operator's edit in between, a decision that arrived twice) is refused, counted and logged,
/// and the autoscaler decides again from the new view. Decisions are shared between orchestrator
/// replicas, so each is applied once.
struct AutoscalerLink: Service {
    static let service = "orchestrator"
    /// Who the autoscaler's changes name in the events.
    static let actor = "autoscaler"

    let mqtt: MQTTClient
    let database: DatabaseService
    let store: PostgresDeploymentStore
    let registry: RegistryClient
    let logger: Logger

    func run() async throws {
        try await database.waitUntilMigrated()
        let decisions = try await mqtt.subscribe(to: Topic.autoscalingDecisions.shared(by: Self.service), qos: .atLeastOnce)
        // Cancelled as a whole at shutdown: the request server's subscription is its own.
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask {
                    for await message in decisions { await apply(message.payload) }
                }
                group.addTask {
                    await serveRequests(on: Topic.capacityRequests, sharedBy: Self.service, mqtt: mqtt, logger: logger) { message in
                        let question = try Envelope<CapacityQuestion>.decode(from: message.payload).payload
                        return try Envelope(payload: try await answer(question)).encoded()
                    }
                }
            }
        }
    }

    /// How many more instances of the deployment the fleet's online servers can take now.
    func answer(_ question: CapacityQuestion) async throws -> CapacityAnswer {
        guard let deployment = try await store.deployment(named: question.deployment) else {
            throw UnknownDeployment(description: "no deployment named '\(question.deployment)'")
        }
        let wanted = min(max(question.wanted, 0), 1_000)
        let servers = try await registry.servers().map(\.placement)
        let result = try await store.placeable(wanted, demand: Placement.Demand(deployment.spec.resources), servers: servers)
        return CapacityAnswer(deployment: deployment.name, placeable: result.servers.count, reason: result.reason)
    }

    private func apply(_ payload: Data) async {
        let decision: ScalingDecision
        do {
            decision = try Envelope<ScalingDecision>.decode(from: payload).payload
        } catch {
            AutoscalerLinkMetrics.refused("malformed").increment()
            logger.warning("dropped an autoscaling decision that does not decode", metadata: ["error": "\(error)"])
            return
        }
        do {
            guard let current = try await store.deployment(named: decision.deployment) else { return refuse(decision, "deleted") }
            let scaling = current.spec.scaling
            guard scaling.autoscaling, !current.stopped else { return refuse(decision, "autoscaling_off") }
            guard current.revision == decision.revision, scaling.replicas == decision.from else { return refuse(decision, "stale") }
            guard (scaling.minReplicas...scaling.maxReplicas).contains(decision.to), decision.to != decision.from else {
                return refuse(decision, "out_of_bounds")
            }
            var spec = current.spec
            spec.scaling.replicas = decision.to
            let servers = try await registry.servers().map(\.placement)
            _ = try await store.update(
                name: current.name, spec: spec, actor: Self.actor, kind: "scaled",
                change: "autoscaled from \(decision.from) to \(decision.to): \(decision.reason)", servers: servers)
            AutoscalerLinkMetrics.applied.increment()
        } catch {
            // The autoscaler decides again on its next snapshot; nothing to retry here.
            AutoscalerLinkMetrics.refused("failed").increment()
            logger.warning("could not apply an autoscaling decision", metadata: ["deployment": "\(decision.deployment)", "error": "\(error)"])
        }
    }

    private func refuse(_ decision: ScalingDecision, _ reason: String) {
        AutoscalerLinkMetrics.refused(reason).increment()
        logger.info(
            "refused an autoscaling decision", metadata: ["deployment": "\(decision.deployment)", "reason": "\(reason)", "to": "\(decision.to)"])
    }
}

/// A capacity question about a deployment that does not exist: the asker's error.
struct UnknownDeployment: Error, CustomStringConvertible {
    let description: String
}

/// The orchestrator's metrics of autoscaling decisions, each name spelled once.
enum AutoscalerLinkMetrics {
    static var applied: Counter { Counter(label: "orchestrator_autoscaling_decisions_applied_total") }
    static func refused(_ reason: String) -> Counter {
        Counter(label: "orchestrator_autoscaling_decisions_refused_total", dimensions: [("reason", reason)])
    }
}
