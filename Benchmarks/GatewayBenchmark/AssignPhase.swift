// `gateway-bench assign`: one pipeline on every device, straight to the gateways, then through
// the orchestrator.

import ArgumentParser
import ChildProcesses
import DeviceProtocol
import FleetContract
import Foundation
import Logging
import MQTT
import Synchronization

// MARK: - assign

struct Assign: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time an assignment to every device of a simulated fleet through the orchestrator, next to the same delivery without it.",
        discussion: """
            Starts the fleet as connect does and creates a model version in the registry. Baseline: one desired-state document per \
            agent (generation 1, one pipeline on each device) published straight to the gateways' internal topic, timed until one \
            generation-1 report per agent arrives on the gateway's internal report topic: the transport floor. Then an assignment \
            of one pipeline to every device of every site (POST /v1/assignments, confirm), polled until the operation is finished. \
            The orchestrator numbers each agent's documents from 1, and the agents have applied the baseline's generation 1: its \
            first assignment is one they only report again, so it runs first as a warm-up, and the timed one is generation 2, \
            which every agent applies. Along the way, the documents the gateway publishes on the agents' desired topics and the \
            reports it forwards are timed too, to show where the time goes.
            """)

    @OptionGroup var fleet: FleetOptions
    @Option(help: "Orchestrator base URL.") var orchestratorURL = "http://127.0.0.1:8082"
    @Option(help: "Seconds between polls of the operation.") var operationPollInterval = 0.1
    @Option(help: "Baseline documents awaiting their PUBACK at once (the orchestrator's outbox publisher sends 64 agents at a time).")
    var inFlight = 64

    func validate() throws {
        guard fleet.devices > 0, operationPollInterval > 0, (1...10_000).contains(inFlight) else {
            throw ValidationError("need devices > 0, operation-poll-interval > 0, in-flight 1...10000")
        }
    }

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        let registry = try HTTPService(url: fleet.registryURL)
        let orchestrator = try HTTPService(url: orchestratorURL)
        try orchestrator.checkReady("orchestrator")

        // The documents the gateway publishes to the agents and the reports it forwards, from
        // before the fleet starts.
        let client = try makeBenchClient(url: fleet.mqttURL, role: "assign")
        let runner = Task { try await client.run() }
        defer { runner.cancel() }
        try await client.waitUntilConnected(timeout: .seconds(10))
        let reports = try await client.subscribe(to: Topic.agentReportEvents.path, qos: .atLeastOnce, bufferCapacity: 1 << 20)
        let desired = try await client.subscribe(to: Topic.everyAgent(.desired).path, qos: .atLeastOnce, bufferCapacity: 1 << 20)
        let tracker = GenerationTracker()
        let consumers = Task {
            await withDiscardingTaskGroup { group in
                group.addTask { for await message in reports { tracker.noteReport(message.payload) } }
                group.addTask { for await message in desired { tracker.noteDesired(message.payload) } }
            }
        }

        let running = try await SimulatedFleet.start(fleet)
        say(
            String(
                format: "connect: %d agents, %d devices, in %d sites: online in the registry after %.3f s, in the gateway after %.3f s", fleet.agents,
                fleet.agents * fleet.devices, fleet.sites, running.registrySeconds, running.gatewaySeconds))
        let devices = fleet.agents * fleet.devices
        do {
            let model = try BenchModel.create(in: registry)
            say("model: \(model.name) \(model.version) (\(model.modelID)), \(model.artifactURI), active")

            let baseline = try await measureBaseline(client: client, model: model, tracker: tracker, running: running)
            say(
                String(
                    format: "baseline: %d desired states (generation 1, one pipeline on each of %d devices) published to the gateway in %.3f s;"
                        + " the gateway published the last to its agent after %.3f s; one generation-1 report per agent after %.3f s"
                        + " (%d devices running, %d failed): %.0f devices/s",
                    fleet.agents, devices, baseline.publishSeconds, baseline.desiredSeconds, baseline.seconds, baseline.running, baseline.failed,
                    Double(devices) / baseline.seconds))

            let warmup = try await measureAssignment(orchestrator, model: model, generation: 1, tracker: tracker, running: running)
            say("warm-up assignment (generation 1 again: the agents report it, applying nothing): " + warmup.summary)
            let timed = try await measureAssignment(orchestrator, model: model, generation: 2, tracker: tracker, running: running)
            say("assignment (generation 2, applied by every agent): " + timed.summary)
            let ratio = timed.seconds / baseline.seconds
            say(String(format: "ratio orchestrator / baseline: %.2f", ratio))
            say(
                "result phase=assign agents=\(fleet.agents) devices=\(devices) sites=\(fleet.sites)"
                    + String(format: " connect_registry_seconds=%.3f connect_gateway_seconds=%.3f", running.registrySeconds, running.gatewaySeconds)
                    + String(
                        format: " baseline_seconds=%.3f baseline_publish_seconds=%.3f baseline_desired_seconds=%.3f baseline_devices_per_second=%.0f",
                        baseline.seconds, baseline.publishSeconds, baseline.desiredSeconds, Double(devices) / baseline.seconds)
                    + " baseline_running=\(baseline.running) baseline_failed=\(baseline.failed)"
                    + String(
                        format: " api_seconds=%.3f seconds=%.3f desired_first_seconds=%.3f desired_seconds=%.3f reports_seconds=%.3f",
                        timed.apiSeconds,
                        timed.seconds, timed.firstDesiredSeconds, timed.desiredSeconds, timed.reportsSeconds)
                    + String(
                        format: " agent_p50_seconds=%.3f agent_p90_seconds=%.3f agent_max_seconds=%.3f", timed.agentSeconds.p50,
                        timed.agentSeconds.p90, timed.agentSeconds.max)
                    + " operation_devices=\(timed.devices) applied=\(timed.applied) failed=\(timed.failed) timed_out=\(timed.timedOut)"
                    + " skipped=\(timed.skipped)"
                    + String(format: " devices_per_second=%.0f ratio=%.3f", Double(timed.applied) / timed.seconds, ratio)
                    + String(
                        format: " warmup_api_seconds=%.3f warmup_seconds=%.3f warmup_applied=%d", warmup.apiSeconds, warmup.seconds, warmup.applied)
                    + " polls=\(timed.polls) invalid_messages=\(tracker.invalid.load(ordering: .relaxed))"
                    + " dropped_messages=\(reports.droppedCount + desired.droppedCount)")
        } catch {
            _ = await running.stop()
            throw error
        }
        try await running.stopReporting()
        reports.cancel()
        desired.cancel()
        await consumers.value
        // A clean DISCONNECT.
        runner.cancel()
        _ = try? await runner.value
    }

    struct BaselineFigures {
        /// From the first publish to the last agent's report.
        var seconds: Double
        /// From the first publish to the last PUBACK.
        var publishSeconds: Double
        /// From the first publish to the last document the gateway published to its agent.
        var desiredSeconds: Double
        var running: Int
        var failed: Int
    }

    /// One document per agent straight to the gateways, `inFlight` awaiting their PUBACK at once;
    /// timed until one report of generation 1 per agent.
    private func measureBaseline(
        client: MQTTClient, model: BenchModel, tracker: GenerationTracker, running: SimulatedFleet
    ) async throws -> BaselineFigures {
        let pipeline = DesiredState.Pipeline(id: UUID().uuidString.lowercased(), name: BenchModel.pipelineName(generation: 1), stages: [model.stage])
        let assignments = (0..<fleet.devices).map { DesiredState.DeviceAssignment(deviceKey: fleet.deviceKey($0), pipelines: [pipeline]) }
        // Encoded before the clock starts: the baseline is the transport's time alone.
        let documents = try (0..<fleet.agents).map { index in
            try Envelope(payload: DesiredState(agentID: fleet.agentID(index), generation: 1, devices: assignments)).encoded()
        }
        tracker.expect(generation: 1)
        let topic = Topic.agentDesiredStateRequests.path
        let properties = MQTTProperties(contentType: "application/json")
        let window = inFlight
        let start = now()
        try await withThrowingTaskGroup(of: Void.self) { group in
            var awaiting = 0
            for document in documents {
                if awaiting == window {
                    try await group.next()
                    awaiting -= 1
                }
                awaiting += 1
                group.addTask { try await client.publish(topic, payload: document, qos: .atLeastOnce, properties: properties) }
            }
            try await group.waitForAll()
        }
        let publishSeconds = now() - start
        let progress = try await waitForReports(tracker, since: start, running: running, what: "baseline")
        return BaselineFigures(
            seconds: progress.lastReport! - start, publishSeconds: publishSeconds, desiredSeconds: (progress.lastDesired ?? .nan) - start,
            running: progress.runningDevices, failed: progress.failedDevices)
    }

    /// Until one report of the tracker's generation per agent.
    private func waitForReports(
        _ tracker: GenerationTracker, since start: Double, running: SimulatedFleet, what: String
    ) async throws -> GenerationTracker.Progress {
        while true {
            let progress = tracker.snapshot
            if progress.reported.count == fleet.agents { return progress }
            try running.checkRunning()
            guard now() - start < fleet.timeout else {
                throw BenchError(
                    "\(what): reports of generation \(progress.generation) from \(progress.reported.count) of \(fleet.agents) agents"
                        + " after \(Int(fleet.timeout)) s")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    struct AssignmentFigures {
        /// The POST's own latency.
        var apiSeconds: Double
        /// From sending the POST to the answer of the poll that found the operation finished.
        var seconds: Double
        /// From sending the POST to the first and the last document the gateway published to an agent.
        var firstDesiredSeconds: Double
        var desiredSeconds: Double
        /// From sending the POST to the last agent's report on the gateway's internal topic.
        var reportsSeconds: Double
        /// Per agent, from its document on its desired topic to its report (both as seen here).
        var agentSeconds: Quantiles
        var devices: Int
        var applied: Int
        var failed: Int
        var timedOut: Int
        var skipped: Int
        var polls: Int

        var summary: String {
            String(
                format: "POST /v1/assignments answered 202 after %.3f s; the gateway published the first document to an agent after %.3f s,"
                    + " the last after %.3f s; the last agent report after %.3f s; the operation finished after %.3f s:", apiSeconds,
                firstDesiredSeconds, desiredSeconds, reportsSeconds, seconds)
                + " \(devices) devices, \(applied) applied, \(failed) failed, \(timedOut) timed out, \(skipped) skipped;"
                + String(format: " %.0f devices/s", Double(applied) / seconds)
                + String(
                    format: "; each agent from its document to its report: p50 %.3f s, p90 %.3f s, max %.3f s", agentSeconds.p50, agentSeconds.p90,
                    agentSeconds.max)
        }
    }

    private struct Operation: Decodable {
        var id: String
        var counts: [String: Int]
        var devices: Int
        var finished: Bool
    }

    private struct Accepted: Decodable {
        struct Skipped: Decodable { var reason: String }
        var operation: Operation
        var skipped: [Skipped]
    }

    private struct OperationDetail: Decodable {
        struct Device: Decodable {
            var deviceName: String
            var serverID: String
            var reason: String?

            enum CodingKeys: String, CodingKey {
                case reason
                case deviceName = "device_name"
                case serverID = "server_id"
            }
        }
        var operation: Operation
        var devices: [Device]
    }

    /// One pipeline on every device of every site through the orchestrator, polled until finished.
    private func measureAssignment(
        _ orchestrator: HTTPService, model: BenchModel, generation: Int, tracker: GenerationTracker, running: SimulatedFleet
    ) async throws -> AssignmentFigures {
        let stage = JSONValue.object(["model_id": .string(model.modelID), "version": .string(model.version)])
        let body = JSONValue.object([
            "targets": .object(["site_ids": .array(fleet.siteIDs.map { .string($0) })]),
            "pipelines": .array([.object(["name": .string(BenchModel.pipelineName(generation: generation)), "stages": .array([stage])])]),
            "confirm": .bool(true),
        ])
        tracker.expect(generation: generation)
        let start = now()
        let accepted = try orchestrator.postJSON(Accepted.self, "/v1/assignments", body: body, expected: 202, timeoutSeconds: Int(fleet.timeout))
        let apiSeconds = now() - start
        var polls = 0
        var nextPoll = now()
        while true {
            try running.checkRunning()
            let detail = try orchestrator.getJSON(OperationDetail.self, "/v1/operations/\(accepted.operation.id)?status=failed")
            polls += 1
            let counts = detail.operation.counts
            if detail.operation.finished {
                let seconds = now() - start
                for device in detail.devices.prefix(3) {
                    say("failed: \(device.deviceName) of \(device.serverID): \(device.reason ?? "no reason given")")
                }
                // Every report is in when the operation is finished, unless some device failed
                // for want of one (timed out). This process may still be reading the last ones:
                // up to 2 s for them (the time of the last report is when it arrived here).
                var progress = tracker.snapshot
                let caughtUp = now() + 2
                while progress.reported.count < fleet.agents && now() < caughtUp {
                    try await Task.sleep(for: .milliseconds(20))
                    progress = tracker.snapshot
                }
                let complete = progress.reported.count == fleet.agents
                return AssignmentFigures(
                    apiSeconds: apiSeconds, seconds: seconds, firstDesiredSeconds: (progress.firstDesired ?? .nan) - start,
                    desiredSeconds: (progress.desired.count == fleet.agents ? progress.lastDesired ?? .nan : .nan) - start,
                    reportsSeconds: (complete ? progress.lastReport ?? .nan : .nan) - start, agentSeconds: Quantiles(progress.agentDelays),
                    devices: detail.operation.devices, applied: counts["applied"] ?? 0, failed: counts["failed"] ?? 0,
                    timedOut: counts["timed_out"] ?? 0, skipped: accepted.skipped.count, polls: polls)
            }
            guard now() - start < fleet.timeout else {
                throw BenchError("operation \(accepted.operation.id) not finished after \(Int(fleet.timeout)) s: \(counts)")
            }
            nextPoll = max(nextPoll + operationPollInterval, now())
            try await sleep(until: nextPoll)
        }
    }
}

/// The median, 90th percentile (nearest rank) and maximum of some figures (NaN when there are none).
struct Quantiles {
    var p50 = Double.nan
    var p90 = Double.nan
    var max = Double.nan

    init(_ values: [Double]) {
        let sorted = values.sorted()
        guard let last = sorted.last else { return }
        (p50, p90, max) = (sorted.quantileOfSorted(0.5), sorted.quantileOfSorted(0.9), last)
    }
}

/// The model version the benchmark assigns, created in the registry.
struct BenchModel {
    static let artifactURI = "s3://models/bench.onnx"
    static let sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    static let settings: [String: JSONValue] = ["confidence_threshold": .number(0.4)]

    /// The pipeline of the documents of `generation`: each assignment differs from the one before
    /// (the orchestrator skips a device that already runs what it is given).
    static func pipelineName(generation: Int) -> String { "bench-people-g\(generation)" }

    var modelID: String
    var name: String
    var version: String
    var artifactURI: String
    var sha256: String

    /// The stage as the orchestrator resolves it (the registry's artifact, checksum and default settings).
    var stage: DesiredState.Stage {
        DesiredState.Stage(
            modelID: UUID(uuidString: modelID)!, modelName: name, version: version, artifactURI: artifactURI, sha256: sha256, settings: Self.settings)
    }

    private struct Created: Decodable { var id: String }

    private struct Version: Decodable {
        var version: String
        var artifactURI: String
        var sha256: String
        var status: String

        enum CodingKeys: String, CodingKey {
            case version, sha256, status
            case artifactURI = "artifact_uri"
        }
    }

    /// A new model (a name of its own, so that a registry that has run the benchmark before takes
    /// it too) and its active version 1.0.0.
    static func create(in registry: HTTPService) throws -> BenchModel {
        let name = "bench-detector-\(getpid())-\(Int(Date().timeIntervalSince1970))"
        let model = try registry.postJSON(
            Created.self, "/v1/models",
            body: JSONValue.object([
                "name": .string(name), "task": .string("object_detection"), "format": .string("onnx"), "labels": .array([.string("person")]),
            ]), expected: 201)
        let version = try registry.postJSON(
            Version.self, "/v1/models/\(model.id)/versions",
            body: JSONValue.object([
                "version": .string("1.0.0"), "artifact_uri": .string(artifactURI), "sha256": .string(sha256), "size_bytes": .number(12_345_678),
                "default_settings": .object(settings),
            ]), expected: 201)
        guard version.status == "active", UUID(uuidString: model.id) != nil else {
            throw BenchError("the registry made version \(version.version) of \(model.id) \(version.status), not active")
        }
        return BenchModel(modelID: model.id, name: name, version: version.version, artifactURI: version.artifactURI, sha256: version.sha256)
    }
}

/// One generation at a time: the documents of that generation the gateway publishes on the
/// agents' desired topics, and the reports of it that it forwards on its internal topic; the
/// first of each per agent.
final class GenerationTracker: Sendable {
    struct Progress {
        var generation = 0
        /// Agents whose document of the generation the gateway published.
        var desired: Set<String> = []
        var firstDesired: Double?
        var lastDesired: Double?
        /// When each agent's document of the generation was seen.
        var desiredAt: [String: Double] = [:]
        /// Agents that reported the generation.
        var reported: Set<String> = []
        /// Per agent that reported, the seconds from its document to its report.
        var agentDelays: [Double] = []
        var lastReport: Double?
        /// Devices of those reports with a pipeline running and none failed.
        var runningDevices = 0
        /// Devices of those reports with a failed pipeline.
        var failedDevices = 0
    }

    private let progress = Mutex(Progress())
    /// Messages that are neither agent reports nor desired states.
    let invalid = Atomic<Int>(0)

    /// Counts the generation `generation` from now on, from zero.
    func expect(generation: Int) { progress.withLock { $0 = Progress(generation: generation) } }

    var snapshot: Progress { progress.withLock { $0 } }

    func noteDesired(_ payload: Data) {
        guard let document = try? Envelope<DesiredState>.decode(from: payload).payload else {
            invalid.add(1, ordering: .relaxed)
            return
        }
        let time = now()
        progress.withLock { progress in
            guard document.generation == progress.generation, progress.desired.insert(document.agentID).inserted else { return }
            progress.firstDesired = progress.firstDesired ?? time
            progress.lastDesired = time
            progress.desiredAt[document.agentID] = time
        }
    }

    func noteReport(_ payload: Data) {
        guard let report = try? Envelope<AgentMessage.Report>.decode(from: payload).payload else {
            invalid.add(1, ordering: .relaxed)
            return
        }
        // An in-progress report says the agent is still applying: not the report awaited.
        guard report.applying == nil else { return }
        let time = now()
        progress.withLock { progress in
            guard report.generation == progress.generation, progress.reported.insert(report.agentID).inserted else { return }
            if let sent = progress.desiredAt[report.agentID] { progress.agentDelays.append(time - sent) }
            for device in report.devices {
                if device.pipelines.contains(where: { $0.state == .failed }) {
                    progress.failedDevices += 1
                } else if device.pipelines.contains(where: { $0.state == .running }) {
                    progress.runningDevices += 1
                }
            }
            progress.lastReport = time
        }
    }
}
