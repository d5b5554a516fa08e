import DeviceProtocol
import FleetContract
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import ServiceRuntime
import Synchronization
import TestSupport
import Testing

@testable import Orchestrator

/// The orchestrator's handlers in process (`app.test(.router)`) over the repository and the
/// registry in memory: previews, confirmation, offline sites, revert and retry, and every bad
/// input's answer. Delivery to agents needs the broker and the database: `OrchestratorProcessTests`.
@Suite("Orchestrator handlers")
struct OrchestratorHandlerTests {
    /// A small fleet: site north (online) with two cameras and a disabled one, site south offline.
    final class Fleet: Sendable {
        let repository = InMemoryOperationRepository()
        let registry = InMemoryRegistry()
        /// How many times the API said it committed (the outbox publisher's wake-up).
        let commits = Atomic<Int>(0)
        let model = UUID()
        let gate = Fleet.device("cam-1", site: "north", labels: ["gate"])
        let yard = Fleet.device("cam-2", site: "north")
        let off = Fleet.device("cam-4", site: "north", enabled: false)
        let away = Fleet.device("cam-3", site: "south", reachable: false)

        static func device(_ key: String, site: String, enabled: Bool = true, reachable: Bool = true, labels: [String] = []) -> RegistryDevice {
            RegistryDevice(
                id: UUID(), serverID: "edge-\(site)", siteID: site, key: key, name: key, enabled: enabled, gone: false, groupID: nil, labels: labels,
                reachable: reachable, supportsPipelines: true)
        }

        func path(_ device: RegistryDevice) -> String { "/v1/devices/\(device.id.lowercasedString)/pipelines" }

        /// A pipeline request body part on the people model.
        func pipeline(_ name: String = "people", version: String = "1.0.0", settings: String = #"{"threshold": 0.6}"#) -> String {
            #"{"name": "\#(name)", "stages": [{"model_id": "\#(model.lowercasedString)", "version": "\#(version)", "settings": \#(settings)}]}"#
        }
    }

    private func withOrchestrator(_ body: @escaping @Sendable (RouterClient, Fleet) async throws -> Void) async throws {
        let fleet = Fleet()
        for device in [fleet.gate, fleet.yard, fleet.off, fleet.away] { await fleet.registry.add(device) }
        for (version, status) in [("1.0.0", "active"), ("0.9.0", "deprecated")] {
            await fleet.registry.add(
                RegistryModelVersion(
                    modelID: fleet.model, modelName: "people", version: version, artifactURI: "https://models.example/people-\(version).onnx",
                    sha256: String(repeating: "b", count: 64), defaultSettings: ["threshold": .number(0.5), "classes": .number(80)], status: status))
        }
        let router = Router()
        router.add(middleware: APIErrorMiddleware())
        try OrchestratorAPI(
            store: fleet.repository, registry: fleet.registry, resolver: PipelineResolver(registry: fleet.registry),
            committed: { _ = fleet.commits.add(1, ordering: .relaxed) }, logger: Logger(label: "orchestrator-handlers")
        ).addRoutes(to: router)
        try await Application(router: router).test(.router) { client in
            try await body(RouterClient(client), fleet)
        }
    }

    @Test("one device: add, replace, change a setting, remove, each a new revision; previews write nothing; refusals name their field")
    func oneDevice() async throws {
        try await withOrchestrator { orchestrator, fleet in
            let path = fleet.path(fleet.gate)
            let added = try await orchestrator.call(.post, path, #"{"pipeline": \#(fleet.pipeline())}"#)
            #expect(added.status == .accepted && added.operation?["kind"] as? String == "add_pipeline", "\(added.body)")
            #expect(fleet.commits.load(ordering: .relaxed) == 1)
            let running = try await orchestrator.get(path)
            let stage = ((running.json?["pipelines"] as? [[String: Any]])?.first?["stages"] as? [[String: Any]])?.first
            #expect(stage?["settings"] as? [String: Double] == ["threshold": 0.6, "classes": 80], "defaults merged under the operator's")
            #expect(stage?["artifact_uri"] as? String == "https://models.example/people-1.0.0.onnx")

            let preview = try await orchestrator.call(.put, "\(path)/0", #"{"pipeline": \#(fleet.pipeline("people-v2")), "dry_run": true}"#)
            #expect(preview.status == .ok && preview.json?["dry_run"] as? Bool == true, "\(preview.body)")
            #expect(try await orchestrator.pipelines(of: fleet.gate) == (["people"], 1) && fleet.commits.load(ordering: .relaxed) == 1)

            #expect(try await orchestrator.call(.put, "\(path)/0", #"{"pipeline": \#(fleet.pipeline("people-v2"))}"#).status == .accepted)
            #expect(try await orchestrator.call(.patch, "\(path)/0/stages/0", #"{"settings": {"threshold": 0.7}}"#).status == .accepted)
            #expect(try await orchestrator.call(.delete, "\(path)/0").status == .accepted)
            #expect(try await orchestrator.pipelines(of: fleet.gate) == ([], 4))
            let gone = try await orchestrator.call(.delete, "\(path)/0")
            #expect(gone.status == .notFound && gone.errorField == "index", "\(gone.body)")
            let history = try await orchestrator.get("\(path)/history")
            #expect((history.json?["items"] as? [[String: Any]])?.compactMap { $0["revision"] as? Int } == [4, 3, 2, 1])

            let disabled = try await orchestrator.call(.post, fleet.path(fleet.off), #"{"pipeline": \#(fleet.pipeline())}"#)
            #expect(disabled.status == .conflict && disabled.errorCode == "device_unavailable" && disabled.errorField == "device_id")
            let offline = try await orchestrator.call(.post, fleet.path(fleet.away), #"{"pipeline": \#(fleet.pipeline())}"#)
            #expect(offline.status == .conflict && offline.errorCode == "site_offline" && offline.errorField == "allow_offline")
            #expect(
                try await orchestrator.call(.post, fleet.path(fleet.away), #"{"pipeline": \#(fleet.pipeline()), "allow_offline": true}"#).status
                    == .accepted)
            #expect(try await orchestrator.call(.post, "/v1/devices/\(UUID())/pipelines", #"{"pipeline": \#(fleet.pipeline())}"#).status == .notFound)

            await fleet.repository.changeBeforeNextApply(fleet.gate.id)
            let raced = try await orchestrator.call(.post, path, #"{"pipeline": \#(fleet.pipeline())}"#)
            #expect(raced.status == .conflict && raced.errorCode == "changed_meanwhile" && raced.errorField == "device_id", "\(raced.body)")
        }
    }

    @Test("many devices: the preview is exact, applying needs confirm, the same again is no_change; revert and retry; the list pages")
    func manyDevices() async throws {
        try await withOrchestrator { orchestrator, fleet in
            let assignment = #"{"targets": {"site_ids": ["north"]}, "pipelines": [\#(fleet.pipeline())]"#
            let preview = try await orchestrator.call(.post, "/v1/assignments", assignment + #", "dry_run": true}"#)
            let changed = (preview.json?["changes"] as? [[String: Any]])?.compactMap { $0["device_name"] as? String }
            let skipped = (preview.json?["skipped"] as? [[String: Any]])?.compactMap { $0["device_name"] as? String }
            #expect(preview.status == .ok && changed == ["cam-1", "cam-2"] && skipped == ["cam-4"], "\(preview.body)")

            let unconfirmed = try await orchestrator.call(.post, "/v1/assignments", assignment + "}")
            #expect(unconfirmed.status == .badRequest && unconfirmed.errorField == "confirm")
            #expect(try await orchestrator.pipelines(of: fleet.gate).revision == 0 && fleet.commits.load(ordering: .relaxed) == 0)

            let assigned = try await orchestrator.call(.post, "/v1/assignments", assignment + #", "confirm": true}"#)
            #expect(assigned.status == .accepted && assigned.operation?["devices"] as? Int == 2, "\(assigned.body)")
            let again = try await orchestrator.call(.post, "/v1/assignments", assignment + #", "confirm": true}"#)
            #expect(again.status == .conflict && again.errorCode == "no_change" && again.errorField == "targets")
            let settings = try await orchestrator.call(
                .post, "/v1/settings",
                #"{"targets": {"labels": ["gate"]}, "pipeline_name": "people", "stage": 0, "settings": {"threshold": 0.9}, "confirm": true}"#)
            #expect(settings.status == .accepted && settings.operation?["devices"] as? Int == 1, "\(settings.body)")
            let missing = try await orchestrator.call(.post, "/v1/assignments", #"{"targets": {"device_ids": ["\#(UUID())"]}, "pipelines": []}"#)
            #expect(missing.status == .notFound && missing.errorField == "targets.device_ids")

            let assignID = try #require(assigned.operationID)
            let first = try await orchestrator.get("/v1/operations?limit=1")
            let cursor = try #require(first.json?["next_cursor"] as? String)
            let second = try await orchestrator.get("/v1/operations?limit=1&cursor=\(cursor)")
            #expect((first.json?["items"] as? [[String: Any]])?.first?["id"] as? String == settings.operationID)
            #expect((second.json?["items"] as? [[String: Any]])?.first?["id"] as? String == assignID)
            let detail = try await orchestrator.get("/v1/operations/\(assignID)?status=pending")
            #expect((detail.json?["devices"] as? [[String: Any]])?.compactMap { $0["device_name"] as? String } == ["cam-1", "cam-2"])

            let nothing = try await orchestrator.call(.post, "/v1/operations/\(assignID)/retry", #"{"confirm": true}"#)
            #expect(nothing.status == .conflict && nothing.errorCode == "nothing_to_retry")
            await fleet.repository.settle(try #require(UUID(uuidString: assignID)), device: fleet.yard.id, .failed, reason: "no GPU")
            let retried = try await orchestrator.call(.post, "/v1/operations/\(assignID)/retry", #"{"confirm": true}"#)
            #expect(retried.status == .accepted && retried.operation?["retries"] as? String == assignID, "\(retried.body)")

            let reverted = try await orchestrator.call(.post, "/v1/operations/\(assignID)/revert", #"{"confirm": true}"#)
            #expect(reverted.status == .accepted && reverted.operation?["reverts"] as? String == assignID, "\(reverted.body)")
            let (gate, yard) = (try await orchestrator.pipelines(of: fleet.gate), try await orchestrator.pipelines(of: fleet.yard))
            #expect(gate.names.isEmpty && yard.names.isEmpty, "\(gate) \(yard)")
        }
    }

    @Test("every bad body, path and query field is a 4xx naming it; unknown and deprecated versions are 422; a silent registry is 503")
    func badInput() async throws {
        try await withOrchestrator { orchestrator, fleet in
            let path = fleet.path(fleet.gate)
            for (body, status, field) in [
                (#"{"pipeline": \#(fleet.pipeline(version: "2.0.0"))}"#, HTTPResponse.Status.unprocessableContent, "pipeline.stages[0].version"),
                (#"{"pipeline": \#(fleet.pipeline(version: "0.9.0"))}"#, .unprocessableContent, "pipeline.stages[0].version"),
                (#"{"pipeline": \#(fleet.pipeline()), "watchdog_seconds": 0}"#, .badRequest, "watchdog_seconds"),
                (#"{"pipeline": \#(fleet.pipeline(""))}"#, .badRequest, "pipeline.name"),
                (#"{"pipeline": {"name": "p", "stages": []}}"#, .badRequest, "pipeline.stages"),
                (
                    #"{"pipeline": \#(fleet.pipeline(settings: #"{"confidence_threshold": 2}"#))}"#, .badRequest,
                    "pipeline.stages[0].settings.confidence_threshold"
                ),
                (#"{"pipline": {}}"#, .badRequest, "pipeline"),
                ("{", .badRequest, "(body)"),
            ] {
                let bad = try await orchestrator.call(.post, path, body)
                #expect(bad.status == status && bad.errorField == field, "\(body): \(bad.body)")
            }
            for (method, uri, body, field) in [
                (HTTPRequest.Method.post, "/v1/devices/seven/pipelines", #"{"pipeline": \#(fleet.pipeline())}"#, "device_id"),
                (.put, "\(path)/-1", #"{"pipeline": \#(fleet.pipeline())}"#, "index"),
                (.delete, "\(path)/0?dry_run=maybe", nil, "dry_run"),
                (.patch, "\(path)/0/stages/x", #"{"settings": {}}"#, "stage"),
                (.post, "/v1/assignments", #"{"targets": {}, "pipelines": []}"#, "targets"),
                (.post, "/v1/settings", #"{"targets": {"site_ids": ["north"]}, "pipeline_name": "p", "stage": -1, "settings": {}}"#, "stage"),
                (.get, "/v1/operations?limit=0", nil, "limit"),
                (.get, "/v1/operations?cursor=abc", nil, "cursor"),
                (.get, "/v1/operations/x", nil, "operation_id"),
                (.get, "/v1/operations/\(UUID())?status=done", nil, "status"),
            ] {
                let bad = try await orchestrator.call(method, uri, body)
                #expect(bad.status == .badRequest && bad.errorField == field, "\(method) \(uri): \(bad.body)")
            }
            let many = Array(repeating: fleet.pipeline(), count: 65).joined(separator: ", ")
            let tooMany = try await orchestrator.call(.post, "/v1/assignments", #"{"targets": {"site_ids": ["north"]}, "pipelines": [\#(many)]}"#)
            #expect(tooMany.status == .badRequest && tooMany.errorField == "pipelines")
            #expect(try await orchestrator.get("/v1/operations/\(UUID())").status == .notFound)
            #expect(fleet.commits.load(ordering: .relaxed) == 0)

            await fleet.registry.setDown(true)
            let silent = try await orchestrator.call(.post, path, #"{"pipeline": \#(fleet.pipeline())}"#)
            #expect(silent.status == .serviceUnavailable && silent.errorCode == "registry_unavailable", "\(silent.body)")
        }
    }
}

extension RouterAnswer {
    fileprivate var operation: [String: Any]? { json?["operation"] as? [String: Any] }
    fileprivate var operationID: String? { operation?["id"] as? String }
}

extension RouterClient {
    /// A device's pipeline names and revision, as `GET /v1/devices/{id}/pipelines` gives them.
    fileprivate func pipelines(of device: RegistryDevice) async throws -> (names: [String], revision: Int) {
        let answer = try await get("/v1/devices/\(device.id.lowercasedString)/pipelines")
        let pipelines = answer.json?["pipelines"] as? [[String: Any]] ?? []
        return (pipelines.compactMap { $0["name"] as? String }, answer.json?["revision"] as? Int ?? -1)
    }
}
