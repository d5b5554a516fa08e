import FleetContract
import Foundation
import MQTT

/// What one edge agent is and where it connects: from its configuration file (JSON), with the
/// environment overriding the broker, the agent id and the state folder (`docs/edge-agent.md`).
struct AgentConfiguration: Sendable, Equatable {
    /// How the agent runs pipelines.
    enum Runtime: Sendable, Equatable {
        /// Runs each pipeline in-process on synthetic frames, at `fps` frames per second.
        case builtIn(fps: Double)
        /// Starts `command` per pipeline and supervises it. `{pipeline_file}`, `{device_key}` and
        /// `{pipeline_id}` in the arguments are replaced for each pipeline.
        case process(command: [String])
    }

    var agentID: String
    var site: AgentHello.Site
    var serverName: String
    var capacity: AgentHello.Capacity
    var supportsPipelines: Bool
    var devices: [AgentHello.Device]
    var runtime: Runtime
    var heartbeatSeconds: Double
    var telemetrySeconds: Double
    /// The hello is sent after every connect and again this often.
    var helloSeconds: Double = 300
    /// While a desired state takes longer than this to apply (artifacts downloading), an
    /// in-progress report goes out this often.
    var progressSeconds: Double = 5
    /// Where the last applied desired state and fetched artifacts are kept.
    var stateDirectory: URL
    var mqttURL: String
    var mqttTLS: MQTTConfiguration.TLS?
    /// The agent's broker credentials (`fleetctl agents enroll` makes them): the username is the
    /// agent id unless set otherwise; nil: the URL's, if any.
    var mqttCredentials: MQTTCredentials?
    /// Where deployment instances listen, and whether process instances may run.
    var instances = InstanceRuntime.Settings()

    static let agentVersion = ModelFleetAgentVersion.current

    /// A configuration error names the file's field or the environment variable.
    struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        var field: String
        var reason: String
        var description: String { "\(field): \(reason)" }
    }

    /// The file's shape (snake_case, as in `docs/edge-agent.md`).
    struct File: Decodable {
        struct RuntimeSection: Decodable {
            var kind: String
            var fps: Double?
            var command: [String]?
        }

        struct InstancesSection: Decodable {
            var host: String?
            var allowProcess: Bool?

            private enum CodingKeys: String, CodingKey {
                case host
                case allowProcess = "allow_process"
            }
        }

        var agentID: String?
        var site: AgentHello.Site
        var serverName: String?
        var capacity: AgentHello.Capacity
        var supportsPipelines: Bool?
        var devices: [AgentHello.Device]
        var runtime: RuntimeSection?
        var instances: InstancesSection?
        var heartbeatSeconds: Double?
        var telemetrySeconds: Double?
        var helloSeconds: Double?
        var progressSeconds: Double?
        var stateDir: String?
        var mqttURL: String?
        var mqttUsername: String?
        var mqttPassword: String?
        var mqttPasswordFile: String?
        var mqttCAFile: String?

        private enum CodingKeys: String, CodingKey {
            case agentID = "agent_id"
            case site
            case serverName = "server_name"
            case capacity
            case supportsPipelines = "supports_pipelines"
            case devices, runtime, instances
            case heartbeatSeconds = "heartbeat_seconds"
            case telemetrySeconds = "telemetry_seconds"
            case helloSeconds = "hello_seconds"
            case progressSeconds = "progress_seconds"
            case stateDir = "state_dir"
            case mqttURL = "mqtt_url"
            case mqttUsername = "mqtt_username"
            case mqttPassword = "mqtt_password"
            case mqttPasswordFile = "mqtt_password_file"
            case mqttCAFile = "mqtt_ca_file"
        }
    }

    init(
        agentID: String, site: AgentHello.Site, serverName: String, capacity: AgentHello.Capacity, supportsPipelines: Bool,
        devices: [AgentHello.Device], runtime: Runtime, heartbeatSeconds: Double, telemetrySeconds: Double, helloSeconds: Double = 300,
        progressSeconds: Double = 5, stateDirectory: URL, mqttURL: String, mqttTLS: MQTTConfiguration.TLS? = nil,
        mqttCredentials: MQTTCredentials? = nil, instances: InstanceRuntime.Settings = InstanceRuntime.Settings()
    ) throws(Problem) {
        self.agentID = agentID
        self.site = site
        self.serverName = serverName
        self.capacity = capacity
        self.supportsPipelines = supportsPipelines
        self.devices = devices
        self.runtime = runtime
        self.heartbeatSeconds = heartbeatSeconds
        self.telemetrySeconds = telemetrySeconds
        self.helloSeconds = helloSeconds
        self.progressSeconds = progressSeconds
        self.stateDirectory = stateDirectory
        self.mqttURL = mqttURL
        self.mqttTLS = mqttTLS
        self.mqttCredentials = mqttCredentials
        self.instances = instances
        try check()
    }

    /// Reads the file at `path`; `MODELFLEET_AGENT_ID`, `MODELFLEET_AGENT_STATE_DIR`,
    /// `MODELFLEET_MQTT_URL`, `MODELFLEET_MQTT_USERNAME` / `_PASSWORD_FILE` and
    /// `MODELFLEET_MQTT_CA_FILE` / `_CERT_FILE` / `_KEY_FILE` override it.
    static func load(path: String, environment: [String: String]) throws(Problem) -> AgentConfiguration {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw Problem(field: path, reason: "cannot be read: \(error.localizedDescription)")
        }
        let file: File
        do {
            file = try JSONDecoder().decode(File.self, from: data)
        } catch let error as DecodingError {
            let problem = ContractError(decodingError: error)
            throw Problem(field: "\(path): \(problem.field)", reason: problem.reason)
        } catch {
            throw Problem(field: path, reason: "\(error)")
        }
        func value(_ name: String) -> String? {
            environment[name].flatMap { $0.trimmingCharacters(in: .whitespaces).isEmpty ? nil : $0 }
        }
        guard let agentID = value("MODELFLEET_AGENT_ID") ?? file.agentID else {
            throw Problem(field: "agent_id", reason: "is required (in the file or MODELFLEET_AGENT_ID)")
        }
        let runtime: Runtime
        switch file.runtime?.kind ?? "builtin" {
        case "builtin": runtime = .builtIn(fps: file.runtime?.fps ?? 5)
        case "process":
            guard let command = file.runtime?.command, !command.isEmpty else {
                throw Problem(field: "runtime.command", reason: "is required for the process runtime: the program and its arguments")
            }
            runtime = .process(command: command)
        case let other: throw Problem(field: "runtime.kind", reason: "'\(other)' is not one of builtin, process")
        }
        let stateDir = value("MODELFLEET_AGENT_STATE_DIR") ?? file.stateDir ?? "/var/lib/modelfleet-agent"
        let ca = value("MODELFLEET_MQTT_CA_FILE") ?? file.mqttCAFile
        let certificate = value("MODELFLEET_MQTT_CERT_FILE")
        let key = value("MODELFLEET_MQTT_KEY_FILE")
        let username = value("MODELFLEET_MQTT_USERNAME") ?? file.mqttUsername
        var credentials: MQTTCredentials?
        if let passwordFile = value("MODELFLEET_MQTT_PASSWORD_FILE") ?? file.mqttPasswordFile {
            credentials = MQTTCredentials(username: username ?? agentID, password: try MQTTCredentials.readPassword(passwordFile))
        } else if let password = file.mqttPassword {
            guard !password.isEmpty else { throw Problem(field: "mqtt_password", reason: "must not be empty") }
            credentials = MQTTCredentials(username: username ?? agentID, password: password)
        } else if username != nil {
            throw Problem(field: "mqtt_password", reason: "is required with mqtt_username (or mqtt_password_file, MODELFLEET_MQTT_PASSWORD_FILE)")
        }
        return try AgentConfiguration(
            agentID: agentID, site: file.site, serverName: file.serverName ?? agentID, capacity: file.capacity,
            supportsPipelines: file.supportsPipelines ?? true, devices: file.devices, runtime: runtime,
            heartbeatSeconds: file.heartbeatSeconds ?? 5, telemetrySeconds: file.telemetrySeconds ?? 5, helloSeconds: file.helloSeconds ?? 300,
            progressSeconds: file.progressSeconds ?? 5, stateDirectory: URL(fileURLWithPath: stateDir),
            mqttURL: value("MODELFLEET_MQTT_URL") ?? file.mqttURL ?? "mqtt://127.0.0.1:1883",
            mqttTLS: ca == nil && certificate == nil ? nil : MQTTConfiguration.TLS(caFile: ca, certificateFile: certificate, keyFile: key),
            mqttCredentials: credentials,
            instances: InstanceRuntime.Settings(host: file.instances?.host ?? "127.0.0.1", allowProcess: file.instances?.allowProcess ?? false)
        )
    }

    /// The rules of the hello schema, checked at start so that an agent with a bad file stops
    /// with the field named instead of being dropped by the gateway.
    private func check() throws(Problem) {
        func level(_ value: String, _ field: String) throws(Problem) {
            do { _ = try TopicLevel(value) } catch { throw Problem(field: field, reason: "'\(value)' \(error.reason)") }
        }
        func text(_ value: String, _ field: String, max: Int) throws(Problem) {
            guard !value.isEmpty, value.unicodeScalars.count <= max else { throw Problem(field: field, reason: "must be 1 to \(max) characters") }
        }
        try level(agentID, "agent_id")
        try level(site.id, "site.id")
        try text(site.name, "site.name", max: 128)
        try text(serverName, "server_name", max: 128)
        guard capacity.cpuCores >= 0, capacity.cpuCores <= 4096 else { throw Problem(field: "capacity.cpu_cores", reason: "must be 0 to 4096") }
        guard capacity.memoryBytes >= 0 else { throw Problem(field: "capacity.memory_bytes", reason: "must not be negative") }
        guard capacity.gpus.count <= 16 else { throw Problem(field: "capacity.gpus", reason: "at most 16 entries") }
        for (index, gpu) in capacity.gpus.enumerated() {
            try text(gpu.type, "capacity.gpus[\(index)].type", max: 64)
            guard (0...64).contains(gpu.count) else { throw Problem(field: "capacity.gpus[\(index)].count", reason: "must be 0 to 64") }
        }
        guard devices.count <= 10_000 else { throw Problem(field: "devices", reason: "at most 10,000 devices") }
        var keys = Set<String>()
        for (index, device) in devices.enumerated() {
            try text(device.key, "devices[\(index)].key", max: 128)
            try text(device.name, "devices[\(index)].name", max: 128)
            try text(device.kind, "devices[\(index)].kind", max: 64)
            guard keys.insert(device.key).inserted else { throw Problem(field: "devices[\(index)].key", reason: "'\(device.key)' is listed twice") }
        }
        if case .builtIn(let fps) = runtime, !(fps > 0 && fps <= 240) {
            throw Problem(field: "runtime.fps", reason: "must be above 0 and at most 240")
        }
        guard heartbeatSeconds >= 0.1, heartbeatSeconds <= 3600 else { throw Problem(field: "heartbeat_seconds", reason: "must be 0.1 to 3600") }
        guard telemetrySeconds >= 0.1, telemetrySeconds <= 3600 else { throw Problem(field: "telemetry_seconds", reason: "must be 0.1 to 3600") }
        guard helloSeconds >= 1, helloSeconds <= 86_400 else { throw Problem(field: "hello_seconds", reason: "must be 1 to 86400") }
        guard progressSeconds >= 0.1, progressSeconds <= 3600 else { throw Problem(field: "progress_seconds", reason: "must be 0.1 to 3600") }
        guard !instances.host.isEmpty, instances.host.utf8.count <= 253,
            instances.host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") })
        else { throw Problem(field: "instances.host", reason: "must be an IPv4 address or a host name") }
    }

    /// The broker connection: client id = agent id, clean start (the desired state is retained,
    /// so nothing needs a persistent session).
    func mqttConfiguration() throws(Problem) -> MQTTConfiguration {
        do {
            var mqtt = try MQTTConfiguration(url: mqttURL, clientID: agentID)
            if let mqttTLS {
                guard mqtt.tls != nil else { throw Problem(field: "MODELFLEET_MQTT_URL", reason: "TLS files are set but the URL is not mqtts://") }
                mqtt.tls = mqttTLS
            }
            if let mqttCredentials {
                mqtt.username = mqttCredentials.username
                mqtt.password = mqttCredentials.password
            }
            mqtt.keepAlive = .seconds(10)
            mqtt.backoff = MQTTConfiguration.Backoff(initial: .milliseconds(250), maximum: .seconds(15))
            return mqtt
        } catch let problem as Problem {
            throw problem
        } catch {
            throw Problem(field: "MODELFLEET_MQTT_URL", reason: "\(error)")
        }
    }
}

/// The version the agent reports in its hello.
enum ModelFleetAgentVersion {
    static let current = "0.1.0"
}

/// A username and password for the broker.
struct MQTTCredentials: Sendable, Equatable, CustomStringConvertible {
    var username: String
    var password: String

    var description: String { "\(username) (password hidden)" }

    /// The first line of the file at `path`: a password file as `fleetctl agents enroll` writes it.
    static func readPassword(_ path: String) throws(AgentConfiguration.Problem) -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw AgentConfiguration.Problem(field: "mqtt_password_file", reason: "'\(path)' cannot be read")
        }
        let password = (text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "").trimmingCharacters(in: .whitespaces)
        guard !password.isEmpty else { throw AgentConfiguration.Problem(field: "mqtt_password_file", reason: "'\(path)' is empty") }
        return password
    }
}
