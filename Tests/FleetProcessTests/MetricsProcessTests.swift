import ChildProcesses
import FleetContract
import Foundation
import MQTT
import TestSupport
import Testing

/// The metrics aggregator end to end: simulated agents run a deployment's built-in instances,
/// the test sends them requests over HTTP, the agents report every second through the gateway,
/// and the aggregator's REST API, snapshots and `/metrics` must count exactly what was sent.
@Suite("Metrics aggregator end to end", .serialized)
struct MetricsProcessTests {
    private func readyInstances(_ name: String, count: Int, in fleet: Fleet) async throws -> [[String: Any]] {
        var ready: [[String: Any]] = []
        _ = await eventually(timeout: .seconds(60), interval: .milliseconds(300)) {
            ready = (try? await fleet.api.get("/v1/deployments/\(name)").json?["instances"] as? [[String: Any]]) ?? []
            return ready.count == count && ready.allSatisfy { $0["state"] as? String == "ready" && $0["address"] != nil }
        }
        return ready
    }

    @Test("every request sent to the instances is counted once: rate, errors, percentiles per deployment, version and instance")
    func countsWhatWasSent() async throws {
        try await withFleet { fleet in
            let aggregator = try ServiceProcess("metrics-aggregator", environment: ["MODELFLEET_MQTT_URL": fleet.broker.url])
            defer { aggregator.process.send(SIGKILL) }
            try await aggregator.waitUntilReady()
            let agents = try await fleet.startAgents(2, devices: 1)
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel()
            let created = try await fleet.api.send(
                "POST", "/v1/deployments",
                json: [
                    "name": "measured", "model_id": model, "model_version": "1.0.0", "env": ["SIM_LATENCY_MS": "20"],
                    "scaling": ["min_replicas": 1, "max_replicas": 2, "replicas": 2],
                ])
            #expect(created.status == 201, "\(created.body)")
            let instances = try await readyInstances("measured", count: 2, in: fleet)
            try #require(instances.count == 2, "\(instances)")
            let ports = instances.compactMap(port(of:))
            let ids = instances.compactMap { $0["id"] as? String }
            let server = try #require(instances.first?["server_id"] as? String)
            // The second instance fails every inference from now on.
            let sim = try await httpRequest(port: ports[1], method: "PUT", path: "/sim", body: Data(#"{"error_rate": 1}"#.utf8))
            #expect(sim.status == 204, "\(sim.body)")

            try await withConnectedClient(try testMQTTConfiguration("snapshots", url: fleet.broker.url)) { client in
                let snapshots = try await client.subscribe(to: Topic.deploymentMetrics(try TopicLevel("measured")).path)
                // 30 requests to the first, 10 to the second: 40 answered, 10 failed.
                for _ in 0..<30 {
                    let answer = try await httpRequest(port: ports[0], method: "POST", path: "/v1/infer", body: Data("pixels".utf8))
                    #expect(answer.status == 200)
                }
                for _ in 0..<10 {
                    let answer = try await httpRequest(port: ports[1], method: "POST", path: "/v1/infer", body: Data("pixels".utf8))
                    #expect(answer.status == 500)
                }

                // Within a few seconds every request is in the last minute's figures, once.
                var figures: [String: Any] = [:]
                let counted = await eventually(timeout: .seconds(15), interval: .milliseconds(500)) {
                    figures = (try? await aggregator.get("/v1/deployments/measured/metrics?window=1m").json) ?? [:]
                    return (figures["figures"] as? [String: Any])?["requests"] as? Int == 40
                }
                #expect(counted, "\(figures)")
                let overall = try #require(figures["figures"] as? [String: Any])
                #expect(overall["errors"] as? Int == 10 && overall["error_ratio"] as? Double == 0.25, "\(overall)")
                let latency = try #require(overall["latency_ms"] as? [String: Double])
                // Every request slept 20 ms: no percentile below it, and none absurdly above.
                #expect((latency["p50"] ?? 0) >= 20 && (latency["p99"] ?? 0) >= (latency["p50"] ?? 0) && (latency["p99"] ?? 0) < 1_000, "\(latency)")
                #expect((overall["cpu_utilization"] as? Double ?? 0) > 0, "built-in instances' CPU follows their requests: \(overall)")
                // In flight on average over the minute: its request-seconds, each of the 40 at least 20 ms, one at a time.
                let requestSeconds = (overall["in_flight"] as? Double ?? 0) * 60
                #expect(requestSeconds >= 0.8 && requestSeconds < 20, "\(overall)")
                #expect(figures["ready_instances"] as? Int == 2 && figures["instances"] as? Int == 2, "\(figures)")
                let perInstance = Dictionary(
                    uniqueKeysWithValues: (figures["instance_figures"] as? [[String: Any]] ?? []).compactMap { entry in
                        (entry["instance_id"] as? String).map { ($0, entry["figures"] as? [String: Any] ?? [:]) }
                    })
                #expect(perInstance[ids[0]]?["requests"] as? Int == 30 && perInstance[ids[0]]?["errors"] as? Int == 0, "\(perInstance)")
                #expect(perInstance[ids[1]]?["requests"] as? Int == 10 && perInstance[ids[1]]?["errors"] as? Int == 10, "\(perInstance)")
                let versions = figures["versions"] as? [[String: Any]] ?? []
                #expect(versions.count == 1 && versions.first?["version"] as? String == "1.0.0", "\(versions)")

                // The snapshot every second, for the autoscaler and the rollouts.
                let received = try await snapshots.collect(2, timeout: .seconds(10))
                let snapshot = try Envelope<DeploymentMetricsSnapshot>.decode(from: try #require(received.last).payload).payload
                #expect(snapshot.deployment == "measured" && snapshot.readyInstances == 2 && snapshot.newestDataAgeSeconds < 3, "\(snapshot)")

                // Per server and site, and the fleet's top.
                let serverFigures = try await aggregator.get("/v1/servers/\(server)/metrics?window=5m")
                #expect(
                    serverFigures.status == 200 && ((serverFigures.json?["figures"] as? [String: Any])?["requests"] as? Int ?? 0) > 0,
                    "\(serverFigures.body)")
                let site = try await aggregator.get("/v1/sites/\(fleet.site)/metrics?window=5m")
                #expect((site.json?["figures"] as? [String: Any])?["requests"] as? Int == 40, "\(site.body)")
                let top = try await aggregator.get("/v1/metrics/top?by=errors&window=5m")
                #expect(top.items.first?["deployment"] as? String == "measured", "\(top.body)")
                let series = try await aggregator.get("/v1/deployments/measured/metrics/series?range=1m&step=10s")
                let points = series.json?["points"] as? [[String: Any]] ?? []
                let total = points.compactMap { ($0["figures"] as? [String: Any])?["requests"] as? Int }.reduce(0, +)
                #expect(points.count == 6 && total == 40, "\(series.body)")

                // Prometheus: the deployment's gauges.
                let metrics = try await aggregator.get("/metrics")
                #expect(metrics.body.contains(#"modelfleet_deployment_error_ratio{deployment="measured"} 0.25"#), "\(metrics.body.suffix(3_000))")
                #expect(metrics.body.contains(#"modelfleet_deployment_ready_instances{deployment="measured"} 2"#))
                #expect(metrics.body.contains(#"modelfleet_deployment_latency_seconds{deployment="measured",quantile="0.99"}"#))
            }

            // Bad input: a clear 400 naming the parameter, and 404 for what has no figures.
            let badWindow = try await aggregator.get("/v1/deployments/measured/metrics?window=7d")
            #expect(badWindow.status == 400 && badWindow.errorField == "window", "\(badWindow.body)")
            let badStep = try await aggregator.get("/v1/deployments/measured/metrics/series?range=1h&step=10s")
            #expect(badStep.status == 400 && badStep.errorField == "step", "\(badStep.body)")
            let badOrder = try await aggregator.get("/v1/metrics/top?by=color")
            #expect(badOrder.status == 400 && badOrder.errorField == "by", "\(badOrder.body)")
            let unknown = try await aggregator.get("/v1/deployments/nobody/metrics")
            #expect(unknown.status == 404, "\(unknown.body)")

            // fleetctl, through the generated client: the table, the JSON, and the service's refusals.
            let metricsURL = ["FLEETCTL_METRICS_URL": "http://127.0.0.1:\(aggregator.port)"]
            let table = try await fleetctl(["deployments", "metrics", "measured", "--window", "5m"], fleet: fleet, environment: metricsURL)
            #expect(table.status == 0, "\(table.stderr)")
            let rows = table.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
            #expect(rows.contains { $0.first == "all" && $0.last == "ready" && $0.contains("25.0%") }, "\(table.stdout)")
            #expect(ids.allSatisfy { id in rows.contains { $0.first == id } }, "\(table.stdout)")
            let json = try await fleetctl(["deployments", "metrics", "measured", "--output", "json"], fleet: fleet, environment: metricsURL)
            let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
            #expect((object?["instance_figures"] as? [Any])?.count == 2 && object?["deployment"] as? String == "measured", "\(json.stdout)")
            #expect((object?["at"] as? String)?.hasSuffix("Z") == true, "\(json.stdout)")
            let missing = try await fleetctl(["deployments", "metrics", "nobody"], fleet: fleet, environment: metricsURL)
            #expect(missing.status == 2 && missing.stderr.contains("no figures for deployment 'nobody'"), "\(missing.stderr)")
            let refused = try await fleetctl(["deployments", "metrics", "measured", "--window", "7d"], fleet: fleet, environment: metricsURL)
            #expect(refused.status == 2 && refused.stderr.contains("window"), "\(refused.stderr)")
            let top = try await fleetctl(["deployments", "top", "--by", "errors", "--window", "5m"], fleet: fleet, environment: metricsURL)
            let topRows = top.stdout.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
            #expect(
                top.status == 0 && top.stdout.hasPrefix("by errors, last 300 s") && topRows.dropFirst(2).first?.first == "measured", "\(top.output)")
            #expect(topRows.dropFirst(2).first?.contains("25.0%") == true, "\(top.stdout)")
            let badRanking = try await fleetctl(["deployments", "top", "--by", "colour"], fleet: fleet, environment: metricsURL)
            #expect(badRanking.status == 64 && badRanking.stderr.contains("not one of rate, errors, p99"), "\(badRanking.output)")
            let keyless = try await fleetctl(
                ["deployments", "metrics", "measured"], fleet: fleet, environment: metricsURL.merging(["FLEETCTL_API_KEY": ""]) { $1 })
            #expect(keyless.status == 2 && keyless.stderr.contains("an API key is required"), "\(keyless.stderr)")

            // The agents gone: their instances are stale, absent from the latest seconds (not 0 requests
            // that look like idle instances), and the data's age says so.
            agents.process.send(SIGKILL)
            _ = await agents.process.waitForExit(timeout: .seconds(10))
            var after: [String: Any] = [:]
            let stale = await eventually(timeout: .seconds(15), interval: .milliseconds(500)) {
                after = (try? await aggregator.get("/v1/deployments/measured/metrics?window=1m").json) ?? [:]
                let entries = after["instance_figures"] as? [[String: Any]] ?? []
                return after["instances"] as? Int == 0 && entries.count == 2 && entries.allSatisfy { $0["stale"] as? Bool == true }
            }
            #expect(stale, "\(after)")
            #expect((after["newest_data_age_seconds"] as? Double ?? 0) > 3, "\(after)")
            #expect((after["figures"] as? [String: Any])?["requests"] as? Int == 40, "what was counted stays counted: \(after)")
        }
    }

    /// Whether `aggregator`'s /metrics has `deployment`'s rate gauge: it is that deployment's owner.
    private func exposes(_ aggregator: ServiceProcess, _ deployment: String) async -> Bool {
        let text = (try? await aggregator.get("/metrics").body) ?? ""
        return text.contains("modelfleet_deployment_requests_per_second{deployment=\"\(deployment)\"}")
    }

    @Test("two replicas: each deployment's snapshot and gauges come from one, both answer in full, and the other takes over when it dies")
    func replicas() async throws {
        try await withFleet { fleet in
            let environment = { (id: String) in ["MODELFLEET_MQTT_URL": fleet.broker.url, "MODELFLEET_INSTANCE_ID": id] }
            let first = try ServiceProcess("metrics-aggregator", environment: environment("aggregator-a"))
            defer { first.process.send(SIGKILL) }
            let second = try ServiceProcess("metrics-aggregator", environment: environment("aggregator-b"))
            defer { second.process.send(SIGKILL) }
            try await first.waitUntilReady()
            try await second.waitUntilReady()
            let agents = try await fleet.startAgents(1, devices: 1)
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel()
            let created = try await fleet.api.send(
                "POST", "/v1/deployments",
                json: [
                    "name": "shared", "model_id": model, "model_version": "1.0.0", "scaling": ["min_replicas": 1, "max_replicas": 1, "replicas": 1],
                ])
            #expect(created.status == 201, "\(created.body)")
            let instances = try await readyInstances("shared", count: 1, in: fleet)
            let port = try #require(instances.first.flatMap(port(of:)))
            for _ in 0..<20 {
                #expect(try await httpRequest(port: port, method: "POST", path: "/v1/infer", body: Data("x".utf8)).status == 200)
            }

            // Both count every request; one of them, and only one, exposes the deployment's gauges.
            let bothCounted = await eventually(timeout: .seconds(15), interval: .milliseconds(500)) {
                for replica in [first, second] {
                    let figures = try? await replica.get("/v1/deployments/shared/metrics?window=5m").json?["figures"] as? [String: Any]
                    if figures?["requests"] as? Int != 20 { return false }
                }
                return true
            }
            #expect(bothCounted)
            var owners: [ServiceProcess] = []
            _ = await eventually(timeout: .seconds(10), interval: .milliseconds(500)) {
                owners = []
                for replica in [first, second] where await self.exposes(replica, "shared") { owners.append(replica) }
                return owners.count == 1
            }
            try #require(owners.count == 1, "exactly one replica exposes the deployment's gauges: \(owners.map(\.name))")
            let owner = owners[0]
            let other = owner === first ? second : first

            try await withConnectedClient(try testMQTTConfiguration("replica-snapshots", url: fleet.broker.url)) { client in
                let snapshots = try await client.subscribe(to: Topic.deploymentMetrics(try TopicLevel("shared")).path, bufferCapacity: 1_000)
                // One snapshot a second, not one per replica.
                let received = await snapshots.drain(for: .seconds(4))
                #expect((3...5).contains(received.count), "snapshots in 4 s: \(received.count)")

                // The owner dies: the other publishes from then on, with every request still counted.
                owner.process.send(SIGKILL)
                _ = await owner.process.waitForExit(timeout: .seconds(10))
                let tookOver = await eventually(timeout: .seconds(10), interval: .milliseconds(300)) { await self.exposes(other, "shared") }
                #expect(tookOver, "the remaining replica exposes the deployment's gauges")
                // Snapshots go on, from the survivor (a new subscription: a drained one is finished).
                let survivor = try await client.subscribe(to: Topic.deploymentMetrics(try TopicLevel("shared")).path)
                let after = try await survivor.collect(2, timeout: .seconds(5))
                let snapshot = try Envelope<DeploymentMetricsSnapshot>.decode(from: try #require(after.last).payload).payload
                #expect(snapshot.deployment == "shared" && snapshot.instances == 1, "\(snapshot)")
                let figures = try await other.get("/v1/deployments/shared/metrics?window=5m").json?["figures"] as? [String: Any]
                #expect(figures?["requests"] as? Int == 20, "no gap: \(figures ?? [:])")
            }
        }
    }
}
