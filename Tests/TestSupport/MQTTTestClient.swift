import FleetContract
import Foundation
package import Logging
package import MQTT
import Synchronization

/// Runs an MQTT client for the length of `body`, connected, then shuts it down.
@discardableResult
package func withConnectedClient<T: Sendable>(
    _ configuration: MQTTConfiguration,
    _ body: @Sendable (MQTTClient) async throws -> T
) async throws -> T {
    let client = try MQTTClient(configuration: configuration, logger: testLogger(configuration.clientID))
    return try await withRunning(client) {
        try await client.waitUntilConnected(timeout: .seconds(10))
        return try await body(client)
    }
}

/// Runs `client` (its `run()`) while `body` runs, then cancels it and waits until it has stopped.
@discardableResult
package func withRunning<T: Sendable>(_ client: MQTTClient, _ body: @Sendable () async throws -> T) async throws -> T {
    let runner = Task { try await client.run() }
    do {
        let result = try await body()
        runner.cancel()
        try await runner.value
        return result
    } catch {
        runner.cancel()
        _ = try? await runner.value
        throw error
    }
}

/// A configuration for the shared test broker (or `url`) with a unique client id, signed in as
/// `modelfleet:admin`, which may use every topic: the tests watch and play every part.
package func testMQTTConfiguration(_ name: String, url: String? = nil) throws -> MQTTConfiguration {
    let environment = try TestEnvironment.current()
    var configuration = try MQTTConfiguration(url: url ?? environment.mqttURL, clientID: uniqueName(name))
    configuration.username = "modelfleet:admin"
    configuration.password = try environment.mqttPassword("admin")
    // Where the services may answer (their broker accounts may publish only there).
    configuration.responseTopicPrefix = Topic.repliesPrefix.path
    configuration.backoff = .init(initial: .milliseconds(50), maximum: .milliseconds(500))
    return configuration
}

package func testLogger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = ProcessInfo.processInfo.environment["MODELFLEET_TEST_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
    return logger
}

extension MQTTSubscription {
    /// The next `count` messages, or throws after `timeout`.
    package func collect(_ count: Int, timeout: Duration = .seconds(10)) async throws -> [MQTTMessage] {
        try await withThrowingTaskGroup(of: [MQTTMessage].self) { group in
            group.addTask {
                var messages: [MQTTMessage] = []
                for await message in self {
                    messages.append(message)
                    if messages.count == count { break }
                }
                return messages
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw CollectTimedOut(filter: self.filter, wanted: count, timeout: timeout)
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }

    /// Whatever arrives within `window`.
    package func drain(for window: Duration) async -> [MQTTMessage] {
        await withTaskGroup(of: [MQTTMessage].self) { group in
            let collected = MessageBox()
            group.addTask {
                for await message in self { collected.append(message) }
                return []
            }
            try? await Task.sleep(for: window)
            group.cancelAll()
            return collected.messages
        }
    }
}

package struct CollectTimedOut: Error, CustomStringConvertible {
    var filter: String
    var wanted: Int
    var timeout: Duration
    package var description: String { "fewer than \(wanted) messages on \(filter) within \(timeout)" }
}

private final class MessageBox: Sendable {
    private let stored = Mutex<[MQTTMessage]>([])
    func append(_ message: MQTTMessage) { stored.withLock { $0.append(message) } }
    var messages: [MQTTMessage] { stored.withLock { $0 } }
}
