import FleetContract
import Foundation
import Logging
import MQTT
import ServiceLifecycle
import ServiceRuntime

/// Places pending deployment instances when a server comes online (a new one registered, or one
/// back), and once at start: the registry announces each server's presence after it has stored
/// the server, so its capacity is known by then. Shared between orchestrator replicas.
struct PendingPlacement: Service {
    let mqtt: MQTTClient
    let database: DatabaseService
    let store: PostgresDeploymentStore
    let registry: any RegistryLookup
    let logger: Logger

    func run() async throws {
        try await database.waitUntilMigrated()
        let presence = try await mqtt.subscribe(to: Topic.registryEvent(.serverPresence).shared(by: "orchestrator-placement"), qos: .atLeastOnce)
        await place(because: "start")
        await cancelWhenGracefulShutdown {
            for await message in presence {
                guard let change = try? Envelope<RegistryChange>.decode(from: message.payload).payload, change.online == true else { continue }
                await place(because: "server \(change.serverID ?? "?") online")
            }
        }
    }

    private func place(because cause: String) async {
        do {
            let placed = try await store.placePending(servers: try await registry.servers().map(\.placement))
            if placed > 0 { logger.info("placed pending deployment instances", metadata: ["count": "\(placed)", "cause": "\(cause)"]) }
        } catch {
            logger.warning("could not place pending deployment instances", metadata: ["cause": "\(cause)", "error": "\(error)"])
        }
    }
}
