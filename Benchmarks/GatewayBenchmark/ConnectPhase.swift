// `gateway-bench connect`, and the simulated fleet that `assign` starts too.

import ArgumentParser
import ChildProcesses
import DeviceProtocol
import FleetContract
import Foundation
import Logging
import MQTT
import Synchronization

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
