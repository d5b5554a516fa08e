package import FleetContract
package import Foundation
package import Logging
package import MQTT
import ServiceLifecycle

/// Runs a service's message consumers until graceful shutdown (or cancellation), without losing
/// what the broker has already handed over.
///
/// On graceful shutdown the subscriptions are left first (unsubscribed: with a shared
/// subscription the broker sends the next messages to the other replicas), the consumers finish
/// what was already delivered to this process, and only then is `background` work (tickers,
/// watchdogs) cancelled. Cancelling the task instead stops everything at once.
package func consumeUntilShutdown(
    _ subscriptions: [MQTTSubscription],
    consumers: (inout DiscardingTaskGroup) -> Void,
    background: @escaping @Sendable () async -> Void = {}
) async {
    let backgroundWork = Task { await background() }
    await withTaskCancellationHandler {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in consumers(&group) }
        } onGracefulShutdown: {
            for subscription in subscriptions { subscription.cancel() }
        }
    } onCancel: {
        backgroundWork.cancel()
    }
    backgroundWork.cancel()
    await backgroundWork.value
}

/// Answers the requests on `topic` (shared between the replicas of `service`) with `answer`'s
/// JSON until cancelled. A request that does not decode answers with the contract's error (the
/// field and the reason); any other thrown error answers with its description (the MQTT layer's
/// `error` user property). The subscription failing is logged: the service runs on without it.
package func serveRequests(
    on topic: Topic, sharedBy service: String, mqtt: MQTTClient, logger: Logger, answer: @escaping @Sendable (MQTTMessage) async throws -> Data
) async {
    do {
        try await mqtt.serveRequests(on: topic.shared(by: service)) { request in
            do {
                return MQTTReply(payload: try await answer(request), contentType: "application/json")
            } catch let error as DecodingError {
                throw ContractError(decodingError: error)
            }
        }
    } catch is CancellationError {
    } catch {
        logger.error("stopped serving requests", metadata: ["topic": "\(topic)", "error": "\(error)"])
    }
}
