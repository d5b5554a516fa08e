// mqtt-bench: the Swift side of scripts/bench-mqtt. It speaks the same result lines as
// Benchmarks/c/mqtt_baseline.c so that the script can set the two side by side.

import ArgumentParser
import Foundation
import Logging
import MQTT
import Synchronization

@main
struct MQTTBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mqtt-bench",
        abstract: "Receive or publish a stream of MQTT messages with ModelFleet's client and print the rate.",
        subcommands: [Receive.self, Publish.self]
    )
}

struct Connection: ParsableArguments {
    @Option(help: "Broker URL.") var url = "mqtt://127.0.0.1:1883"
    @Option(help: "Topic to use.") var topic = "bench/stream"
    @Option(help: "Number of messages.") var count = 200_000

    func makeClient(_ name: String) throws -> MQTTClient {
        var configuration = try MQTTConfiguration(url: url, clientID: "bench-\(name)-\(getpid())")
        // Room for the whole stream: the benchmark measures the client, not drops.
        configuration.subscriptionBufferCapacity = max(count, 1)
        var logger = Logger(label: "mqtt-bench")
        logger.logLevel = .warning
        return try MQTTClient(configuration: configuration, logger: logger)
    }
}

/// One unbuffered line on standard output: the script waits for "ready" while this process runs.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

func timestamp() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Runs `client` while `body` runs, then stops it.
func whileRunning<T: Sendable>(_ client: MQTTClient, _ body: @Sendable () async throws -> T) async throws -> T {
    let runner = Task { try await client.run() }
    defer { runner.cancel() }
    try await client.waitUntilConnected(timeout: .seconds(10))
    return try await body()
}

struct Receive: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Receive COUNT QoS 0 messages; stop after 2 s without one.")
    @OptionGroup var connection: Connection

    func run() async throws {
        let client = try connection.makeClient("receive")
        let wanted = connection.count
        let topic = connection.topic
        try await whileRunning(client) {
            let subscription = try await client.subscribe(to: topic, qos: .atMostOnce)
            say("ready")
            let (received, first, last) = await withTaskGroup(of: (Int, Double, Double)?.self) { group in
                let progress = Progress()
                group.addTask {
                    for await _ in subscription {
                        progress.record(timestamp())
                        if progress.count == wanted { break }
                    }
                    return progress.snapshot
                }
                group.addTask {
                    // The idle watchdog: a stream that stops short ends the run after 2 s.
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .milliseconds(200))
                        if progress.idleSeconds(now: timestamp()) > 2 { subscription.cancel(); return nil }
                    }
                    return nil
                }
                let result = await group.next()!
                group.cancelAll()
                return result ?? progress.snapshot
            }
            let seconds = received > 1 ? last - first : 0
            say(String(format: "received=%d seconds=%.4f rate=%.0f", received, seconds, seconds > 0 ? Double(received - 1) / seconds : 0))
        }
    }
}

/// The receive loop's count and times, read by the idle watchdog.
final class Progress: Sendable {
    private struct Counts {
        var received = 0
        var first = 0.0
        var last = 0.0
    }

    private let counts = Mutex(Counts())
    private let started = timestamp()

    func record(_ time: Double) {
        counts.withLock { counts in
            if counts.received == 0 { counts.first = time }
            counts.last = time
            counts.received += 1
        }
    }

    var count: Int { counts.withLock { $0.received } }
    var snapshot: (Int, Double, Double) { counts.withLock { ($0.received, $0.first, $0.last) } }

    func idleSeconds(now: Double) -> Double {
        counts.withLock { now - ($0.received == 0 ? started : $0.last) }
    }
}

struct Publish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Publish COUNT messages as fast as the client allows.")
    @OptionGroup var connection: Connection
    @Option(help: "Payload size in bytes.") var size = 100
    @Option(help: "QoS: 0 or 1.") var qos = 0
    @Option(help: "QoS 1 publishes awaiting their PUBACK at once.") var window = 100

    func run() async throws {
        guard let level = MQTTQoS(rawValue: Int32(qos)), level != .exactlyOnce else {
            throw ValidationError("--qos must be 0 or 1")
        }
        let client = try connection.makeClient("publish")
        let payload = Data(repeating: UInt8(ascii: "x"), count: size)
        let (count, topic, window) = (connection.count, connection.topic, max(window, 1))
        try await whileRunning(client) {
            let start = timestamp()
            if level == .atMostOnce {
                for _ in 0..<count { try await client.publish(topic, payload: payload, qos: .atMostOnce) }
                // A QoS 1 marker after the stream: its PUBACK means everything before it was sent.
                try await client.publish("bench/marker", payload: Data("m".utf8), qos: .atLeastOnce)
            } else {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for index in 0..<count {
                        if index >= window { try await group.next() }
                        group.addTask { try await client.publish(topic, payload: payload, qos: .atLeastOnce) }
                    }
                    try await group.waitForAll()
                }
            }
            let seconds = timestamp() - start
            say(String(format: "published=%d seconds=%.4f rate=%.0f", count, seconds, Double(count) / seconds))
        }
    }
}
