import FleetContract
import Foundation
import Logging
import MQTT
import ServiceLifecycle
import ServiceRuntime

/// Publishes each deployment's views retained: the ``LoadBalancerView`` for the load balancers and
/// the ``AutoscalingView`` for the autoscaler, after any change of the deployments (woken by the
/// store), and every few seconds anyway, each view that differs from what this process last
/// published; an empty retained message for a deployment deleted. At start, every view and every
/// deleted name, so a broker that lost its retained messages is filled again. Publishing the same
/// view twice (two orchestrator replicas) is harmless.
struct DeploymentViewPublisher: Service {
    let mqtt: MQTTClient
    let database: DatabaseService
    let store: PostgresDeploymentStore
    let wake: OutboxPublisher.Wake
    let logger: Logger

    /// One kind of view: where it goes, and what this process published last.
    private struct Kind<View: ContractPayload & Equatable> {
        let topic: (TopicLevel) -> Topic
        let view: (Deployment) -> View
        var published: [String: View] = [:]

        mutating func publish(_ deployments: [Deployment], gone: Set<String>, with mqtt: MQTTClient) async throws {
            for deployment in deployments {
                let view = view(deployment)
                guard published[deployment.name] != view else { continue }
                try await mqtt.publish(
                    topic(try TopicLevel(deployment.name)).path, payload: try Envelope(payload: view).encoded(), qos: .atLeastOnce, retain: true,
                    properties: MQTTProperties(contentType: "application/json"))
                published[deployment.name] = view
            }
            for name in gone.union(published.keys.filter { name in !deployments.contains { $0.name == name } }) {
                try await mqtt.publish(topic(try TopicLevel(name)).path, payload: Data(), qos: .atLeastOnce, retain: true)
                published[name] = nil
            }
        }
    }

    func run() async throws {
        try await database.waitUntilMigrated()
        await cancelWhenGracefulShutdown {
            var balancers = Kind(topic: Topic.loadBalancerDeployment, view: \.loadBalancerView)
            var autoscaling = Kind(topic: Topic.autoscalingDeployment, view: \.autoscalingView)
            var clearedDeleted = false
            while !Task.isCancelled {
                do {
                    let live = try await store.allLive()
                    let names = Set(live.map(\.name))
                    let deleted = clearedDeleted ? [] : Set(try await store.deletedNames().filter { !names.contains($0) })
                    try await balancers.publish(live, gone: deleted, with: mqtt)
                    try await autoscaling.publish(live, gone: deleted, with: mqtt)
                    clearedDeleted = true
                } catch is CancellationError {
                    return
                } catch {
                    logger.warning("could not publish the deployments' views; trying again", metadata: ["error": "\(error)"])
                }
                await wake.wait(timeout: .seconds(5))
            }
        }
    }
}
