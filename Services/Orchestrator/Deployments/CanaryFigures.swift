import FleetContract
import Foundation
import Logging
import MQTT
import ServiceLifecycle
import Synchronization

/// The metrics aggregator's newest snapshot of each deployment (``Topic/deploymentMetrics(_:)``,
/// every second), which the canary analysis judges. Every orchestrator replica keeps its own: the
/// one whose roller takes a step judges with what it heard. A message that is not a snapshot is
/// dropped and counted.
final class CanaryFigures: Service, Sendable {
    private let mqtt: MQTTClient
    private let logger: Logger
    private let latest = Mutex([String: DeploymentMetricsSnapshot]())

    init(mqtt: MQTTClient, logger: Logger) {
        self.mqtt = mqtt
        self.logger = logger
    }

    /// The newest snapshot of every deployment heard of.
    var snapshots: [String: DeploymentMetricsSnapshot] { latest.withLock { $0 } }

    func run() async throws {
        let messages = try await mqtt.subscribe(to: Topic.everyDeploymentMetrics.path, qos: .atMostOnce)
        await cancelWhenGracefulShutdown {
            for await message in messages {
                guard let snapshot = try? Envelope<DeploymentMetricsSnapshot>.decode(from: message.payload).payload,
                    message.topic.hasSuffix("/" + snapshot.deployment)
                else {
                    OrchestratorMetrics.snapshotsDropped.increment()
                    continue
                }
                self.latest.withLock { $0[snapshot.deployment] = snapshot }
            }
        }
    }
}
