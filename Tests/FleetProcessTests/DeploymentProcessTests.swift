import Foundation
import TestSupport
import Testing

/// Deployments through the real registry and orchestrator, with servers registered by simulated
/// agents (8 cores, 16 GB and one `nvidia-t4` each). The answers are recorded and checked against
/// the contract by `scripts/check-contracts`.
@Suite("Deployments end to end", .serialized)
struct DeploymentProcessTests {
    /// One more simulated agent (its server `<prefix>-late-0001`) in a process of its own.
    private func secondServer(of fleet: Fleet) async throws -> ServiceProcess {
        let credentials = try await fleet.enroll(simulatedAgentIDs(prefix: "\(fleet.prefix)-late", count: 1))
        return try ServiceProcess(
            "edge-agent",
            arguments: [
                "simulate", "--agents", "1", "--devices", "1", "--id-prefix", "\(fleet.prefix)-late", "--site-prefix", "\(fleet.prefix)-site",
                "--state-dir", try TestEnvironment.current().makeScratchDirectory("late-agent").path, "--mqtt-url", fleet.broker.url,
                "--heartbeat-seconds", "1", "--credentials-dir", credentials.path,
            ])
    }

    @Test("a server killed with SIGKILL: after the grace period its instances are placed on the servers left")
    func serverLost() async throws {
        try await withFleet(orchestratorEnvironment: ["MODELFLEET_DEPLOYMENT_OFFLINE_GRACE_SECONDS": "1"]) { fleet in
            let agents = try await fleet.startAgents(1, devices: 1)
            defer { agents.process.send(SIGKILL) }
            let late = try await secondServer(of: fleet)
            defer { late.process.send(SIGKILL) }
            let lateServer = "\(fleet.prefix)-late-0001"
            #expect(
                await eventually(timeout: .seconds(30)) {
                    (try? await fleet.registry.get("/v1/servers/\(lateServer)").json?["online"] as? Bool) == true
                })
            let model = try await fleet.createModel()
            let created = try await fleet.api.send(
                "POST", "/v1/deployments",
                json: ["name": "spread", "model_id": model, "model_version": "1.0.0", "resources": ["cpu_cores": 3], "scaling": ["min_replicas": 2]])
            let placedOn = (created.json?["instances"] as? [[String: Any]] ?? []).compactMap { $0["server_id"] as? String }
            #expect(Set(placedOn).count == 2 && placedOn.contains(lateServer), "one on each server: \(created.body)")

            late.process.send(SIGKILL)  // its last will: offline at once
            var servers: [String] = []
            let deadline = ContinuousClock.now + .seconds(30)
            repeat {
                try await Task.sleep(for: .milliseconds(200))
                let instances = try await fleet.api.get("/v1/deployments/spread").json?["instances"] as? [[String: Any]] ?? []
                servers = instances.compactMap { $0["server_id"] as? String }
            } while (servers.count != 2 || servers.contains(lateServer)) && ContinuousClock.now < deadline
            #expect(servers.count == 2 && !servers.contains(lateServer), "both instances on the server left: \(servers)")
            let events = try await fleet.api.get("/v1/deployments/spread/events").items.compactMap { $0["message"] as? String }
            let now = try await fleet.api.get("/v1/deployments/spread").body
            #expect(events.contains { $0.hasSuffix("left \(lateServer), which went offline") }, "\(events) \(now)")
        }
    }

    @Test("placed on the servers the agents registered, scaled, stopped, started and deleted; the events and revisions say so")
    func lifecycle() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(1, devices: 1)
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel()
            let created = try await fleet.api.send(
                "POST", "/v1/deployments",
                json: [
                    "name": "people-api", "model_id": model, "model_version": "1.0.0", "description": "people at the gates",
                    "resources": ["cpu_cores": 3, "memory_gb": 4], "scaling": ["min_replicas": 1, "max_replicas": 6, "replicas": 3],
                    "env": ["LOG_LEVEL": "debug"],
                ])
            #expect(created.status == 201, "\(created.body)")
            // One server of 8 cores holds two instances of 3: the third waits for room.
            #expect((created.json?["replicas"] as? [String: Int])?["pending"] == 1, "\(created.body)")

            // A second server registers: the pending instance is placed on it.
            let late = try await secondServer(of: fleet)
            defer { late.process.send(SIGKILL) }
            let placed = await eventually(timeout: .seconds(30)) {
                let instances = try? await fleet.api.get("/v1/deployments/people-api").json?["instances"] as? [[String: Any]]
                let servers = (instances ?? []).compactMap { $0["server_id"] as? String }
                return servers.count == 3 && Set(servers).count == 2
            }
            #expect(placed, "the pending instance is placed on the server that joined")

            // 2 servers of 8 cores hold 4 instances of 3 cores: the 5th and 6th wait for room.
            let scaled = try await fleet.api.send("POST", "/v1/deployments/people-api/scale", json: ["replicas": 6])
            let instances = scaled.json?["instances"] as? [[String: Any]] ?? []
            #expect(instances.count == 6 && instances.count { $0["state"] as? String == "pending" } == 2, "\(scaled.body)")
            #expect(scaled.json?["status"] as? String == "degraded")
            let reason = instances.first { $0["state"] as? String == "pending" }?["reason"] as? String ?? ""
            #expect(reason.hasPrefix("no online server has 3 free CPU cores and 4 GB of memory; best: "), "\(reason)")

            let gpu = try await fleet.api.send(
                "POST", "/v1/deployments",
                json: ["name": "gpu-api", "model_id": model, "model_version": "1.0.0", "resources": ["gpu_count": 1, "gpu_type": "a100"]])
            #expect(gpu.status == 422 && gpu.errorField == "resources.gpu_type", "\(gpu.body)")
            #expect(gpu.body.contains("nvidia-t4"), "the answer names the GPUs the fleet has: \(gpu.body)")

            let edited = try await fleet.api.send("PATCH", "/v1/deployments/people-api", json: ["scaling": ["replicas": 2]])
            #expect(edited.status == 200 && edited.json?["restart"] as? Bool == false, "\(edited.body)")
            #expect(try await fleet.api.send("POST", "/v1/deployments/people-api/stop").json?["status"] as? String == "stopped")
            let started = try await fleet.api.send("POST", "/v1/deployments/people-api/start")
            #expect((started.json?["instances"] as? [Any])?.count == 2, "\(started.body)")

            let listed = try await fleet.api.get("/v1/deployments").items
            #expect(listed.compactMap { $0["name"] as? String } == ["people-api"])
            let revisions = try await fleet.api.get("/v1/deployments/people-api/revisions").items.compactMap { $0["change"] as? String }
            #expect(revisions == ["edited scaling", "scaled from 3 to 6", "created"], "\(revisions)")
            let events = try await fleet.api.get("/v1/deployments/people-api/events").items.compactMap { $0["kind"] as? String }
            #expect(events.contains("pending") && events.contains("stopped") && events.contains("started") && events.last == "created", "\(events)")
            #expect(events.filter { $0 == "placed" }.count >= 5, "\(events)")

            #expect(try await fleet.api.send("DELETE", "/v1/deployments/people-api?confirm=true").status == 204)
            #expect(try await fleet.api.get("/v1/deployments/people-api").status == 404)
        }
    }

    // MARK: Instances on the agents

    /// The deployment's instances once `done` holds for them (each a JSON object), or the last
    /// seen after `timeout`.
    private func instances(
        of name: String, in fleet: Fleet, timeout: Duration = .seconds(60), until done: @Sendable ([[String: Any]]) -> Bool
    ) async throws -> [[String: Any]] {
        let deadline = ContinuousClock.now + timeout
        var instances: [[String: Any]] = []
        repeat {
            instances = try await fleet.api.get("/v1/deployments/\(name)").json?["instances"] as? [[String: Any]] ?? []
            if done(instances) { return instances }
            try await Task.sleep(for: .milliseconds(200))
        } while ContinuousClock.now < deadline
        return instances
    }

    /// Polls a deployment every 100 ms until every instance is ready on `revision`: whether it got
    /// there within 60 s, the fewest instances seen ready at once, and the most seen at once.
    private func rollOut(_ name: String, to revision: Int, in fleet: Fleet) async throws -> (done: Bool, fewestReady: Int, most: Int) {
        var (fewestReady, most) = (Int.max, 0)
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            let list = try await fleet.api.get("/v1/deployments/\(name)").json?["instances"] as? [[String: Any]] ?? []
            let ready = list.count { $0["state"] as? String == "ready" }
            if ready < fewestReady && fewestReady != .max {
                // For the failure's message: which instances stood where, and the events so far.
                let states = list.map { "\($0["id"] ?? "?") \($0["state"] ?? "?") r\($0["runs_revision"] ?? "?")" }
                let events = try await fleet.api.get("/v1/deployments/\(name)/events?limit=30").items.compactMap { $0["message"] as? String }
                print("rollOut(\(name)): \(ready) ready: \(states); events, newest first: \(events)")
            }
            fewestReady = min(fewestReady, ready)
            most = max(most, list.count)
            if list.allSatisfy({ $0["state"] as? String == "ready" && $0["runs_revision"] as? Int == revision }) {
                return (true, fewestReady, most)
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        return (false, fewestReady, most)
    }

    /// POST /v1/infer on an instance; nil when nothing answers.
    private func infer(_ instance: [String: Any], body: String) async -> HTTPResult? {
        guard let port = port(of: instance) else { return nil }
        return try? await httpRequest(port: port, method: "POST", path: "/v1/infer", body: Data(body.utf8))
    }

    @Test("instances run on the agents as HTTP model servers: ready, answering /v1/infer; an edit restarts them; stop shuts them down")
    func instancesServe() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(2, devices: 1)
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel()
            let created = try await fleet.api.send(
                "POST", "/v1/deployments",
                json: [
                    "name": "infer-api", "model_id": model, "model_version": "1.0.0",
                    "scaling": ["min_replicas": 1, "max_replicas": 4, "replicas": 3],
                    "env": ["SIM_LATENCY_MS": "30"], "load_balancer": ["health_check_path": "/healthz"],
                ])
            #expect(created.status == 201, "\(created.body)")
            let ready = try await instances(of: "infer-api", in: fleet) { list in
                list.count == 3 && list.allSatisfy { $0["state"] as? String == "ready" && $0["address"] != nil }
            }
            #expect(ready.count == 3 && ready.allSatisfy { $0["state"] as? String == "ready" }, "\(ready)")
            let deployment = try await fleet.api.get("/v1/deployments/infer-api").json
            #expect(
                deployment?["status"] as? String == "running" && (deployment?["replicas"] as? [String: Int])?["ready"] == 3, "\(deployment ?? [:])")

            // Each answers over HTTP as itself, with work and the added latency.
            for instance in ready {
                let answer = await infer(instance, body: String(repeating: "pixels ", count: 100))
                #expect(answer?.status == 200, "\(answer?.body ?? "no answer") from \(instance)")
                #expect(answer?.json?["instance_id"] as? String == instance["id"] as? String)
                #expect(answer?.json?["input_bytes"] as? Int == 700 && (answer?.json?["latency_ms"] as? Double ?? 0) >= 30, "\(answer?.body ?? "")")
                let health = try await httpRequest(port: try #require(port(of: instance)), method: "GET", path: "/healthz")
                #expect(health.status == 200, "the deployment's health check path: \(health.body)")
            }
            let events = try await fleet.api.get("/v1/deployments/infer-api/events").items.compactMap { $0["message"] as? String }
            #expect(events.filter { $0.contains(" ready on \(fleet.prefix)-") }.count == 3, "\(events)")

            // Its logs, from its agent through the gateway: the request just served is the last line.
            let first = try #require(ready.first?["id"] as? String)
            let logs = try await fleet.api.get("/v1/deployments/infer-api/instances/\(first)/logs?tail=3")
            let lines = logs.json?["lines"] as? [String] ?? []
            #expect(logs.status == 200 && lines.count == 3 && lines.last?.contains("POST /v1/infer 200") == true, "\(logs.body)")
            #expect(lines.contains { $0.hasSuffix(" ready") }, "\(lines)")

            // An edit of the environment replaces the instances by a rolling update (one new beside
            // the three old at a time, never fewer than three ready): afterwards every inference fails.
            let edited = try await fleet.api.send("PATCH", "/v1/deployments/infer-api", json: ["env": ["SIM_ERROR_RATE": "1"]])
            #expect(edited.json?["restart"] as? Bool == true, "\(edited.body)")
            let revision = try #require((edited.json?["deployment"] as? [String: Any])?["revision"] as? Int)
            let (done, fewestReady, most) = try await rollOut("infer-api", to: revision, in: fleet)
            #expect(done, "every instance replaced by one of revision \(revision)")
            #expect(fewestReady == 3 && most == 4, "never fewer than 3 ready (\(fewestReady)), never more than 4 in all (\(most))")
            for instance in try await instances(of: "infer-api", in: fleet, timeout: .zero, until: { _ in true }) {
                let answer = await infer(instance, body: "x")
                let events = try await fleet.api.get("/v1/deployments/infer-api/events?limit=40").items.compactMap { $0["message"] as? String }
                #expect(answer?.status == 500, "restarted with SIM_ERROR_RATE=1: \(instance) answered \(answer?.body ?? "nothing"); \(events)")
            }
            let restartEvents = try await fleet.api.get("/v1/deployments/infer-api/events").items.compactMap { $0["kind"] as? String }
            #expect(restartEvents.filter { $0 == "replaced" }.count == 3, "\(restartEvents)")

            // Stopped: nothing answers at the addresses; started: ready again.
            let addresses = try await instances(of: "infer-api", in: fleet, timeout: .zero) { _ in true }
            #expect(try await fleet.api.send("POST", "/v1/deployments/infer-api/stop").status == 200)
            let silent = await eventually(timeout: .seconds(30)) {
                for instance in addresses where await self.infer(instance, body: "x") != nil { return false }
                return true
            }
            #expect(silent, "a stopped deployment's instances are shut down")
            #expect(try await fleet.api.send("POST", "/v1/deployments/infer-api/start").status == 200)
            let again = try await instances(of: "infer-api", in: fleet) { list in
                list.count == 3 && list.allSatisfy { $0["state"] as? String == "ready" }
            }
            #expect(again.count == 3 && again.allSatisfy { $0["state"] as? String == "ready" }, "\(again)")
        }
    }

    @Test("update model: new instances of the new version replace the old, never fewer ready, and answer as it; a rollback brings the old one back")
    func updateAndRollback() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(2, devices: 1)
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel()
            try await fleet.addModelVersion("1.1.0", to: model)
            let created = try await fleet.api.send(
                "POST", "/v1/deployments",
                json: [
                    "name": "versioned", "model_id": model, "model_version": "1.0.0",
                    "scaling": ["min_replicas": 1, "max_replicas": 4, "replicas": 3],
                ])
            #expect(created.status == 201, "\(created.body)")
            _ = try await instances(of: "versioned", in: fleet) { list in list.count == 3 && list.allSatisfy { $0["state"] as? String == "ready" } }

            /// The version each instance says it runs when asked to infer.
            func answeredVersions() async throws -> [String] {
                var versions: [String] = []
                for instance in try await instances(of: "versioned", in: fleet, timeout: .zero, until: { _ in true }) {
                    versions.append(await infer(instance, body: "x")?.json?["version"] as? String ?? "no answer")
                }
                return versions.sorted()
            }
            #expect(try await answeredVersions() == ["1.0.0", "1.0.0", "1.0.0"])

            let updated = try await fleet.api.send("POST", "/v1/deployments/versioned/update", json: ["model_version": "1.1.0"])
            #expect(updated.status == 200, "\(updated.body)")
            let revision = try #require(updated.json?["revision"] as? Int)
            let (done, fewestReady, most) = try await rollOut("versioned", to: revision, in: fleet)
            #expect(done && fewestReady == 3 && most == 4, "every instance on revision \(revision), \(fewestReady) ready at least, \(most) at most")
            #expect(try await answeredVersions() == ["1.1.0", "1.1.0", "1.1.0"])

            let back = try await fleet.api.send("POST", "/v1/deployments/versioned/rollback")
            #expect(back.status == 200 && back.json?["model_version"] as? String == "1.0.0", "\(back.body)")
            let (returned, _, _) = try await rollOut("versioned", to: try #require(back.json?["revision"] as? Int), in: fleet)
            #expect(returned)
            #expect(try await answeredVersions() == ["1.0.0", "1.0.0", "1.0.0"])
            let changes = try await fleet.api.get("/v1/deployments/versioned/revisions").items.compactMap { $0["change"] as? String }
            #expect(changes.first == "rolled back to revision 1 (model version 1.0.0)", "\(changes)")

            // A change whose instances never become ready (their health check answers 503 for an
            // hour) is rolled back at its 5 s progress deadline, and every instance serves again.
            let stuck = try await fleet.api.send(
                "PATCH", "/v1/deployments/versioned",
                json: ["env": ["SIM_STARTUP_SECONDS": "3600"], "update_strategy": ["progress_deadline_seconds": 5]])
            #expect(stuck.status == 200 && stuck.json?["restart"] as? Bool == true, "\(stuck.body)")
            var latest: [String] = []
            let rolledBack = await eventually(timeout: .seconds(40), interval: .milliseconds(500)) {
                latest = (try? await fleet.api.get("/v1/deployments/versioned/revisions").items.compactMap { $0["change"] as? String }) ?? []
                return latest.first?.contains("became ready within 5 s") == true
            }
            #expect(rolledBack, "rolled back at the deadline: \(latest)")
            let current = try #require(try await fleet.api.get("/v1/deployments/versioned").json?["revision"] as? Int)
            let (recovered, _, _) = try await rollOut("versioned", to: current, in: fleet)
            #expect(recovered, "every instance ready again on revision \(current)")
            #expect(try await answeredVersions() == ["1.0.0", "1.0.0", "1.0.0"])
        }
    }

    @Test("the orchestrator killed during a create, and right after a scale: restarted, it converges to every instance ready")
    func orchestratorKilledMidCreate() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(2, devices: 1)
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel()
            let body =
                #"{"name": "survivor", "model_id": "\#(model)", "model_version": "1.0.0", "scaling": {"min_replicas": 1, "max_replicas": 6, "replicas": 3}}"#
            // SIGKILL while the create is under way: it committed or it did not, nothing between.
            let api = fleet.api
            let request = Task { try? await api.send("POST", "/v1/deployments", json: body) }
            try await Task.sleep(for: .milliseconds(15))
            try await fleet.restartOrchestrator(killing: SIGKILL)
            _ = await request.value
            if try await fleet.api.get("/v1/deployments/survivor").status == 404 {
                #expect(try await fleet.api.send("POST", "/v1/deployments", json: body).status == 201, "the operator's retry")
            }
            let ready = try await instances(of: "survivor", in: fleet) { list in
                list.count == 3 && list.allSatisfy { $0["state"] as? String == "ready" }
            }
            #expect(ready.count == 3 && ready.allSatisfy { $0["state"] as? String == "ready" }, "\(ready)")

            // Killed right after a scale was answered, before or after its documents went out.
            #expect(try await fleet.api.send("POST", "/v1/deployments/survivor/scale", json: ["replicas": 6]).status == 200)
            try await fleet.restartOrchestrator(killing: SIGKILL)
            let scaled = try await instances(of: "survivor", in: fleet) { list in
                list.count == 6 && list.allSatisfy { $0["state"] as? String == "ready" }
            }
            #expect(scaled.count == 6 && scaled.allSatisfy { $0["state"] as? String == "ready" }, "\(scaled)")
        }
    }

    @Test("a process instance gets its port in PORT, is ready when its health check answers, and is restarted after it crashes")
    func processInstanceRestarted() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(1, devices: 1, options: ["--allow-process-instances"])
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel()
            // Serves /health on $PORT for two seconds, then exits with status 3.
            let server = """
                import http.server, os, threading
                class H(http.server.BaseHTTPRequestHandler):
                    def do_GET(self):
                        self.send_response(200); self.end_headers(); self.wfile.write(os.environ["MODEL_VERSION"].encode())
                threading.Timer(2, lambda: os._exit(3)).start()
                print("serving", os.environ["INSTANCE_ID"], flush=True)
                http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
                """
            let created = try await fleet.api.send(
                "POST", "/v1/deployments",
                json: [
                    "name": "crashy", "model_id": model, "model_version": "1.0.0",
                    "runtime": ["kind": "process", "command": ["python3", "-c", server]],
                ])
            #expect(created.status == 201, "\(created.body)")
            let restarted = try await instances(of: "crashy", in: fleet) { list in
                (list.first?["restarts"] as? Int ?? 0) >= 1 && list.first?["state"] as? String == "ready"
            }
            #expect((restarted.first?["restarts"] as? Int ?? 0) >= 1 && restarted.first?["state"] as? String == "ready", "\(restarted)")
            let events = try await fleet.api.get("/v1/deployments/crashy/events").items.compactMap { $0["message"] as? String }
            #expect(events.contains { $0.contains("failed on \(fleet.prefix)-0001: exited with status 3; restarting in") }, "\(events)")
            #expect(events.filter { $0.contains(" ready on ") }.count >= 2, "ready, crashed, ready again: \(events)")
            // The process's own output, across its restarts.
            let id = try #require(restarted.first?["id"] as? String)
            let lines = try await fleet.api.get("/v1/deployments/crashy/instances/\(id)/logs").json?["lines"] as? [String] ?? []
            #expect(lines.filter { $0 == "serving \(id)" }.count >= 2, "\(lines)")
        }
    }

    @Test("an agent that does not allow process instances says so, and the instance is failed with that reason")
    func processInstancesRefused() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(1, devices: 1)
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel()
            _ = try await fleet.api.send(
                "POST", "/v1/deployments",
                json: ["name": "refused", "model_id": model, "model_version": "1.0.0", "runtime": ["kind": "process", "command": ["true"]]])
            let failed = try await instances(of: "refused", in: fleet) { $0.first?["state"] as? String == "failed" }
            let reason = failed.first?["reason"] as? String ?? ""
            #expect(reason.contains("process instances are not allowed on this server"), "\(failed)")
        }
    }
}
