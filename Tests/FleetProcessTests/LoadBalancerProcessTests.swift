import Foundation
import TestSupport
import Testing

/// The load-balancer with its real HAProxy in front of real instances run by simulated agents:
/// the traffic goes through HAProxy, the instance that answered says who it is.
@Suite("Load balancer end to end", .serialized, .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/sbin/haproxy")))
struct LoadBalancerProcessTests {
    /// A deployment of the built-in runtime with `replicas` instances, once all are ready and
    /// the balancer has each one up.
    private func deploy(
        _ name: String, replicas: Int, balancer: Balancer, fleet: Fleet, model: String,
        loadBalancer: String = #"{"health_check_interval_seconds": 1}"#
    ) async throws {
        let body = #"""
            {"name": "\#(name)", "model_id": "\#(model)", "model_version": "1.0.0", "resources": {"cpu_cores": 0.5, "memory_gb": 0.5},
             "scaling": {"min_replicas": 1, "max_replicas": 8, "replicas": \#(replicas)}, "load_balancer": \#(loadBalancer)}
            """#
        let created = try await fleet.api.send("POST", "/v1/deployments", json: body)
        #expect(created.status == 201, "\(created.body)")
        #expect(created.json?["endpoint"] as? String == "/d/\(name)/")
        try await waitForServers(name, count: replicas, balancer: balancer)
    }

    /// Until the balancer has `count` servers of the deployment, every one UP.
    private func waitForServers(_ name: String, count: Int, balancer: Balancer) async throws {
        let up = await eventually(timeout: .seconds(60), interval: .milliseconds(200)) {
            let servers = (try? await balancer.service.get("/v1/endpoints/\(name)").json?["servers"] as? [[String: Any]]) ?? []
            return servers.count == count && servers.allSatisfy { $0["health"] as? String == "UP" }
        }
        let seen = try await balancer.service.get("/v1/endpoints/\(name)").body
        #expect(up, "\(count) servers of \(name) up: \(seen)")
    }

    /// Which instance answered each of `count` requests.
    private func spread(_ name: String, count: Int, balancer: Balancer, headers: [String: String] = [:]) async throws -> [String: Int] {
        var answered: [String: Int] = [:]
        for _ in 0..<count {
            let answer = try await balancer.infer(name, headers: headers)
            answered[answer.json?["instance_id"] as? String ?? "status \(answer.status)", default: 0] += 1
        }
        return answered
    }

    @Test(
        "canary: a version failing a fifth of its requests, then a slow one, rolled back at their first step; an orchestrator killed mid-canary resumes"
    )
    func canaryRolledBack() async throws {
        try await withFleet { fleet in
            let aggregator = try ServiceProcess("metrics-aggregator", environment: ["MODELFLEET_MQTT_URL": fleet.broker.url])
            defer { aggregator.process.send(SIGKILL) }
            try await aggregator.waitUntilReady()
            let agents = try await fleet.startAgents(1, devices: 1)
            defer { agents.process.send(SIGKILL) }
            try await withBalancer(fleet) { balancer in try await checkCanary(balancer, fleet) }
        }
    }

    private func checkCanary(_ balancer: Balancer, _ fleet: Fleet) async throws {
        let model = try await fleet.createModel()
        for version in ["1.1.0", "1.2.0", "1.3.0", "1.4.0"] { try await fleet.addModelVersion(version, to: model) }
        // 1.1.0 fails a fifth of its inferences, 1.2.0 takes 50 ms more for each, 1.3.0 is sound.
        let body = #"""
            {"name": "birds", "model_id": "\#(model)", "model_version": "1.0.0", "resources": {"cpu_cores": 0.5, "memory_gb": 0.5},
             "scaling": {"min_replicas": 1, "max_replicas": 8, "replicas": 4}, "load_balancer": {"health_check_interval_seconds": 1},
             "env": {"SIM_ERROR_RATE": "0.2", "SIM_ERROR_VERSION": "1.1.0", "SIM_LATENCY_MS": "50", "SIM_LATENCY_VERSION": "1.2.0"},
             "update_strategy": {"type": "canary", "canary_steps": [25, 100], "step_seconds": 600,
                                 "analysis": {"max_error_percent": 5, "max_p99_ratio": 3, "min_requests": 20}}}
            """#
        let created = try await fleet.api.send("POST", "/v1/deployments", json: body)
        #expect(created.status == 201, "\(created.body)")
        try await waitForServers("birds", count: 4, balancer: balancer)

        // Constant load through HAProxy, each answer counted by version, errors by the time they came.
        let load = Task { [balancer] in
            var answers: [String: Int] = [:]
            while !Task.isCancelled {
                let answer = try? await balancer.infer("birds")
                let key = answer.map { $0.status == 200 ? ($0.json?["version"] as? String ?? "?") : "status \($0.status)" } ?? "no answer"
                answers[key, default: 0] += 1
            }
            return answers
        }
        let updated = try await fleet.api.send("POST", "/v1/deployments/birds/update", json: ["model_version": "1.1.0"])
        #expect(updated.status == 200, "\(updated.body)")
        var changes: [String] = []
        let rolledBack = await eventually(timeout: .seconds(60), interval: .milliseconds(250)) {
            changes = (try? await fleet.api.get("/v1/deployments/birds/revisions").items.compactMap { $0["change"] as? String }) ?? []
            return changes.first?.contains("canary analysis at 25 % (step 1 of 2): errors ") == true
        }
        #expect(rolledBack, "rolled back by the analysis: \(changes.prefix(2))")
        try await waitForServers("birds", count: 4, balancer: balancer)
        load.cancel()
        let answers = await load.value
        let total = answers.values.reduce(0, +)
        let errors = answers["status 500"] ?? 0
        // The canary had a quarter of the requests, a fifth of those failed: errors are about 5 %
        // of the requests while it served, and fewer over the whole run; none was a refusal.
        #expect((answers["1.1.0"] ?? 0) > 0 && errors > 0, "the canary served, and failed some: \(answers)")
        #expect(Double(errors) < Double(total) * 0.1, "errors only in the canary's share: \(answers)")
        #expect(answers.keys.allSatisfy { ["1.0.0", "1.1.0", "status 500"].contains($0) }, "\(answers)")
        let after = try await fleet.api.get("/v1/deployments/birds")
        #expect(after.json?["model_version"] as? String == "1.0.0" && after.json?["rollout"] is NSNull, "\(after.body)")
        #expect(after.json?["status"] as? String == "degraded" && (after.json?["rolled_back_because"] as? String)?.contains("errors ") == true)
        for _ in 0..<30 {
            let answer = try await balancer.infer("birds")
            #expect(answer.status == 200 && answer.json?["version"] as? String == "1.0.0", "\(answer.status) \(answer.body)")
        }

        // A slow version: its p99 above 3 × the stable one's, rolled back on latency.
        let slowLoad = Task { [balancer] in
            while !Task.isCancelled { _ = try? await balancer.infer("birds") }
        }
        #expect(try await fleet.api.send("POST", "/v1/deployments/birds/update", json: ["model_version": "1.2.0"]).status == 200)
        let slowRolledBack = await eventually(timeout: .seconds(60), interval: .milliseconds(250)) {
            changes = (try? await fleet.api.get("/v1/deployments/birds/revisions").items.compactMap { $0["change"] as? String }) ?? []
            return changes.first?.contains("× the stable version's") == true
        }
        slowLoad.cancel()
        #expect(slowRolledBack, "rolled back on latency: \(changes.prefix(2))")
        try await waitForServers("birds", count: 4, balancer: balancer)

        // A sound version at its first step; the orchestrator killed and started again: the
        // canary stands where it stood (step 1: a quarter of the requests, 192 for each of the four
        // stable instances and 256 for the new one), and a full promote ends it.
        #expect(try await fleet.api.send("POST", "/v1/deployments/birds/update", json: ["model_version": "1.3.0"]).status == 200)
        try await waitForServers("birds", count: 5, balancer: balancer)
        func weights() async throws -> [String: Set<Int>] {
            let servers = try await balancer.service.get("/v1/endpoints/birds").json?["servers"] as? [[String: Any]] ?? []
            return Dictionary(grouping: servers) { $0["version"] as? String ?? "?" }.mapValues { Set($0.compactMap { $0["weight"] as? Int }) }
        }
        let split = await eventually(timeout: .seconds(20)) { (try? await weights()) == ["1.0.0": [192], "1.3.0": [256]] }
        let seen = try await weights()
        #expect(split, "a quarter of the requests on 1.3.0: \(seen)")
        try await fleet.restartOrchestrator(killing: SIGKILL)
        let resumed = try await fleet.api.get("/v1/deployments/birds").json
        let canary = (resumed?["rollout"] as? [String: Any])?["stage"] as? [String: Any]
        #expect(canary?["step"] as? Int == 1 && canary?["weight"] as? Int == 25, "\(resumed ?? [:])")
        #expect(try await weights() == ["1.0.0": [192], "1.3.0": [256]])
        #expect(try await fleet.api.send("POST", "/v1/deployments/birds/promote", json: ["full": true]).status == 200)
        let promoted = await eventually(timeout: .seconds(60), interval: .milliseconds(250)) {
            let deployment = try? await fleet.api.get("/v1/deployments/birds").json
            return deployment?["rollout"] is NSNull && (deployment?["instances"] as? [[String: Any]])?.count == 4
        }
        #expect(promoted, "every instance on 1.3.0")
        try await waitForServers("birds", count: 4, balancer: balancer)
        #expect(try await weights() == ["1.3.0": [100]])
        #expect(try await fleet.api.get("/v1/deployments/birds").json?["status"] as? String == "running", "the update cleared the rollback")

        // Blue-green under constant load: 1.4.0's whole set beside 1.3.0's with no requests, every
        // request switched on promote, switched back by a rollback; no request fails.
        let blueGreen = try await fleet.api.send(
            "PATCH", "/v1/deployments/birds", json: ["update_strategy": ["type": "blue_green", "bake_seconds": 0, "scale_down_delay_seconds": 600]])
        #expect(blueGreen.status == 200 && blueGreen.json?["restart"] as? Bool == false, "\(blueGreen.body)")
        let steady = Task { [balancer] in
            var answers: [String] = []
            while !Task.isCancelled {
                let answer = try? await balancer.infer("birds")
                answers.append(answer.map { $0.status == 200 ? ($0.json?["version"] as? String ?? "?") : "status \($0.status)" } ?? "no answer")
            }
            return answers
        }
        #expect(try await fleet.api.send("POST", "/v1/deployments/birds/update", json: ["model_version": "1.4.0"]).status == 200)
        try await waitForServers("birds", count: 8, balancer: balancer)
        let previewed = await eventually(timeout: .seconds(10)) { (try? await weights()) == ["1.3.0": [256], "1.4.0": [0]] }
        #expect(previewed, "the new set gets no requests before the switch")
        #expect(try await fleet.api.send("POST", "/v1/deployments/birds/promote", json: [:]).status == 200)
        let switchedOver = await eventually(timeout: .seconds(20)) { (try? await weights()) == ["1.3.0": [0], "1.4.0": [256]] }
        #expect(switchedOver, "every request on 1.4.0")
        try await Task.sleep(for: .seconds(2))
        #expect(try await fleet.api.send("POST", "/v1/deployments/birds/rollback", json: [:]).status == 200)
        try await waitForServers("birds", count: 4, balancer: balancer)
        try await Task.sleep(for: .seconds(2))
        steady.cancel()
        let sequence = await steady.value
        let failed = sequence.filter { $0.hasPrefix("status") || $0 == "no answer" }
        #expect(failed.isEmpty, "\(failed.count) of \(sequence.count) requests failed: \(failed.prefix(5))")
        // Served by 1.3.0, then 1.4.0, then 1.3.0 again: a switch is the load balancer setting each
        // server's weight in turn, so a request or two may land between two of them, no more.
        let runs = sequence.reduce(into: [String]()) { runs, version in if runs.last != version { runs.append(version) } }
        #expect(runs.first == "1.3.0" && runs.last == "1.3.0" && runs.contains("1.4.0") && runs.count <= 7, "\(runs) in \(sequence.count) requests")
    }

    @Test("round robin spreads evenly; a second replica serves the same; stopped answers 503 JSON, unknown or deleted 404 JSON")
    func roundRobinAndLifecycle() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(1, devices: 1)
            defer { agents.process.send(SIGKILL) }
            try await withBalancer(fleet) { balancer in try await checkRoundRobin(balancer, fleet) }
        }
    }

    private func checkRoundRobin(_ balancer: Balancer, _ fleet: Fleet) async throws {
        let model = try await fleet.createModel()
        try await deploy("rr", replicas: 3, balancer: balancer, fleet: fleet, model: model)

        let answered = try await spread("rr", count: 90, balancer: balancer)
        #expect(answered.count == 3 && answered.values.allSatisfy { (27...33).contains($0) }, "\(answered)")
        let endpoint = try await balancer.service.get("/v1/endpoints/rr").json ?? [:]
        #expect(endpoint["url"] as? String == "http://127.0.0.1:\(balancer.traffic)/d/rr/" && endpoint["algorithm"] as? String == "round_robin")
        // fleetctl, through the generated client: the endpoint and each server's health and requests.
        let balancerURL = ["FLEETCTL_LOAD_BALANCER_URL": "http://127.0.0.1:\(balancer.service.port)"]
        // HAProxy's counters are read once a second.
        var shown = FleetctlRun(status: -1, stdout: "", stderr: "")
        let counted = await eventually(timeout: .seconds(10), interval: .milliseconds(500)) {
            guard let run = try? await fleetctl(["deployments", "endpoint", "rr"], fleet: fleet, environment: balancerURL) else { return false }
            shown = run
            let rows = run.stdout.split(separator: "\n").dropFirst(2).map { $0.split(separator: " ", omittingEmptySubsequences: true) }
            return rows.count == 3 && rows.allSatisfy { $0.contains("UP") && Int($0.last ?? "") ?? 0 >= 27 }
        }
        #expect(counted && shown.stdout.hasPrefix("rr: http://127.0.0.1:\(balancer.traffic)/d/rr/ (serving), round_robin"), "\(shown.output)")
        let missing = try await fleetctl(["deployments", "endpoint", "nothing-here"], fleet: fleet, environment: balancerURL)
        #expect(missing.status == 2 && missing.stderr.contains("serves no deployment named 'nothing-here'"), "\(missing.output)")

        // A second replica, started now, serves the same endpoint from the retained views.
        try await withBalancer(fleet, name: "lb-2") { second in
            try await waitForServers("rr", count: 3, balancer: second)
            let through = try await spread("rr", count: 30, balancer: second)
            #expect(through.count == 3 && through.values.reduce(0, +) == 30, "\(through)")
        }

        #expect(try await fleet.api.send("POST", "/v1/deployments/rr/stop").status == 200)
        let stopped = await eventually(timeout: .seconds(20)) { (try? await balancer.infer("rr").status) == 503 }
        let answer = try await balancer.infer("rr")
        #expect(stopped && answer.json?["error"] as? [String: String] == ["code": "deployment_stopped", "message": "deployment 'rr' is stopped"])
        #expect(answer.headers["content-type"] == "application/json")

        let unknown = try await balancer.infer("nothing-here")
        #expect(unknown.status == 404 && (unknown.json?["error"] as? [String: String])?["code"] == "not_found", "\(unknown.body)")
        #expect(try await httpRequest(port: balancer.traffic, method: "GET", path: "/").status == 404)

        #expect(try await fleet.api.send("DELETE", "/v1/deployments/rr?confirm=true").status == 204)
        let gone = await eventually(timeout: .seconds(20)) { (try? await balancer.infer("rr").status) == 404 }
        #expect(gone, "a deleted deployment is unknown to the load balancer")
        #expect(try await balancer.service.get("/v1/endpoints/rr").status == 404)
    }

    @Test("least connections avoids a slow instance; ip_hash keeps each client on one instance; a sticky cookie keeps a session")
    func algorithms() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(1, devices: 1)
            defer { agents.process.send(SIGKILL) }
            try await withBalancer(fleet) { balancer in try await checkAlgorithms(balancer, fleet) }
        }
    }

    private func checkAlgorithms(_ balancer: Balancer, _ fleet: Fleet) async throws {
        let model = try await fleet.createModel()

        // Least connections: one instance answers in a second, the others at once.
        try await deploy(
            "least", replicas: 3, balancer: balancer, fleet: fleet, model: model,
            loadBalancer: #"{"algorithm": "least_connections", "health_check_interval_seconds": 1}"#)
        let instances = try await fleet.api.get("/v1/deployments/least").json?["instances"] as? [[String: Any]] ?? []
        let slow = try #require(instances.first)
        let slowPort = try #require((slow["address"] as? String)?.split(separator: ":").last.flatMap { Int($0) })
        #expect(try await httpRequest(port: slowPort, method: "PUT", path: "/sim", body: Data(#"{"latency_ms": 1000}"#.utf8)).status == 204)
        let counts = await withTaskGroup(of: String?.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var seen: [String] = []
                    for _ in 0..<10 { seen.append((try? await balancer.infer("least").json?["instance_id"] as? String) ?? "none") }
                    return seen.joined(separator: ",")
                }
            }
            var counts: [String: Int] = [:]
            for await batch in group { for id in (batch ?? "").split(separator: ",") { counts[String(id), default: 0] += 1 } }
            return counts
        }
        let slowID = try #require(slow["id"] as? String)
        let others = counts.filter { $0.key != slowID }.values.reduce(0, +)
        #expect(counts[slowID, default: 0] * 3 < others, "the slow instance gets far fewer requests: \(counts)")

        // ip_hash: twenty clients (loopback addresses), each always on the same instance.
        try await deploy(
            "hash", replicas: 3, balancer: balancer, fleet: fleet, model: model,
            loadBalancer: #"{"algorithm": "ip_hash", "health_check_interval_seconds": 1}"#)
        var owner: [String: String] = [:]
        for client in 2...21 {
            var seen: Set<String> = []
            for _ in 0..<4 {
                seen.insert(try await balancer.infer("hash", source: "127.0.0.\(client)").json?["instance_id"] as? String ?? "none")
            }
            #expect(seen.count == 1, "client 127.0.0.\(client) went to \(seen)")
            owner["127.0.0.\(client)"] = seen.first
        }
        #expect(Set(owner.values).count >= 2, "the clients are spread: \(owner)")
        // One instance leaves: only its clients move.
        #expect(try await fleet.api.send("POST", "/v1/deployments/hash/scale", json: ["replicas": 2]).status == 200)
        try await waitForServers("hash", count: 2, balancer: balancer)
        let listed = try await fleet.api.get("/v1/deployments/hash").json?["instances"] as? [[String: Any]] ?? []
        let remaining = Set(listed.compactMap { $0["id"] as? String })
        for (client, instance) in owner.sorted(by: { $0.key < $1.key }) where remaining.contains(instance) {
            let now = try await balancer.infer("hash", source: client).json?["instance_id"] as? String
            #expect(now == instance, "\(client) stays on \(instance), not \(now ?? "none")")
        }

        // Sticky sessions: the cookie of the first answer keeps the next ones on its instance.
        try await deploy(
            "sticky", replicas: 3, balancer: balancer, fleet: fleet, model: model,
            loadBalancer: #"{"sticky_sessions": true, "health_check_interval_seconds": 1}"#)
        let first = try await balancer.infer("sticky")
        let cookie = try #require(first.headers["set-cookie"]?.split(separator: ";").first.map(String.init), "\(first.headers)")
        #expect(cookie.hasPrefix("MF_sticky=") && cookie.count > "MF_sticky=".count, "\(cookie)")
        let session = try await spread("sticky", count: 12, balancer: balancer, headers: ["Cookie": cookie])
        #expect(session == [first.json?["instance_id"] as? String ?? "?": 12], "\(session)")
        let without = try await spread("sticky", count: 12, balancer: balancer)
        #expect(without.count == 3, "without the cookie, round robin: \(without)")
    }

    @Test("an instance failing its health check gets no traffic, and gets it again once it passes")
    func healthChecks() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(1, devices: 1)
            defer { agents.process.send(SIGKILL) }
            try await withBalancer(fleet) { balancer in try await checkHealth(balancer, fleet) }
        }
    }

    private func checkHealth(_ balancer: Balancer, _ fleet: Fleet) async throws {
        let model = try await fleet.createModel()
        try await deploy("health", replicas: 2, balancer: balancer, fleet: fleet, model: model)
        let instances = try await fleet.api.get("/v1/deployments/health").json?["instances"] as? [[String: Any]] ?? []
        let sick = try #require(instances.first)
        let sickID = try #require(sick["id"] as? String)
        let sickPort = try #require((sick["address"] as? String)?.split(separator: ":").last.flatMap { Int($0) })
        #expect(try await httpRequest(port: sickPort, method: "PUT", path: "/sim", body: Data(#"{"healthy": false}"#.utf8)).status == 204)
        // Interval 1 s × fall 3: down within about 3 s (6 s allowed for a loaded machine).
        let down = await eventually(timeout: .seconds(6), interval: .milliseconds(250)) {
            let servers = (try? await balancer.service.get("/v1/endpoints/health").json?["servers"] as? [[String: Any]]) ?? []
            return servers.first { $0["instance_id"] as? String == sickID }?["health"] as? String == "DOWN"
        }
        #expect(down)
        let avoided = try await spread("health", count: 20, balancer: balancer)
        #expect(avoided[sickID] == nil && avoided.values.reduce(0, +) == 20, "\(avoided)")
        #expect(try await httpRequest(port: sickPort, method: "PUT", path: "/sim", body: Data(#"{"healthy": true}"#.utf8)).status == 204)
        try await waitForServers("health", count: 2, balancer: balancer)
        let back = try await spread("health", count: 20, balancer: balancer)
        #expect(back[sickID, default: 0] >= 8, "back in the rotation: \(back)")
    }

    @Test("scaling 3 → 6 → 2 under constant load loses no request; HAProxy or the load-balancer killed come back to the same endpoints")
    func scalingAndRestarts() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(2, devices: 1)
            defer { agents.process.send(SIGKILL) }
            let traffic = try freePort()
            let directory = balancerDirectory()
            var balancer = try await startBalancer(fleet, traffic: traffic, directory: directory)
            let model = try await fleet.createModel()
            try await deploy("steady", replicas: 3, balancer: balancer, fleet: fleet, model: model)

            let load = Task { [balancer] in
                var failures: [String] = []
                var total = 0
                while !Task.isCancelled {
                    total += 1
                    do {
                        let answer = try await balancer.infer("steady")
                        if answer.status != 200 { failures.append("\(answer.status) \(answer.body)") }
                    } catch {
                        failures.append("\(error)")
                    }
                }
                return (total, failures)
            }
            #expect(try await fleet.api.send("POST", "/v1/deployments/steady/scale", json: ["replicas": 6]).status == 200)
            try await waitForServers("steady", count: 6, balancer: balancer)
            #expect(try await fleet.api.send("POST", "/v1/deployments/steady/scale", json: ["replicas": 2]).status == 200)
            try await waitForServers("steady", count: 2, balancer: balancer)
            try await Task.sleep(for: .seconds(3))  // the removed instances' drain and stop
            load.cancel()
            let (total, failures) = await load.value
            #expect(total > 20 && failures.isEmpty, "\(failures.count) of \(total) requests failed: \(failures.prefix(5))")

            // Update Model under constant load: 1.1.0 instances replace the two, each old one
            // drained once a new one is ready, and no request fails.
            try await fleet.addModelVersion("1.1.0", to: model)
            let updateLoad = Task { [balancer] in
                var failures: [String] = []
                var versions: [String: Int] = [:]
                while !Task.isCancelled {
                    do {
                        let answer = try await balancer.infer("steady")
                        if answer.status != 200 { failures.append("\(answer.status) \(answer.body)") }
                        versions[answer.json?["version"] as? String ?? "?", default: 0] += 1
                    } catch {
                        failures.append("\(error)")
                    }
                }
                return (versions, failures)
            }
            let updated = try await fleet.api.send("POST", "/v1/deployments/steady/update", json: ["model_version": "1.1.0"])
            #expect(updated.status == 200, "\(updated.body)")
            let revision = try #require(updated.json?["revision"] as? Int)
            let rolled = await eventually(timeout: .seconds(60), interval: .milliseconds(200)) {
                let list = (try? await fleet.api.get("/v1/deployments/steady").json?["instances"] as? [[String: Any]]) ?? []
                return list.count == 2 && list.allSatisfy { $0["state"] as? String == "ready" && $0["runs_revision"] as? Int == revision }
            }
            #expect(rolled, "both instances on revision \(revision)")
            try await waitForServers("steady", count: 2, balancer: balancer)
            try await Task.sleep(for: .seconds(3))
            updateLoad.cancel()
            let (versions, updateFailures) = await updateLoad.value
            #expect(updateFailures.isEmpty, "\(updateFailures.count) requests failed during the update: \(updateFailures.prefix(5)); \(versions)")
            #expect((versions["1.0.0"] ?? 0) > 0 && (versions["1.1.0"] ?? 0) > 0, "served by the old version, then the new: \(versions)")
            #expect(try await balancer.infer("steady").json?["version"] as? String == "1.1.0")

            // HAProxy killed: the load-balancer starts it again with the same servers.
            let haproxy = try #require(try await childPID(of: balancer.service.process.pid, named: "haproxy"))
            kill(haproxy, SIGKILL)
            let back = await eventually(timeout: .seconds(20)) { (try? await balancer.infer("steady").status) == 200 }
            #expect(back, "HAProxy restarted into the same endpoints")

            // The load-balancer killed (its HAProxy left running): a new one on the same folder
            // stops that HAProxy and rebuilds everything from the retained views.
            balancer.service.process.send(SIGKILL)
            _ = await balancer.service.process.waitForExit(timeout: .seconds(10))
            balancer = try await startBalancer(fleet, traffic: traffic, directory: directory)
            let restarted = balancer
            do {
                try await waitForServers("steady", count: 2, balancer: restarted)
                #expect(try await restarted.infer("steady").status == 200)
            } catch {
                await stopBalancer(restarted)
                throw error
            }
            await stopBalancer(restarted)
        }
    }

    /// The pid of a child of `parent` whose command is `name` (HAProxy's master).
    private func childPID(of parent: pid_t, named name: String) async throws -> pid_t? {
        for entry in try FileManager.default.contentsOfDirectory(atPath: "/proc") {
            guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8) else { continue }
            // pid (comm) state ppid …
            guard let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            let command = stat[stat.index(after: stat.firstIndex(of: "(")!)..<close]
            if command == name, fields.count > 1, Int32(fields[1]) == parent { return pid }
        }
        return nil
    }
}
