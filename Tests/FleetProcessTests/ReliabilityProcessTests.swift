import ChildProcesses
import DeviceProtocol
import Foundation
import MQTT
import TestSupport
import Testing

@testable import FleetContract

/// Faults an outside test found (issue 16), each against real parts: a database that stops
/// answering or crashes mid-assignment, a reply the broker would refuse, a report the database
/// refuses, an agent ahead of the orchestrator, and a document lost on its way.
@Suite("Reliability end to end")
struct ReliabilityProcessTests {
    @Test("a database step that does not return makes /ready name the stuck loop; the loops carry on once the database answers")
    func stuckDatabaseStep() async throws {
        try await withFleet(orchestratorEnvironment: ["MODELFLEET_DATABASE_STEP_TIMEOUT": "1"]) { fleet in
            let (agents, model, camera) = try await fleet.startWithCamera()
            defer { agents.process.send(SIGKILL) }

            // Another session holds the outbox for 8 s: the publisher's query waits on its lock,
            // while the database itself answers the readiness probe.
            let lock = try ChildProcess(
                executable: "/usr/bin/psql",
                arguments: [fleet.database.url, "-c", "BEGIN; LOCK TABLE orchestrator.outbox IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(8);"],
                environment: ["PATH": "/usr/bin:/bin"],
                outputFile: try TestEnvironment.current().makeScratchDirectory("psql").appendingPathComponent("lock.log"))
            defer { lock.send(SIGKILL) }
            // The reconciler's query waits on the same lock, and may be named first.
            var readiness: HTTPResult?
            let unready = await eventually(timeout: .seconds(6), interval: .milliseconds(200)) {
                readiness = try? await fleet.api.get("/ready")
                let checks = readiness?.json?["checks"] as? [String: [String: Any]] ?? [:]
                return readiness?.status == 503 && (checks["loops"]?["detail"] as? String)?.contains("outbox") == true
            }
            #expect(unready, "the outbox publisher is not named stuck: \(readiness?.body ?? "")")
            let checks = readiness?.json?["checks"] as? [String: [String: Any]] ?? [:]
            #expect(checks["database"]?["ready"] as? Bool == true, "the database answers: \(checks)")

            // The lock goes: ready again, and a new operation is delivered and applied.
            #expect(await eventually(timeout: .seconds(20)) { (try? await fleet.api.get("/ready"))?.status == 200 })
            #expect(counts(try await fleet.addPipeline(model, on: camera))["applied"] == 1)
        }
    }

    @Test("the database crashing twice in the middle of a 120-device assignment: every device applied, and later operations too")
    func databaseCrashesMidAssignment() async throws {
        try await withFleet(orchestratorEnvironment: ["MODELFLEET_DATABASE_STEP_TIMEOUT": "3"]) { fleet in
            let agents = try await fleet.startAgents(6, devices: 20)
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel()
            let request: [String: Any] = ["targets": ["site_ids": [fleet.site]], "pipelines": [pipeline(model)], "confirm": true]
            let assigned = try await fleet.api.send("POST", "/v1/assignments", json: request)
            #expect(assigned.status == 202, "\(assigned.body)")
            for pause in [Duration.milliseconds(50), .milliseconds(400)] {
                try await Task.sleep(for: pause)
                try await fleet.database.crash()
                try await Task.sleep(for: .milliseconds(500))
                try await fleet.database.start()
            }
            let detail = try await fleet.settled(try operationID(assigned), timeout: .seconds(60))
            // One fresh-clone CI run saw the orchestrator stop answering here (connection refused),
            // never reproduced since: its state and log go with a failure.
            let orchestrator = { "orchestrator \(fleet.api.process.isRunning ? "running" : "exited"): \(fleet.api.process.output.suffix(6_000))" }
            #expect(counts(detail)["applied"] == 120, "\(counts(detail)); \(orchestrator())")
            #expect(await eventually(timeout: .seconds(20)) { (try? await fleet.api.get("/ready"))?.status == 200 }, "\(orchestrator())")

            let revert = try await fleet.api.send("POST", "/v1/operations/\(try operationID(assigned))/revert", json: ["confirm": true])
            #expect(revert.status == 202, "\(revert.body)")
            #expect(counts(try await fleet.settled(try operationID(revert), timeout: .seconds(60)))["applied"] == 120)
        }
    }

    @Test("an unknown model version with a control character is answered 4xx, and the registry stays on the bus for the next call")
    func controlCharacterInVersion() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(1, devices: 1)
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel()
            var stage = (pipeline(model)["stages"] as! [[String: Any]])[0]
            stage["version"] = "1.0.0-\u{85}"
            var request: [String: Any] = [
                "targets": ["site_ids": [fleet.site]], "pipelines": [["name": "People", "stages": [stage]]], "dry_run": true,
            ]
            let unknown = try await fleet.api.send("POST", "/v1/assignments", json: request)
            #expect((400..<500).contains(unknown.status), "\(unknown.status) \(unknown.body)")
            // Before, the registry's reply carried the version unescaped in a user property, the
            // broker disconnected it, and every later call answered 503.
            request["pipelines"] = [pipeline(model)]
            for _ in 0..<3 {
                let preview = try await fleet.api.send("POST", "/v1/assignments", json: request)
                #expect(preview.status == 200, "\(preview.body)")
            }
            #expect(try await fleet.registry.get("/ready").status == 200)
        }
    }

    @Test("a report the database refuses (U+0000 in its text) costs only itself, not the other reports of its batch")
    func refusedReportInBatch() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(2, devices: 1)
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel()
            let request: [String: Any] = ["targets": ["site_ids": [fleet.site]], "pipelines": [pipeline(model)], "confirm": true]
            let assigned = try await fleet.api.send("POST", "/v1/assignments", json: request)
            #expect(counts(try await fleet.settled(try operationID(assigned)))["applied"] == 2)

            // Past the gateway, which refuses such text now: straight on the orchestrator's topic,
            // one report it cannot store, one good report of the other agent, back to back.
            let (first, second) = ("\(fleet.prefix)-0001", "\(fleet.prefix)-0002")
            try await withConnectedClient(testMQTTConfiguration("reports", url: fleet.broker.url)) { client in
                for (agent, reason) in [(first, "disk\u{0}full"), (second, nil)] as [(String, String?)] {
                    let pipelines = reason.map { [AgentMessage.Report.PipelineReport(pipelineID: "p1", state: .failed, reason: $0)] } ?? []
                    let report = AgentMessage.Report(
                        agentID: agent, generation: 1, devices: [AgentMessage.Report.DeviceReport(deviceKey: "cam-x", pipelines: pipelines)])
                    try await client.publish(Topic.agentReportEvents.path, payload: try Envelope(payload: report).encoded(), qos: .atLeastOnce)
                }
            }
            #expect(await eventually { (try? await metric(fleet.api, #"orchestrator_reports_total{outcome="refused"}"#)) == 1 })
            #expect(try await metric(fleet.api, #"orchestrator_reports_total{outcome="error"}"#) == 0)
            #expect(try await fleet.api.get("/ready").status == 200)
        }
    }

    @Test("an agent ahead of the orchestrator (a forged document) is sent what it should run at a newer generation; applied means applied as sent")
    func agentAhead() async throws {
        try await withFleet { fleet in
            let (agents, model, camera) = try await fleet.startWithCamera()
            defer { agents.process.send(SIGKILL) }
            let agent = "\(fleet.prefix)-0001"
            #expect(counts(try await fleet.addPipeline(model, on: camera))["applied"] == 1)

            // A forged document at generation 7 that runs nothing, retained on the agent's topic.
            let topic = Topic.agent(try TopicLevel(agent), .desired).path
            try await withConnectedClient(testMQTTConfiguration("forger", url: fleet.broker.url)) { client in
                let current = try #require(try await client.subscribe(to: topic, qos: .atLeastOnce).collect(1).first)
                var document = try #require(try JSONSerialization.jsonObject(with: current.payload) as? [String: Any])
                var payload = try #require(document["payload"] as? [String: Any])
                payload["generation"] = 7
                payload["devices"] = [] as [Any]
                document["payload"] = payload
                document["message_id"] = UUID().uuidString
                try await client.publish(topic, payload: try JSONSerialization.data(withJSONObject: document), qos: .atLeastOnce, retain: true)
            }
            // The agent applies it and reports 7; the orchestrator answers with generation 8.
            #expect(
                await eventually(timeout: .seconds(20)) {
                    (try? await fleet.gateway.get("/v1/agents/\(agent)").json?["applied_generation"] as? Int) == 8
                }, "the agent was not brought back from the forged generation")

            let detail = try await fleet.addPipeline(model, name: "Cars", on: camera)
            #expect(counts(detail)["applied"] == 1, "\(detail)")
            let generation = try #require((detail["devices"] as? [[String: Any]])?.first?["generation"] as? Int)
            #expect(generation > 8)
            #expect(
                await eventually { (try? await fleet.gateway.get("/v1/agents/\(agent)").json?["applied_generation"] as? Int) == generation },
                "applied means the agent runs the generation the orchestrator sent")
        }
    }

    @Test("a document lost on its way is sent again after its device timed out: the agent is brought level whatever the watchdog said")
    func lostDocumentAfterTimeout() async throws {
        try await withFleet { fleet in
            let (agents, model, camera) = try await fleet.startWithCamera()
            defer { agents.process.send(SIGKILL) }
            let agent = "\(fleet.prefix)-0001"
            #expect(counts(try await fleet.addPipeline(model, on: camera))["applied"] == 1)

            // No gateway: the document goes to nobody (as one lost with a broker's retained
            // messages would), and the watchdog gives the device up.
            await fleet.killGateway()
            let lost = try await fleet.addPipeline(model, name: "Cars", on: camera, options: ["watchdog_seconds": 1])
            #expect(counts(lost)["timed_out"] == 1, "\(lost)")
            let operation = try #require((lost["operation"] as? [String: Any])?["id"] as? String)

            try await fleet.startGateway()
            let detail = await eventually(timeout: .seconds(30)) {
                counts((try? await fleet.api.get("/v1/operations/\(operation)").json) ?? [:])["applied"] == 1
            }
            #expect(detail, "the agent was never sent its document again")
            #expect(
                await eventually { (try? await fleet.gateway.get("/v1/agents/\(agent)").json?["applied_generation"] as? Int) == 2 })
        }
    }

    @Test("a long download: in-progress reports show its bytes, keep the watchdog and the resending back, and the device applies")
    func longDownload() async throws {
        // Before, the watchdog gave up on the device after its 8 s and the document was sent again
        // every few seconds while the artifact downloaded (issue 18, gap 8).
        try await withFleet { fleet in
            let server = try await SlowArtifactServer(size: 3_000_000, seconds: 24)
            defer { server.stop() }
            let agents = try await fleet.startAgents(1, devices: 1, options: ["--progress-seconds", "1", "--log-level", "info"])
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel(artifactURI: server.url, sha256: server.sha256, sizeBytes: server.size)
            let camera = try #require(try await fleet.devices().first?["id"] as? String)
            let accepted = try await fleet.api.send(
                "POST", "/v1/devices/\(camera)/pipelines", json: ["pipeline": pipeline(model), "watchdog_seconds": 8])
            #expect(accepted.status == 202, "\(accepted.body)")
            let operation = try operationID(accepted)
            func device() async throws -> [String: Any] {
                (try await fleet.api.get("/v1/operations/\(operation)").json?["devices"] as? [[String: Any]])?.first ?? [:]
            }
            // Every 200 ms until it is applied or failed: the download takes 24 s, three times the
            // watchdog (which leaves the delivery time under a loaded CI machine its margin) and
            // more than the 5 s after which a document is sent again; the agent reports progress
            // every second.
            var progress: [[String: Any]] = []
            var statuses: [String] = []
            var timeline: [String] = []
            let posted = ContinuousClock.now
            var last: [String: Any] = [:]
            let settled = await eventually(timeout: .seconds(90), interval: .milliseconds(200)) {
                last = (try? await device()) ?? [:]
                let status = last["status"] as? String ?? "?"
                if statuses.last != status {
                    statuses.append(status)
                    timeline.append("\(status) at \(ContinuousClock.now - posted)")
                }
                if let seen = last["progress"] as? [String: Any] {
                    if progress.isEmpty { timeline.append("first progress at \(ContinuousClock.now - posted)") }
                    progress.append(seen)
                }
                return status == "applied" || status == "failed"
            }
            let agentLog = agents.process.output.split(separator: "\n").filter { $0.contains("desired") || $0.contains("fetch") }.suffix(10)
            let reportLines = ((try? await fleet.api.get("/metrics").body) ?? "").split(separator: "\n").filter { $0.contains("reports_total") }
            let story = "\(timeline); last \(last); orchestrator \(reportLines); agent: \(agentLog.joined(separator: " | "))"
            #expect(settled && statuses.last == "applied", "\(story)")
            #expect(!statuses.contains("timed_out"), "\(story)")
            let fetched = progress.compactMap { $0["bytes_fetched"] as? Int }
            #expect(fetched.contains { $0 > 0 } && fetched == fetched.sorted(), "bytes fetched as seen: \(fetched)")
            #expect(progress.allSatisfy { $0["bytes_total"] as? Int == server.size }, "\(progress.prefix(3))")
            #expect(try await device()["progress"] == nil)
            #expect(try await metric(fleet.api, "orchestrator_desired_states_republished_total") == 0)
            #expect(try await metric(fleet.api, #"orchestrator_reports_total{outcome="in_progress"}"#) >= 3)
        }
    }
}
