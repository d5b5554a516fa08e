import DeviceProtocol
import FleetContract
import Foundation
import MQTT
import PostgresNIO
import ServiceRuntime
import TestSupport
import Testing

/// The `field` of an error answer.
private func errorField(_ answer: HTTPResult) -> String? { (answer.json?["error"] as? [String: Any])?["field"] as? String }

/// The broker's access control as issue 24 lists the attacks: real Mosquitto with the dynamic
/// security plugin, real clients signed in as agents and services, the registry's enrolment and
/// fleetctl.
@Suite("Broker security")
struct SecurityProcessTests {
    /// A client signed in as `username` (no credentials: anonymous) on `url`, that does not
    /// wait to be connected.
    private func client(_ name: String, url: String, username: String?, password: String?) throws -> MQTTClient {
        var configuration = try testMQTTConfiguration(name, url: url)
        configuration.username = username
        configuration.password = password
        configuration.backoff = .init(initial: .milliseconds(100), maximum: .milliseconds(200))
        return try MQTTClient(configuration: configuration, logger: testLogger(name))
    }

    /// Runs `body` with a client signed in as `username`, connected.
    private func signedIn<T: Sendable>(
        _ username: String, _ password: String, url: String, _ body: @Sendable (MQTTClient) async throws -> T
    ) async throws -> T {
        let client = try client(uniqueName("as"), url: url, username: username, password: password)
        return try await withRunning(client) {
            try await client.waitUntilConnected(timeout: .seconds(10))
            return try await body(client)
        }
    }

    /// Whether the broker refuses `client` publishing to `topic` (QoS 1: the PUBACK says so).
    private func publishRefused(_ client: MQTTClient, _ topic: String, retain: Bool = false) async -> Bool {
        do {
            try await client.publish(topic, payload: Data(#"{"forged": true}"#.utf8), qos: .atLeastOnce, retain: retain)
            return false
        } catch MQTTError.refusedByBroker(_, let code, _) {
            return code == 0x87
        } catch {
            return false
        }
    }

    /// Whether the broker refuses `client` subscribing to `filter` (the SUBACK says so).
    private func subscribeRefused(_ client: MQTTClient, _ filter: String) async -> Bool {
        do {
            let subscription = try await client.subscribe(to: filter)
            subscription.cancel()
            return false
        } catch MQTTError.refusedByBroker(_, let code, _) {
            return code >= 0x80
        } catch {
            return false
        }
    }

    @Test("no anonymous client; an agent reaches only its own topics; a service only the services' topics; a revoked agent is refused")
    func accessMatrix() async throws {
        try await withPrivateBroker { broker in
            let environment = try TestEnvironment.current()
            // Anonymous and a wrong password: refused at connect.
            for (username, password) in [(nil, nil), ("modelfleet:registry", "wrong")] as [(String?, String?)] {
                let stranger = try client("stranger", url: broker.url, username: username, password: password)
                try await withRunning(stranger) {
                    await #expect(throws: (any Error).self) { try await stranger.waitUntilConnected(timeout: .seconds(2)) }
                    #expect(await eventually { "\(stranger.connectionState)".lowercased().contains("not authorized") }, "\(stranger.connectionState)")
                }
            }

            let (agentA, agentB) = (uniqueName("agent-a"), uniqueName("agent-b"))
            let (passwordA, passwordB) = (UUID().uuidString, UUID().uuidString)
            let a = try TopicLevel(agentA)
            let b = try TopicLevel(agentB)
            try await withConnectedClient(testMQTTConfiguration("admin", url: broker.url)) { admin in
                let accounts = AgentAccounts(mqtt: admin)
                try await accounts.enroll(a, password: passwordA)
                try await accounts.enroll(b, password: passwordB)
                #expect(try await accounts.exists(a))

                let heard = try await admin.subscribe(to: "modelfleet/v1/#")
                // The gateway's account publishes A's desired state (retained), as it does.
                try await signedIn("modelfleet:device-gateway", try environment.mqttPassword("device-gateway"), url: broker.url) { gateway in
                    try await gateway.publish(Topic.agent(a, .desired).path, payload: Data(#"{"generation": 1}"#.utf8), retain: true)
                    #expect(!(await subscribeRefused(gateway, Topic.everyAgent(.hello).path)), "the gateway reads every agent's hello")
                }

                try await signedIn(agentA, passwordA, url: broker.url) { agent in
                    // Its own topics: allowed.
                    for channel in Topic.AgentChannel.inbound {
                        try await agent.publish(Topic.agent(a, channel).path, payload: Data("{}".utf8), qos: .atLeastOnce)
                    }
                    let desired = try await agent.subscribe(to: Topic.agent(a, .desired).path)
                    #expect(try await desired.collect(1).first?.payloadString == #"{"generation": 1}"#, "its retained desired state")
                    #expect(!(await subscribeRefused(agent, Topic.agent(a, .request).path)))

                    // Another agent's topics, its own desired state, the internal and the services' topics: refused.
                    for channel in Topic.AgentChannel.allCases {
                        #expect(await publishRefused(agent, Topic.agent(b, channel).path), "publish to B's \(channel)")
                    }
                    #expect(await publishRefused(agent, Topic.agent(a, .desired).path, retain: true), "forging its own desired state")
                    #expect(await publishRefused(agent, Topic.agentDesiredStateRequests.path), "the orchestrator's desired-state requests")
                    #expect(await publishRefused(agent, Topic.agentHelloEvents.path), "the gateway's forwarded hellos")
                    #expect(await publishRefused(agent, Topic.registryDeviceQuery.path), "the registry's inventory query")
                    let fakeReplica = Topic.serviceStatus(service: try TopicLevel("device-gateway"), instance: try TopicLevel("fake"))
                    #expect(await publishRefused(agent, fakeReplica.path, retain: true), "a fake gateway replica's status")
                    for filter in [
                        "#", "modelfleet/v1/#", Topic.agent(b, .desired).path, Topic.everyAgent(.desired).path, "modelfleet/v1/internal/#",
                        "modelfleet/v1/services/#", "$share/x/modelfleet/v1/agents/+/hello", "$CONTROL/dynamic-security/v1/response",
                    ] {
                        #expect(await subscribeRefused(agent, filter), "subscribe to \(filter)")
                    }
                }

                // A service other than the gateway: the services' topics, not the agents'.
                try await signedIn("modelfleet:orchestrator", try environment.mqttPassword("orchestrator"), url: broker.url) { service in
                    #expect(await subscribeRefused(service, Topic.everyAgent(.hello).path), "agents' hellos")
                    #expect(await publishRefused(service, Topic.agent(a, .desired).path), "an agent's desired state")
                    #expect(await publishRefused(service, AgentAccounts.controlTopic), "the broker's accounts")
                    #expect(!(await subscribeRefused(service, "$share/orchestrator/modelfleet/v1/internal/agents/report")))
                    try await service.publish(Topic.agentDesiredStateRequests.path, payload: Data("{}".utf8))
                }

                // Of everything refused, nothing reached anyone: only what was allowed came through.
                let topics = Set(await heard.drain(for: .milliseconds(500)).map(\.topic))
                let allowed = Set(
                    Topic.AgentChannel.inbound.map { Topic.agent(a, $0).path } + [
                        Topic.agent(a, .desired).path, Topic.agentDesiredStateRequests.path,
                    ])
                #expect(topics.subtracting(allowed).isEmpty, "refused messages were delivered: \(topics.subtracting(allowed).sorted())")
                #expect(topics.contains(Topic.agent(a, .heartbeat).path))

                // Revoked: the connected agent is dropped at once and refused from then on.
                let connected = try client("revoked", url: broker.url, username: agentB, password: passwordB)
                try await withRunning(connected) {
                    try await connected.waitUntilConnected(timeout: .seconds(10))
                    try await accounts.revoke(b)
                    #expect(await eventually(timeout: .seconds(5)) { !connected.connectionState.isConnected }, "disconnected")
                    try await Task.sleep(for: .seconds(1))
                    #expect(!connected.connectionState.isConnected, "still refused: \(connected.connectionState)")
                    #expect(
                        await eventually { "\(connected.connectionState)".lowercased().contains("not authorized") }, "\(connected.connectionState)")
                }
                #expect(try await accounts.exists(b) == false)
                try await accounts.revoke(b)  // again: harmless
            }
        }
    }

    @Test("enrolment through fleetctl: the printed file runs an agent that comes online; revoked, it goes offline and stays out")
    func enrolment() async throws {
        try await withFleet { fleet in
            let agentID = uniqueName("edge")
            let scratch = try TestEnvironment.current().makeScratchDirectory("enrolled")
            let file = scratch.appendingPathComponent("agent.json")
            let enrolled = try await fleetctl(["agents", "enroll", agentID, "--site", fleet.site, "--save", file.path], fleet: fleet)
            #expect(enrolled.status == 0, "\(enrolled.output)")
            let mode = try FileManager.default.attributesOfItem(atPath: file.path)[.posixPermissions] as? Int
            #expect(mode == 0o600, "the file holds a password: mode \(String(mode ?? 0, radix: 8))")
            var configuration = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any])
            #expect(configuration["mqtt_username"] as? String == agentID && configuration["mqtt_url"] as? String == fleet.broker.url)
            #expect((configuration["mqtt_password"] as? String)?.count ?? 0 >= 40)
            // The operator fills in the devices and the state folder.
            configuration["devices"] = [["key": "cam-1", "name": "Gate", "kind": "camera"]]
            configuration["state_dir"] = scratch.appendingPathComponent("state").path
            try JSONSerialization.data(withJSONObject: configuration).write(to: file)

            // The file says where the broker is; the test's default environment must not.
            let agent = try ServiceProcess("edge-agent", arguments: ["run", "--config", file.path], environment: ["MODELFLEET_MQTT_URL": ""])
            defer { agent.process.send(SIGKILL) }
            #expect(
                await eventually(timeout: .seconds(15)) { (try? await fleet.gateway.get("/v1/agents/\(agentID)").json?["online"] as? Bool) == true },
                "\(agent.process.output)")

            // The list shows it, never with a password; enrolling again is refused without --replace.
            let listed = try await fleetctl(["agents", "list", "--site", fleet.site, "--output", "json"], fleet: fleet)
            #expect(listed.array.contains { $0["agent_id"] as? String == agentID && $0["status"] as? String == "active" }, "\(listed.stdout)")
            #expect(!listed.stdout.contains("password"))
            let again = try await fleetctl(["agents", "enroll", agentID, "--site", fleet.site], fleet: fleet)
            #expect(again.status == 2 && again.stderr.contains("enrolled since"), "\(again.output)")

            let notConfirmed = try await fleetctl(["agents", "revoke", agentID], fleet: fleet)
            #expect(notConfirmed.status == 3, "\(notConfirmed.output)")
            let revoked = try await fleetctl(["agents", "revoke", agentID, "--yes"], fleet: fleet)
            #expect(revoked.status == 0 && revoked.stdout.contains("Revoked agent \(agentID)"), "\(revoked.output)")
            #expect(
                await eventually(timeout: .seconds(10)) { (try? await fleet.gateway.get("/v1/agents/\(agentID)").json?["online"] as? Bool) == false },
                "offline once revoked")
            // Its retained presence says offline, as its will would have (the broker dropped it
            // without the will): a gateway replica started from now on does not take it for online.
            try await withConnectedClient(try testMQTTConfiguration("retained-presence", url: fleet.broker.url)) { client in
                let presence = try await client.subscribe(to: Topic.agent(try TopicLevel(agentID), .presence).path)
                let retained = try await presence.collect(1, timeout: .seconds(5))
                let payload = try #require(retained.first).payload
                let will = try Envelope<AgentMessage.Presence>.decode(from: payload).payload
                #expect(will.state == .offline && will.reason == .connectionLost && retained.first?.retain == true, "\(will)")
            }
            try await Task.sleep(for: .seconds(2))
            #expect(try await fleet.gateway.get("/v1/agents/\(agentID)").json?["online"] as? Bool == false, "it stays out")
            #expect(agent.process.isRunning, "the agent keeps trying, refused")
            let record = try await fleet.registry.get("/v1/enrollments/\(agentID)").json ?? [:]
            #expect(record["status"] as? String == "revoked" && record["revoked_at"] is String, "\(record)")
        }
    }

    @Test("MQTT over TLS beside plain MQTT, with the same accounts: an enrolled agent connects with its password and the CA; anonymous refused")
    func tlsListener() async throws {
        let environment = try TestEnvironment.current()
        let directory = try environment.makeScratchDirectory("tls-broker")
        let (plain, secure) = (try freePort(), try freePort())
        let url =
            try await runScript(
                "mosquitto-instance", ["start", directory.path, "\(plain)"], environment: ["MODELFLEET_MOSQUITTO_TLS_PORT": "\(secure)"]
            ).split(separator: "\n").last.map(String.init) ?? ""
        do {
            try await checkTLSListener(directory: directory, secure: secure)
        } catch {
            _ = try? await runScript("mosquitto-instance", ["stop", directory.path])
            throw error
        }
        _ = try await runScript("mosquitto-instance", ["stop", directory.path])
        #expect(url == "mqtt://127.0.0.1:\(plain)")
    }

    private func checkTLSListener(directory: URL, secure: Int) async throws {
        let environment = try TestEnvironment.current()
        let ca = directory.appendingPathComponent("tls/ca.crt").path
        let tlsURL = "mqtts://127.0.0.1:\(secure)"

        var anonymous = try MQTTConfiguration(url: tlsURL, clientID: uniqueName("anon"))
        anonymous.tls = MQTTConfiguration.TLS(caFile: ca)
        anonymous.backoff = .init(initial: .milliseconds(100), maximum: .milliseconds(200))
        let stranger = try MQTTClient(configuration: anonymous, logger: testLogger("anon"))
        try await withRunning(stranger) {
            await #expect(throws: (any Error).self) { try await stranger.waitUntilConnected(timeout: .seconds(2)) }
        }

        var admin = try testMQTTConfiguration("tls-admin", url: tlsURL)
        admin.tls = MQTTConfiguration.TLS(caFile: ca)
        try await withConnectedClient(admin) { client in
            let agentID = uniqueName("tls-edge")
            let password = UUID().uuidString
            try await AgentAccounts(mqtt: client).enroll(try TopicLevel(agentID), password: password)
            let hellos = try await client.subscribe(to: Topic.agent(try TopicLevel(agentID), .hello).path)
            let state = try environment.makeScratchDirectory("tls-agent")
            let file: [String: Any] = [
                "agent_id": agentID, "site": ["id": "tls-site", "name": "TLS"],
                "capacity": ["cpu_cores": 1, "memory_bytes": 1 << 30, "gpus": [] as [Any]],
                "devices": [] as [Any], "state_dir": state.path, "mqtt_url": tlsURL, "mqtt_ca_file": ca, "mqtt_password": password,
            ]
            let config = state.appendingPathComponent("agent.json")
            try JSONSerialization.data(withJSONObject: file).write(to: config)
            let agent = try ServiceProcess("edge-agent", arguments: ["run", "--config", config.path], environment: ["MODELFLEET_MQTT_URL": ""])
            defer { agent.process.send(SIGKILL) }
            let hello = try await hellos.collect(1, timeout: .seconds(15))
            #expect(hello.count == 1, "\(agent.process.output)")
        }
    }

    @Test("PostgreSQL: each service's role signs in with its SCRAM password only, is no superuser and may touch only its own schema")
    func databaseRoles() async throws {
        try await withPrivateDatabase { database in
            let environment = try TestEnvironment.current()
            // The registry migrates its schema as its own role, and is ready.
            let registry = try await ServiceProcess.ready("registry", environment: ["MODELFLEET_DATABASE_URL": database.url])
            registry.process.send(SIGKILL)
            let password = try String(contentsOf: environment.pgCredentials.appendingPathComponent("registry"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            func configuration(_ password: String) throws -> PostgresClient.Configuration {
                var configuration = try ServiceConfiguration.parseDatabaseURL(
                    database.url.replacingOccurrences(of: "postgres://modelfleet@", with: "postgres://modelfleet_registry@") + "?sslmode=disable")
                configuration.password = password
                return configuration
            }
            func refusal(_ sql: String, as password: String) async -> String? {
                let client = PostgresClient(configuration: (try? configuration(password))!, backgroundLogger: testLogger("pg"))
                return await withTaskGroup(of: String?.self) { group in
                    group.addTask {
                        await client.run()
                        return nil
                    }
                    defer { group.cancelAll() }
                    do {
                        _ = try await client.query(PostgresQuery(unsafeSQL: sql))
                        return nil
                    } catch {
                        return String(reflecting: error)
                    }
                }
            }
            #expect(await refusal("SELECT 1", as: "wrong") != nil, "a wrong password is refused")
            #expect(await refusal("SELECT 1 FROM pg_roles WHERE rolname = current_user AND NOT rolsuper AND NOT rolcreatedb", as: password) == nil)
            #expect(await refusal("SELECT count(*) FROM registry.models", as: password) == nil, "its own schema")
            let foreign = await refusal("CREATE TABLE orchestrator.intruder (x integer)", as: password)
            #expect(foreign?.contains("42501") == true || foreign?.contains("permission denied") == true, "\(foreign ?? "allowed")")
            let schema = await refusal("CREATE SCHEMA intruder", as: password)
            #expect(schema != nil, "it may not create schemas")
            let hba = try String(contentsOf: URL(fileURLWithPath: database.directory.path + "/pg_hba.conf"), encoding: .utf8)
            #expect(hba.contains("modelfleet_registry,modelfleet_orchestrator   127.0.0.1/32   scram-sha-256"), "\(hba)")
        }
    }

    @Test("enrolment API: bad input named by field, 404 for an agent never enrolled, replace gives a new password")
    func enrolmentAPI() async throws {
        try await withFleet { fleet in
            let registry = fleet.registry
            for (body, field) in [
                (["site_id": "s"], "agent_id"), (["agent_id": "a/b", "site_id": "s"], "agent_id"), (["agent_id": "ok"], "site_id"),
                (["agent_id": "ok", "site_id": "s p"], "site_id"), (["agent_id": "ok", "site_id": "s", "server_name": ""], "server_name"),
            ] as [([String: Any], String)] {
                let answer = try await registry.send("POST", "/v1/enrollments", json: body)
                #expect(answer.status == 400 && errorField(answer) == field, "\(body): \(answer.status) \(answer.body)")
            }
            #expect(try await registry.get("/v1/enrollments/nobody").status == 404)
            #expect(try await registry.send("DELETE", "/v1/enrollments/nobody").status == 404)
            #expect(errorField(try await registry.get("/v1/enrollments?status=maybe")) == "status")

            let agentID = uniqueName("rotated")
            let first = try await registry.send("POST", "/v1/enrollments", json: ["agent_id": agentID, "site_id": fleet.site])
            #expect(first.status == 201, "\(first.body)")
            let conflict = try await registry.send("POST", "/v1/enrollments", json: ["agent_id": agentID, "site_id": fleet.site])
            #expect(
                conflict.status == 409 && (conflict.json?["error"] as? [String: Any])?["code"] as? String == "already_enrolled", "\(conflict.body)")
            let second = try await registry.send("POST", "/v1/enrollments", json: ["agent_id": agentID, "site_id": fleet.site, "replace": true])
            #expect(second.status == 201)
            let (old, new) = (try #require(first.json?["mqtt_password"] as? String), try #require(second.json?["mqtt_password"] as? String))
            #expect(old != new)
            try await signedIn(agentID, new, url: fleet.broker.url) { _ in }
            let stale = try client("stale", url: fleet.broker.url, username: agentID, password: old)
            try await withRunning(stale) {
                await #expect(throws: (any Error).self) { try await stale.waitUntilConnected(timeout: .seconds(2)) }
            }
            let page = try await registry.get("/v1/enrollments?limit=1").json ?? [:]
            #expect((page["items"] as? [Any])?.count == 1)
        }
    }
}
