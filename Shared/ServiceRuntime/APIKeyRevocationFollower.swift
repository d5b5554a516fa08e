import FleetContract
import Logging
import MQTT
import ServiceLifecycle

/// Keeps ``RevokedAPIKeys`` as the registry last published them: a revocation reaches every
/// service as soon as the retained list does.
struct APIKeyRevocationFollower: Service {
    let mqtt: MQTTClient
    let revoked: RevokedAPIKeys
    let logger: Logger

    func run() async throws {
        let subscription = try await mqtt.subscribe(to: Topic.apiKeyRevocations.path, qos: .atLeastOnce)
        await cancelWhenGracefulShutdown {
            for await message in subscription {
                guard let list = try? Envelope<APIKeyRevocations>.decode(from: message.payload) else {
                    logger.warning("dropped a revoked-keys list that is not one", metadata: ["bytes": "\(message.payload.count)"])
                    continue
                }
                revoked.replace(with: Set(list.payload.revoked))
                logger.info("revoked API keys", metadata: ["count": "\(list.payload.revoked.count)"])
            }
        }
    }
}
