// `gateway-bench validate`: the validator's rate, tree against streaming, in this process.

import ArgumentParser
import ChildProcesses
import DeviceProtocol
import FleetContract
import Foundation
import Logging
import MQTT
import Synchronization

// MARK: - validate

struct ValidationSpeed: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Validate one telemetry message over and over, by the tree path and by the streaming path, and compare their rates.",
        discussion: """
            The message is the telemetry command's (one agent, `--pipelines` pipelines, about 1.7 KB with 10). The tree path is what \
            the gateway did per message: JSONParser.parse, JSONSchema.validate of the tree, then payload.agent_id read from it. The \
            streaming path is what it does now: AgentMessageValidator.validate(agentID:channel:payload:), one pass over the bytes. \
            Both run on one thread, in turns, after a warm-up; each round times `--count` messages per path, and the best round of \
            each is the result (the fewest interruptions by the rest of the machine).
            """)

    @Option(help: "Messages validated per path in each round.") var count = 20_000
    @Option(help: "Rounds; the best of each path is reported.") var rounds = 5
    @Option(help: "Pipelines in the message.") var pipelines = 10

    func validate() throws {
        guard count > 0, rounds > 0, (0...1_000).contains(pipelines) else { throw ValidationError("need count > 0, rounds > 0, pipelines 0...1000") }
    }

    func run() throws {
        let stream = try TelemetryStream(agents: 1, idPrefix: "bench-telemetry", pipelines: pipelines)
        let payload = stream.payload(agent: 0, variant: 0, sequence: 1)
        let agentID = try TopicLevel("bench-telemetry-0001")
        let schemas = DeviceProtocolSchemas.shared
        let validator = AgentMessageValidator(schemas: schemas)

        /// The gateway's validation before the streaming validator, less the rules of hello and report.
        func validateTree() throws -> Int {
            let document = try JSONParser.parse(payload)
            try schemas.validate(document, as: .telemetry)
            guard case .object(let envelope) = document, case .object(let body)? = envelope["payload"],
                case .string(let claimed)? = body["agent_id"], claimed == agentID.value
            else { throw BenchError("payload.agent_id is not '\(agentID)'") }
            return body.count
        }
        func validateStreaming() throws -> Int {
            let message = try validator.validate(agentID: agentID, channel: .telemetry, payload: payload).get()
            return message.payload.count
        }
        // Both accept the message, and a first pass of each warms caches and lazy globals.
        for _ in 0..<max(1, count / 10) {
            _ = try validateTree()
            _ = try validateStreaming()
        }

        say("validate: one agent.telemetry message of \(payload.count) bytes (\(pipelines) pipelines), \(count) per path and round, \(rounds) rounds")
        var best = (tree: 0.0, streaming: 0.0)
        // Results are summed so that no validation can be optimised away.
        var sink = 0
        for round in 1...rounds {
            var start = now()
            for _ in 0..<count { sink &+= try validateTree() }
            let tree = Double(count) / (now() - start)
            start = now()
            for _ in 0..<count { sink &+= try validateStreaming() }
            let streaming = Double(count) / (now() - start)
            best = (max(best.tree, tree), max(best.streaming, streaming))
            say(String(format: "round %d: tree %.0f msg/s, streaming %.0f msg/s, ratio %.2f", round, tree, streaming, streaming / tree))
        }
        say(
            "result phase=validate bytes=\(payload.count) pipelines=\(pipelines) count=\(count) rounds=\(rounds)"
                + String(
                    format: " tree_per_second=%.0f streaming_per_second=%.0f ratio=%.2f tree_us=%.2f streaming_us=%.2f", best.tree, best.streaming,
                    best.streaming / best.tree, 1e6 / best.tree, 1e6 / best.streaming) + " checksum=\(sink)")
    }
}
