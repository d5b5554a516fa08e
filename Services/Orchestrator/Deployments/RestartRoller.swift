import Foundation
import Logging
import ServiceLifecycle
import ServiceRuntime

/// Restarts the instances of an edited deployment one by one (``PostgresDeploymentStore/advanceRestarts()``):
/// after documents went out or an instance changed state, and every 2 s anyway. Replicas of the
/// orchestrator may run it together: each step is one transaction under the placement lock.
struct RestartRoller: Service {
    let database: DatabaseService
    let store: PostgresDeploymentStore
    let wake: OutboxPublisher.Wake
    let logger: Logger

    func run() async throws {
        try await database.waitUntilMigrated()
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await wake.wait(timeout: .seconds(2))
                do {
                    let moved = try await store.advanceRestarts()
                    if moved > 0 { logger.info("deployment instances moved to their deployment's revision", metadata: ["instances": "\(moved)"]) }
                } catch is CancellationError {
                    return
                } catch {
                    logger.warning("could not advance the deployments' restarts; trying again", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}
