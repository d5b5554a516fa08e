import ChildProcesses
import Crypto
import Foundation
import Synchronization
import TestSupport
import Testing

/// A fleet for end-to-end tests: registry, gateway and orchestrator on a private broker and
/// database, and simulated agents started by each test. Each test runs its own broker and database
/// (the outbox is read by every orchestrator on a database, so orchestrators of other tests must
/// not see it).
final class Fleet: Sendable {
    let broker: PrivateBroker
    let database: PrivateDatabase
    let registry: ServiceProcess
    private let gatewayProcess: Mutex<ServiceProcess>
    private let orchestrator: Mutex<ServiceProcess>
    /// The orchestrator's environment, beside the broker and database: a test's own settings.
    private let orchestratorEnvironment: [String: String]
    let prefix = uniqueName("fleet")
    private let agentState: URL

    var site: String { "\(prefix)-site-1" }

    init(broker: PrivateBroker, database: PrivateDatabase, orchestratorEnvironment: [String: String] = [:]) async throws {
        self.broker = broker
        self.database = database
        let environment = ["MODELFLEET_MQTT_URL": broker.url, "MODELFLEET_DATABASE_URL": database.url]
        self.orchestratorEnvironment = environment.merging(orchestratorEnvironment) { $1 }
        registry = try ServiceProcess("registry", environment: environment)
        gatewayProcess = Mutex(try ServiceProcess("device-gateway", environment: environment.merging(["MODELFLEET_INSTANCE_ID": "gw"]) { $1 }))
        orchestrator = Mutex(try ServiceProcess("orchestrator", environment: self.orchestratorEnvironment))
        agentState = try TestEnvironment.current().makeScratchDirectory("fleet-agents")
        try await registry.waitUntilReady()
        try await gateway.waitUntilReady()
        try await api.waitUntilReady()
    }

    var api: ServiceProcess { orchestrator.withLock { $0 } }
    var gateway: ServiceProcess { gatewayProcess.withLock { $0 } }

    func restartOrchestrator(killing signal: Int32) async throws {
        let old = api
        old.process.send(signal)
        _ = await old.process.waitForExit(timeout: .seconds(10))
        let fresh = try ServiceProcess("orchestrator", environment: orchestratorEnvironment)
        orchestrator.withLock { $0 = fresh }
        try await fresh.waitUntilReady()
    }

    /// Kills the gateway (SIGKILL: no graceful anything); `startGateway()` starts a new one.
    func killGateway() async {
        gateway.process.send(SIGKILL)
        _ = await gateway.process.waitForExit(timeout: .seconds(10))
    }

    func startGateway() async throws {
        let fresh = try ServiceProcess(
            "device-gateway",
            environment: ["MODELFLEET_MQTT_URL": broker.url, "MODELFLEET_DATABASE_URL": database.url, "MODELFLEET_INSTANCE_ID": "gw"])
        gatewayProcess.withLock { $0 = fresh }
        try await fresh.waitUntilReady()
    }

    /// Enrols each agent through the registry (its broker account) and returns the folder of
    /// their passwords (`--credentials-dir`). Agents enrolled already get new passwords.
    func enroll(_ agentIDs: [String]) async throws -> URL {
        let folder = try TestEnvironment.current().makeScratchDirectory("agent-credentials")
        for agentID in agentIDs {
            let answer = try await registry.send("POST", "/v1/enrollments", json: ["agent_id": agentID, "site_id": site, "replace": true])
            guard answer.status == 201, let password = answer.json?["mqtt_password"] as? String else {
                throw ServiceDidNotStart(name: "registry", output: "enrolment of \(agentID) answered \(answer.status): \(answer.body)")
            }
            try Data((password + "\n").utf8).write(to: folder.appendingPathComponent(agentID))
        }
        return folder
    }

    /// Starts `agents` simulated agents with `devices` cameras each and waits until the
    /// registry lists them all online.
    func startAgents(_ agents: Int, devices: Int, options: [String] = []) async throws -> ServiceProcess {
        let credentials = try await enroll(simulatedAgentIDs(prefix: prefix, count: agents))
        let process = try ServiceProcess(
            "edge-agent",
            arguments: [
                "simulate", "--agents", "\(agents)", "--devices", "\(devices)", "--id-prefix", prefix, "--site-prefix", "\(prefix)-site",
                "--state-dir", agentState.path, "--mqtt-url", broker.url, "--heartbeat-seconds", "1", "--credentials-dir", credentials.path,
            ] + options)
        let online = await eventually(timeout: .seconds(30)) {
            let site = try? await self.registry.get("/v1/sites/\(self.site)").json?["site"] as? [String: Any]
            let connected = try? await self.gateway.get("/v1/agents?online=true").json?["online"] as? Int
            return site?["online"] as? Bool == true && site?["device_count"] as? Int == agents * devices && connected == agents
        }
        guard online else { throw ServiceDidNotStart(name: "edge-agent", output: process.process.output) }
        return process
    }

    /// One agent with `devices` cameras online and a model: what a test of one device's pipelines
    /// starts from. The agents' process is to be killed at the end.
    func startWithCamera(devices: Int = 1) async throws -> (agents: ServiceProcess, model: String, camera: String) {
        let agents = try await startAgents(1, devices: devices)
        let model = try await createModel()
        guard let camera = try await self.devices().first?["id"] as? String else { throw ServiceDidNotStart(name: "edge-agent", output: "") }
        return (agents, model, camera)
    }

    /// Adds a pipeline of `model` on `camera` (with the operation's `options`) and waits until the
    /// operation has settled; returns its detail.
    func addPipeline(
        _ model: String, name: String = "People", on camera: String, options: [String: Any] = [:]
    ) async throws -> [String: Any] {
        let added = try await api.send(
            "POST", "/v1/devices/\(camera)/pipelines", json: options.merging(["pipeline": pipeline(model, name: name)]) { $1 })
        return try await settled(try operationID(added))
    }

    /// A model with one active version 1.0.0 of this artifact; returns the model id. The default
    /// artifact is an `s3://` URI, which the built-in runtime does not fetch.
    func createModel(
        artifactURI: String = "s3://models/people.onnx", sha256: String = String(repeating: "ab", count: 32), sizeBytes: Int = 1000
    ) async throws -> String {
        let model = try await registry.send(
            "POST", "/v1/models", json: ["name": uniqueName("people"), "task": "object_detection", "format": "onnx"])
        let id = try #require(model.json?["id"] as? String)
        let version = try await registry.send(
            "POST", "/v1/models/\(id)/versions",
            json: [
                "version": "1.0.0", "artifact_uri": artifactURI, "sha256": sha256, "size_bytes": sizeBytes,
                "default_settings": ["confidence_threshold": 0.4, "input_size": 320],
            ])
        #expect(version.status == 201, "\(version.body)")
        return id
    }

    /// Another version of `model`, active, for Update Model.
    func addModelVersion(_ version: String, to model: String) async throws {
        let added = try await registry.send(
            "POST", "/v1/models/\(model)/versions",
            json: [
                "version": version, "artifact_uri": "s3://models/people-\(version).onnx", "sha256": String(repeating: "cd", count: 32),
                "size_bytes": 1000,
            ])
        #expect(added.status == 201, "\(added.body)")
    }

    /// A model artifact in a file, which agents check against its sha256 before they start a
    /// pipeline of it.
    struct FileArtifact {
        let url: URL
        let bytes = Data("people detector weights, version 1\n".utf8)
        var sha256: String { SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined() }

        /// Puts the artifact in place: pipelines of it start from then on.
        func write() throws { try bytes.write(to: url) }
    }

    /// A model whose version's artifact is a file not written yet: its pipelines fail on the
    /// agents, with the agent's reason, until the artifact is written.
    func createModelWithMissingArtifact() async throws -> (model: String, artifact: FileArtifact) {
        let url = try TestEnvironment.current().makeScratchDirectory("artifacts").appendingPathComponent("people.onnx")
        let artifact = FileArtifact(url: url)
        let model = try await createModel(artifactURI: url.absoluteString, sha256: artifact.sha256, sizeBytes: artifact.bytes.count)
        return (model, artifact)
    }

    func devices() async throws -> [[String: Any]] {
        try await registry.get("/v1/devices?site=\(site)&limit=500").items
    }

    /// Waits until the operation has settled every device; returns its detail.
    func settled(_ operation: String, timeout: Duration = .seconds(30)) async throws -> [String: Any] {
        var detail: [String: Any] = [:]
        _ = await eventually(timeout: timeout, interval: .milliseconds(200)) {
            detail = (try? await self.api.get("/v1/operations/\(operation)").json) ?? [:]
            return (detail["operation"] as? [String: Any])?["finished"] as? Bool == true
        }
        return detail
    }

    func stop() async {
        for service in [api, gateway, registry] {
            service.process.send(SIGTERM)
            _ = await service.process.waitForExit(timeout: .seconds(10))
        }
    }
}

/// Runs `body` with a fleet of its own, stopped afterwards whatever happens.
func withFleet(orchestratorEnvironment: [String: String] = [:], _ body: (Fleet) async throws -> Void) async throws {
    try await withPrivateBroker { broker in
        try await withPrivateDatabase { database in
            let fleet = try await Fleet(broker: broker, database: database, orchestratorEnvironment: orchestratorEnvironment)
            do {
                try await body(fleet)
            } catch {
                await fleet.stop()
                throw error
            }
            await fleet.stop()
        }
    }
}

/// A one-stage pipeline of version 1.0.0 of `model`, as the orchestrator's requests take it.
func pipeline(_ model: String, name: String = "People", settings: [String: Any] = [:]) -> [String: Any] {
    [
        "name": name,
        "stages": [
            [
                "model_id": model, "version": "1.0.0", "settings": settings,
                "post_processors": [["name": "nms", "settings": [:] as [String: Any]]],
            ]
        ],
    ]
}

/// An operation's device counts by status, from its summary or detail.
func counts(_ detail: [String: Any]) -> [String: Int] {
    (detail["operation"] as? [String: Any])?["counts"] as? [String: Int] ?? [:]
}

/// The id of the operation an accepted request created.
func operationID(_ result: HTTPResult) throws -> String {
    try #require((result.json?["operation"] as? [String: Any])?["id"] as? String, "\(result.status) \(result.body)")
}

/// A counter's or gauge's value on a service's `/metrics` (0 when absent).
func metric(_ service: ServiceProcess, _ line: String) async throws -> Double {
    let text = try await service.get("/metrics").body
    return text.split(separator: "\n").first { $0.hasPrefix(line + " ") }.flatMap { Double($0.split(separator: " ").last!) } ?? 0
}

/// The port of an instance as the orchestrator lists it (`"address": "host:port"`).
func port(of instance: [String: Any]) -> Int? {
    (instance["address"] as? String)?.split(separator: ":").last.flatMap { Int($0) }
}
