import ChildProcesses
import FleetContract
import Foundation
import TestSupport
import Testing

/// The autoscaler end to end: real HTTP load on built-in instances (whose CPU follows their
/// load), the agents' figures through the gateway to the metrics aggregator, its snapshots to the
/// autoscaler, whose decisions the orchestrator applies.
@Suite("Autoscaler end to end", .serialized)
struct AutoscalerProcessTests {
    private func deployment(_ fleet: Fleet) async throws -> [String: Any] {
        try await fleet.api.get("/v1/deployments/elastic").json ?? [:]
    }

    private func readyPorts(_ fleet: Fleet) async -> [Int] {
        let instances = (try? await deployment(fleet)["instances"] as? [[String: Any]]) ?? []
        return instances.compactMap { instance in
            guard instance["state"] as? String == "ready" else { return nil }
            return port(of: instance)
        }
    }

    private func events(_ fleet: Fleet) async -> [String] {
        ((try? await fleet.api.get("/v1/deployments/elastic/events?limit=50").items) ?? []).compactMap { $0["message"] as? String }
    }

    @Test("load up: instances added up to what the fleet can place, and say so; load gone: removed after the window")
    func scalesWithLoad() async throws {
        try await withFleet { fleet in
            let environment = ["MODELFLEET_MQTT_URL": fleet.broker.url]
            let aggregator = try ServiceProcess("metrics-aggregator", environment: environment)
            defer { aggregator.process.send(SIGKILL) }
            let autoscaler = try ServiceProcess("autoscaler", environment: environment)
            defer { autoscaler.process.send(SIGKILL) }
            try await aggregator.waitUntilReady()
            try await autoscaler.waitUntilReady()
            try await withBalancer(fleet) { balancer in try await scale(fleet, balancer: balancer, autoscaler: autoscaler) }
        }
    }

    private func scale(_ fleet: Fleet, balancer: Balancer, autoscaler: ServiceProcess) async throws {
        // Two servers of 8 cores: four instances of 4 cores fit, no more.
        let agents = try await fleet.startAgents(2, devices: 1)
        defer { agents.process.send(SIGKILL) }
        let model = try await fleet.createModel()
        let created = try await fleet.api.send(
            "POST", "/v1/deployments",
            json: [
                "name": "elastic", "model_id": model, "model_version": "1.0.0", "env": ["SIM_LATENCY_MS": "100"],
                "resources": ["cpu_cores": 4, "memory_gb": 1], "load_balancer": ["health_check_interval_seconds": 1],
                "scaling": [
                    "min_replicas": 1, "max_replicas": 8, "replicas": 1, "autoscaling": true, "target_cpu_percent": 50,
                    "scale_down_stabilization_seconds": 5,
                ],
            ])
        #expect(created.status == 201, "\(created.body)")
        let first = await eventually(timeout: .seconds(30)) { await self.readyPorts(fleet).count == 1 }
        try #require(first, "the first instance is ready")
        let served = await eventually(timeout: .seconds(30)) { (try? await balancer.infer("elastic").status) == 200 }
        try #require(served, "the load balancer serves it")

        // wrk through the load balancer, 24 connections each a request at a time: 24 instance-
        // seconds of work a second, six times what one instance of 4 cores holds at 100 %,
        // twelve times its 50 % target.
        let scratch = try TestEnvironment.current().makeScratchDirectory("autoscaler-load")
        let script = scratch.appendingPathComponent("post.lua")
        try "wrk.method = \"POST\"\nwrk.body = \"pixels\"\n".write(to: script, atomically: true, encoding: .utf8)
        let load = try ChildProcess(
            executable: "/usr/bin/wrk",
            arguments: ["-t", "2", "-c", "24", "-d", "300s", "-s", script.path, "http://127.0.0.1:\(balancer.traffic)/d/elastic/v1/infer"],
            environment: [:], outputFile: scratch.appendingPathComponent("wrk.log"))
        defer { load.send(SIGKILL) }

        // Up to the four instances the fleet can place, each ready, the capacity named.
        var replicas = 0
        let grown = await eventually(timeout: .seconds(40), interval: .milliseconds(500)) {
            replicas = ((try? await self.deployment(fleet)["replicas"] as? [String: Any])?["desired"] as? Int) ?? 0
            guard replicas == 4 else { return false }
            return await self.readyPorts(fleet).count == 4
        }
        let afterGrowth = await events(fleet)
        #expect(grown, "4 instances wanted and ready under load; wanted \(replicas); \(afterGrowth)")
        let upEvents = await events(fleet).filter { $0.contains("autoscaled from") }
        #expect(upEvents.contains { $0.contains("cpu at") && $0.contains("of its 50 % target") }, "\(upEvents)")
        var latest: [String: Any] = [:]
        let limited = await eventually(timeout: .seconds(15), interval: .milliseconds(500)) {
            latest = ((try? await autoscaler.get("/v1/deployments/elastic/autoscaling").json?["latest"]) as? [String: Any]) ?? [:]
            return (latest["reason"] as? String)?.contains("placeable 4: no online server has 4 free CPU cores") == true
        }
        #expect(limited, "the autoscaler says the fleet holds no more: \(latest)")
        let answer = try await autoscaler.get("/v1/deployments/elastic/autoscaling")
        #expect(answer.status == 200 && ((answer.json?["decisions"] as? [[String: Any]])?.isEmpty == false), "\(answer.body)")
        // fleetctl, through the generated client: the same recommendation and decisions.
        let autoscalerURL = ["FLEETCTL_AUTOSCALER_URL": "http://127.0.0.1:\(autoscaler.port)"]
        let shown = try await fleetctl(["deployments", "autoscaling", "elastic"], fleet: fleet, environment: autoscalerURL)
        #expect(
            shown.status == 0 && shown.stdout.contains("elastic: autoscaling on") && shown.stdout.contains("targets: cpu 50 %"), "\(shown.output)")
        #expect(shown.stdout.contains("no online server has 4 free CPU cores") && shown.stdout.contains("autoscaled") == false, "\(shown.stdout)")
        let shownJSON = try await fleetctl(["deployments", "autoscaling", "elastic", "--output", "json"], fleet: fleet, environment: autoscalerURL)
        #expect(
            (shownJSON.object["decisions"] as? [[String: Any]])?.isEmpty == false && shownJSON.object["max_replicas"] as? Int == 8,
            "\(shownJSON.stdout)")
        let unknownName = try await fleetctl(["deployments", "autoscaling", "nobody"], fleet: fleet, environment: autoscalerURL)
        #expect(unknownName.status == 2 && unknownName.stderr.contains("no deployment named 'nobody'"), "\(unknownName.output)")

        // The load gone: back to one instance once the 5 s window has passed.
        load.send(SIGINT)
        _ = await load.waitForExit(timeout: .seconds(10))
        #expect(load.output.contains("requests in"), "wrk ran: \(load.output)")
        let shrunk = await eventually(timeout: .seconds(60), interval: .milliseconds(500)) {
            ((try? await self.deployment(fleet)["replicas"] as? [String: Any])?["desired"] as? Int) == 1
        }
        let afterShrink = await events(fleet)
        #expect(shrunk, "back to min_replicas without load: \(afterShrink)")
        #expect(afterShrink.contains { $0.contains("autoscaled from") && $0.contains(" to 1: ") }, "\(afterShrink)")

        // On requests in flight instead of CPU: the same 24 connections are 24 requests in progress
        // (each sleeps 100 ms), so a target of 8 per instance asks for 3.
        let retargeted = try await fleet.api.send(
            "PATCH", "/v1/deployments/elastic", json: ["scaling": ["target_cpu_percent": NSNull(), "target_in_flight_requests": 8]])
        #expect(retargeted.status == 200, "\(retargeted.body)")
        let again = try ChildProcess(
            executable: "/usr/bin/wrk",
            arguments: ["-t", "2", "-c", "24", "-d", "300s", "-s", script.path, "http://127.0.0.1:\(balancer.traffic)/d/elastic/v1/infer"],
            environment: [:], outputFile: scratch.appendingPathComponent("wrk-in-flight.log"))
        defer { again.send(SIGKILL) }
        var inFlightEvents: [String] = []
        let onInFlight = await eventually(timeout: .seconds(30), interval: .milliseconds(500)) {
            inFlightEvents = await self.events(fleet).filter { $0.contains("autoscaled from 1 to ") && $0.contains("in-flight requests at") }
            return !inFlightEvents.isEmpty
        }
        let afterRetarget = await events(fleet)
        #expect(onInFlight && inFlightEvents.allSatisfy { $0.contains("against its 8.0 target") }, "\(afterRetarget)")

        // Bad input: an unknown deployment is a 404.
        #expect(try await autoscaler.get("/v1/deployments/nobody/autoscaling").status == 404)
    }
}
