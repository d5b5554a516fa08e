import FleetContract
import Foundation
import Logging
import MQTT
import ServiceLifecycle
import ServiceRuntime

/// Publishes each deployment's ``LoadBalancerView`` retained, for the load balancers: after any
/// change of the deployments (woken by the store), and every few seconds anyway, each view that
/// differs from what this process last published; an empty retained message for a deployment
/// deleted. At start, every view and every deleted name, so a broker that lost its retained
/// messages is filled again. Publishing the same view twice (two orchestrator replicas) is harmless.
struct LoadBalancerPublisher: Service {
    let mqtt: MQTTClient
    let database: DatabaseService
    let store: PostgresDeploymentStore
    let wake: OutboxPublisher.Wake
    let logger: Logger

    func run() async throws {
        try await database.waitUntilMigrated()
        await cancelWhenGracefulShutdown {
            var published: [String: LoadBalancerView] = [:]
            var clearedDeleted = false
            while !Task.isCancelled {
                do {
                    let views = try await store.allLive().map(\.loadBalancerView)
                    let live = Set(views.map(\.deployment))
                    for view in views where published[view.deployment] != view {
                        try await publish(view)
                        published[view.deployment] = view
                    }
                    var gone = published.keys.filter { !live.contains($0) }
                    if !clearedDeleted { gone += try await store.deletedNames().filter { !live.contains($0) } }
                    for name in Set(gone) {
                        try await mqtt.publish(
                            Topic.loadBalancerDeployment(try TopicLevel(name)).path, payload: Data(), qos: .atLeastOnce, retain: true)
                        published[name] = nil
                    }
                    clearedDeleted = true
                } catch is CancellationError {
                    return
                } catch {
                    logger.warning("could not publish the load balancers' views; trying again", metadata: ["error": "\(error)"])
                }
                await wake.wait(timeout: .seconds(5))
            }
        }
    }

    private func publish(_ view: LoadBalancerView) async throws {
        try await mqtt.publish(
            Topic.loadBalancerDeployment(try TopicLevel(view.deployment)).path, payload: try Envelope(payload: view).encoded(), qos: .atLeastOnce,
            retain: true, properties: MQTTProperties(contentType: "application/json"))
    }
}
