// gateway-bench: the client side of scripts/bench-gateway and scripts/bench-orchestrator.
//
// `connect` starts a simulated fleet (`edge-agent simulate`) and polls the registry and the
// gateway until every agent is registered with its devices and online: the seconds from starting
// the simulator to each, then it stops the simulator.
// `telemetry` offers valid agent.telemetry messages on the agents' topics, paced or as fast as
// the broker takes them, and counts in one window the messages a raw subscriber receives on the
// agents' topics (the baseline) and those the gateway forwards on its internal topic.
// `assign` starts the fleet as `connect` does, then times one pipeline on every device: published
// straight to the gateways (the baseline), then through the orchestrator (POST /v1/assignments,
// polled until the operation is finished).
// `validate` needs no services: it validates one telemetry message over and over in this process,
// the way the gateway did (parse into a tree, then walk it) and the way it does now (one streaming
// pass over the bytes), and prints the rate of each.
//
// One file per phase (ConnectPhase, AssignPhase, TelemetryPhase, ValidationPhase); this one holds
// the command and what they share.

import ArgumentParser
import ChildProcesses
import DeviceProtocol
import FleetContract
import Foundation
import Logging
import MQTT
import Synchronization

@main
struct GatewayBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway-bench",
        abstract: "Time a simulated fleet's connect through the device gateway, its telemetry forwarding rate, or an assignment to it.",
        subcommands: [Connect.self, TelemetryLoad.self, Assign.self, Deploy.self, ValidationSpeed.self, MetricsLoad.self]
    )
}

/// One unbuffered line on standard output.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// Seconds on the monotonic clock.
func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// Suspends until `time` on the monotonic clock; returns at once when it has passed.
func sleep(until time: Double) async throws {
    let delay = time - now()
    if delay > 0 { try await Task.sleep(for: .seconds(delay)) }
}

/// A client of this benchmark, `<role>-gateway-bench-<pid>`, logging warnings only. Its
/// subscriptions hold 16 messages unless they ask for more.
func makeBenchClient(url: String, role: String) throws -> MQTTClient {
    // The role first: the client's network thread is named "mqtt <client id>", of which the
    // kernel keeps 15 bytes (``ThreadCPU``).
    var configuration = try MQTTConfiguration(url: url, clientID: "\(role)-gateway-bench-\(getpid())")
    configuration.subscriptionBufferCapacity = 16
    var logger = Logger(label: "gateway-bench")
    logger.logLevel = .warning
    return try MQTTClient(configuration: configuration, logger: logger)
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
