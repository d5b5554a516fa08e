import ChildProcesses
import Foundation
import MQTT
import Synchronization
import TestSupport
import Testing

@testable import FleetContract

/// The orchestrator end to end: operator's request → plan → outbox → gateway → simulated agents →
/// their reports → each device's status. Each test runs its own broker and database (the outbox
/// is read by every orchestrator on a database, so orchestrators of other tests must not see it).
@Suite("Orchestrator end to end")
struct OrchestratorProcessTests {
    // MARK: Tests

    @Test("one device: add, replace, change settings, remove — each applied by the agent; history keeps every revision")
    func singleDevice() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(1, devices: 2)
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel()
            let camera = try #require(try await fleet.devices().first?["id"] as? String)
            let path = "/v1/devices/\(camera)/pipelines"

            let added = try await fleet.api.send("POST", path, json: ["pipeline": pipeline(model)])
            #expect(added.status == 202, "\(added.body)")
            #expect(counts(try await fleet.settled(try operationID(added)))["applied"] == 1)
            let second = try await fleet.api.send("POST", path, json: ["pipeline": pipeline(model, name: "Cars")])
            _ = try await fleet.settled(try operationID(second))
            let replaced = try await fleet.api.send("PUT", "\(path)/0", json: ["pipeline": pipeline(model, name: "Bikes")])
            #expect(counts(try await fleet.settled(try operationID(replaced)))["applied"] == 1)
            let tuned = try await fleet.api.send("PATCH", "\(path)/1/stages/0", json: ["settings": ["confidence_threshold": 0.8]])
            #expect(counts(try await fleet.settled(try operationID(tuned)))["applied"] == 1)

            let current = try await fleet.api.get(path).json ?? [:]
            let pipelines = current["pipelines"] as? [[String: Any]] ?? []
            #expect(pipelines.compactMap { $0["name"] as? String } == ["Bikes", "Cars"])
            let stage = ((pipelines.last?["stages"] as? [[String: Any]])?.first?["settings"] as? [String: Any]) ?? [:]
            #expect(stage["confidence_threshold"] as? Double == 0.8 && stage["input_size"] as? Int == 320, "the version's defaults under the change")
            #expect(current["revision"] as? Int == 4)

            let removed = try await fleet.api.send("DELETE", "\(path)/0")
            #expect(counts(try await fleet.settled(try operationID(removed)))["applied"] == 1)
            #expect(try await fleet.api.get("\(path)/history").items.count == 5)
            // The agent runs what the orchestrator says: the fifth generation (the gateway learns it
            // from the agent's next heartbeat).
            #expect(
                await eventually(timeout: .seconds(5)) {
                    (try? await fleet.gateway.get("/v1/agents/\(fleet.prefix)-0001").json?["applied_generation"] as? Int) == 5
                })
        }
    }

    @Test("the registry refuses to delete a model version a pipeline uses, naming the device, and deletes it once unused")
    func versionInUse() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(1, devices: 2)
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel()
            let unused = try await fleet.registry.send(
                "POST", "/v1/models/\(model)/versions",
                json: [
                    "version": "2.0.0", "artifact_uri": "s3://models/people-2.onnx", "sha256": String(repeating: "cd", count: 32), "size_bytes": 1000,
                ])
            #expect(unused.status == 201, "\(unused.body)")
            let camera = try #require(try await fleet.devices().first)
            let (cameraID, cameraKey) = (try #require(camera["id"] as? String), try #require(camera["key"] as? String))
            let path = "/v1/devices/\(cameraID)/pipelines"
            let added = try await fleet.api.send("POST", path, json: ["pipeline": pipeline(model, name: "Gate people")])
            #expect(counts(try await fleet.settled(try operationID(added)))["applied"] == 1)

            let refused = try await fleet.registry.send("DELETE", "/v1/models/\(model)/versions/1.0.0")
            #expect(refused.status == 409 && refused.errorField == "version", "\(refused.body)")
            #expect(refused.body.contains("version_in_use") && refused.body.contains("1 device"), "\(refused.body)")
            #expect(refused.body.contains(cameraKey) && refused.body.contains("Gate people"), "names the device and its pipeline: \(refused.body)")
            #expect(try await fleet.registry.get("/v1/models/\(model)/versions/1.0.0").status == 200, "still there")
            #expect(try await fleet.registry.send("DELETE", "/v1/models/\(model)/versions/2.0.0").status == 204, "the unused version goes")

            let removed = try await fleet.api.send("DELETE", "\(path)/0")
            #expect(counts(try await fleet.settled(try operationID(removed)))["applied"] == 1)
            let deleted = try await fleet.registry.send("DELETE", "/v1/models/\(model)/versions/1.0.0")
            #expect(deleted.status == 204, "\(deleted.body)")
        }
    }

    @Test("many devices: the preview is exact, applying needs confirm, every device applies, and revert puts back what each had")
    func bulkAndRevert() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(3, devices: 3)
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel()
            let devices = try await fleet.devices()
            let disabled = try #require(devices.first?["id"] as? String)
            #expect(try await fleet.registry.send("PATCH", "/v1/devices/\(disabled)", json: ["enabled": false]).status == 200)
            // One device already runs something, which revert must put back.
            let runner = try #require(devices.last?["id"] as? String)
            let first = try await fleet.api.send("POST", "/v1/devices/\(runner)/pipelines", json: ["pipeline": pipeline(model, name: "Cars")])
            _ = try await fleet.settled(try operationID(first))

            var request: [String: Any] = ["targets": ["site_ids": [fleet.site]], "pipelines": [pipeline(model)], "dry_run": true]
            let preview = try await fleet.api.send("POST", "/v1/assignments", json: request)
            #expect(preview.status == 200, "\(preview.body)")
            let changes = preview.json?["changes"] as? [[String: Any]] ?? []
            #expect(Set(changes.compactMap { $0["device_id"] as? String }) == Set(devices.compactMap { $0["id"] as? String }).subtracting([disabled]))
            let runnerChange = changes.first { $0["device_id"] as? String == runner }
            #expect((runnerChange?["before"] as? [[String: Any]])?.first?["name"] as? String == "Cars")
            #expect((runnerChange?["after"] as? [[String: Any]])?.first?["name"] as? String == "People")
            let skipped = preview.json?["skipped"] as? [[String: Any]] ?? []
            #expect(skipped.count == 1 && skipped.first?["device_id"] as? String == disabled && skipped.first?["reason"] as? String == "disabled")
            #expect(try await fleet.api.get("/v1/devices/\(runner)/pipelines").json?["revision"] as? Int == 1, "a preview writes nothing")

            request["dry_run"] = nil
            let unconfirmed = try await fleet.api.send("POST", "/v1/assignments", json: request)
            #expect(unconfirmed.status == 400 && unconfirmed.errorField == "confirm")
            request["confirm"] = true
            let applied = try await fleet.api.send("POST", "/v1/assignments", json: request)
            #expect(applied.status == 202, "\(applied.body)")
            // The answer is the operation as committed: every device pending, its audit fields set.
            let committed = applied.json?["operation"] as? [String: Any] ?? [:]
            #expect(counts(applied.json ?? [:]) == ["pending": 8, "delivered": 0, "applied": 0, "failed": 0, "timed_out": 0], "\(applied.body)")
            #expect(committed["devices"] as? Int == 8 && committed["finished"] as? Bool == false && committed["actor"] as? String == "key:test-admin")
            let listed = try await fleet.api.get("/v1/operations/\(try operationID(applied))").json?["operation"] as? [String: Any]
            #expect(committed["created_at"] as? String != nil && committed["created_at"] as? String == listed?["created_at"] as? String)
            let detail = try await fleet.settled(try operationID(applied))
            #expect(counts(detail)["applied"] == 8, "\(detail)")

            let revert = try await fleet.api.send("POST", "/v1/operations/\(try operationID(applied))/revert", json: ["confirm": true])
            #expect(revert.status == 202, "\(revert.body)")
            #expect(counts(try await fleet.settled(try operationID(revert)))["applied"] == 8)
            let restored = try await fleet.api.get("/v1/devices/\(runner)/pipelines").json?["pipelines"] as? [[String: Any]] ?? []
            #expect(restored.compactMap { $0["name"] as? String } == ["Cars"])
            let other = try #require(devices.dropFirst().first?["id"] as? String)
            #expect((try await fleet.api.get("/v1/devices/\(other)/pipelines").json?["pipelines"] as? [Any])?.isEmpty == true)

            let audit = try await fleet.api.get("/v1/operations").items
            #expect(audit.compactMap { $0["kind"] as? String }.prefix(3) == ["revert", "assign", "add_pipeline"])
            #expect(audit.allSatisfy { $0["actor"] as? String == "key:test-admin" })
        }
    }

    @Test("an offline site is refused naming it; with allow_offline the change waits and is applied when the agents come back")
    func offlineSite() async throws {
        try await withFleet { fleet in
            var agents = try await fleet.startAgents(2, devices: 2)
            let model = try await fleet.createModel()
            agents.process.send(SIGTERM)
            _ = await agents.process.waitForExit(timeout: .seconds(10))
            #expect(
                await eventually(timeout: .seconds(10)) {
                    (try? await fleet.registry.get("/v1/sites/\(fleet.site)").json?["site"] as? [String: Any])?["online"] as? Bool == false
                })

            var request: [String: Any] = ["targets": ["site_ids": [fleet.site]], "pipelines": [pipeline(model)], "confirm": true]
            let refused = try await fleet.api.send("POST", "/v1/assignments", json: request)
            #expect(refused.status == 409 && refused.errorField == "allow_offline", "\(refused.body)")
            #expect(refused.body.contains(fleet.site))

            request["allow_offline"] = true
            let accepted = try await fleet.api.send("POST", "/v1/assignments", json: request)
            #expect(accepted.status == 202, "\(accepted.body)")
            let operation = try operationID(accepted)
            try await Task.sleep(for: .seconds(1))
            let waiting = try await fleet.api.get("/v1/operations/\(operation)").json ?? [:]
            #expect(counts(waiting)["delivered"] == 4, "\(waiting)")

            agents = try await fleet.startAgents(2, devices: 2)
            defer { agents.process.send(SIGKILL) }
            #expect(counts(try await fleet.settled(operation))["applied"] == 4)
        }
    }

    @Test("a pipeline the agent cannot start fails on each device with the agent's reason; retried once its artifact is in place, it applies")
    func failureAndRetry() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(1, devices: 2)
            defer { agents.process.send(SIGKILL) }
            let (model, artifact) = try await fleet.createModelWithMissingArtifact()
            let cameras = try await fleet.devices().compactMap { $0["id"] as? String }
            #expect(cameras.count == 2)

            let request: [String: Any] = ["targets": ["device_ids": cameras], "pipelines": [pipeline(model)], "confirm": true]
            let assigned = try await fleet.api.send("POST", "/v1/assignments", json: request)
            #expect(assigned.status == 202, "\(assigned.body)")
            let operation = try operationID(assigned)
            let failed = try await fleet.settled(operation)
            #expect(counts(failed) == ["pending": 0, "delivered": 0, "applied": 0, "failed": 2, "timed_out": 0], "\(failed)")
            let reasons = try await fleet.api.get("/v1/operations/\(operation)?status=failed").json?["devices"] as? [[String: Any]] ?? []
            #expect(reasons.count == 2)
            for device in reasons {
                let reason = device["reason"] as? String ?? ""
                #expect(reason.hasPrefix("pipeline ") && reason.contains("people.onnx"), "the agent's own reason: \(reason)")
            }

            // The operator fixes the cause, then retries the failed devices only.
            try artifact.write()
            let retried = try await fleet.api.send("POST", "/v1/operations/\(operation)/retry", json: ["confirm": true])
            #expect(retried.status == 202, "\(retried.body)")
            #expect((retried.json?["operation"] as? [String: Any])?["retries"] as? String == operation)
            let retry = try operationID(retried)
            let applied = try await fleet.settled(retry)
            #expect(counts(applied)["applied"] == 2, "\(applied)")
            for camera in cameras {
                let running = try await fleet.api.get("/v1/devices/\(camera)/pipelines").json?["pipelines"] as? [[String: Any]] ?? []
                #expect(running.compactMap { $0["name"] as? String } == ["People"])
            }
            let nothingLeft = try await fleet.api.send("POST", "/v1/operations/\(retry)/retry", json: ["confirm": true])
            #expect(nothingLeft.status == 409 && nothingLeft.body.contains("nothing_to_retry"), "\(nothingLeft.body)")
        }
    }

    @Test("devices of an agent that does not answer time out after the watchdog; the agent's late report still settles them applied")
    func watchdogAndLateReport() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(1, devices: 2)
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel()
            // Frozen, not gone: still online for the registry when the assignment is made.
            agents.process.send(SIGSTOP)
            let request: [String: Any] = [
                "targets": ["site_ids": [fleet.site]], "pipelines": [pipeline(model)], "confirm": true, "watchdog_seconds": 2,
            ]
            let assigned = try await fleet.api.send("POST", "/v1/assignments", json: request)
            #expect(assigned.status == 202, "\(assigned.body)")
            let operation = try operationID(assigned)
            let expired = try await fleet.settled(operation, timeout: .seconds(15))
            #expect(counts(expired)["timed_out"] == 2, "\(expired)")
            let devices = expired["devices"] as? [[String: Any]] ?? []
            #expect(devices.allSatisfy { $0["reason"] as? String == "not applied within 2 s" }, "\(devices)")

            agents.process.send(SIGCONT)
            let late = await eventually(timeout: .seconds(20), interval: .milliseconds(200)) {
                counts((try? await fleet.api.get("/v1/operations/\(operation)").json) ?? [:])["applied"] == 2
            }
            #expect(late, "the late report settles the timed-out devices")
        }
    }

    @Test("bad requests get a 4xx naming the field")
    func badRequests() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(1, devices: 1)
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel()
            let camera = try #require(try await fleet.devices().first?["id"] as? String)
            let path = "/v1/devices/\(camera)/pipelines"
            let cases: [(String, String, Any?, Int, String)] = [
                ("POST", path, ["pipeline": ["name": "X", "stages": [["model_id": model, "version": "9.9.9"]]]], 422, "pipeline.stages[0].version"),
                (
                    "POST", path, ["pipeline": pipeline(model, settings: ["confidence_threshold": 3])], 400,
                    "pipeline.stages[0].settings.confidence_threshold"
                ),
                ("POST", path, ["pipeline": ["name": "", "stages": [] as [Any]]], 400, "pipeline.name"),
                ("POST", path, ["pipeline": ["name": "X", "stages": [] as [Any]]], 400, "pipeline.stages"),
                (
                    "POST", path, ["pipeline": ["name": "X", "stages": [["model_id": "nope", "version": "1.0.0"]]]], 400,
                    "pipeline.stages[0].model_id"
                ),
                ("POST", path, ["pipeline": pipeline(model), "watchdog_seconds": 0], 400, "watchdog_seconds"),
                ("POST", "/v1/devices/not-a-uuid/pipelines", ["pipeline": pipeline(model)], 400, "device_id"),
                ("PUT", "\(path)/3", ["pipeline": pipeline(model)], 404, "index"),
                ("DELETE", "\(path)/x", nil, 400, "index"),
                ("POST", "/v1/assignments", ["targets": [:] as [String: Any], "pipelines": [pipeline(model)]], 400, "targets"),
                ("POST", "/v1/assignments", ["pipelines": [pipeline(model)]], 400, "targets"),
                (
                    "POST", "/v1/assignments", ["targets": ["device_ids": [UUID().uuidString]], "pipelines": [pipeline(model)], "confirm": true], 404,
                    "targets.device_ids"
                ),
                ("GET", "/v1/operations?limit=0", nil, 400, "limit"),
                ("GET", "/v1/operations/\(UUID().uuidString)?status=lost", nil, 400, "status"),
            ]
            for (method, target, body, status, field) in cases {
                let answer = try await fleet.api.send(method, target, json: body)
                #expect(answer.status == status && answer.errorField == field, "\(method) \(target): \(answer.status) \(answer.body)")
            }
            #expect(try await fleet.api.get("/v1/devices/\(UUID().uuidString)/pipelines").status == 404)
            #expect(try await fleet.api.get("/v1/operations/\(UUID().uuidString)").status == 404)
            #expect(fleet.api.process.isRunning)
        }
    }

    @Test("the orchestrator killed with SIGKILL during a 2,000-device assignment converges after restart: every device applied, none twice")
    func crashDuringDelivery() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(200, devices: 10)
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel()
            let request: [String: Any] = ["targets": ["site_ids": [fleet.site]], "pipelines": [pipeline(model)], "confirm": true]
            let accepted = try await fleet.api.send("POST", "/v1/assignments", json: request)
            #expect(accepted.status == 202, "\(accepted.body)")
            let operation = try operationID(accepted)
            try await fleet.restartOrchestrator(killing: SIGKILL)

            let detail = try await fleet.settled(operation, timeout: .seconds(60))
            #expect(counts(detail)["applied"] == 2000, "\(counts(detail))")
            let devices = detail["devices"] as? [[String: Any]] ?? []
            #expect(devices.allSatisfy { $0["generation"] as? Int == 1 })
            // Each agent got generation 1 once: the gateway published 200 documents; what the
            // restarted orchestrator sent again only asked for lost reports (the agents do not apply
            // a generation twice).
            // (The gateway learns the applied generation from each agent's next heartbeat.)
            let everyAgentAtOne = await eventually(timeout: .seconds(5)) {
                let agents = (try? await fleet.gateway.get("/v1/agents?online=true").json?["agents"] as? [[String: Any]]) ?? []
                return agents.count == 200 && agents.allSatisfy { $0["applied_generation"] as? Int == 1 }
            }
            #expect(everyAgentAtOne)
            let metrics = try await fleet.gateway.get("/metrics").body
            #expect(
                metrics.contains(#"gateway_desired_states_total{outcome="published"} 200"#),
                "\(metrics.split(separator: "\n").filter { $0.contains("desired") })")
        }
    }
}
