import FleetContract
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import PostgresNIO
import ServiceRuntime
import TestSupport
import Testing

@testable import Orchestrator

/// The deployments' handlers in process (`app.test(.router)`) over their PostgreSQL store, each
/// test in a database of its own, with the registry in memory: placement, every lifecycle step,
/// events and revisions, and every bad input's answer.
@Suite("Deployment handlers")
struct DeploymentHandlerTests {
    static let model = UUID()

    /// Two online servers (8 cores, 16 GB and a t4; 4 cores, 8 GB) and an offline one.
    private func withDeployments(_ body: @escaping @Sendable (RouterClient, InMemoryRegistry) async throws -> Void) async throws {
        try await withDeploymentStore { api, registry, _, _ in try await body(api, registry) }
    }

    /// The same, with the store and the database for what the API does not show.
    private func withDeploymentStore(
        _ body: @escaping @Sendable (RouterClient, InMemoryRegistry, PostgresDeploymentStore, PostgresClient) async throws -> Void
    ) async throws {
        try await withNewDatabase { client in
            let logger = testLogger("deployments")
            _ = try await MigrationRunner(schema: DatabaseSchema(name: "orchestrator", migrations: OrchestratorMigrations.all), logger: logger)
                .migrate(on: client)
            let registry = InMemoryRegistry()
            await registry.add(
                RegistryServer(id: "edge-01", siteID: "north", cpuCores: 8, memoryBytes: 16 << 30, gpus: [.init(type: "t4", count: 1)], online: true))
            await registry.add(RegistryServer(id: "edge-02", siteID: "north", cpuCores: 4, memoryBytes: 8 << 30, gpus: [], online: true))
            await registry.add(RegistryServer(id: "edge-03", siteID: "south", cpuCores: 64, memoryBytes: 256 << 30, gpus: [], online: false))
            for (version, status) in [("1.0.0", "active"), ("0.9.0", "deprecated")] {
                await registry.add(
                    RegistryModelVersion(
                        modelID: Self.model, modelName: "people", version: version, artifactURI: "https://models.example/p.onnx",
                        sha256: String(repeating: "c", count: 64), defaultSettings: [:], status: status))
            }
            let router = Router()
            router.add(middleware: APIErrorMiddleware())
            let store = PostgresDeploymentStore(client: client, logger: logger)
            let deployments = DeploymentAPI(store: store, registry: registry, logs: CannedLogs(), logger: logger)
            try OrchestratorAPI(
                store: InMemoryOperationRepository(), registry: registry, resolver: PipelineResolver(registry: registry), committed: {},
                logger: logger, deployments: deployments
            ).addRoutes(to: router)
            try await Application(router: router).test(.router) { api in try await body(RouterClient(api), registry, store, client) }
        }
    }

    /// Each instance's log is one line naming it and its server; the agent of edge-02 does not answer.
    struct CannedLogs: InstanceLogSource {
        func lines(of instanceID: String, on agentID: String, tail: Int) async throws -> [String] {
            guard agentID != "edge-02" else { throw DomainError.unavailable(code: "agent_unavailable", "agent edge-02 did not answer within 5 s") }
            return Array(["\(instanceID) on \(agentID)", "tail \(tail)"].suffix(tail))
        }
    }

    @Test("an instance's logs: from its agent, tail checked, unknown or pending instances and a silent agent answered clearly")
    func logs() async throws {
        try await withDeployments { api, _ in
            let created = try await api.call(
                .post, "/v1/deployments",
                Self.new("logs-api", #", "resources": {"cpu_cores": 3}, "scaling": {"min_replicas": 4, "max_replicas": 4}"#))
            let instances = created.instances
            let onEdge01 = try #require(instances.first { $0["server_id"] as? String == "edge-01" }?["id"] as? String)
            let logs = try await api.get("/v1/deployments/logs-api/instances/\(onEdge01)/logs?tail=2")
            #expect(logs.status == .ok && logs.json?["lines"] as? [String] == ["\(onEdge01) on edge-01", "tail 2"], "\(logs.body)")
            #expect(logs.json?["server_id"] as? String == "edge-01" && logs.json?["instance_id"] as? String == onEdge01)
            #expect(
                try await api.get("/v1/deployments/logs-api/instances/\(onEdge01)/logs").json?["lines"] as? [String] == [
                    "\(onEdge01) on edge-01", "tail 200",
                ])

            for tail in ["0", "1001", "many"] {
                let bad = try await api.get("/v1/deployments/logs-api/instances/\(onEdge01)/logs?tail=\(tail)")
                #expect(bad.status == .badRequest && bad.errorField == "tail", "\(tail): \(bad.body)")
            }
            #expect(try await api.get("/v1/deployments/logs-api/instances/logs-api-zzzzz/logs").status == .notFound)
            #expect(try await api.get("/v1/deployments/nothing/instances/\(onEdge01)/logs").status == .notFound)

            // 8 + 4 cores hold three instances of 3: the fourth is pending and has no logs.
            let pending = try #require(instances.first { $0["state"] as? String == "pending" }?["id"] as? String)
            let notPlaced = try await api.get("/v1/deployments/logs-api/instances/\(pending)/logs")
            #expect(notPlaced.status == .conflict && notPlaced.errorCode == "instance_not_placed", "\(notPlaced.body)")
            let onEdge02 = try #require(instances.first { $0["server_id"] as? String == "edge-02" }?["id"] as? String)
            let silent = try await api.get("/v1/deployments/logs-api/instances/\(onEdge02)/logs")
            #expect(silent.status == .serviceUnavailable && silent.errorCode == "agent_unavailable", "\(silent.body)")
        }
    }

    /// Another active version of the model, with an artifact of its own.
    private static func addVersion(_ version: String, to registry: InMemoryRegistry) async {
        await registry.add(
            RegistryModelVersion(
                modelID: model, modelName: "people", version: version, artifactURI: "https://models.example/p-\(version).onnx",
                sha256: String(repeating: "d", count: 64), defaultSettings: [:], status: "active"))
    }

    private static func new(_ name: String, _ fields: String = "") -> String {
        #"{"name": "\#(name)", "model_id": "\#(model.lowercasedString)", "model_version": "1.0.0"\#(fields)}"#
    }

    @Test("create places instances spread over the servers with room; what does not fit is pending with its reason; bad input is named")
    func create() async throws {
        try await withDeployments { api, registry in
            let people = try await api.call(
                .post, "/v1/deployments",
                Self.new("people-api", #", "resources": {"cpu_cores": 2, "memory_gb": 2}, "scaling": {"min_replicas": 3, "max_replicas": 5}"#))
            #expect(people.status == .created, "\(people.body)")
            #expect(people.json?["revision"] as? Int == 1 && people.json?["status"] as? String == "deploying")
            #expect(people.placement == ["edge-01": 2, "edge-02": 1], "\(people.instances)")
            #expect(people.instances.allSatisfy { $0["state"] as? String == "assigned" && ($0["id"] as? String)?.hasPrefix("people-api-") == true })
            #expect((people.json?["replicas"] as? [String: Int]) == ["desired": 3, "ready": 0, "pending": 0])
            #expect(people.json?["load_balancer"] as? [String: Any] != nil && people.json?["environment"] as? String == "development")

            // One t4 in the fleet, and the people-api instances on edge-01 hold 4 of its 8 cores.
            let gpu = try await api.call(
                .post, "/v1/deployments",
                Self.new("gpu-api", #", "resources": {"gpu_count": 1, "gpu_type": "t4"}, "scaling": {"min_replicas": 2, "max_replicas": 2}"#))
            #expect(gpu.status == .created && gpu.placement == ["edge-01": 1, "": 1], "\(gpu.body)")
            #expect(gpu.json?["status"] as? String == "degraded")
            let pending = gpu.instances.first { $0["state"] as? String == "pending" }
            #expect(pending?["reason"] as? String == "no online server has 1 free t4 GPU(s); best: edge-01 with 0")
            let events = try await api.get("/v1/deployments/gpu-api/events").items.compactMap { $0["message"] as? String }
            #expect(events.contains("1 instance(s) pending: no online server has 1 free t4 GPU(s); best: edge-01 with 0"), "\(events)")
            #expect(events.last == "created at revision 1 with 2 instance(s)")

            let big = try await api.call(.post, "/v1/deployments", Self.new("big-api", #", "resources": {"cpu_cores": 6, "memory_gb": 1}"#))
            let reason = big.instances.first?["reason"] as? String
            #expect(
                big.placement == ["": 1]
                    && reason == "no online server has 6 free CPU cores and 1 GB of memory; best: edge-01 with 3 cores and 11 GB", "\(big.body)")

            let again = try await api.call(.post, "/v1/deployments", Self.new("people-api"))
            #expect(again.status == .conflict && again.errorCode == "conflict" && again.errorField == "name")
            for (body, status, field) in [
                (Self.new("People"), HTTPResponse.Status.unprocessableContent, "name"),
                (Self.new("x", #", "resources": {"gpu_count": 1, "gpu_type": "a100"}"#), .unprocessableContent, "resources.gpu_type"),
                (Self.new("x", #", "scaling": {"min_replicas": 2, "max_replicas": 1}"#), .unprocessableContent, "scaling.max_replicas"),
                (Self.new("x", #", "environment": "prod""#), .badRequest, "environment"),
                (Self.new("x").replacingOccurrences(of: "1.0.0", with: "2.0.0"), .unprocessableContent, "model_version"),
                (Self.new("x").replacingOccurrences(of: "1.0.0", with: "0.9.0"), .unprocessableContent, "model_version"),
                (#"{"name": "x", "model_version": "1.0.0"}"#, .badRequest, "model_id"),
                ("[]", .badRequest, "(body)"),
            ] {
                let bad = try await api.call(.post, "/v1/deployments", body)
                #expect(bad.status == status && bad.errorField == field, "\(body): \(bad.body)")
            }
            #expect(try await api.get("/v1/deployments").items.count == 3)

            await registry.setDown(true)
            let silent = try await api.call(.post, "/v1/deployments", Self.new("later"))
            #expect(silent.status == .serviceUnavailable && silent.errorCode == "registry_unavailable")
        }
    }

    @Test("scale, edit, stop, start and delete: each a revision or an event, with the rules of the product's table")
    func lifecycle() async throws {
        try await withDeployments { api, _ in
            let path = "/v1/deployments/people-api"
            _ = try await api.call(
                .post, "/v1/deployments", Self.new("people-api", #", "scaling": {"min_replicas": 1, "max_replicas": 4, "replicas": 2}"#))
            let scaled = try await api.call(.post, "\(path)/scale", #"{"replicas": 4}"#)
            #expect(scaled.status == .ok && scaled.instances.count == 4 && scaled.json?["revision"] as? Int == 2, "\(scaled.body)")
            let tooMany = try await api.call(.post, "\(path)/scale", #"{"replicas": 5}"#)
            #expect(tooMany.status == .unprocessableContent && tooMany.errorField == "replicas")
            #expect(try await api.call(.post, "\(path)/scale", #"{"replicas": "two"}"#).errorField == "replicas")
            let down = try await api.call(.post, "\(path)/scale", #"{"replicas": 1}"#)
            #expect(
                down.instances.count == 1 && down.instances.first?["id"] as? String == scaled.instances.first?["id"] as? String, "the oldest stays")

            let described = try await api.call(.patch, path, #"{"description": "people at the gates"}"#)
            #expect(described.status == .ok && described.json?["restart"] as? Bool == false, "\(described.body)")
            let deployment = described.json?["deployment"] as? [String: Any]
            #expect(deployment?["description"] as? String == "people at the gates" && deployment?["revision"] as? Int == 4)
            let bigger = try await api.call(.patch, path, #"{"resources": {"cpu_cores": 2}, "scaling": {"replicas": 2}}"#)
            #expect(bigger.json?["restart"] as? Bool == true && (bigger.json?["deployment"] as? [String: Any])?["revision"] as? Int == 5)
            #expect(((bigger.json?["deployment"] as? [String: Any])?["instances"] as? [Any])?.count == 2)
            for (body, status, field) in [
                (#"{"name": "other"}"#, HTTPResponse.Status.unprocessableContent, "name"),
                (#"{"model_id": "\#(UUID())"}"#, .unprocessableContent, "model_id"),
                (#"{"model_version": "2.0.0"}"#, .unprocessableContent, "model_version"),
                (#"{"replicas": 3}"#, .badRequest, "replicas"),
                (#"{"scaling": {"max_replicas": 1}}"#, .unprocessableContent, "scaling.replicas"),
                (#"{"resources": {"cpu_cores": "two"}}"#, .badRequest, "resources.cpu_cores"),
                ("[1]", .badRequest, "(body)"),
            ] {
                let bad = try await api.call(.patch, path, body)
                #expect(bad.status == status && bad.errorField == field, "\(body): \(bad.body)")
            }
            #expect(try await api.call(.patch, path, #"{"description": "people at the gates"}"#).errorCode == "no_change")
            let untargeted = try await api.call(.patch, path, #"{"scaling": {"target_cpu_percent": null}}"#)
            let scaling = (untargeted.json?["deployment"] as? [String: Any])?["scaling"] as? [String: Any]
            #expect(scaling?["target_cpu_percent"] is NSNull && scaling?["target_memory_percent"] as? Int == 80, "\(untargeted.body)")
            #expect(
                (try await api.get(path).json?["scaling"] as? [String: Any])?["target_cpu_percent"] is NSNull, "a cleared target stays cleared")

            let stopped = try await api.call(.post, "\(path)/stop")
            #expect(stopped.json?["status"] as? String == "stopped" && stopped.instances.isEmpty, "\(stopped.body)")
            #expect((stopped.json?["replicas"] as? [String: Int])?["desired"] == 0)
            #expect(try await api.call(.post, "\(path)/scale", #"{"replicas": 3}"#).errorCode == "deployment_stopped")
            let started = try await api.call(.post, "\(path)/start")
            #expect(started.json?["status"] as? String == "deploying" && started.instances.count == 2)

            let revisions = try await api.get("\(path)/revisions").items.compactMap { $0["change"] as? String }
            #expect(
                revisions == [
                    "edited scaling", "edited resources, scaling", "edited description", "scaled from 4 to 1", "scaled from 2 to 4", "created",
                ], "\(revisions)")
            let kinds = try await api.get("\(path)/events?limit=4").items.compactMap { $0["kind"] as? String }
            #expect(kinds == ["placed", "placed", "started", "stopped"], "\(kinds)")

            let unconfirmed = try await api.call(.delete, path)
            #expect(unconfirmed.status == .badRequest && unconfirmed.errorField == "confirm")
            #expect(try await api.call(.delete, "\(path)?confirm=true").status == .noContent)
            #expect(try await api.get(path).status == .notFound)
            #expect(try await api.call(.delete, "\(path)?confirm=true").status == .notFound)
            #expect(try await api.call(.post, "/v1/deployments", Self.new("people-api")).status == .created, "the name is free again")
        }
    }

    @Test("update model: new instances beside the old within the surge, the old removed as the new become ready; rollback; bad input named")
    func updateAndRollback() async throws {
        try await withDeploymentStore { api, registry, store, database in
            await Self.addVersion("1.1.0", to: registry)
            let path = "/v1/deployments/gates"
            let rolls = RollDriver(api: api, registry: registry, store: store, name: "gates")
            _ = try await api.call(
                .post, "/v1/deployments", Self.new("gates", #", "scaling": {"min_replicas": 1, "max_replicas": 4, "replicas": 2}"#))
            func versions() async throws -> [String] {
                try await api.get(path).instances.compactMap { $0["model_version"] as? String }.sorted()
            }
            func artifact(of revision: Int) async throws -> String? {
                let rows = try await database.query(
                    """
                    SELECT r.artifact->>'artifact_uri' FROM orchestrator.deployment_revisions r
                    JOIN orchestrator.deployments d ON d.id = r.deployment_id WHERE d.name = 'gates' AND r.revision = \(revision)
                    """)
                for try await uri in rows.decode(String?.self) { return uri }
                return nil
            }
            try await rolls.ready("1.0.0", revision: 1)

            let updated = try await api.call(.post, "\(path)/update", #"{"model_version": "1.1.0"}"#)
            #expect(updated.status == .ok && updated.json?["revision"] as? Int == 2, "\(updated.body)")
            let (first, second) = (try await artifact(of: 1), try await artifact(of: 2))
            #expect(first == "https://models.example/p.onnx" && second == "https://models.example/p-1.1.0.onnx", "each revision its own")
            #expect(try await versions() == ["1.0.0", "1.0.0"], "the roll happens later, step by step")
            // 2 replicas, max_surge 25 % (1, rounded up), max_unavailable 0: one new instance beside
            // the two old; an old one goes only when the new one is ready, and then the next starts.
            #expect(try await rolls.roll() == 1)
            #expect(try await rolls.roll() == 0, "nothing more until the new instance is ready")
            #expect(try await versions() == ["1.0.0", "1.0.0", "1.1.0"])
            try await rolls.ready("1.1.0", revision: 2)
            #expect(try await rolls.roll() == 2, "one old removed, the second new started")
            #expect(try await versions() == ["1.0.0", "1.1.0", "1.1.0"])
            #expect(try await api.get(path).json?["rollout"] is [String: Any], "under way until the last is ready")
            #expect(try await rolls.roll() == 0)
            try await rolls.ready("1.1.0", revision: 2)
            #expect(try await rolls.roll() == 1, "the last old one removed")
            #expect(try await versions() == ["1.1.0", "1.1.0"])
            #expect(try await rolls.roll() == 0)
            #expect(try await api.get(path).json?["rollout"] is NSNull, "done: every instance on revision 2 and ready")
            let events = try await api.get("\(path)/events?limit=20").items.compactMap { $0["message"] as? String }
            #expect(
                events.contains {
                    $0.contains("model version 1.0.0 to 1.1.0, rolling, 1 new instance(s) beside the old at a time, none unavailable")
                },
                "\(events)")
            #expect(events.contains { $0.hasPrefix("removed instance gates-") && $0.hasSuffix("replaced by revision 2") }, "\(events)")

            for (body, status, field) in [
                (#"{"model_version": "9.9.9"}"#, HTTPResponse.Status.unprocessableContent, "model_version"),
                (#"{"model_version": "0.9.0"}"#, .unprocessableContent, "model_version"),
                (#"{"model_version": 2}"#, .badRequest, "model_version"),
                (#"{}"#, .badRequest, "model_version"),
            ] {
                let bad = try await api.call(.post, "\(path)/update", body)
                #expect(bad.status == status && bad.errorField == field, "\(body): \(bad.body)")
            }
            #expect(try await api.call(.post, "\(path)/update", #"{"model_version": "1.1.0"}"#).errorCode == "no_change")
            #expect(try await api.call(.post, "/v1/deployments/nobody/update", #"{"model_version": "1.1.0"}"#).status == .notFound)

            // Rollback, by default to the newest earlier revision that ran something else: 1.
            let scaled = try await api.call(.post, "\(path)/scale", #"{"replicas": 3}"#)
            #expect(scaled.json?["revision"] as? Int == 3)
            let back = try await api.call(.post, "\(path)/rollback")
            let backSpec = back.json
            #expect(back.status == .ok && backSpec?["revision"] as? Int == 4 && backSpec?["model_version"] as? String == "1.0.0", "\(back.body)")
            #expect((backSpec?["scaling"] as? [String: Any])?["replicas"] as? Int == 3, "the replicas stay as they are")
            #expect(try await artifact(of: 4) == "https://models.example/p.onnx", "the old version's artifact comes back")
            let revisions = try await api.get("\(path)/revisions").items.compactMap { $0["change"] as? String }
            #expect(revisions.first == "rolled back to revision 1 (model version 1.0.0)", "\(revisions)")
            let kinds = try await api.get("\(path)/events?limit=100").items.compactMap { $0["kind"] as? String }
            #expect(kinds.contains("updated") && kinds.first == "rolled_back" && kinds.contains("scaled"), "\(kinds)")
            // To a named revision; refusals name `revision`.
            let forward = try await api.call(.post, "\(path)/rollback", #"{"revision": 2}"#)
            #expect(forward.status == .ok && forward.json?["model_version"] as? String == "1.1.0", "\(forward.body)")
            for (body, status) in [
                (#"{"revision": 5}"#, HTTPResponse.Status.unprocessableContent), (#"{"revision": 99}"#, .unprocessableContent),
                (#"{"revision": "one"}"#, .badRequest),
            ] {
                let bad = try await api.call(.post, "\(path)/rollback", body)
                #expect(bad.status == status && bad.errorField == "revision", "\(body): \(bad.body)")
            }
            #expect(try await api.call(.post, "\(path)/rollback", #"{"revision": 3}"#).errorCode == "no_change", "revision 3 ran 1.1.0 too")

        }
    }

    @Test("canary: each step's new instances take its share through their weights; promote, pause, resume; a failed analysis rolls back")
    func canaryUpdate() async throws {
        try await withDeploymentStore { api, registry, store, _ in
            await Self.addVersion("1.1.0", to: registry)
            await Self.addVersion("1.2.0", to: registry)
            let path = "/v1/deployments/birds"
            let rolls = RollDriver(api: api, registry: registry, store: store, name: "birds")
            let created = try await api.call(
                .post, "/v1/deployments",
                Self.new(
                    "birds",
                    #", "scaling": {"min_replicas": 1, "max_replicas": 6, "replicas": 4}, "update_strategy": {"type": "canary", "canary_steps": [25, 50, 100], "analysis": {"min_requests": 10}}"#
                ))
            #expect(created.status == .created, "\(created.body)")
            func snapshot(_ version: String, requests: Int, errors: Int, age: Double = 0) -> DeploymentMetricsSnapshot {
                let figures = MetricsFigures(
                    windowSeconds: 10, requests: requests, requestsPerSecond: Double(requests) / 10, errors: errors,
                    errorRatio: Double(errors) / Double(requests), latencyMs: .init(p50: 10, p95: 20, p99: 30, mean: 12), cpuCores: nil,
                    cpuUtilization: nil, memoryBytes: nil, memoryUtilization: nil, gpuUtilization: nil)
                return DeploymentMetricsSnapshot(
                    deployment: "birds", at: Date().addingTimeInterval(-age), instances: 6, readyInstances: 6, newestDataAgeSeconds: 0.5,
                    staleAfterSeconds: 5, figures: figures, versions: [.init(version: version, instances: 2, readyInstances: 2, figures: figures)])
            }
            try await rolls.ready("1.0.0", revision: 1)
            let none = try await api.call(.post, "\(path)/promote")
            #expect(none.status == .conflict && none.errorCode == "no_canary", "\(none.body)")
            #expect(try await api.call(.post, "/v1/deployments/nobody/pause").status == .notFound)

            // Step 1, 25 %: one new instance beside the four stable ones, weighted to a quarter of the requests.
            let updated = try await api.call(.post, "\(path)/update", #"{"model_version": "1.1.0"}"#)
            #expect(updated.status == .ok, "\(updated.body)")
            let said = try await api.get("\(path)/events?limit=1").items.first?["message"] as? String
            #expect(said == "model version 1.0.0 to 1.1.0, canary, 25, 50, 100 % of the requests, 60 s a step, errors at most 5 % (revision 2)")
            #expect(try await rolls.roll() == 1)
            #expect(try await rolls.sides() == ["1.0.0 x4 w192", "1.1.0 x1 w256"])
            let first = try await rolls.stage()
            #expect(
                first?["strategy"] as? String == "canary" && first?["step"] as? Int == 1 && first?["weight"] as? Int == 25
                    && first?["step_ends_at"] is String, "\(first ?? [:])")
            try await rolls.ready("1.1.0", revision: 2)
            #expect(try await rolls.roll(snapshot("1.1.0", requests: 40, errors: 0)) == 0, "the step's 60 s are not up")
            #expect(try await rolls.stage()?["analysis"] as? String == "40 requests, errors 0 %, p99 30 ms")

            // promote ends the step: 50 %, the second new instance at once.
            #expect(try await api.call(.post, "\(path)/promote").status == .ok)
            #expect(try await rolls.roll() == 1)
            let second = try await rolls.stage()
            #expect(second?["step"] as? Int == 2 && second?["weight"] as? Int == 50, "\(second ?? [:])")
            #expect(try await rolls.roll() == 0)
            #expect(try await rolls.sides() == ["1.0.0 x4 w128", "1.1.0 x2 w256"])
            #expect(try await api.call(.post, "\(path)/pause").status == .ok)
            #expect(try await rolls.stage()?["paused"] as? Bool == true)
            #expect(try await api.call(.post, "\(path)/resume").status == .ok)
            #expect(try await rolls.stage()?["paused"] as? Bool == false)

            // Failing figures that are stale judge nothing; fresh ones roll the change back at once.
            try await rolls.ready("1.1.0", revision: 2)
            _ = try await rolls.roll(snapshot("1.1.0", requests: 40, errors: 10, age: 30))
            #expect(try await rolls.stage()?["step"] as? Int == 2)
            #expect(try await rolls.roll(snapshot("1.1.0", requests: 40, errors: 10)) == 6, "both new instances removed, the 4 stable on revision 3")
            let back = try await api.get(path)
            #expect(back.json?["revision"] as? Int == 3 && back.json?["model_version"] as? String == "1.0.0" && back.json?["rollout"] is NSNull)
            #expect(back.json?["status"] as? String == "degraded", "degraded until an operator's next change: \(back.body)")
            #expect((back.json?["rolled_back_because"] as? String)?.hasPrefix("canary analysis at 50 %") == true, "\(back.body)")
            #expect(try await rolls.sides() == ["1.0.0 x4 w100"])
            let changes = try await api.get("\(path)/revisions").items.compactMap { $0["change"] as? String }
            #expect(
                changes.first
                    == "rolled back to revision 1 (model version 1.0.0): canary analysis at 50 % (step 2 of 3): errors 25 % of 40 requests, "
                    + "above 5 %", "\(changes)")
            #expect(try await api.get(path).instances.allSatisfy { $0["runs_revision"] as? Int == 3 }, "the stable ones run revision 3 as they are")

            // One failed check allowed: a failing snapshot is noted, judged once, and a passing one
            // clears it.
            let allowing = try await api.call(.patch, path, #"{"update_strategy": {"analysis": {"failures_allowed": 1}}}"#)
            #expect(allowing.status == .ok && allowing.json?["restart"] as? Bool == false, "\(allowing.body)")
            #expect(try await api.call(.post, "\(path)/update", #"{"model_version": "1.2.0"}"#).status == .ok)
            #expect(try await api.get(path).json?["rolled_back_because"] is NSNull, "the update is the operator's next change")
            _ = try await rolls.roll()
            try await rolls.ready("1.2.0", revision: 5)
            let failing = snapshot("1.2.0", requests: 40, errors: 10)
            _ = try await rolls.roll(failing)
            #expect(
                try await rolls.stage()?["analysis"] as? String == "check failed (1 of 2 before a rollback): errors 25 % of 40 requests, above 5 %")
            _ = try await rolls.roll(failing)
            #expect(try await api.get(path).json?["revision"] as? Int == 5, "the same snapshot is not judged twice")
            _ = try await rolls.roll(snapshot("1.2.0", requests: 40, errors: 0))
            #expect(try await rolls.stage()?["analysis"] as? String == "40 requests, errors 0 %, p99 30 ms")

            // A full promote: every instance to 1.2.0 once the new ones are ready, then the old go.
            #expect(try await api.call(.post, "\(path)/promote", #"{"full": true}"#).status == .ok)
            #expect(try await rolls.roll() == 3)
            #expect(try await rolls.sides() == ["1.0.0 x4 w0", "1.2.0 x4 w256"], "at 100 % the stable instances get no new requests")
            try await rolls.ready("1.2.0", revision: 5)
            #expect(try await rolls.roll() == 4, "the four stable instances removed")
            #expect(try await rolls.sides() == ["1.2.0 x4 w100"])
            #expect(try await api.get(path).json?["rollout"] is NSNull)
            let kinds = try await api.get("\(path)/events?limit=60").items.compactMap { $0["kind"] as? String }
            #expect(["promoted", "paused", "resumed", "canary_step", "rolled_back"].allSatisfy(kinds.contains), "\(kinds)")
            let badPromote = try await api.call(.post, "\(path)/promote", #"{"full": "yes"}"#)
            #expect(badPromote.status == .badRequest && badPromote.errorField == "full", "\(badPromote.body)")
        }
    }

    @Test("blue-green: the new set beside the old with no traffic, every request switched on promote, a rollback switches back")
    func blueGreenUpdate() async throws {
        try await withDeploymentStore { api, registry, store, _ in
            await Self.addVersion("1.1.0", to: registry)
            let path = "/v1/deployments/pond"
            let rolls = RollDriver(api: api, registry: registry, store: store, name: "pond")
            let created = try await api.call(
                .post, "/v1/deployments",
                Self.new(
                    "pond",
                    #", "scaling": {"min_replicas": 1, "max_replicas": 4, "replicas": 2}, "update_strategy": {"type": "blue_green", "bake_seconds": 0, "scale_down_delay_seconds": 600}"#
                ))
            #expect(created.status == .created, "\(created.body)")
            try await rolls.ready("1.0.0", revision: 1)

            // The preview: the whole new set, weight 0, until promoted (no bake time).
            #expect(try await api.call(.post, "\(path)/update", #"{"model_version": "1.1.0"}"#).status == .ok)
            let said = try await api.get("\(path)/events?limit=1").items.first?["message"] as? String
            #expect(
                said == "model version 1.0.0 to 1.1.0, blue-green, switched on promote, the old set kept 600 s after, errors at most 5 % (revision 2)"
            )
            #expect(try await rolls.roll() == 2)
            #expect(try await rolls.sides() == ["1.0.0 x2 w256", "1.1.0 x2 w0"])
            let preview = try await rolls.stage()
            #expect(
                preview?["strategy"] as? String == "blue_green" && preview?["step"] as? Int == 1 && preview?["weight"] as? Int == 0
                    && preview?["step_ends_at"] == nil, "no end: it waits for a promote \(preview ?? [:])")
            try await rolls.ready("1.1.0", revision: 2)
            #expect(try await rolls.roll() == 0, "no switch before the promote")
            #expect(try await rolls.sides() == ["1.0.0 x2 w256", "1.1.0 x2 w0"])

            // The switch: every request on the new set; the old one kept for its 600 s.
            #expect(try await api.call(.post, "\(path)/promote").status == .ok)
            _ = try await rolls.roll()
            #expect(try await rolls.sides() == ["1.0.0 x2 w0", "1.1.0 x2 w256"])
            let switched = try await rolls.stage()
            #expect(switched?["step"] as? Int == 2 && switched?["weight"] as? Int == 100 && switched?["step_ends_at"] is String)
            let events = try await api.get("\(path)/events?limit=10").items.compactMap { $0["message"] as? String }
            #expect(events.contains { $0.hasPrefix("blue-green switch: every request on model version 1.1.0; the old set kept 600 s") }, "\(events)")

            // A rollback within the delay is a switch back: the old set takes every request again.
            let back = try await api.call(.post, "\(path)/rollback")
            #expect(back.status == .ok && back.json?["model_version"] as? String == "1.0.0", "\(back.body)")
            #expect(try await rolls.sides() == ["1.0.0 x2 w100"])
            #expect(try await api.get(path).json?["rollout"] is [String: Any], "the old instances still to move to revision 3 in place")
            _ = try await rolls.roll()
            #expect(try await api.get(path).json?["rollout"] is NSNull)

            // Promoted again to the end: the old set goes once the delay is skipped.
            #expect(try await api.call(.post, "\(path)/update", #"{"model_version": "1.1.0"}"#).status == .ok)
            #expect(try await rolls.roll() == 2)
            try await rolls.ready("1.1.0", revision: 4)
            #expect(try await api.call(.post, "\(path)/promote", #"{"full": true}"#).status == .ok)
            #expect(try await rolls.roll() == 2, "the old set removed")
            #expect(try await rolls.sides() == ["1.1.0 x2 w100"])
        }
    }

    @Test("a change whose instance is not ready by its progress deadline is rolled back to the last revision rolled out whole")
    func progressDeadline() async throws {
        try await withDeploymentStore { api, registry, store, database in
            await Self.addVersion("1.1.0", to: registry)
            let path = "/v1/deployments/stuck"
            let rolls = RollDriver(api: api, registry: registry, store: store, name: "stuck")
            /// The deadline passed, without waiting for it: the last progress moved 61 s back.
            func deadlinePassed() async throws {
                try await database.query("UPDATE orchestrator.deployments SET progress_at = now() - interval '61 seconds' WHERE name = 'stuck'")
            }
            _ = try await api.call(
                .post, "/v1/deployments",
                Self.new(
                    "stuck",
                    #", "scaling": {"min_replicas": 1, "max_replicas": 4, "replicas": 2}, "update_strategy": {"progress_deadline_seconds": 60}"#
                ))
            func instances() async throws -> [[String: Any]] { try await api.get(path).instances }
            for instance in try await instances() {
                let (id, server) = (try #require(instance["id"] as? String), try #require(instance["server_id"] as? String))
                try await store.recordInstanceReports([
                    (server, [.init(instanceID: id, state: .ready, address: "10.0.0.1:1", version: "1.0.0", specRevision: 1)])
                ])
            }
            #expect(try await api.call(.post, "\(path)/update", #"{"model_version": "1.1.0"}"#).status == .ok)
            #expect(try await rolls.roll() == 1)
            // The roll as the API shows it: how far, and its deadline.
            let rollout = try await api.get(path).json?["rollout"] as? [String: Any]
            #expect(
                rollout?["from_revision"] as? Int == 1 && rollout?["to_revision"] as? Int == 2 && rollout?["moved"] as? Int == 1
                    && rollout?["instances"] as? Int == 3 && rollout?["versions"] as? [String: Int] == ["1.0.0": 2, "1.1.0": 1]
                    && rollout?["progress_deadline_at"] is String, "\(rollout ?? [:])")
            let moved = try #require(try await instances().first { $0["model_version"] as? String == "1.1.0" })
            let (movedID, movedServer) = (try #require(moved["id"] as? String), try #require(moved["server_id"] as? String))
            try await store.recordInstanceReports([
                (movedServer, [.init(instanceID: movedID, state: .failed, reason: "exited with status 1", version: "1.1.0", specRevision: 2)])
            ])
            #expect(try await rolls.roll() == 0, "within the deadline: nothing moves, nothing is rolled back")
            try await deadlinePassed()
            #expect(try await rolls.roll() == 3, "the failed instance removed; the two old ones run revision 3 as they are")
            let after = try await api.get(path)
            #expect(after.json?["revision"] as? Int == 3 && after.json?["model_version"] as? String == "1.0.0", "\(after.body)")
            #expect(after.json?["rollout"] is NSNull, "a rollback's roll has no deadline and shows none: \(after.body)")
            let changes = try await api.get("\(path)/revisions").items.compactMap { $0["change"] as? String }
            #expect(
                changes.first == "rolled back to revision 1 (model version 1.0.0): no instance of revision 2 became ready within 60 s "
                    + "(\(movedID): exited with status 1)", "\(changes)")
            let kinds = try await api.get("\(path)/events?limit=5").items.compactMap { $0["kind"] as? String }
            #expect(kinds.contains("rolled_back"), "\(kinds)")
            // The failed instance is gone; the two old ones run revision 1's spec, which is 3's.
            _ = try await rolls.roll()
            let versions = try await instances().map { "\($0["model_version"] ?? "?") r\($0["runs_revision"] ?? "?")" }.sorted()
            #expect(versions == ["1.0.0 r3", "1.0.0 r3"], "\(versions)")
            #expect(try await instances().allSatisfy { $0["id"] as? String != movedID && $0["state"] as? String == "ready" })
            #expect(try await api.get(path).json?["rollout"] is NSNull)
            // The rollback's own roll has no deadline: an instance failing now rolls nothing back.
            let stays = try #require(try await instances().first)
            try await store.recordInstanceReports([
                (
                    try #require(stays["server_id"] as? String),
                    [
                        .init(
                            instanceID: try #require(stays["id"] as? String), state: .failed, reason: "exited with status 1", version: "1.0.0",
                            specRevision: 3)
                    ]
                )
            ])
            try await deadlinePassed()
            _ = try await rolls.roll()
            #expect(try await api.get(path).json?["revision"] as? Int == 3)
        }
    }

    @Test("the list pages in creation order; capacity freed by a stop is placed again")
    func listAndCapacity() async throws {
        try await withDeployments { api, _ in
            // 8 + 4 cores: the first takes all 12, the second (4) waits for room.
            let first = try await api.call(
                .post, "/v1/deployments", Self.new("first", #", "resources": {"cpu_cores": 4}, "scaling": {"min_replicas": 3, "max_replicas": 3}"#))
            #expect(first.placement == ["edge-01": 2, "edge-02": 1], "\(first.body)")
            let second = try await api.call(.post, "/v1/deployments", Self.new("second", #", "resources": {"cpu_cores": 4}"#))
            #expect(second.placement == ["": 1], "\(second.body)")
            _ = try await api.call(.post, "/v1/deployments/first/stop")
            let placed = try await api.get("/v1/deployments/second")
            #expect(placed.json?["status"] as? String == "deploying" && placed.placement == ["edge-01": 1], "\(placed.body)")
            let events = try await api.get("/v1/deployments/second/events").items
            #expect(events.first?["message"] as? String == "placed instance \(placed.instances.first?["id"] as? String ?? "") on edge-01")
            #expect(events.first?["actor"] as? String == "orchestrator")

            let page = try await api.get("/v1/deployments?limit=1")
            let cursor = try #require(page.json?["next_cursor"] as? String)
            let rest = try await api.get("/v1/deployments?limit=1&cursor=\(cursor)")
            #expect(page.items.first?["name"] as? String == "first" && rest.items.first?["name"] as? String == "second")
            #expect(rest.json?["next_cursor"] as? String == nil)
            for (uri, field) in [
                ("/v1/deployments?limit=0", "limit"), ("/v1/deployments?cursor=x", "cursor"), ("/v1/deployments/first/events?limit=0", "limit"),
            ] {
                let bad = try await api.get(uri)
                #expect(bad.status == .badRequest && bad.errorField == field, "\(uri): \(bad.body)")
            }
            #expect(try await api.get("/v1/deployments/none/events").status == .notFound)
            #expect(try await api.get("/v1/deployments/none/revisions").status == .notFound)
            #expect(try await api.call(.post, "/v1/deployments/none/stop").status == .notFound)
        }
    }
}

/// A deployment's roll driven by hand, as the roller and the agents would: the roller's steps
/// (with a metrics snapshot for a canary's analysis), the agents' ready reports, and what each
/// version has.
private struct RollDriver {
    let api: RouterClient
    let registry: InMemoryRegistry
    let store: PostgresDeploymentStore
    let name: String

    private var path: String { "/v1/deployments/\(name)" }

    /// One roller step; how many instances it moved, started or removed.
    func roll(_ snapshot: DeploymentMetricsSnapshot? = nil) async throws -> Int {
        try await store.advanceRestarts(servers: await registry.servers().map(\.placement), figures: snapshot.map { [name: $0] } ?? [:])
    }

    /// Every instance of `version` reported ready on `revision`, as its agent would.
    func ready(_ version: String, revision: Int) async throws {
        for instance in try await api.get(path).instances where instance["model_version"] as? String == version {
            let (id, server) = (try #require(instance["id"] as? String), try #require(instance["server_id"] as? String))
            try await store.recordInstanceReports([
                (server, [.init(instanceID: id, state: .ready, address: "10.0.0.1:9000", version: version, specRevision: revision)])
            ])
        }
    }

    /// Each version's instance count and weights, e.g. "1.0.0 x4 w192".
    func sides() async throws -> [String] {
        let instances = try await api.get(path).instances
        return Dictionary(grouping: instances) { $0["model_version"] as? String ?? "?" }.map { version, list in
            "\(version) x\(list.count) w\(Set(list.compactMap { $0["weight"] as? Int }).sorted().map(String.init).joined(separator: ","))"
        }.sorted()
    }

    /// The staged update's step (`rollout.stage`), nil without one.
    func stage() async throws -> [String: Any]? {
        (try await api.get(path).json?["rollout"] as? [String: Any])?["stage"] as? [String: Any]
    }
}

extension RouterAnswer {
    fileprivate var instances: [[String: Any]] { json?["instances"] as? [[String: Any]] ?? [] }
    /// Instances per server (pending ones under "").
    fileprivate var placement: [String: Int] {
        instances.reduce(into: [:]) { $0[$1["server_id"] as? String ?? "", default: 0] += 1 }
    }
}
