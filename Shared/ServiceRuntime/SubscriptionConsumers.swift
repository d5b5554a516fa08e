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
