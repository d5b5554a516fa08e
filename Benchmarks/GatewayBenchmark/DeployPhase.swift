// `gateway-bench deploy`: a deployment's instances started on a simulated fleet, straight to the
// gateways, then through the orchestrator, and a scale-up.

import ArgumentParser
import DeviceProtocol
import FleetContract
import Foundation
import MQTT
import Synchronization

struct Deploy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Time a deployment of INSTANCES instances on a simulated fleet until every one answers its health check, and a scale to twice as many.",
        discussion: """
            Starts the fleet as connect does (one device per agent) and creates a model version. Baseline: one instance on each of \
            INSTANCES agents, published straight to the gateways' internal topic as generation 1 documents, timed until the agents \
            have reported every instance ready: the floor of transport and agents. It is then removed (generation 2). The \
            orchestrator is paused (SIGSTOP) meanwhile: it would answer the agents' reports of generations it never sent with \
            documents of its own (drift repair), stopping the baseline's instances; resumed, it does so, and the run waits for it \
            to settle. Timed: POST /v1/deployments with INSTANCES replicas, polled until the orchestrator shows every instance \
            ready, then every instance's health check asked over HTTP; then POST .../scale to twice as many, timed the same way.
            """)

    @OptionGroup var fleet: FleetOptions
    @Option(help: "Orchestrator base URL.") var orchestratorURL = "http://127.0.0.1:8082"
    @Option(help: "Instances of the timed deployment (the scale doubles them).") var instances = 200
    @Option(help: "The orchestrator's pid, paused during the baseline.") var orchestratorPid: Int32

    func validate() throws {
        guard (1...fleet.agents).contains(instances) else { throw ValidationError("instances must be 1 to the number of agents") }
    }

    func run() async throws {
        signal(SIGPIPE, SIG_IGN)
        let registry = try HTTPService(url: fleet.registryURL)
        let orchestrator = try HTTPService(url: orchestratorURL)
        try orchestrator.checkReady("orchestrator")

        let client = try makeBenchClient(url: fleet.mqttURL, role: "deploy")
        let runner = Task { try await client.run() }
        defer { runner.cancel() }
        try await client.waitUntilConnected(timeout: .seconds(10))
        let reports = try await client.subscribe(to: Topic.agentReportEvents.path, qos: .atLeastOnce, bufferCapacity: 1 << 20)
        let tracker = InstanceTracker()
        let consumer = Task { for await message in reports { tracker.note(message.payload) } }

        let running = try await SimulatedFleet.start(fleet)
        say(
            String(
                format: "connect: %d agents in %d sites: online in the registry after %.3f s, in the gateway after %.3f s", fleet.agents, fleet.sites,
                running.registrySeconds, running.gatewaySeconds))
        do {
            let model = try BenchModel.create(in: registry)
            kill(orchestratorPid, SIGSTOP)
            let baseline: Double
            do {
                baseline = try await measureBaseline(client: client, model: model, tracker: tracker, running: running)
            } catch {
                kill(orchestratorPid, SIGCONT)
                throw error
            }
            // The baseline's removal reaches the agents before the orchestrator wakes up.
            try await Task.sleep(for: .seconds(2))
            kill(orchestratorPid, SIGCONT)
            say(String(format: "baseline: %d instances straight to the gateways, every one reported ready after %.3f s", instances, baseline))
            // The orchestrator answers the baseline's reports (drift repair) and settles.
            try await Task.sleep(for: .seconds(5))
            try orchestrator.checkReady("orchestrator")

            let created = try await deploy("bench-api", replicas: instances, model: model, orchestrator: orchestrator, running: running)
            let healthy = try healthChecks(of: created.addresses)
            say(
                String(
                    format: "create: %d instances ready after %.3f s (API answer %.3f s); %d of %d answered their health check over HTTP",
                    instances, created.seconds, created.apiSeconds, healthy, created.addresses.count))
            let scaled = try await scale("bench-api", to: instances * 2, orchestrator: orchestrator, running: running)
            let healthyAfter = try healthChecks(of: scaled.addresses)
            say(
                String(
                    format: "scale: %d to %d instances, all ready after %.3f s (API answer %.3f s); %d of %d answered their health check",
                    instances, instances * 2, scaled.seconds, scaled.apiSeconds, healthyAfter, scaled.addresses.count))
            let ratio = created.seconds / baseline
            say(String(format: "ratio orchestrator / baseline: %.2f", ratio))
            say(
                "result phase=deploy agents=\(fleet.agents) instances=\(instances)"
                    + String(format: " baseline_seconds=%.3f", baseline)
                    + String(format: " create_api_seconds=%.3f create_seconds=%.3f healthy=%d", created.apiSeconds, created.seconds, healthy)
                    + String(format: " scale_api_seconds=%.3f scale_seconds=%.3f scaled_healthy=%d", scaled.apiSeconds, scaled.seconds, healthyAfter)
                    + String(format: " ratio=%.3f polls=%d dropped_messages=%d", ratio, created.polls + scaled.polls, reports.droppedCount))
        } catch {
            _ = await running.stop()
            throw error
        }
        try await running.stopReporting()
        reports.cancel()
        await consumer.value
        runner.cancel()
        _ = try? await runner.value
    }

    /// One instance on each of the first `instances` agents, straight to the gateways; seconds
    /// until every one is reported ready. Then the instances are removed (generation 2).
    private func measureBaseline(client: MQTTClient, model: BenchModel, tracker: InstanceTracker, running: SimulatedFleet) async throws -> Double {
        func document(_ index: Int, generation: Int, instances: [DesiredState.Instance]) throws -> Data {
            try Envelope(payload: DesiredState(agentID: fleet.agentID(index), generation: generation, devices: [], instances: instances)).encoded()
        }
        let entries = (0..<instances).map { index in
            DesiredState.Instance(
                instanceID: "baseline-\(index)", deployment: "baseline", revision: 1, specRevision: 1, modelID: UUID(uuidString: model.modelID)!,
                modelName: model.name, version: model.version, artifactURI: model.artifactURI, sha256: model.sha256,
                resources: .init(cpuCores: 1, memoryBytes: 1 << 30, gpuCount: 0, gpuType: nil), env: [:], runtime: .init(kind: .builtin),
                healthCheckPath: "/health")
        }
        let documents = try (0..<instances).map { try document($0, generation: 1, instances: [entries[$0]]) }
        tracker.reset()
        let start = now()
        try await publish(documents, with: client)
        while tracker.ready(of: Set(entries.map(\.instanceID))) < instances {
            try running.checkRunning()
            guard now() - start < fleet.timeout else { throw BenchError("baseline: not every instance ready after \(Int(fleet.timeout)) s") }
            try await Task.sleep(for: .milliseconds(5))
        }
        let seconds = now() - start
        try await publish(try (0..<instances).map { try document($0, generation: 2, instances: []) }, with: client)
        return seconds
    }

    private func publish(_ documents: [Data], with client: MQTTClient) async throws {
        let properties = MQTTProperties(contentType: "application/json")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, document) in documents.enumerated() {
                if index >= 64 { try await group.next() }
                group.addTask {
                    try await client.publish(Topic.agentDesiredStateRequests.path, payload: document, qos: .atLeastOnce, properties: properties)
                }
            }
            try await group.waitForAll()
        }
    }

    struct Rollout {
        var apiSeconds: Double
        var seconds: Double
        var addresses: [String]
        var polls: Int
    }

    private struct View: Decodable {
        struct Instance: Decodable {
            var state: String
            var address: String?
        }

        var instances: [Instance]
    }

    private func deploy(_ name: String, replicas: Int, model: BenchModel, orchestrator: HTTPService, running: SimulatedFleet) async throws -> Rollout
    {
        let body = JSONValue.object([
            "name": .string(name), "model_id": .string(model.modelID), "model_version": .string(model.version),
            "resources": .object(["cpu_cores": .number(1), "memory_gb": .number(1)]),
            "scaling": .object([
                "min_replicas": .number(1), "max_replicas": .number(Double(min(1_000, max(replicas * 2, fleet.agents)))),
                "replicas": .number(Double(replicas)),
            ]),
        ])
        let start = now()
        let (status, answer) = try orchestrator.send("POST", "/v1/deployments", body: try JSONEncoder().encode(body), timeoutSeconds: 60)
        guard status == 201 else {
            throw BenchError("POST /v1/deployments answered \(status): \(String(decoding: answer.prefix(300), as: UTF8.self))")
        }
        return try await waitUntilReady(
            name, replicas: replicas, since: start, apiSeconds: now() - start, orchestrator: orchestrator, running: running)
    }

    private func scale(_ name: String, to replicas: Int, orchestrator: HTTPService, running: SimulatedFleet) async throws -> Rollout {
        let start = now()
        let (status, answer) = try orchestrator.send(
            "POST", "/v1/deployments/\(name)/scale", body: try JSONEncoder().encode(JSONValue.object(["replicas": .number(Double(replicas))])),
            timeoutSeconds: 60)
        guard status == 200 else { throw BenchError("scale answered \(status): \(String(decoding: answer.prefix(300), as: UTF8.self))") }
        return try await waitUntilReady(
            name, replicas: replicas, since: start, apiSeconds: now() - start, orchestrator: orchestrator, running: running)
    }

    /// Polls the deployment every `pollInterval` until `replicas` instances are ready.
    private func waitUntilReady(
        _ name: String, replicas: Int, since start: Double, apiSeconds: Double, orchestrator: HTTPService, running: SimulatedFleet
    ) async throws -> Rollout {
        var polls = 0
        while true {
            let view = try orchestrator.getJSON(View.self, "/v1/deployments/\(name)")
            polls += 1
            let ready = view.instances.filter { $0.state == "ready" }
            if ready.count == replicas {
                return Rollout(apiSeconds: apiSeconds, seconds: now() - start, addresses: ready.compactMap(\.address), polls: polls)
            }
            try running.checkRunning()
            guard now() - start < fleet.timeout else {
                throw BenchError("\(name): \(ready.count) of \(replicas) instances ready after \(Int(fleet.timeout)) s")
            }
            try await Task.sleep(for: .seconds(fleet.pollInterval))
        }
    }

    /// How many of `addresses` answer `GET /health` with 200.
    private func healthChecks(of addresses: [String]) throws -> Int {
        var healthy = 0
        for address in addresses {
            guard let service = try? HTTPService(url: "http://\(address)"), let answer = try? service.send("GET", "/health", timeoutSeconds: 5) else {
                continue
            }
            if answer.status == 200 { healthy += 1 }
        }
        return healthy
    }
}

/// The instances the agents reported ready, from the gateway's internal report topic.
final class InstanceTracker: Sendable {
    private let readyInstances = Mutex<Set<String>>([])

    func reset() { readyInstances.withLock { $0 = [] } }

    func note(_ payload: Data) {
        guard let report = try? Envelope<AgentMessage.Report>.decode(from: payload).payload, let instances = report.instances else { return }
        readyInstances.withLock { ready in
            for instance in instances where instance.state == .ready { ready.insert(instance.instanceID) }
        }
    }

    func ready(of wanted: Set<String>) -> Int { readyInstances.withLock { $0.intersection(wanted).count } }
}
