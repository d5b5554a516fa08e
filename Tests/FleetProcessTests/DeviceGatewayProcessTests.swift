import ChildProcesses
import Foundation
import MQTT
import TestSupport
import Testing

@testable import DeviceProtocol
@testable import FleetContract

/// The device gateway and the edge agent as they run: real processes, a real Mosquitto and, where
/// the registry takes part, the real PostgreSQL. Gateway-only tests use a private broker, so that
/// the gateways of other tests (which share `$share/device-gateway/…`) do not take their messages.
@Suite("Device gateway and edge agent")
struct DeviceGatewayProcessTests {
    // MARK: Helpers

    private func startGateway(
        broker: String? = nil, instance: String = uniqueName("gw"), _ environment: [String: String] = [:]
    ) async throws
        -> ServiceProcess
    {
        var variables = ["MODELFLEET_INSTANCE_ID": instance, "MODELFLEET_GATEWAY_HEARTBEAT_TIMEOUT": "60"]
        if let broker { variables["MODELFLEET_MQTT_URL"] = broker }
        variables.merge(environment) { $1 }
        // Ready means its relay has heard its peers and subscribed to the agents' topics.
        return try await ServiceProcess.ready("device-gateway", environment: variables)
    }

    private func simulate(broker: String? = nil, agents: Int, devices: Int, prefix: String, extra: [String] = []) async throws -> ServiceProcess {
        let state = try TestEnvironment.current().makeScratchDirectory("agents")
        let credentials = try await enrollAgents(
            simulatedAgentIDs(prefix: prefix, count: agents), url: broker ?? TestEnvironment.current().mqttURL)
        var arguments = [
            "simulate", "--agents", "\(agents)", "--devices", "\(devices)", "--id-prefix", prefix, "--site-prefix", "\(prefix)-site",
            "--state-dir", state.path, "--log-level", "info", "--credentials-dir", credentials.path,
        ]
        if let broker { arguments += ["--mqtt-url", broker] }
        return try ServiceProcess("edge-agent", arguments: arguments + extra)
    }

    private func stop(_ process: ServiceProcess) async {
        process.process.send(SIGTERM)
        if await process.process.waitForExit(timeout: .seconds(10)) == nil { process.process.send(SIGKILL) }
    }

    private func payload(_ message: MQTTMessage) -> [String: Any] {
        ((try? JSONSerialization.jsonObject(with: message.payload)) as? [String: Any])?["payload"] as? [String: Any] ?? [:]
    }

    /// A valid telemetry message of `agent`.
    private func telemetry(_ agent: String) throws -> Data {
        try Envelope(
            payload: AgentMessage.Telemetry(agentID: agent, intervalSeconds: 5, host: .init(cpuPercent: 3, memoryUsedBytes: 1000), pipelines: [])
        ).encoded()
    }

    /// The agents' telemetry messages in a forwarded batch, after checking that its count
    /// property says how many there are.
    private func telemetryMessages(_ batch: MQTTMessage) -> [[String: Any]] {
        let messages = payload(batch)["messages"] as? [[String: Any]] ?? []
        #expect(batch.properties.userProperty(TelemetryBatch.countProperty) == String(messages.count))
        return messages
    }

    /// The payload of the next message on `subscription` that `matches`, or nil after `timeout`.
    /// (Unlike `drain`, it leaves the subscription usable while it finds one.)
    private func next(
        on subscription: MQTTSubscription, within timeout: Duration = .seconds(10), where matches: ([String: Any]) -> Bool
    )
        async -> [String: Any]?
    {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard let message = try? await subscription.collect(1, timeout: deadline - ContinuousClock.now).first else { return nil }
            if matches(payload(message)) { return payload(message) }
        }
        return nil
    }

    private func desiredState(agent: String, generation: Int, pipelines: [String: [String]]) throws -> Data {
        let devices = pipelines.keys.sorted().map { device in
            DesiredState.DeviceAssignment(
                deviceKey: device,
                pipelines: pipelines[device]!.map { id in
                    DesiredState.Pipeline(
                        id: id, name: id,
                        stages: [
                            .init(
                                modelID: UUID(), modelName: "yolo", version: "1.0.0", artifactURI: "s3://models/yolo.onnx",
                                sha256: String(repeating: "c", count: 64), settings: ["confidence_threshold": .number(0.4)],
                                postProcessors: [.init(name: "nms")])
                        ])
                })
        }
        return try Envelope(payload: DesiredState(agentID: agent, generation: generation, devices: devices)).encoded()
    }

    // MARK: Tests

    @Test("a hello registers the server and its devices; an agent killed with SIGKILL goes offline through its last will")
    func registrationAndLastWill() async throws {
        // A broker of its own: a gateway or registry of another test that is stopping could take
        // a hello and stop before passing it on.
        try await withPrivateBroker { broker in
            let registry = try ServiceProcess("registry", environment: ["MODELFLEET_MQTT_URL": broker.url])
            try await registry.waitUntilReady()
            let gateway = try await startGateway(broker: broker.url)
            let prefix = uniqueName("reg")
            let agents = try await simulate(broker: broker.url, agents: 2, devices: 3, prefix: prefix)
            defer { agents.process.send(SIGKILL) }
            let site = "/v1/sites/\(prefix)-site-1"

            let registered = try await eventually(timeout: .seconds(20)) {
                let page = try await registry.get(site)
                let summary = page.json?["site"] as? [String: Any]
                return page.status == 200 && summary?["server_count"] as? Int == 2 && summary?["device_count"] as? Int == 6
                    && summary?["online"] as? Bool == true
            }
            let afterHello = try await registry.get(site).body
            #expect(registered, "\(afterHello)")
            let servers = try await registry.get(site).json?["servers"] as? [[String: Any]] ?? []
            #expect(Set(servers.compactMap { $0["id"] as? String }) == ["\(prefix)-0001", "\(prefix)-0002"])
            #expect(servers.allSatisfy { $0["supports_pipelines"] as? Bool == true && $0["cpu_cores"] as? Double == 8 })

            // The gateway's heartbeat timeout is 60 s here: offline within seconds can only be the will.
            agents.process.send(SIGKILL)
            let offline = try await eventually(timeout: .seconds(10)) {
                let page = try await registry.get(site)
                let servers = page.json?["servers"] as? [[String: Any]] ?? []
                return (page.json?["site"] as? [String: Any])?["online"] as? Bool == false && servers.allSatisfy { $0["online"] as? Bool == false }
            }
            let afterKill = try await registry.get(site).body
            #expect(offline, "\(afterKill)")
            let agent = try await gateway.get("/v1/agents/\(prefix)-0001")
            #expect(agent.status == 200 && agent.json?["online"] as? Bool == false)
            await stop(gateway)
            await stop(registry)
        }
    }

    @Test("an agent that was offline while its desired state changed gets it on reconnect, applies it and reports it; never an older one")
    func desiredStateAcrossRestarts() async throws {
        try await withPrivateBroker { broker in
            let gateway = try await startGateway(broker: broker.url)
            let agentID = uniqueName("edge")
            let state = try TestEnvironment.current().makeScratchDirectory("agent-state")
            let config = state.appendingPathComponent("agent.json")
            let file: [String: Any] = [
                "agent_id": agentID, "site": ["id": "plant-a", "name": "Plant A"],
                "capacity": ["cpu_cores": 4, "memory_bytes": 1 << 33, "gpus": [] as [Any]],
                "devices": [["key": "cam-1", "name": "Gate", "kind": "camera"], ["key": "cam-2", "name": "Dock", "kind": "camera"]],
                "runtime": ["kind": "builtin", "fps": 5], "heartbeat_seconds": 1, "state_dir": state.path, "mqtt_url": broker.url,
                // The agent's own account: username = agent id.
                "mqtt_password_file": try await enrollAgents([agentID], url: broker.url).appendingPathComponent(agentID).path,
            ]
            try JSONSerialization.data(withJSONObject: file).write(to: config)

            try await withConnectedClient(try testMQTTConfiguration("orchestrator", url: broker.url)) { client in
                let reports = try await client.subscribe(to: Topic.agentReportEvents.path)
                var agent = try ServiceProcess(
                    "edge-agent", arguments: ["run", "--config", config.path], environment: ["MODELFLEET_MQTT_URL": broker.url])
                #expect(
                    await eventually(timeout: .seconds(10)) { (try? await gateway.get("/v1/agents/\(agentID)").json?["online"] as? Bool) == true })

                try await client.publish(
                    Topic.agentDesiredStateRequests.path, payload: try desiredState(agent: agentID, generation: 1, pipelines: ["cam-1": ["p1"]]))
                let first = try await reports.collect(1, timeout: .seconds(30))
                #expect(payload(first[0])["generation"] as? Int == 1)

                // Gone without a goodbye; the desired state changes while it is away.
                agent.process.send(SIGKILL)
                _ = await agent.process.waitForExit(timeout: .seconds(5))
                try await client.publish(
                    Topic.agentDesiredStateRequests.path,
                    payload: try desiredState(agent: agentID, generation: 2, pipelines: ["cam-1": ["p2"], "cam-2": ["p3"]]))
                // An older generation arriving late is not published over the newer one.
                try await client.publish(
                    Topic.agentDesiredStateRequests.path, payload: try desiredState(agent: agentID, generation: 1, pipelines: ["cam-1": ["p1"]]))
                #expect(await eventually { (try? await metric(gateway, #"gateway_desired_states_total{outcome="stale"}"#)) == 1 })
                // Nor is a newer one that breaks the schema: dropped and counted.
                var broken =
                    try JSONSerialization.jsonObject(
                        with: try desiredState(agent: agentID, generation: 3, pipelines: ["cam-1": ["p4"]])) as? [String: Any] ?? [:]
                var brokenPayload = broken["payload"] as? [String: Any] ?? [:]
                brokenPayload["devices"] = "cam-1"
                broken["payload"] = brokenPayload
                try await client.publish(Topic.agentDesiredStateRequests.path, payload: try JSONSerialization.data(withJSONObject: broken))
                #expect(await eventually { (try? await metric(gateway, #"gateway_desired_states_total{outcome="invalid"}"#)) == 1 })

                agent = try ServiceProcess(
                    "edge-agent", arguments: ["run", "--config", config.path], environment: ["MODELFLEET_MQTT_URL": broker.url])
                defer { agent.process.send(SIGKILL) }
                let applied = await next(on: reports, within: .seconds(15)) { $0["generation"] as? Int == 2 } ?? [:]
                let devices = applied["devices"] as? [[String: Any]] ?? []
                let states = Dictionary(
                    uniqueKeysWithValues: devices.flatMap { device in
                        (device["pipelines"] as? [[String: Any]] ?? []).map { ("\(device["device_key"]!)/\($0["pipeline_id"]!)", "\($0["state"]!)") }
                    })
                #expect(states == ["cam-1/p1": "removed", "cam-1/p2": "running", "cam-2/p3": "running"], "\(applied)")

                // What the agent keeps on disk, and what the broker keeps for it.
                let saved = try Envelope<DesiredState>.decode(from: Data(contentsOf: state.appendingPathComponent("desired-state.json")))
                #expect(saved.payload.generation == 2)
                let retained = try await client.subscribe(to: Topic.agent(try TopicLevel(agentID), .desired).path)
                let document = try await retained.collect(1)
                #expect(payload(document[0])["generation"] as? Int == 2 && document[0].retain)
                await stop(agent)
            }
            await stop(gateway)
        }
    }

    @Test("malformed, oversized, wrong-topic and flooding messages are dropped and counted while good traffic goes on")
    func badInput() async throws {
        try await withPrivateBroker { broker in
            let gateway = try await startGateway(broker: broker.url, ["MODELFLEET_GATEWAY_AGENT_RATE": "5", "MODELFLEET_GATEWAY_AGENT_BURST": "10"])
            try await withConnectedClient(try testMQTTConfiguration("agents", url: broker.url)) { client in
                let forwarded = try await client.subscribe(to: Topic.agentTelemetryEvents.path)
                let good = try TopicLevel("good-agent")
                let topic = Topic.agent(good, .telemetry).path
                try await client.publish(topic, payload: Data("{\"schema_version\": 1,".utf8))
                try await client.publish(topic, payload: Data(repeating: 0x7B, count: 300 * 1024))
                try await client.publish(topic, payload: Data(#"{"schema_version":1,"type":"agent.telemetry"}"#.utf8))
                try await client.publish(topic, payload: try telemetry("someone-else"))
                try await client.publish("modelfleet/v1/agents/not a valid id/telemetry", payload: try telemetry("x"))
                // Topics no agent publishes on: one level below agents/, and a kind with a level more.
                try await client.publish("modelfleet/v1/agents/good-agent", payload: try telemetry("good-agent"))
                try await client.publish("modelfleet/v1/agents/good-agent/heartbeat/x", payload: try telemetry("good-agent"))
                let flooder = Topic.agent(try TopicLevel("flooder"), .heartbeat).path
                let beat = try Envelope(payload: AgentMessage.Heartbeat(agentID: "flooder", uptimeSeconds: 1, appliedGeneration: 0)).encoded()
                let floodStarted = ContinuousClock.now
                for _ in 0..<200 { try await client.publish(flooder, payload: beat) }
                try await client.publish(topic, payload: try telemetry("good-agent"))

                let delivered = try await forwarded.collect(1, timeout: .seconds(10))
                // Burst 10, then 5 a second for as long as the flood took to arrive (a busy CI
                // machine stretches it): at most that many heartbeats are admitted.
                let floodSeconds = Double((ContinuousClock.now - floodStarted).components.seconds) + 1
                let limited = Double(max(1, 200 - 10 - Int((floodSeconds * 5).rounded(.up))))
                let goodMessages = telemetryMessages(delivered[0])
                #expect(goodMessages.count == 1 && (goodMessages.first?["payload"] as? [String: Any])?["agent_id"] as? String == "good-agent")
                for (reason, expected) in [
                    ("malformed_json", 1.0...1.0), ("oversized", 1.0...1.0), ("schema", 1.0...1.0), ("agent_id_mismatch", 1.0...1.0),
                    ("unknown_topic", 3.0...3.0), ("rate_limited", limited...191.0),
                ] {
                    let line = #"gateway_messages_dropped_total{reason="\#(reason)"}"#
                    let counted = await eventually { expected.contains((try? await metric(gateway, line)) ?? 0) }
                    let value = (try? await metric(gateway, line)) ?? -1
                    #expect(counted, "\(reason): \(value)")
                }
                let listed = try await gateway.get("/v1/agents/flooder")
                #expect(Double(listed.json?["messages_rate_limited"] as? Int ?? 0) >= limited)
                #expect(gateway.process.isRunning)
            }
            await stop(gateway)
        }
    }

    @Test("telemetry is forwarded in batches: every valid message once, byte for byte, the invalid ones not")
    func telemetryBatchesUnderLoad() async throws {
        try await withPrivateBroker { broker in
            let gateway = try await startGateway(
                broker: broker.url, ["MODELFLEET_GATEWAY_AGENT_RATE": "100000", "MODELFLEET_GATEWAY_AGENT_BURST": "100000"])
            try await withConnectedClient(try testMQTTConfiguration("agents", url: broker.url)) { client in
                let forwarded = try await client.subscribe(to: Topic.agentTelemetryEvents.path, bufferCapacity: 10_000)
                let agents = 20
                let count = 2_000
                var sent: [String: Data] = [:]
                for index in 0..<count {
                    let agentID = "batch-\(index % agents)"
                    let envelope = Envelope(
                        payload: AgentMessage.Telemetry(
                            agentID: agentID, intervalSeconds: 5, host: .init(cpuPercent: Double(index % 100), memoryUsedBytes: Int64(index)),
                            pipelines: []))
                    let data = try envelope.encoded()
                    sent[envelope.messageID.lowercasedString] = data
                    // QoS 0, as agents send telemetry: a burst, without waiting for acknowledgements.
                    let topic = Topic.agent(try TopicLevel(agentID), .telemetry).path
                    try await client.publish(topic, payload: data, qos: .atMostOnce)
                    // Every 100th message is refused (another agent's id on this topic) and must not be in any batch.
                    if index % 100 == 0 { try await client.publish(topic, payload: try telemetry(agentID + "-other"), qos: .atMostOnce) }
                }

                var batches = 0
                var received: [String: Data] = [:]
                var duplicates = 0
                let deadline = ContinuousClock.now + .seconds(30)
                while received.count < count && ContinuousClock.now < deadline {
                    guard let batch = try? await forwarded.collect(1, timeout: .seconds(5)).first else { break }
                    batches += 1
                    let messages = telemetryMessages(batch)
                    #expect(batch.properties.contentType == "application/json")
                    for message in messages {
                        let id = message["message_id"] as? String ?? ""
                        if received[id] != nil { duplicates += 1 }
                        received[id] = try JSONSerialization.data(withJSONObject: message)
                    }
                }
                let counters = ((try? await gateway.get("/metrics").body) ?? "").split(separator: "\n")
                    .filter { $0.hasPrefix("gateway_messages") || $0.hasPrefix("mqtt_messages") }.joined(separator: "; ")
                #expect(
                    received.count == count && duplicates == 0,
                    "\(received.count) of \(count) forwarded, \(duplicates) twice, in \(batches) batches; the gateway's counters: \(counters)")
                // Unchanged: each forwarded message is the JSON that was sent (compared as values).
                let changed = sent.filter { id, data in
                    guard let forwardedData = received[id] else { return true }
                    return (try? JSONSerialization.jsonObject(with: data) as? NSDictionary)
                        != (try? JSONSerialization.jsonObject(with: forwardedData) as? NSDictionary)
                }
                #expect(changed.isEmpty, "\(changed.count) messages missing or changed")
                // 2,000 messages sent in a burst are not 2,000 forwarded messages.
                #expect(batches < count, "\(batches) batches for \(count) messages")
                let counted = await eventually {
                    let forwardedCount = (try? await metric(gateway, #"gateway_messages_forwarded_total{channel="telemetry"}"#)) ?? 0
                    let batchCount = (try? await metric(gateway, "gateway_telemetry_batches_total")) ?? 0
                    return forwardedCount == Double(count) && batchCount == Double(batches)
                }
                #expect(counted, "the gateway's forwarded and batch counters")
                #expect(try await metric(gateway, #"gateway_messages_dropped_total{reason="agent_id_mismatch"}"#) == Double(count / 100))
            }
            await stop(gateway)
        }
    }

    @Test("two gateway replicas: every hello, presence change and telemetry message is forwarded once")
    func twoReplicas() async throws {
        try await withPrivateBroker { broker in
            let first = try await startGateway(broker: broker.url, instance: "gw-a")
            let second = try await startGateway(broker: broker.url, instance: "gw-b")
            #expect(try await first.get("/v1/agents").json?["replicas"] as? [String] == ["gw-a", "gw-b"])
            try await withConnectedClient(try testMQTTConfiguration("observer", url: broker.url)) { client in
                let hellos = try await client.subscribe(to: Topic.agentHelloEvents.path)
                let presence = try await client.subscribe(to: Topic.agentPresenceEvents.path)
                let telemetry = try await client.subscribe(to: Topic.agentTelemetryEvents.path)
                let raw = try await client.subscribe(to: Topic.everyAgent(.telemetry).path)
                let count = 20
                let agents = try await simulate(broker: broker.url, agents: count, devices: 2, prefix: "twin", extra: ["--telemetry-seconds", "1"])
                defer { agents.process.send(SIGKILL) }

                let helloAgents = try await hellos.collect(count, timeout: .seconds(20)).map { payload($0)["agent_id"] as? String ?? "" }
                #expect(Set(helloAgents).count == count)
                let window = await raw.drain(for: .seconds(3))
                agents.process.send(SIGKILL)
                let forwarded = await telemetry.drain(for: .seconds(2))
                let rawIDs = window.map { (try? JSONSerialization.jsonObject(with: $0.payload) as? [String: Any])??["message_id"] as? String ?? "" }
                let forwardedIDs = forwarded.flatMap(telemetryMessages).map { $0["message_id"] as? String ?? "" }
                #expect(rawIDs.count >= count)
                #expect(Set(forwardedIDs).count == forwardedIDs.count, "a telemetry message was forwarded twice")
                #expect(Set(rawIDs).isSubset(of: Set(forwardedIDs)))

                // The last wills: one offline event per agent, from its owner only.
                let events = await presence.drain(for: .seconds(4)).map(payload)
                let offline = events.filter { $0["state"] as? String == "offline" }.compactMap { $0["agent_id"] as? String }
                #expect(offline.count == count && Set(offline).count == count, "\(offline.sorted())")
                let online = events.filter { $0["state"] as? String == "online" }.compactMap { $0["agent_id"] as? String }
                // Seen about once in six CI runs (22 online events for 20 agents), not explained yet:
                // the duplicated agents' events and both replicas' logs say more the next time.
                let twice = Set(online.filter { id in online.count { $0 == id } > 1 })
                #expect(
                    twice.isEmpty,
                    """
                    an online event was announced twice for \(twice.sorted()): \(events.filter { twice.contains($0["agent_id"] as? String ?? "") })
                    gw-a: \(twice.isEmpty ? "" : String(first.process.output.suffix(6_000)))
                    gw-b: \(twice.isEmpty ? "" : String(second.process.output.suffix(6_000)))
                    """)
                #expect(await hellos.drain(for: .milliseconds(500)).isEmpty, "no hello twice")
            }
            await stop(first)
            await stop(second)
        }
    }

    @Test("no heartbeat within the timeout is offline; the next heartbeat is online again")
    func heartbeatTimeout() async throws {
        try await withPrivateBroker { broker in
            let gateway = try await startGateway(broker: broker.url, ["MODELFLEET_GATEWAY_HEARTBEAT_TIMEOUT": "2"])
            try await withConnectedClient(try testMQTTConfiguration("observer", url: broker.url)) { client in
                let presence = try await client.subscribe(to: Topic.agentPresenceEvents.path)
                let agents = try await simulate(broker: broker.url, agents: 1, devices: 1, prefix: "sleepy", extra: ["--heartbeat-seconds", "0.5"])
                defer { agents.process.send(SIGKILL) }
                #expect(await eventually { (try? await gateway.get("/v1/agents/sleepy-0001").json?["online"] as? Bool) == true })

                // Frozen: its connection stays up (the broker's keep-alive is 15 s), but it is silent.
                agents.process.send(SIGSTOP)
                // 2 s of silence, or more while the gateway's queues are behind (decision 62): the
                // bound is for a loaded machine, not a measure.
                let offline = await next(on: presence, within: .seconds(20)) { $0["state"] as? String == "offline" }
                #expect(offline?["agent_id"] as? String == "sleepy-0001")
                agents.process.send(SIGCONT)
                let online = await next(on: presence, within: .seconds(20)) { $0["state"] as? String == "online" }
                #expect(online?["agent_id"] as? String == "sleepy-0001")
            }
            await stop(gateway)
        }
    }

    // MARK: Hostile traffic

    /// A valid heartbeat of `agent`.
    private func heartbeat(_ agent: String) throws -> Data {
        try Envelope(payload: AgentMessage.Heartbeat(agentID: agent, uptimeSeconds: 1, appliedGeneration: 0)).encoded()
    }

    /// Publishes, from `clients` connections of their own at QoS 0, `rate` messages a second in
    /// all for `duration`: message `index` is `message(index)` (a topic and a payload). Returns how
    /// many were published.
    private func flood(
        broker: String, clients: Int, rate: Int, for duration: Duration, _ message: @escaping @Sendable (Int) throws -> (String, Data)
    ) async throws -> Int {
        try await withThrowingTaskGroup(of: Int.self) { group in
            for client in 0..<clients {
                group.addTask {
                    try await withConnectedClient(try testMQTTConfiguration("flood", url: broker)) { mqtt in
                        let start = ContinuousClock.now
                        let perTick = max(1, rate / clients / 100)  // 100 ticks a second
                        var sent = 0
                        var tick = 0
                        while ContinuousClock.now - start < duration {
                            for _ in 0..<perTick {
                                let (topic, payload) = try message((sent * clients + client))
                                try await mqtt.publish(topic, payload: payload, qos: .atMostOnce)
                                sent += 1
                            }
                            tick += 1
                            let next = start + .milliseconds(10 * tick)
                            // Behind the pace, it still lets the test's other tasks (its HTTP probes) run.
                            if next > ContinuousClock.now { try await Task.sleep(until: next) } else { await Task.yield() }
                        }
                        return sent
                    }
                }
            }
            return try await group.reduce(0, +)
        }
    }

    /// Publishes a valid heartbeat of `agent` every `interval` until cancelled.
    private func beat(_ agent: String, every interval: Duration, broker: String) -> Task<Void, any Error> {
        Task {
            try await withConnectedClient(try testMQTTConfiguration("steady", url: broker)) { client in
                let topic = Topic.agent(try TopicLevel(agent), .heartbeat).path
                while !Task.isCancelled {
                    try await client.publish(topic, payload: try heartbeat(agent), qos: .atMostOnce)
                    try? await Task.sleep(for: interval)
                }
            }
        }
    }

    @Test("garbage on an agent's own topics does not use up its rate limit, so it stays online; garbage makes no table entries")
    func garbageUnderLoadDoesNotCostPresence() async throws {
        try await withPrivateBroker { broker in
            let gateway = try await startGateway(
                broker: broker.url,
                ["MODELFLEET_GATEWAY_AGENT_RATE": "5", "MODELFLEET_GATEWAY_AGENT_BURST": "10", "MODELFLEET_GATEWAY_HEARTBEAT_TIMEOUT": "2"])
            try await withConnectedClient(try testMQTTConfiguration("observer", url: broker.url)) { client in
                let presence = try await client.subscribe(to: Topic.agentPresenceEvents.path)
                let steady = beat("steady", every: .milliseconds(400), broker: broker.url)
                defer { steady.cancel() }
                #expect(await eventually { (try? await gateway.get("/v1/agents/steady").json?["online"] as? Bool) == true })

                // 2,000 msg/s of garbage for 3 s on its heartbeat and telemetry topics, and on those of agents that do not exist.
                let garbage = Data(#"{"schema_version": 1, "type": "agent.heartbeat", "payload": "#.utf8)
                let sent = try await flood(broker: broker.url, clients: 2, rate: 2_000, for: .seconds(3)) { index in
                    let agent = index % 10 == 0 ? "ghost-\(index)" : "steady"
                    return (Topic.agent(try TopicLevel(agent), index % 2 == 0 ? .heartbeat : .telemetry).path, garbage)
                }
                let dropped = #"gateway_messages_dropped_total{reason="malformed_json"}"#
                #expect(await eventually { (try? await metric(gateway, dropped)) == Double(sent) }, "\(sent) sent")
                let offline = await presence.drain(for: .milliseconds(500)).map(payload).filter { $0["state"] as? String == "offline" }
                #expect(offline.isEmpty, "\(offline)")
                let agent = try await gateway.get("/v1/agents/steady").json ?? [:]
                #expect(agent["online"] as? Bool == true && agent["messages_rate_limited"] as? Int == 0, "\(agent)")
                #expect(try await gateway.get("/v1/agents/ghost-10").status == 404)
                let listed = try await gateway.get("/v1/agents").json?["agents"] as? [[String: Any]] ?? []
                #expect(listed.count == 1, "\(listed)")
            }
            await stop(gateway)
        }
    }

    /// The real agent, then 60 agents nobody knows, one valid heartbeat each, at once: 29 fit beside
    /// it in a table of 30. Returns the real agent's process.
    private func fillTable(of gateway: ServiceProcess, broker: String, with client: MQTTClient) async throws -> ServiceProcess {
        let agents = try await simulate(broker: broker, agents: 1, devices: 1, prefix: "known", extra: ["--heartbeat-seconds", "0.3"])
        let online = await eventually { (try? await gateway.get("/v1/agents/known-0001").json?["online"] as? Bool) == true }
        if !online { Issue.record("the real agent did not come online") }
        for index in 0..<60 {
            let agent = String(format: "stray-%02d", index)
            try await client.publish(Topic.agent(try TopicLevel(agent), .heartbeat).path, payload: try heartbeat(agent), qos: .atMostOnce)
        }
        let full = #"gateway_messages_dropped_total{reason="agent_table_full"}"#
        let refused = await eventually { (try? await metric(gateway, full)) == 31 }
        if !refused { Issue.record("\(full) is \(String(describing: try? await metric(gateway, full))), not 31") }
        return agents
    }

    /// Every agent id of `GET /v1/agents`, a page of `limit` at a time, and how many pages (at most 10).
    private func pagedAgents(of gateway: ServiceProcess, by limit: Int) async throws -> (ids: [String], pages: Int) {
        var listed: [String] = []
        var after: String?
        var pages = 0
        repeat {
            let query = "limit=\(limit)" + (after.map { "&after=\($0)" } ?? "")
            let page = try await gateway.get("/v1/agents?\(query)").json ?? [:]
            listed += (page["agents"] as? [[String: Any]] ?? []).compactMap { $0["agent_id"] as? String }
            after = page["next"] as? String
            pages += 1
        } while after != nil && pages < 10
        return (listed, pages)
    }

    @Test("the agent table refuses agents past its cap and counts them; the list pages")
    func boundedAgentTable() async throws {
        try await withPrivateBroker { broker in
            // A heartbeat timeout no loaded machine reaches while the test pages (the CI once saw
            // 4 s between two pages): the strays stay listed.
            let gateway = try await startGateway(
                broker: broker.url,
                ["MODELFLEET_GATEWAY_MAX_AGENTS": "30", "MODELFLEET_GATEWAY_FORGET_AFTER": "1", "MODELFLEET_GATEWAY_HEARTBEAT_TIMEOUT": "120"])
            try await withConnectedClient(try testMQTTConfiguration("strays", url: broker.url)) { client in
                let agents = try await fillTable(of: gateway, broker: broker.url, with: client)
                // Pages of 7, each after the last id of the one before, give every agent once, in order.
                let (listed, pages) = try await pagedAgents(of: gateway, by: 7)
                #expect(listed.count == 30 && listed == listed.sorted() && Set(listed).count == 30 && pages == 5, "\(pages): \(listed)")
                for (query, field) in [
                    ("limit=0", "limit"), ("limit=10001", "limit"), ("limit=ten", "limit"), ("after=a%20b", "after"), ("page=2", "page"),
                ] {
                    let answer = try await gateway.get("/v1/agents?\(query)")
                    let error = answer.json?["error"] as? [String: Any]
                    #expect(answer.status == 400 && error?["field"] as? String == field, "\(query): \(answer.body)")
                }
                agents.process.send(SIGKILL)
            }
            await stop(gateway)
        }
    }

    @Test("strangers are forgotten once offline; a real agent is kept; with room again, a new agent is admitted")
    func strangersForgotten() async throws {
        try await withPrivateBroker { broker in
            let gateway = try await startGateway(
                broker: broker.url,
                ["MODELFLEET_GATEWAY_MAX_AGENTS": "30", "MODELFLEET_GATEWAY_FORGET_AFTER": "1", "MODELFLEET_GATEWAY_HEARTBEAT_TIMEOUT": "3"])
            try await withConnectedClient(try testMQTTConfiguration("strays", url: broker.url)) { client in
                let agents = try await fillTable(of: gateway, broker: broker.url, with: client)
                // Silent for the timeout (3 s), then offline for the grace period (1 s): forgotten.
                // The real agent is kept, online, and offline too since it sent this replica a hello.
                let forgotten = await eventually(timeout: .seconds(20)) {
                    let known = (try? await gateway.get("/v1/agents").json?["agents"] as? [[String: Any]]) ?? []
                    return known.compactMap { $0["agent_id"] as? String } == ["known-0001"]
                }
                #expect(forgotten)
                #expect(try await metric(gateway, "gateway_agents_forgotten_total") == 29)
                agents.process.send(SIGKILL)  // its last will: offline at once
                #expect(await eventually { (try? await gateway.get("/v1/agents/known-0001").json?["online"] as? Bool) == false })
                try await Task.sleep(for: .seconds(2.5))
                #expect(try await gateway.get("/v1/agents/known-0001").status == 200)
                // With room again, a new agent is an agent.
                try await client.publish(Topic.agent(try TopicLevel("late"), .heartbeat).path, payload: try heartbeat("late"), qos: .atLeastOnce)
                #expect(await eventually { (try? await gateway.get("/v1/agents/late").status) == 200 })
            }
            await stop(gateway)
        }
    }

    @Test("under a flood /health answers promptly and a well-behaved agent is not declared offline while the gateway is behind")
    func floodUnderLoadKeepsHealthAndPresence() async throws {
        try await withPrivateBroker { broker in
            let gateway = try await startGateway(broker: broker.url, ["MODELFLEET_GATEWAY_HEARTBEAT_TIMEOUT": "2"])
            try await withConnectedClient(try testMQTTConfiguration("observer", url: broker.url)) { client in
                let presence = try await client.subscribe(to: Topic.agentPresenceEvents.path)
                let steady = beat("steady", every: .milliseconds(400), broker: broker.url)
                defer { steady.cancel() }
                #expect(await eventually { (try? await gateway.get("/v1/agents/steady").json?["online"] as? Bool) == true })

                let garbage = Data(#"{"schema_version": 1, "type": "agent.heartbeat", "payload": "#.utf8)
                // On the channels of three consumers: heartbeats, presence and hellos.
                let channels: [Topic.AgentChannel] = [.heartbeat, .presence, .hello]
                async let sent = flood(broker: broker.url, clients: 3, rate: 60_000, for: .seconds(3)) { index in
                    (Topic.agent(try TopicLevel("noise-\(index % 1000)"), channels[index % 3]).path, garbage)
                }
                var latencies: [Double] = []
                try await Task.sleep(for: .milliseconds(500))
                for _ in 0..<8 {
                    let start = ContinuousClock.now
                    let status = (try? await gateway.get("/health").status) ?? 0
                    let elapsed = ContinuousClock.now - start
                    latencies.append(status == 200 ? Double(elapsed.components.attoseconds) / 1e18 + Double(elapsed.components.seconds) : .infinity)
                    try await Task.sleep(for: .milliseconds(250))
                }
                let published = try await sent
                // The queue drains; the agent's heartbeats are heard again.
                try await Task.sleep(for: .seconds(3))
                let offline = await presence.drain(for: .milliseconds(500)).map(payload).filter { $0["state"] as? String == "offline" }
                print("flood: \(published) messages in 3 s; /health in s: \(latencies.map { String(format: "%.3f", $0) })")
                // Before the fix a probe waited for the flood to end (3 s); the margin is for a
                // machine busy with other tests, where the probe itself waits for a core.
                #expect(latencies.allSatisfy { $0 < 1.5 }, "\(latencies)")
                #expect(offline.isEmpty, "\(offline)")
                #expect(try await gateway.get("/v1/agents/steady").json?["online"] as? Bool == true)
            }
            await stop(gateway)
        }
    }
}
