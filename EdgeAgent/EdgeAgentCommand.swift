import ArgumentParser
import ChildProcesses
import FleetContract
import Foundation
import Logging
import ServiceLifecycle

/// `edge-agent`: the ModelFleet agent of one edge server, or a simulated fleet of them.
@main
struct EdgeAgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edge-agent",
        abstract: "The ModelFleet edge agent: runs the pipelines the control plane assigns to this server's devices.",
        discussion: "See docs/edge-agent.md and docs/device-protocol.md.",
        subcommands: [Run.self, Simulate.self],
        defaultSubcommand: Run.self
    )
}

extension EdgeAgentCommand {
    /// Runs one agent from its configuration file.
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run one agent from its configuration file.")

        @Option(name: .long, help: "The agent's configuration file (JSON); default: $MODELFLEET_AGENT_CONFIG.")
        var config: String?

        @Option(name: .long, help: "trace, debug, info, notice, warning, error or critical; default: $MODELFLEET_LOG_LEVEL or info.")
        var logLevel: String?

        func run() async throws {
            let environment = ProcessInfo.processInfo.environment
            guard let path = config ?? environment["MODELFLEET_AGENT_CONFIG"] else {
                throw ValidationError("give the configuration file with --config or MODELFLEET_AGENT_CONFIG")
            }
            let logger = try bootstrapLogging(logLevel ?? environment["MODELFLEET_LOG_LEVEL"] ?? "info")
            let configuration: AgentConfiguration
            do {
                configuration = try AgentConfiguration.load(path: path, environment: environment)
            } catch {
                throw ValidationError("configuration: \(error)")
            }
            let agent = try EdgeAgent(configuration: configuration, host: HostSampler(), logger: logger)
            logger.info(
                "starting",
                metadata: [
                    "agent_id": "\(configuration.agentID)", "broker": "\(redactedURL(configuration.mqttURL))",
                    "devices": "\(configuration.devices.count)",
                ])
            try await ServiceGroup(services: [agent.mqtt, agent], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
        }
    }

    /// Runs many simulated agents, for tests, the local stack's simulated site and benchmarks.
    struct Simulate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run N simulated agents with M devices each.",
            discussion: """
                Agents are named <id-prefix>-0001…, spread over --sites sites <site-prefix>-1…, each with devices \
                cam-01… on the built-in runtime. libmosquitto's network loop uses select(), which cannot watch a \
                socket numbered 1024 or more, so past --per-process agents this command runs itself once per \
                group of agents, as child processes it supervises (docs/decisions.md).
                """
        )

        @Option(help: "How many agents.") var agents: Int = 1
        @Option(help: "Devices per agent.") var devices: Int = 4
        @Option(help: "How many sites the agents are spread over.") var sites: Int = 1
        @Option(help: "Agent ids are <id-prefix>-0001, -0002, …") var idPrefix: String = "sim-agent"
        @Option(help: "Site ids are <site-prefix>-1, -2, …") var sitePrefix: String = "sim-site"
        @Option(help: "The first agent's number minus one (for a group of a larger simulation).") var firstIndex: Int = 0
        @Option(help: "Agents per process.") var perProcess: Int = 250
        @Option(help: "Frames per second of each pipeline.") var fps: Double = 1
        @Option(help: "Seconds between heartbeats.") var heartbeatSeconds: Double = 5
        @Option(help: "Seconds between telemetry messages.") var telemetrySeconds: Double = 5
        @Option(help: "Seconds between in-progress reports while a desired state is applied.") var progressSeconds: Double = 5
        @Option(help: "Seconds between hellos (besides the one after each connect).") var helloSeconds: Double = 300
        @Option(help: "Each agent keeps its state in <state-dir>/<agent id>.") var stateDir: String = ".data/simulated-agents"
        @Flag(help: "Let deployments run process instances (their commands) on the simulated servers.") var allowProcessInstances = false
        @Option(help: "The broker; default: $MODELFLEET_MQTT_URL or mqtt://127.0.0.1:1883.") var mqttURL: String?
        @Option(help: "A folder with each agent's broker password in a file named by its agent id (fleetctl agents enroll).")
        var credentialsDir: String?
        @Option(help: "One username for every agent (with --mqtt-password-file): a broker account allowed every agent's topics.")
        var mqttUsername: String?
        @Option(help: "The password of --mqtt-username.") var mqttPasswordFile: String?
        @Option(help: "trace, debug, info, notice, warning, error or critical.") var logLevel: String = "notice"

        func validate() throws {
            guard (1...100_000).contains(agents) else { throw ValidationError("--agents must be 1 to 100000") }
            guard (0...10_000).contains(devices) else { throw ValidationError("--devices must be 0 to 10000") }
            guard (1...agents).contains(sites) else { throw ValidationError("--sites must be 1 to --agents") }
            guard (1...300).contains(perProcess) else { throw ValidationError("--per-process must be 1 to 300 (select() limit)") }
            guard firstIndex >= 0 else { throw ValidationError("--first-index must not be negative") }
            guard (mqttUsername == nil) == (mqttPasswordFile == nil) else {
                throw ValidationError("--mqtt-username and --mqtt-password-file go together")
            }
            guard credentialsDir == nil || mqttUsername == nil else {
                throw ValidationError("--credentials-dir and --mqtt-username exclude each other")
            }
        }

        func run() async throws {
            let logger = try bootstrapLogging(logLevel)
            if agents > perProcess { return try await runGroups(logger: logger) }

            let environment = ProcessInfo.processInfo.environment
            let url = mqttURL ?? environment["MODELFLEET_MQTT_URL"] ?? "mqtt://127.0.0.1:1883"
            let host = HostSampler()
            var simulated: [EdgeAgent] = []
            let shared = try mqttUsername.map { username in
                MQTTCredentials(username: username, password: try MQTTCredentials.readPassword(mqttPasswordFile ?? ""))
            }
            for index in firstIndex..<(firstIndex + agents) {
                let agentID = String(format: "%@-%04d", idPrefix, index + 1)
                let credentials = try credentialsDir.map { directory in
                    MQTTCredentials(username: agentID, password: try MQTTCredentials.readPassword("\(directory)/\(agentID)"))
                }
                let site = index % sites + 1
                let configuration = try AgentConfiguration(
                    agentID: agentID,
                    site: AgentHello.Site(id: "\(sitePrefix)-\(site)", name: "Simulated site \(site)"),
                    serverName: "Edge server \(index + 1)",
                    capacity: AgentHello.Capacity(cpuCores: 8, memoryBytes: 16 << 30, gpus: [AgentHello.GPU(type: "nvidia-t4", count: 1)]),
                    supportsPipelines: true,
                    devices: (0..<devices).map {
                        AgentHello.Device(key: String(format: "cam-%02d", $0 + 1), name: "Camera \($0 + 1)", kind: "camera")
                    },
                    runtime: .builtIn(fps: fps), heartbeatSeconds: heartbeatSeconds, telemetrySeconds: telemetrySeconds, helloSeconds: helloSeconds,
                    progressSeconds: progressSeconds, stateDirectory: URL(fileURLWithPath: stateDir).appendingPathComponent(agentID), mqttURL: url,
                    mqttCredentials: credentials ?? shared, instances: InstanceRuntime.Settings(allowProcess: allowProcessInstances)
                )
                let agent = try EdgeAgent(configuration: configuration, host: host, logger: logger)
                simulated.append(agent)
            }
            logger.notice(
                "simulating agents",
                metadata: ["first": "\(firstIndex + 1)", "count": "\(agents)", "devices": "\(devices)", "broker": "\(redactedURL(url))"])
            let fleet = SimulatedFleet(agents: simulated, logger: logger)
            try await ServiceGroup(services: [fleet], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
        }

        /// Runs itself once per group of `perProcess` agents and waits for all; SIGTERM and SIGINT
        /// are passed on to every group.
        private func runGroups(logger: Logger) async throws {
            // This very binary, however it was started (a relative path, a name found in the PATH).
            let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
            var started: [ChildProcess] = []
            for first in stride(from: firstIndex, to: firstIndex + agents, by: perProcess) {
                let count = min(perProcess, firstIndex + agents - first)
                var arguments = [
                    "simulate", "--agents", "\(count)", "--first-index", "\(first)", "--devices", "\(devices)", "--sites", "\(sites)",
                    "--id-prefix", idPrefix, "--site-prefix", sitePrefix, "--per-process", "\(perProcess)", "--fps", "\(fps)",
                    "--heartbeat-seconds", "\(heartbeatSeconds)", "--telemetry-seconds", "\(telemetrySeconds)", "--hello-seconds", "\(helloSeconds)",
                    "--progress-seconds", "\(progressSeconds)", "--state-dir", stateDir,
                    "--log-level", logLevel,
                ]
                if let mqttURL { arguments += ["--mqtt-url", mqttURL] }
                if let credentialsDir { arguments += ["--credentials-dir", credentialsDir] }
                if let mqttUsername, let mqttPasswordFile {
                    arguments += ["--mqtt-username", mqttUsername, "--mqtt-password-file", mqttPasswordFile]
                }
                if allowProcessInstances { arguments.append("--allow-process-instances") }
                started.append(
                    try ChildProcess(
                        executable: executable, arguments: arguments, environment: ProcessInfo.processInfo.environment,
                        outputFile: URL(fileURLWithPath: "/dev/stderr")))
            }
            let children = started
            logger.notice("simulating agents in \(children.count) processes", metadata: ["count": "\(agents)"])
            let forward = { @Sendable (signal: Int32) in for child in children { child.send(signal) } }
            let signals = [SIGTERM, SIGINT].map { number in
                Foundation.signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number)
                source.setEventHandler { forward(number) }
                source.resume()
                return source
            }
            defer { signals.forEach { $0.cancel() } }
            var worst: Int32 = 0
            for child in children {
                while child.isRunning { try? await Task.sleep(for: .milliseconds(100)) }
                worst = max(worst, child.status ?? 0)
            }
            if worst != 0 { throw ExitCode(worst) }
        }
    }
}

/// The simulated agents of one process as one service: each agent runs in a service group of its
/// own (its MQTT client, then the agent, as `run` does), so that a shutdown reaches every agent at
/// once. One group of all the agents' services stopped them one after another, in reverse order:
/// about 170 ms for an agent running a deployment instance, so a simulator with 400 instances
/// needed over a minute and was killed after 20 s (scripts/bench-deployments).
struct SimulatedFleet: Service {
    let agents: [EdgeAgent]
    let logger: Logger

    func run() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            for agent in agents {
                // Each group takes the parent's graceful shutdown as its own.
                group.addTask { try await ServiceGroup(services: [agent.mqtt, agent], logger: logger).run() }
            }
        }
    }
}

private func bootstrapLogging(_ level: String) throws -> Logger {
    guard let logLevel = Logger.Level(rawValue: level.lowercased()) else {
        throw ValidationError("log level '\(level)' is not one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = logLevel
        return handler
    }
    return Logger(label: "edge-agent")
}

/// `url` with its password, if any, replaced: for logs.
func redactedURL(_ url: String) -> String {
    guard var components = URLComponents(string: url), components.password != nil else { return url }
    components.password = "***"
    return components.string ?? url
}
