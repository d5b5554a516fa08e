import Foundation
import TestSupport
import Testing

/// Deployments through the real registry and orchestrator, with servers registered by simulated
/// agents (8 cores, 16 GB and one `nvidia-t4` each). The answers are recorded and checked against
/// the contract by `scripts/check-contracts`.
@Suite("Deployments end to end")
struct DeploymentProcessTests {
    /// One more simulated agent (its server `<prefix>-late-0001`) in a process of its own.
    private func secondServer(of fleet: Fleet) throws -> ServiceProcess {
        try ServiceProcess(
            "edge-agent",
            arguments: [
                "simulate", "--agents", "1", "--devices", "1", "--id-prefix", "\(fleet.prefix)-late", "--site-prefix", "\(fleet.prefix)-site",
                "--state-dir", try TestEnvironment.current().makeScratchDirectory("late-agent").path, "--mqtt-url", fleet.broker.url,
                "--heartbeat-seconds", "1",
            ])
    }

    @Test("a server killed with SIGKILL: after the grace period its instances are placed on the servers left")
    func serverLost() async throws {
        try await withFleet(orchestratorEnvironment: ["MODELFLEET_DEPLOYMENT_OFFLINE_GRACE_SECONDS": "1"]) { fleet in
            let agents = try await fleet.startAgents(1, devices: 1)
            defer { agents.process.send(SIGKILL) }
            let late = try secondServer(of: fleet)
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
            let late = try secondServer(of: fleet)
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
}
