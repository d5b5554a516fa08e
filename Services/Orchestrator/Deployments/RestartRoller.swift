import Foundation
import Logging
import ServiceLifecycle
import ServiceRuntime

/// Moves the instances of edited deployments to their revision (``PostgresDeploymentStore/advanceRestarts(servers:figures:)``),
/// a rolling update or a canary where they restart: after documents went out or an instance
/// changed state, and every second anyway (a canary is judged at each tick, on the newest
/// metrics snapshot). The servers for new instances come from the registry, asked only while
/// some instance is behind its revision (as last heard when it does not answer). Replicas of the orchestrator may run it together: each
/// step is one transaction under the placement lock.
struct RestartRoller: Service {
    let database: DatabaseService
    let store: PostgresDeploymentStore
    let registry: any RegistryLookup
    /// The live figures a canary is judged on.
    let figures: CanaryFigures
    let wake: OutboxPublisher.Wake
    let logger: Logger

    func run() async throws {
        try await database.waitUntilMigrated()
        await cancelWhenGracefulShutdown {
            // The servers as last heard: a registry that does not answer must not stop a canary's
            // analysis (and its rollback) for as long as it is away.
            var known: [Placement.Server]?
            while !Task.isCancelled {
                await wake.wait(timeout: .seconds(1))
                do {
                    guard try await store.hasInstancesBehind() else { continue }
                    let servers: [Placement.Server]
                    do {
                        servers = try await registry.servers().map(\.placement)
                        known = servers
                    } catch {
                        guard let known else { throw error }
                        logger.debug("the registry did not answer; the servers as last heard", metadata: ["error": "\(error)"])
                        servers = known
                    }
                    let moved = try await store.advanceRestarts(servers: servers, figures: figures.snapshots)
                    if moved > 0 { logger.info("deployment instances moved toward their deployment's revision", metadata: ["instances": "\(moved)"]) }
                } catch is CancellationError {
                    return
                } catch {
                    logger.warning("could not advance the deployments' restarts; trying again", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}
