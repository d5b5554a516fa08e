import FleetContract
import Foundation
import Logging
import MQTT
import ServiceLifecycle
import ServiceRuntime

/// Keeps deployment instances on servers that are online, following the registry's
/// `server-presence` events (announced after the registry stored the server, so its capacity is
/// known by then). Shared between orchestrator replicas.
///
/// - A server online (new, or back): pending instances are placed where they fit.
/// - A server offline for longer than the grace period: its instances become pending and are
///   placed elsewhere. A server that comes back within the grace keeps them.
/// - At start, both: instances of servers offline now are moved, pending ones placed.
struct PendingPlacement: Service {
    let mqtt: MQTTClient
    let database: DatabaseService
    let store: PostgresDeploymentStore
    let registry: any RegistryLookup
    /// How long a server may be offline before its instances move
    /// (`MODELFLEET_DEPLOYMENT_OFFLINE_GRACE_SECONDS`, default 30).
    let offlineGrace: Duration
    let logger: Logger

    /// The grace from the environment; a value that is not 0 to 86400 seconds stops the start.
    static func offlineGrace(environment: [String: String]) throws(ConfigurationError) -> Duration {
        let seconds = try EnvironmentReader(environment).number("MODELFLEET_DEPLOYMENT_OFFLINE_GRACE_SECONDS", default: 30, in: 0...86_400)
        return .milliseconds(Int64(seconds * 1_000))
    }

    func run() async throws {
        try await database.waitUntilMigrated()
        let presence = try await mqtt.subscribe(to: Topic.registryEvent(.serverPresence).shared(by: "orchestrator-placement"), qos: .atLeastOnce)
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                // The registry may be starting too: the first pass is tried until it answers,
                // beside the events.
                group.addTask {
                    while !Task.isCancelled {
                        if await reconcile(because: "start", movingOff: nil) { return }
                        try? await Task.sleep(for: .seconds(5))
                    }
                }
                for await message in presence {
                    guard let change = try? Envelope<RegistryChange>.decode(from: message.payload).payload, let server = change.serverID else {
                        continue
                    }
                    if change.online == true {
                        await reconcile(because: "server \(server) online", movingOff: [])
                    } else {
                        group.addTask {
                            try? await Task.sleep(for: offlineGrace)
                            await reconcile(because: "server \(server) offline", movingOff: [server])
                        }
                    }
                }
            }
        }
    }

    /// Moves the instances off the servers of `candidates` that are offline now (every offline
    /// server when nil), then places pending instances. False when it could not.
    @discardableResult
    private func reconcile(because cause: String, movingOff candidates: Set<String>?) async -> Bool {
        do {
            let servers = try await registry.servers()
            let offline = Set(servers.filter { !$0.online }.map(\.id)).intersection(candidates ?? Set(servers.map(\.id)))
            let moved = try await store.evacuate(offline: offline, servers: servers.map(\.placement))
            let placed = moved > 0 ? 0 : try await store.placePending(servers: servers.map(\.placement))
            if moved + placed > 0 {
                logger.info("deployment instances placed", metadata: ["moved": "\(moved)", "placed": "\(placed)", "cause": "\(cause)"])
            }
            return true
        } catch {
            logger.warning("could not place deployment instances", metadata: ["cause": "\(cause)", "error": "\(error)"])
            return false
        }
    }
}
