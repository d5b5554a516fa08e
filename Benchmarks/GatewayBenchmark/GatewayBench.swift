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

import ArgumentParser
import ChildProcesses
import DeviceProtocol
import FleetContract
import Foundation
import Logging
import MQTT
import Synchronization

#if canImport(Glibc)
import Glibc
private let streamSocketType = Int32(SOCK_STREAM.rawValue)
#else
import Darwin
private let streamSocketType = SOCK_STREAM
#endif

@main
struct GatewayBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway-bench",
        abstract: "Time a simulated fleet's connect through the device gateway, its telemetry forwarding rate, or an assignment to it.",
        subcommands: [Connect.self, TelemetryLoad.self, Assign.self, ValidationSpeed.self]
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

// MARK: - connect

struct Connect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a simulated fleet and time it until the registry and the gateway have every agent online.")

    @OptionGroup var fleet: FleetOptions

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        let running = try await SimulatedFleet.start(fleet)
        say(
            "result phase=connect agents=\(fleet.agents) devices=\(fleet.agents * fleet.devices) sites=\(fleet.sites)"
                + String(format: " registry_seconds=%.3f gateway_seconds=%.3f", running.registrySeconds, running.gatewaySeconds)
                + " polls=\(running.polls)")
        try await running.stopReporting()
    }
}

/// A simulated fleet (`edge-agent simulate`) and the services it registers with, as `connect`
/// and `assign` take them.
struct FleetOptions: ParsableArguments {
    @Option(help: "The edge-agent executable.") var agentBinary: String
    @Option(help: "Simulated agents (<id-prefix>-0001…).") var agents = 1_000
    @Option(help: "Devices per agent.") var devices = 10
    @Option(help: "Sites the agents are spread over (<site-prefix>-1…).") var sites = 10
    @Option(help: "Agent id prefix.") var idPrefix = "bench-agent"
    @Option(help: "Site id prefix.") var sitePrefix = "bench-site"
    @Option(help: "The simulated agents' state folder.") var stateDir: String
    @Option(help: "The simulator's output goes here.") var simulatorLog: String
    @Option(help: "Broker URL, for the simulated agents (and assign's own client).") var mqttURL = "mqtt://127.0.0.1:1883"
    @Option(help: "Registry base URL.") var registryURL = "http://127.0.0.1:8081"
    @Option(help: "Gateway base URL.") var gatewayURL = "http://127.0.0.1:8085"
    @Option(help: "Seconds between polls.") var pollInterval = 0.05
    @Option(help: "Give up after this many seconds (assign: in each phase).") var timeout = 120.0
    @Flag(help: "Print how far the registry and the gateway are, every second, on standard error.") var progress = false

    func validate() throws {
        guard agents > 0, devices >= 0, (1...agents).contains(sites), pollInterval > 0, timeout > 0 else {
            throw ValidationError("need agents > 0, devices >= 0, sites 1...agents, poll-interval > 0, timeout > 0")
        }
    }

    /// Agent `index` (from 0), as the simulator names it.
    func agentID(_ index: Int) -> String { "\(idPrefix)-" + String(format: "%04d", index + 1) }
    /// Device `index` (from 0) of every agent, as the simulator names it.
    func deviceKey(_ index: Int) -> String { String(format: "cam-%02d", index + 1) }
    /// Every site id, in order.
    var siteIDs: [String] { (1...sites).map { "\(sitePrefix)-\($0)" } }
}

/// A running simulated fleet: started, and timed until the registry and the gateway have every
/// agent online.
struct SimulatedFleet {
    let options: FleetOptions
    let simulator: ChildProcess
    /// Seconds from starting the simulator until the registry listed every server online with all its devices.
    let registrySeconds: Double
    /// Seconds from starting the simulator until the gateway listed every agent online.
    let gatewaySeconds: Double
    let polls: Int

    /// Starts the simulator and polls the registry and the gateway until both have every agent
    /// online; on failure the simulator is stopped.
    static func start(_ options: FleetOptions) async throws -> SimulatedFleet {
        let registry = try HTTPService(url: options.registryURL)
        let gateway = try HTTPService(url: options.gatewayURL)
        // Both answer before the clock starts, so that the time is the fleet's alone.
        for (name, service) in [("registry", registry), ("gateway", gateway)] {
            try service.checkReady(name)
        }
        var fleet = Fleet(
            agents: options.agents, devices: options.devices, sites: options.sites, idPrefix: options.idPrefix, sitePrefix: options.sitePrefix)

        let start = now()
        let simulator = try ChildProcess(
            executable: options.agentBinary,
            arguments: [
                "simulate", "--agents", "\(options.agents)", "--devices", "\(options.devices)", "--sites", "\(options.sites)", "--id-prefix",
                options.idPrefix, "--site-prefix", options.sitePrefix, "--state-dir", options.stateDir, "--mqtt-url", options.mqttURL,
                "--log-level", "warning",
            ],
            environment: ProcessInfo.processInfo.environment, outputFile: URL(fileURLWithPath: options.simulatorLog))
        var registrySeconds: Double?
        var gatewaySeconds: Double?
        var polls = 0
        var nextPoll = start
        var nextProgress = start + 1
        do {
            while registrySeconds == nil || gatewaySeconds == nil {
                if let status = simulator.status { throw BenchError("the simulator exited with status \(status); see \(options.simulatorLog)") }
                let elapsed = now() - start
                guard elapsed < options.timeout else {
                    throw BenchError(
                        "after \(Int(options.timeout)) s: \(fleet.registryProgress) in the registry, \(fleet.gatewayOnline) agents online in the gateway"
                    )
                }
                polls += 1
                if registrySeconds == nil, try fleet.pollRegistry(registry) { registrySeconds = now() - start }
                if gatewaySeconds == nil, try fleet.pollGateway(gateway) { gatewaySeconds = now() - start }
                if options.progress && now() >= nextProgress {
                    FileHandle.standardError.write(
                        Data(
                            (String(format: "%6.1f s: ", now() - start) + "\(fleet.registryProgress) in the registry, "
                                + "\(fleet.gatewayOnline) agents online in the gateway\n").utf8))
                    nextProgress += 1
                }
                // A slow answer delays the next poll; it does not bring a burst of them.
                nextPoll = max(nextPoll + options.pollInterval, now())
                try await sleep(until: nextPoll)
            }
        } catch {
            _ = await Self.stop(simulator)
            throw error
        }
        return SimulatedFleet(
            options: options, simulator: simulator, registrySeconds: registrySeconds!, gatewaySeconds: gatewaySeconds!, polls: polls)
    }

    /// Throws when the simulator has exited.
    func checkRunning() throws {
        if let status = simulator.status { throw BenchError("the simulator exited with status \(status); see \(options.simulatorLog)") }
    }

    /// Stops the simulator, says how long that took, and throws when it had to be killed.
    func stopReporting() async throws {
        let stopStart = now()
        let (status, killed) = await stop()
        say(
            String(format: "stopped simulator seconds=%.3f", now() - stopStart) + " status=\(status.map(String.init) ?? "unknown") killed=\(killed)")
        guard !killed else { throw BenchError("the simulator ignored SIGTERM for 20 s and was killed; see \(options.simulatorLog)") }
    }

    func stop() async -> (status: Int32?, killed: Bool) { await Self.stop(simulator) }

    /// SIGTERM, up to 20 s to exit, then SIGKILL. The simulator runs its agents in child
    /// processes, which a SIGKILL of it would leave running: they are killed first, by pid.
    private static func stop(_ simulator: ChildProcess) async -> (status: Int32?, killed: Bool) {
        simulator.send(SIGTERM)
        if let status = await simulator.waitForExit(timeout: .seconds(20)) { return (status, false) }
        for child in childPIDs(of: simulator.pid) { kill(child, SIGKILL) }
        simulator.send(SIGKILL)
        return (await simulator.waitForExit(timeout: .seconds(5)), true)
    }

    /// The processes whose parent is `parent`, from /proc.
    private static func childPIDs(of parent: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry in
            guard let pid = pid_t(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return nil }
            // After the parenthesised command name: state, then the parent's pid.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && pid_t(fields[1]) == parent ? pid : nil
        }
    }
}

/// The simulated fleet as the registry and the gateway should end up showing it, and how far
/// they are.
struct Fleet {
    let agentPrefix: String
    let agents: Int
    let devices: Int
    /// Servers expected in each site: agent `i` (from 0) is in site `i % sites + 1`.
    let serversBySite: [String: Int]
    /// Sites whose every server was seen online with all its devices.
    private(set) var completeSites: Set<String> = []
    private(set) var registeredDevices = 0
    private(set) var gatewayOnline = 0

    init(agents: Int, devices: Int, sites: Int, idPrefix: String, sitePrefix: String) {
        self.agentPrefix = idPrefix + "-"
        self.agents = agents
        self.devices = devices
        var serversBySite: [String: Int] = [:]
        for index in 0..<agents { serversBySite["\(sitePrefix)-\(index % sites + 1)", default: 0] += 1 }
        self.serversBySite = serversBySite
    }

    var registryProgress: String {
        "\(completeSites.count) of \(serversBySite.count) sites complete, \(registeredDevices) of \(agents * devices) devices"
    }

    private struct SiteSummary: Decodable {
        var id: String
        var online: Bool
        var serverCount: Int
        var deviceCount: Int

        enum CodingKeys: String, CodingKey {
            case id, online
            case serverCount = "server_count"
            case deviceCount = "device_count"
        }
    }

    private struct SiteList: Decodable { var items: [SiteSummary] }

    private struct SitePage: Decodable {
        struct Server: Decodable {
            var id: String
            var online: Bool
        }
        var site: SiteSummary
        var servers: [Server]
    }

    /// True once every site lists all its servers, online, with all their devices. One GET of
    /// the site list, then the page of each site whose counts are complete (for its servers'
    /// presence); a complete site is not asked again.
    mutating func pollRegistry(_ registry: HTTPService) throws -> Bool {
        let list = try registry.getJSON(SiteList.self, "/v1/sites")
        let summaries = list.items.filter { serversBySite[$0.id] != nil }
        registeredDevices = summaries.reduce(0) { $0 + $1.deviceCount }
        for summary in summaries where !completeSites.contains(summary.id) {
            let servers = serversBySite[summary.id]!
            guard summary.online, summary.serverCount == servers, summary.deviceCount == servers * devices else { continue }
            let page = try registry.getJSON(SitePage.self, "/v1/sites/\(summary.id)")
            if page.servers.count == servers, page.servers.allSatisfy(\.online), page.site.deviceCount == servers * devices {
                completeSites.insert(summary.id)
            }
        }
        return completeSites.count == serversBySite.count
    }

    private struct AgentList: Decodable {
        struct Agent: Decodable {
            var agentID: String
            var online: Bool

            enum CodingKeys: String, CodingKey {
                case agentID = "agent_id"
                case online
            }
        }
        var agents: [Agent]
    }

    /// True once the gateway lists every simulated agent online.
    mutating func pollGateway(_ gateway: HTTPService) throws -> Bool {
        let list = try gateway.getJSON(AgentList.self, "/v1/agents?online=true")
        gatewayOnline = list.agents.count(where: { $0.online && $0.agentID.hasPrefix(agentPrefix) })
        return gatewayOnline == agents
    }
}

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

// MARK: - telemetry

struct TelemetryLoad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "telemetry",
        abstract: "Offer agent telemetry and count it on the agents' topics (raw) and on the gateway's internal topic (forwarded).")

    @Option(help: "Broker URL.") var mqttURL = "mqtt://127.0.0.1:1883"
    @Option(help: "Distinct agent ids the messages come from, round-robin (<id-prefix>-0001…).") var agents = 1_000
    @Option(help: "Agent id prefix.") var idPrefix = "bench-telemetry"
    @Option(help: "Publishing clients.") var publishers = 4
    @Option(help: "Messages per second offered in all; 0 publishes as fast as the broker takes them.") var rate = 0.0
    @Option(help: "Seconds of the measured window.") var seconds = 10.0
    @Option(help: "Seconds of publishing before the window, not counted.") var warmup = 1.0
    @Option(help: "Pipelines in each message.") var pipelines = 10
    @Option(
        help: """
            The gateway's process id: its CPU time per message forwarded is then printed (over the \
            whole command), and its MQTT network thread's over the window next to the raw \
            subscriber's per message received, the same client code receiving the same stream.
            """)
    var gatewayPID: Int32?
    @Option(
        help: """
            The broker's process id: its CPU over the window is then printed next to the gateway's, \
            this process's and the machine's idle time, to show how the cores were shared.
            """)
    var brokerPID: Int32?

    func validate() throws {
        guard agents > 0, (1...64).contains(publishers), rate >= 0, seconds > 0, warmup >= 0, (0...1_000).contains(pipelines) else {
            throw ValidationError("need agents > 0, publishers 1...64, rate >= 0, seconds > 0, warmup >= 0, pipelines 0...1000")
        }
    }

    func run() async throws {
        // The gateway's whole process over the whole command (priming, warm-up, window and
        // drain), for its CPU time per message forwarded: unlike the cores it gets, that hardly
        // depends on how the kernel shares them.
        let gatewayProcessStat = gatewayPID.map { "/proc/\($0)/stat" }
        let gatewayCPUAtStart = gatewayProcessStat.flatMap(cpuSeconds(statPath:))
        let stream = try TelemetryStream(agents: agents, idPrefix: idPrefix, pipelines: pipelines)
        let raw = try makeClient("raw")
        let forwarded = try makeClient("forwarded")
        let senders = try (0..<publishers).map { try makeClient("publish-\($0)") }
        let clients = [raw, forwarded] + senders
        let runners = clients.map { client in Task { try await client.run() } }
        defer { runners.forEach { $0.cancel() } }
        for client in clients { try await client.waitUntilConnected(timeout: .seconds(10)) }

        // Room for a few seconds of the fastest stream: the counters measure the gateway, not drops here.
        let rawMessages = try await raw.subscribe(to: Topic.everyAgent(.telemetry).path, qos: .atMostOnce, bufferCapacity: 1 << 20)
        let forwardedMessages = try await forwarded.subscribe(to: Topic.agentTelemetryEvents.path, qos: .atMostOnce, bufferCapacity: 1 << 20)
        let counts = Counts()
        let consumers = Task {
            await withDiscardingTaskGroup { group in
                group.addTask { for await _ in rawMessages { counts.raw.add(1, ordering: .relaxed) } }
                group.addTask {
                    // The gateway forwards telemetry in batches (TelemetryBatch): each says how
                    // many messages it holds; one batch in 64 is parsed to check that it says so.
                    var batches = 0
                    for await batch in forwardedMessages {
                        let count = Int(batch.properties.userProperty(TelemetryBatch.countProperty) ?? "") ?? 0
                        counts.forwarded.add(count, ordering: .relaxed)
                        batches += 1
                        if batches % 64 == 1 && Self.messagesInBatch(batch.payload) != count {
                            counts.miscounted.add(1, ordering: .relaxed)
                        }
                    }
                }
            }
        }
        say(
            "telemetry: \(stream.payloadBytes) bytes per message (\(pipelines) pipelines), \(agents) agents, \(publishers) publishers, "
                + (rate > 0 ? "\(Int(rate)) msg/s offered" : "unpaced") + ", \(fmt(warmup)) s warm-up, \(fmt(seconds)) s window")

        // One message per agent first, until each is forwarded: the gateway announces an agent
        // online on its first message after a silence, awaiting that QoS 1 publish in its receive
        // loop. The stream then measures forwarding from agents that are online, as in a fleet.
        let primeStart = now()
        let properties = MQTTProperties(contentType: "application/json")
        for agent in 0..<agents {
            let payload = stream.payload(agent: agent, variant: 0, sequence: Publisher.primingSequence + UInt64(agent))
            try await senders[agent % publishers].publish(stream.topics[agent], payload: payload, qos: .atMostOnce, properties: properties)
        }
        while counts.raw.load(ordering: .relaxed) < agents || counts.forwarded.load(ordering: .relaxed) < agents {
            guard now() - primeStart < 60 else {
                throw BenchError(
                    "priming: \(counts.raw.load(ordering: .relaxed)) of \(agents) messages received raw and"
                        + " \(counts.forwarded.load(ordering: .relaxed)) forwarded after 60 s")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        let primed = counts.snapshot(at: now())
        say(String(format: "primed: one message from each of %d agents forwarded in %.3f s", agents, primed.time - primeStart))

        let start = now() + 0.05
        let end = start + warmup + seconds
        let publisherRate = rate / Double(publishers)
        let publisherCount = publishers
        let publishing = Task {
            try await withThrowingDiscardingTaskGroup { group in
                for (index, client) in senders.enumerated() {
                    group.addTask {
                        try await Publisher(client: client, index: index, publishers: publisherCount, stream: stream, counts: counts)
                            .run(rate: publisherRate, start: start, end: end)
                    }
                }
            }
        }
        // The two receiving threads: the raw subscriber's, here, and the gateway's.
        let rawThread = ThreadCPU(pid: getpid(), name: "mqtt raw-")
        let gatewayThread = gatewayPID.map { ThreadCPU(pid: $0, name: "mqtt device-gateway") }
        // How the cores were shared: the gateway, the broker, this process, and what was left.
        let sharing = CoreSharing(processes: [("gateway", gatewayPID), ("broker", brokerPID), ("bench", getpid())])
        try await sleep(until: start + warmup)
        let before = counts.snapshot(at: now())
        let rawCPUBefore = rawThread.seconds()
        let gatewayCPUBefore = gatewayThread.flatMap { $0.seconds() }
        let sharingBefore = sharing.sample()
        try await sleep(until: end)
        let after = counts.snapshot(at: now())
        let rawCPU = difference(rawCPUBefore, rawThread.seconds())
        let gatewayCPU = difference(gatewayCPUBefore, gatewayThread.flatMap { $0.seconds() })
        let cores = sharing.cores(from: sharingBefore, to: sharing.sample(), seconds: after.time - before.time)
        try await publishing.value

        // The rest of the stream: what the gateway forwards late is not lost, and a backlog left
        // in the gateway would count in the next run. Until both counters have every message
        // published (the raw subscriber may be the one behind), or nothing more arrives for 3 s
        // (the broker dropped the rest for a subscriber too far behind; 60 s at most).
        let drainStart = now()
        var last = counts.snapshot(at: drainStart)
        var lastChange = drainStart
        func drained(_ counts: Counts.Snapshot) -> Bool {
            counts.raw - primed.raw >= counts.published && counts.forwarded - primed.forwarded >= counts.published
        }
        while !drained(last) && now() - lastChange < 3 && now() - drainStart < 60 {
            try await Task.sleep(for: .milliseconds(100))
            let next = counts.snapshot(at: now())
            if next.raw != last.raw || next.forwarded != last.forwarded { lastChange = next.time }
            last = next
        }
        let drainSeconds = last.time - drainStart
        let gatewayCPUInAll = difference(gatewayCPUAtStart, gatewayProcessStat.flatMap(cpuSeconds(statPath:)))
        rawMessages.cancel()
        forwardedMessages.cancel()
        await consumers.value
        // A clean DISCONNECT for each client.
        runners.forEach { $0.cancel() }
        for runner in runners { _ = try? await runner.value }

        let window = after.time - before.time
        let offered = Double(after.published - before.published) / window
        let rawRate = Double(after.raw - before.raw) / window
        let forwardedRate = Double(after.forwarded - before.forwarded) / window
        say(
            "result phase=telemetry requested=\(rate > 0 ? String(Int(rate)) : "unpaced") bytes=\(stream.payloadBytes)"
                + String(format: " offered=%.0f raw=%.0f forwarded=%.0f", offered, rawRate, forwardedRate) + " ratio=\(ratio(forwardedRate, rawRate))"
                + String(format: " window_seconds=%.3f drain_seconds=%.3f", window, drainSeconds)
                + " published_total=\(last.published) raw_total=\(last.raw - primed.raw) forwarded_total=\(last.forwarded - primed.forwarded)"
                + " raw_client_dropped=\(rawMessages.droppedCount)"
                + " forwarded_client_dropped=\(forwardedMessages.droppedCount)"
                + Self.microseconds("raw_receive_us", rawCPU, messages: after.raw - before.raw)
                // The gateway forwards what its network thread receives, a batch later.
                + Self.microseconds("gateway_receive_us", gatewayCPU, messages: after.forwarded - before.forwarded)
                + cores.map { String(format: " cores_%@=%.2f", $0.name, $0.cores) }.joined()
                // Priming included: the gateway forwarded `last.forwarded` messages in all.
                + (gatewayCPUInAll.map { String(format: " gateway_cpu_seconds=%.2f", $0) } ?? "")
                + Self.microseconds("gateway_us_per_message", gatewayCPUInAll, messages: last.forwarded))
        let miscounted = counts.miscounted.load(ordering: .relaxed)
        if miscounted > 0 { throw BenchError("\(miscounted) forwarded batches held another number of messages than their count said") }
    }

    private func difference(_ before: Double?, _ after: Double?) -> Double? {
        guard let before, let after else { return nil }
        return after - before
    }

    /// " NAME=µs" of CPU a message, or nothing when the thread or process was not found.
    private static func microseconds(_ name: String, _ seconds: Double?, messages: Int) -> String {
        guard let seconds, messages > 0 else { return "" }
        return String(format: " %@=%.1f", name, seconds * 1e6 / Double(messages))
    }

    /// The number of messages in a forwarded telemetry batch, read from its JSON.
    private static func messagesInBatch(_ payload: Data) -> Int? {
        let envelope = (try? JSONSerialization.jsonObject(with: payload)) as? [String: Any]
        return ((envelope?["payload"] as? [String: Any])?["messages"] as? [Any])?.count
    }

    private func makeClient(_ role: String) throws -> MQTTClient { try makeBenchClient(url: mqttURL, role: role) }

    private func fmt(_ value: Double) -> String { String(format: "%g", value) }
    private func ratio(_ value: Double, _ base: Double) -> String { base > 0 ? String(format: "%.3f", value / base) : "n/a" }
}

/// The CPU time of one thread of a process, found by its name in /proc: an MQTT client's network
/// thread is named "mqtt <client id>", of which the kernel keeps 15 bytes.
struct ThreadCPU {
    let pid: Int32
    /// The name as the kernel keeps it.
    let name: String

    init(pid: Int32, name: String) {
        self.pid = pid
        self.name = String(decoding: name.utf8.prefix(15), as: UTF8.self)
    }

    /// User and system time so far, in seconds; nil when no thread (or more than one) has the name.
    func seconds() -> Double? {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        let found = tasks.filter { task in
            (try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/comm", encoding: .utf8))?.hasPrefix(name) == true
        }
        guard found.count == 1 else { return nil }
        return cpuSeconds(statPath: "/proc/\(pid)/task/\(found[0])/stat")
    }
}

/// User and system time so far, in seconds, of the process or thread whose `stat` file (proc(5))
/// is at `statPath`; nil when it cannot be read.
func cpuSeconds(statPath: String) -> Double? {
    guard let stat = try? String(contentsOfFile: statPath, encoding: .utf8), let close = stat.lastIndex(of: ")") else { return nil }
    // After the parenthesised name: fields 3 on; utime and stime are fields 14 and 15.
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// How the machine's cores were shared over a window: the CPU of some processes, and the idle
/// time of the whole machine (`/proc/stat`: idle and iowait), each in cores.
struct CoreSharing {
    /// Named processes; a nil id is left out.
    let processes: [(name: String, pid: Int32?)]

    struct Sample {
        var processSeconds: [Double?]
        var idleSeconds: Double?
    }

    func sample() -> Sample {
        Sample(processSeconds: processes.map { $0.pid.flatMap { cpuSeconds(statPath: "/proc/\($0)/stat") } }, idleSeconds: Self.idleSeconds())
    }

    /// Each process's cores over the `seconds` between the samples, then `idle`'s; what could
    /// not be read at both ends is left out.
    func cores(from before: Sample, to after: Sample, seconds: Double) -> [(name: String, cores: Double)] {
        var cores: [(name: String, cores: Double)] = []
        for (index, process) in processes.enumerated() {
            if let start = before.processSeconds[index], let end = after.processSeconds[index] {
                cores.append((process.name, (end - start) / seconds))
            }
        }
        if let start = before.idleSeconds, let end = after.idleSeconds { cores.append(("idle", (end - start) / seconds)) }
        return cores
    }

    /// The machine's idle and iowait time so far, summed over its cores, in seconds.
    static func idleSeconds() -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = stat.split(separator: "\n").first, line.hasPrefix("cpu ")
        else { return nil }
        // cpu user nice system idle iowait …, in clock ticks.
        let fields = line.split(separator: " ")
        guard fields.count > 5, let idle = Double(fields[4]), let iowait = Double(fields[5]) else { return nil }
        return (idle + iowait) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

/// Messages published, received raw and received forwarded, counted as they happen.
final class Counts: Sendable {
    let published = Atomic<Int>(0)
    let raw = Atomic<Int>(0)
    let forwarded = Atomic<Int>(0)
    /// Checked batches whose count property was not their number of messages.
    let miscounted = Atomic<Int>(0)

    struct Snapshot {
        var time: Double
        var published: Int
        var raw: Int
        var forwarded: Int
    }

    func snapshot(at time: Double) -> Snapshot {
        Snapshot(
            time: time, published: published.load(ordering: .relaxed), raw: raw.load(ordering: .relaxed),
            forwarded: forwarded.load(ordering: .relaxed))
    }
}

/// Valid telemetry envelopes of every agent, encoded once. Each send stamps a fresh message id
/// into a copy, which costs far less than encoding: the publishers must not be what limits the
/// rate on a small machine.
struct TelemetryStream: Sendable {
    /// Each agent's telemetry topic.
    let topics: [String]
    /// Per agent, a few envelopes with different figures.
    let payloads: [[Data]]
    /// Where the last 12 hex digits of each payload's message id start.
    let idOffsets: [[Int]]
    static let variants = 4

    var payloadBytes: Int { payloads[0][0].count }

    init(agents: Int, idPrefix: String, pipelines: Int) throws {
        var generator = SystemRandomNumberGenerator()
        let key = Array("\"message_id\":\"".utf8)
        var topics: [String] = []
        var payloads: [[Data]] = []
        var idOffsets: [[Int]] = []
        for index in 0..<agents {
            let agentID = try TopicLevel("\(idPrefix)-" + String(format: "%04d", index + 1))
            topics.append(Topic.agent(agentID, .telemetry).path)
            var variants: [Data] = []
            var offsets: [Int] = []
            for _ in 0..<Self.variants {
                let telemetry = AgentMessage.Telemetry(
                    agentID: agentID.value, intervalSeconds: 5,
                    host: .init(
                        cpuPercent: Double.random(in: 20..<85, using: &generator).rounded(toPlaces: 1),
                        memoryUsedBytes: Int64.random(in: 4 << 30..<12 << 30, using: &generator),
                        gpuPercent: Double.random(in: 30..<95, using: &generator).rounded(toPlaces: 1)),
                    pipelines: (0..<pipelines).map { pipeline in
                        let frames = Int.random(in: 140..<151, using: &generator)
                        let p50 = Double.random(in: 12..<25, using: &generator)
                        return AgentMessage.Telemetry.Pipeline(
                            deviceKey: String(format: "cam-%02d", pipeline + 1), pipelineID: "people-count-\(pipeline + 1)", frames: frames,
                            detections: Int.random(in: 0..<frames * 3, using: &generator),
                            errors: Int.random(in: 0..<20, using: &generator) == 0 ? 1 : 0,
                            latencyMs: .init(
                                p50: p50.rounded(toPlaces: 2), p95: (p50 * 1.6).rounded(toPlaces: 2), p99: (p50 * 2.3).rounded(toPlaces: 2)))
                    })
                let payload = try Envelope(payload: telemetry).encoded()
                let bytes = [UInt8](payload)
                guard let found = (0...(bytes.count - key.count)).first(where: { bytes[$0..<$0 + key.count].elementsEqual(key) }),
                    bytes[found + key.count + 23] == UInt8(ascii: "-")
                else { throw BenchError("no message_id in an encoded telemetry envelope") }
                variants.append(payload)
                offsets.append(found + key.count + 24)
            }
            payloads.append(variants)
            idOffsets.append(offsets)
        }
        self.topics = topics
        self.payloads = payloads
        self.idOffsets = idOffsets
    }

    /// The envelope of `agent`, variant `variant`, with `sequence` as the end of its message id.
    func payload(agent: Int, variant: Int, sequence: UInt64) -> Data {
        var payload = payloads[agent][variant]
        let offset = idOffsets[agent][variant]
        let digits = Array("0123456789ABCDEF".utf8)
        payload.withUnsafeMutableBytes { (raw: UnsafeMutableRawBufferPointer) in
            for position in 0..<12 { raw[offset + position] = digits[Int((sequence >> (4 * UInt64(11 - position))) & 0xf)] }
        }
        return payload
    }
}

/// One publishing client: messages of agents `index`, `index + publishers`, … in turn, QoS 0.
struct Publisher: Sendable {
    let client: MQTTClient
    let index: Int
    let publishers: Int
    let stream: TelemetryStream
    let counts: Counts

    /// A QoS 0 publish only queues the message in libmosquitto: unpaced, the queue would grow
    /// without bound. Every `markerInterval` messages a QoS 1 marker goes out on a topic no one
    /// reads, and the next marker waits for the previous one's PUBACK; the broker has then taken
    /// everything before it (one TCP stream, in order). At most two intervals are in flight.
    static let markerInterval = 500
    /// The message ids of the priming messages end in this tag plus the agent's number; those of
    /// publisher `n` in `n << 40` plus its count.
    static let primingSequence: UInt64 = 0xFFF << 36

    /// Publishes from `start` to `end`, `rate` messages per second (0: as fast as the broker takes them).
    func run(rate: Double, start: Double, end: Double) async throws {
        let markerTopic = "bench/gateway/marker/\(index)"
        let properties = MQTTProperties(contentType: "application/json")
        let agents = stream.topics.count
        // The publisher's number in the top bits keeps message ids unique across publishers.
        let sequenceBase = UInt64(index) << 40
        var sent = 0
        var marker: Task<Void, any Error>?
        try await sleep(until: start)
        while true {
            let time = now()
            guard time < end else { break }
            // Paced: everything due by now, at most a burst of 1,024 (a late publisher catches up
            // over several turns).
            let due = rate > 0 ? min(Int((time - start) * rate) + 1, sent + 1_024) : sent + 256
            while sent < due {
                let agent = (sent * publishers + index) % agents
                let payload = stream.payload(agent: agent, variant: (sent / agents) % TelemetryStream.variants, sequence: sequenceBase + UInt64(sent))
                try await client.publish(stream.topics[agent], payload: payload, qos: .atMostOnce, properties: properties)
                sent += 1
                counts.published.add(1, ordering: .relaxed)
                if sent % Self.markerInterval == 0 {
                    try await marker?.value
                    marker = Task { [client] in try await client.publish(markerTopic, payload: Data("m".utf8), qos: .atLeastOnce) }
                }
            }
            if rate > 0 {
                try await Task.sleep(for: .milliseconds(1))
            } else {
                await Task.yield()
            }
        }
        try await marker?.value
    }
}

extension Double {
    fileprivate func rounded(toPlaces places: Int) -> Double {
        let scale = pow(10, Double(places))
        return (self * scale).rounded() / scale
    }
}

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

// MARK: - A tiny blocking HTTP/1.1 client

/// A service's base URL, resolved once. Each request opens a connection and reads the answer to
/// its end (`Connection: close`): a few requests a second need nothing more.
struct HTTPService: Sendable {
    let family: Int32
    let address: [UInt8]
    let host: String

    init(url text: String) throws {
        guard let url = URLComponents(string: text), url.scheme == "http", let name = url.host, !name.isEmpty else {
            throw ValidationError("'\(text)' is not an http://host[:port] URL")
        }
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = streamSocketType
        var found: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(name, String(url.port ?? 80), &hints, &found)
        guard status == 0, let first = found, let address = first.pointee.ai_addr else {
            throw BenchError("cannot resolve \(name): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(found) }
        family = first.pointee.ai_family
        self.address = Array(UnsafeRawBufferPointer(start: address, count: Int(first.pointee.ai_addrlen)))
        host = url.port.map { "\(name):\($0)" } ?? name
    }

    /// Throws unless `GET /ready` answers 200.
    func checkReady(_ name: String) throws {
        let status = try get("/ready").status
        guard status == 200 else { throw BenchError("the \(name) is not ready (GET /ready answered \(status))") }
    }

    func getJSON<T: Decodable>(_ type: T.Type, _ path: String) throws -> T {
        let (status, body) = try get(path)
        guard status == 200 else { throw BenchError("GET \(path) answered \(status): \(String(decoding: body.prefix(300), as: UTF8.self))") }
        return try JSONDecoder().decode(T.self, from: body)
    }

    func get(_ path: String) throws -> (status: Int, body: Data) {
        try send("GET", path)
    }

    /// POSTs `body` (JSON) and decodes the answer, which must have status `expected`.
    func postJSON<T: Decodable>(
        _ type: T.Type, _ path: String, body: some Encodable, expected: Int, timeoutSeconds: Int = 10
    ) throws -> T {
        let (status, answer) = try send("POST", path, body: try JSONEncoder().encode(body), timeoutSeconds: timeoutSeconds)
        guard status == expected else {
            throw BenchError("POST \(path) answered \(status): \(String(decoding: answer.prefix(300), as: UTF8.self))")
        }
        return try JSONDecoder().decode(T.self, from: answer)
    }

    /// One request; `body`, when given, is sent as JSON. A server that takes longer than
    /// `timeoutSeconds` to send anything fails the request instead of hanging the run.
    func send(_ method: String, _ path: String, body: Data? = nil, timeoutSeconds: Int = 10) throws -> (status: Int, body: Data) {
        let fd = socket(family, streamSocketType, 0)
        guard fd >= 0 else { throw BenchError("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let connected = address.withUnsafeBytes { raw in
            connect(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
        }
        guard connected == 0 else { throw BenchError("connect to \(host): \(String(cString: strerror(errno)))") }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\nAccept: application/json\r\n"
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        let request = Array((head + "\r\n").utf8) + (body.map(Array.init) ?? [])
        var offset = 0
        while offset < request.count {
            let written = request[offset...].withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { throw BenchError("\(method) \(path): write: \(String(cString: strerror(errno)))") }
            offset += written
        }
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw BenchError("\(method) \(path): read: \(String(cString: strerror(errno)))") }
            if count == 0 { break }
            response += chunk[0..<count]
        }
        let separator = Array("\r\n\r\n".utf8)
        guard let headEnd = (0..<max(response.count - 3, 0)).first(where: { response[$0..<$0 + 4].elementsEqual(separator) }) else {
            throw BenchError("\(method) \(path): no complete HTTP answer")
        }
        let answerHead = String(decoding: response[..<headEnd], as: UTF8.self).lowercased()
        let statusLine = answerHead.prefix { $0 != "\r" }.split(separator: " ")
        guard statusLine.count >= 2, statusLine[0].hasPrefix("http/1."), let status = Int(statusLine[1]) else {
            throw BenchError("\(method) \(path): not an HTTP/1.x status line")
        }
        guard !answerHead.contains("transfer-encoding: chunked") else { throw BenchError("\(method) \(path): chunked answers are not supported") }
        return (status, Data(response[(headEnd + 4)...]))
    }
}
