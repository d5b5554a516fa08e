import Foundation
import TestSupport
import Testing

@testable import FleetContract
@testable import MQTT

/// The five executables as they run in the stack, against the real broker and database.
@Suite("Services as processes")
struct ServiceProcessTests {
    static let services = ["registry", "orchestrator", "autoscaler", "metrics-aggregator", "device-gateway"]
    static let withDatabase: Set<String> = ["registry", "orchestrator"]
    /// What each service's `/ready` checks: the broker, its database, and the subscriptions whose
    /// messages it would lose if it took traffic before them.
    static let readinessChecks: [String: Set<String>] = [
        "registry": ["mqtt", "database", "agent-events", "loops"], "orchestrator": ["mqtt", "database", "agent-reports", "loops"],
        "autoscaler": ["mqtt"],
        "metrics-aggregator": ["mqtt"], "device-gateway": ["mqtt", "agent-subscriptions"],
    ]

    @Test("each service: /health, /ready, /metrics, and SIGTERM exits 0 promptly", arguments: services)
    func operationsEndpoints(service: String) async throws {
        let running = try ServiceProcess(service, environment: ["MODELFLEET_INSTANCE_ID": uniqueName("ops")])
        try await running.waitUntilAlive()

        let health = try await running.get("/health")
        #expect(health.status == 200)
        #expect(health.json?["status"] as? String == "alive")
        #expect(health.json?["service"] as? String == service)

        try await running.waitUntilReady()
        let ready = try await running.get("/ready")
        let checks = try #require(ready.json?["checks"] as? [String: [String: Any]])
        #expect(Set(checks.keys) == Self.readinessChecks[service])
        #expect(checks.values.allSatisfy { $0["ready"] as? Bool == true })

        let metrics = try await running.get("/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
        let problems = PrometheusText.problems(in: metrics.body)
        #expect(problems.isEmpty, "not valid Prometheus text: \(problems)")
        #expect(PrometheusText.value(of: "mqtt_connected", in: metrics.body) == 1)
        if Self.withDatabase.contains(service) {
            #expect(PrometheusText.value(of: "database_reachable", in: metrics.body) == 1)
        }

        if Self.withDatabase.contains(service) {
            // The contract, served as JSON; scripts/check-contracts compares it with openapi.yaml.
            let document = try await running.get("/openapi.json")
            #expect(document.status == 200 && document.json?["openapi"] as? String == "3.1.0")
        }

        let unknown = try await running.get("/no/such/route")
        #expect(unknown.status == 404)
        #expect((unknown.json?["error"] as? [String: Any])?["code"] as? String == "not_found")

        let stopStarted = ContinuousClock.now
        running.process.send(SIGTERM)
        let status = await running.process.waitForExit(timeout: .seconds(10))
        #expect(status == 0, "exit status \(String(describing: status)); output:\n\(running.process.output)")
        #expect(ContinuousClock.now - stopStarted < .seconds(5))
    }

    @Test("/ready is 503 while the broker is down and 200 again when it is back")
    func readinessFollowsTheBroker() async throws {
        try await withPrivateBroker { broker in
            let running = try ServiceProcess("autoscaler", environment: ["MODELFLEET_MQTT_URL": broker.url])
            try await running.waitUntilReady()
            try await broker.stop()
            #expect(await eventually { (try? await running.get("/ready").status) == 503 })
            let notReady = try await running.get("/ready")
            let mqtt = (notReady.json?["checks"] as? [String: [String: Any]])?["mqtt"]
            #expect(mqtt?["ready"] as? Bool == false)
            #expect((mqtt?["detail"] as? String)?.contains("disconnected") == true)
            #expect(try await running.get("/health").status == 200, "alive all the same")
            try await broker.start()
            #expect(await eventually(timeout: .seconds(15)) { (try? await running.get("/ready").status) == 200 })
            running.process.send(SIGTERM)
            #expect(await running.process.waitForExit(timeout: .seconds(10)) == 0)
        }
    }

    @Test("/ready is 503 while the database is down and 200 again when it is back; two replicas migrate at once")
    func readinessFollowsTheDatabase() async throws {
        try await withPrivateBroker { broker in
            try await withPrivateDatabase { database in
                // Two replicas on a fresh database start together: the migration lock lets one migrate.
                let first = try ServiceProcess("registry", environment: ["MODELFLEET_DATABASE_URL": database.url, "MODELFLEET_MQTT_URL": broker.url])
                let second = try ServiceProcess(
                    "registry", environment: ["MODELFLEET_DATABASE_URL": database.url, "MODELFLEET_MQTT_URL": broker.url])
                try await first.waitUntilReady()
                try await second.waitUntilReady()
                try await database.stop()
                #expect(await eventually { (try? await first.get("/ready").status) == 503 })
                let detail = ((try await first.get("/ready").json?["checks"] as? [String: [String: Any]])?["database"])?["detail"] as? String
                #expect(detail?.hasPrefix("unreachable") == true, "\(detail ?? "no detail")")
                try await database.start()
                #expect(await eventually(timeout: .seconds(15)) { (try? await first.get("/ready").status) == 200 })
                for running in [first, second] {
                    running.process.send(SIGTERM)
                    #expect(await running.process.waitForExit(timeout: .seconds(10)) == 0)
                }
            }
        }
    }

    @Test("a service that cannot reach its database at start waits, then migrates and becomes ready")
    func databaseNotUpYet() async throws {
        try await withPrivateBroker { broker in
            try await withPrivateDatabase { database in
                try await database.stop()
                let running = try ServiceProcess(
                    "orchestrator", environment: ["MODELFLEET_DATABASE_URL": database.url, "MODELFLEET_MQTT_URL": broker.url])
                try await running.waitUntilAlive()
                try await Task.sleep(for: .milliseconds(500))
                let waiting = try await running.get("/ready")
                #expect(waiting.status == 503)
                try await database.start()
                try await running.waitUntilReady()
                running.process.send(SIGTERM)
                #expect(await running.process.waitForExit(timeout: .seconds(10)) == 0)
            }
        }
    }

    @Test("the last will marks a killed service offline; a clean stop says stopped instead")
    func lastWill() async throws {
        let instance = uniqueName("will")
        let topic = Topic.serviceStatus(service: try TopicLevel("autoscaler"), instance: try TopicLevel(instance)).path
        try await withConnectedClient(testMQTTConfiguration("watcher")) { watcher in
            let statuses = try await watcher.subscribe(to: topic)
            func nextStatus() async throws -> ServiceStatus {
                let message = try #require(try await statuses.collect(1).first)
                return try Envelope<ServiceStatus>.decode(from: message.payload).payload
            }

            let first = try ServiceProcess("autoscaler", environment: ["MODELFLEET_INSTANCE_ID": instance])
            #expect(try await nextStatus().state == .online)
            first.process.send(SIGTERM)
            #expect(await first.process.waitForExit(timeout: .seconds(10)) == 0)
            // Every status after the first online one. The stop's own must be the last, "stopped",
            // with no last will after it; an earlier loss must have been followed by a reconnection
            // (which this test does not cause: it is printed with the service's log). Two CI runs
            // saw only the will: the broker wrote a routed message to the closed socket before
            // reading the DISCONNECT, which the client's stop now leaves it no reason to do.
            var sequence = [try await nextStatus()]
            sequence += await statuses.drainKeepingOn(for: .milliseconds(500)).compactMap {
                try? Envelope<ServiceStatus>.decode(from: $0.payload).payload
            }
            let described = sequence.map { "\($0.state.rawValue)/\($0.reason.rawValue)" }
            let last = try #require(sequence.last)
            #expect(
                last.state == .offline && last.reason == .stopped,
                "a clean stop says stopped, no last will after it: \(described); the service's log:\n\(first.process.output.suffix(4_000))")
            let reconnections = sequence.dropLast().indices.filter { sequence[$0].state == .offline }
            #expect(reconnections.allSatisfy { sequence[$0 + 1].state == .online }, "each earlier loss was a reconnection: \(described)")
            if sequence.count > 1 {
                print("lastWill: statuses before the stop's own: \(described.dropLast()); the service's log:\n\(first.process.output.suffix(4_000))")
            }

            let second = try ServiceProcess("autoscaler", environment: ["MODELFLEET_INSTANCE_ID": instance])
            #expect(try await nextStatus().state == .online)
            second.process.send(SIGKILL)
            _ = await second.process.waitForExit(timeout: .seconds(5))
            let lost = try await nextStatus()
            #expect(lost.state == .offline && lost.reason == .connectionLost)
            // Clear the retained status.
            try await watcher.publish(topic, payload: Data(), retain: true)
        }
    }

    @Test(
        "a bad setting stops the service at start with a message naming the variable",
        arguments: [
            ("MODELFLEET_HTTP_PORT", "eighty"),
            ("MODELFLEET_MQTT_URL", "http://nope"),
            ("MODELFLEET_LOG_LEVEL", "loud"),
        ])
    func badConfiguration(variable: String, value: String) async throws {
        let running = try ServiceProcess("registry", environment: [variable: value])
        let status = await running.process.waitForExit(timeout: .seconds(10))
        #expect(status == 1)
        #expect(running.process.output.contains("configuration error: \(variable)"), "\(running.process.output)")
    }
}

extension MQTTSubscription {
    /// The messages that arrive within `window`, the subscription going on (``drain(for:)`` ends it).
    func drainKeepingOn(for window: Duration) async -> [MQTTMessage] {
        try? await Task.sleep(for: window)
        var messages: [MQTTMessage] = []
        while let message = buffer.poll() { messages.append(message) }
        return messages
    }
}

/// Checks of the Prometheus text exposition format (version 0.0.4).
enum PrometheusText {
    /// Lines that are neither a comment (`# HELP`/`# TYPE`) nor `name{labels} value`.
    static func problems(in text: String) -> [String] {
        let sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?([0-9.eE+-]+|NaN|\+Inf|-Inf)( [0-9]+)?$/
        let comment = /^# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .*$/
        return text.split(separator: "\n").map(String.init).filter { line in
            line.wholeMatch(of: sample) == nil && line.wholeMatch(of: comment) == nil
        }
    }

    static func value(of metric: String, in text: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(metric + " ") }.flatMap { Double($0.split(separator: " ")[1]) }
    }
}
