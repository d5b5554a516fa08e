import FleetContract
import Foundation
import Hummingbird
import HummingbirdTesting
import ServiceRuntime
import TestSupport
import Testing

@testable import Registry

/// The registry's handlers in process (`app.test(.router)`): routes, validation, error bodies,
/// and what each change announces, over the repository in memory. What needs PostgreSQL and the
/// broker (SQL filters, unique constraints, hellos, MQTT answers) stays in `RegistryProcessTests`.
@Suite("Registry handlers")
struct RegistryHandlerTests {
    /// The announcements the handlers made, in order.
    actor Announcements: RegistryChangePublishing {
        private(set) var changes: [RegistryChange] = []
        func publish(_ change: RegistryChange) async { changes.append(change) }
    }

    /// The orchestrator's answer to "who uses this version": `nil` is an orchestrator that does
    /// not answer.
    struct Usage: ModelVersionUsageSource {
        var answer: ModelVersionUsage?
        func usage(of modelID: UUID, version: String) async throws -> ModelVersionUsage {
            guard let answer else { throw DomainError.unavailable(code: "orchestrator_unavailable", "the orchestrator did not answer") }
            return answer
        }
    }

    /// The API over `repository`, served in process with the service's error middleware.
    private func withRegistry(
        _ repository: InMemoryRegistryRepository = InMemoryRegistryRepository(), usage: Usage = Usage(answer: .init(devices: 0, examples: [])),
        _ body: @escaping @Sendable (RouterClient, Announcements) async throws -> Void
    ) async throws {
        let announcements = Announcements()
        let router = Router()
        router.add(middleware: APIErrorMiddleware())
        try RegistryAPI(store: repository, events: announcements, orchestrator: usage).addRoutes(to: router)
        try await Application(router: router).test(.router) { client in
            try await body(RouterClient(client), announcements)
        }
    }

    private static let version =
        #"{"version": "1.0.0", "artifact_uri": "https://models.example/p.onnx", "sha256": "\#(String(repeating: "a", count: 64))", "size_bytes": 10}"#

    @Test("models: created, refused twice by name, read with their versions, listed by filters and cursor, updated")
    func models() async throws {
        try await withRegistry { registry, _ in
            var ids: [String] = []
            for (index, task) in ["object_detection", "object_detection", "ocr"].enumerated() {
                let created = try await registry.call(
                    .post, "/v1/models", #"{"name": "Model-\#(index)", "task": "\#(task)", "format": "onnx", "labels": ["gate"]}"#)
                #expect(created.status == .created, "\(created.body)")
                ids.append(try #require(created.json?["id"] as? String))
            }
            #expect(ids.allSatisfy { $0 == $0.lowercased() })
            let duplicate = try await registry.call(.post, "/v1/models", #"{"name": "Model-0", "task": "ocr", "format": "onnx"}"#)
            #expect(duplicate.status == .conflict && duplicate.errorCode == "conflict" && duplicate.errorField == "name", "\(duplicate.body)")

            let fetched = try await registry.get("/v1/models/\(ids[0])")
            #expect(fetched.status == .ok && fetched.json?["name"] as? String == "Model-0" && (fetched.json?["versions"] as? [Any])?.isEmpty == true)

            var seen: [String] = []
            var cursor: String?
            repeat {
                let page = try await registry.get("/v1/models?label=gate&limit=2" + (cursor.map { "&cursor=\($0)" } ?? ""))
                seen += page.items.compactMap { $0["id"] as? String }
                cursor = page.json?["next_cursor"] as? String
            } while cursor != nil && seen.count < 10
            #expect(seen == ids)
            #expect(try await registry.get("/v1/models?task=ocr").items.compactMap { $0["id"] as? String } == [ids[2]])
            #expect(try await registry.get("/v1/models?q=model-1").items.compactMap { $0["id"] as? String } == [ids[1]])

            let updated = try await registry.call(.patch, "/v1/models/\(ids[0])", #"{"description": "people at gates"}"#)
            #expect(
                updated.status == .ok && updated.json?["description"] as? String == "people at gates"
                    && updated.json?["labels"] as? [String] == ["gate"])
            #expect(try await registry.call(.patch, "/v1/models/\(UUID())", #"{"description": "x"}"#).status == .notFound)
        }
    }

    @Test("every bad model field, path and query is a 400 naming it, and nothing is stored")
    func badModelInput() async throws {
        let repository = InMemoryRegistryRepository()
        try await withRegistry(repository) { registry, _ in
            for (body, field) in [
                (#"{"name": "x", "task": "dancing", "format": "onnx"}"#, "task"),
                (#"{"name": "", "task": "ocr", "format": "onnx"}"#, "name"),
                (#"{"name": "x", "task": "ocr"}"#, "format"),
                (#"{"name": "x", "task": "ocr", "format": "onnx", "labels": ["ok", 3]}"#, "labels[1]"),
                (#"{"name": "x", "task": "ocr", "format": "onnx", "labels": ["no spaces"]}"#, "labels[0]"),
                (#"{"name": "x", "task": "ocr", "format": "onnx", "description": "a\u0000b"}"#, "description"),
                ("{not json", "(body)"),
                ("[]", "(body)"),
            ] {
                let bad = try await registry.call(.post, "/v1/models", body)
                #expect(bad.status == .badRequest && bad.errorField == field, "\(body): \(bad.body)")
            }
            // The generated server refuses these before the handler, in the same words as the handler's own refusals.
            let task = try await registry.call(.post, "/v1/models", #"{"name": "x", "task": "dancing", "format": "onnx"}"#)
            #expect(
                task.error?["message"] as? String
                    == "must be one of object_detection, classification, segmentation, pose_estimation, ocr, embedding, other", "\(task.body)")
            let array = try await registry.call(.post, "/v1/models", "[]")
            #expect(array.error?["message"] as? String == "must be a JSON object", "\(array.body)")
            let noBody = try await registry.call(.post, "/v1/models", "")
            #expect(
                noBody.status == .badRequest && noBody.errorField == "(body)" && noBody.error?["message"] as? String == "a JSON body is required",
                "\(noBody.body)")
            let form = try await registry.call(.post, "/v1/models", "name=x", contentType: "application/x-www-form-urlencoded")
            #expect(form.status == .unsupportedMediaType && form.errorCode == "unsupported_media_type", "\(form.body)")
            let large = try await registry.call(.post, "/v1/models", #"{"name": "x", "description": "\#(String(repeating: "a", count: 1 << 20))"}"#)
            #expect(large.status == .contentTooLarge && large.errorCode == "too_large", "\(large.body)")
            #expect(try await repository.listModels(task: nil, label: nil, status: nil, search: nil, limit: 10, after: 0).items.isEmpty)
            for (path, field) in [
                ("/v1/models?task=dancing", "task"), ("/v1/models?limit=0", "limit"), ("/v1/models?limit=1001", "limit"),
                ("/v1/models?cursor=!!", "cursor"), ("/v1/models/not-a-uuid", "model_id"), ("/v1/models?status=old", "status"),
                ("/v1/models?label=a%20b", "label"), ("/v1/models/\(UUID())/versions/one", "version"),
            ] {
                let bad = try await registry.get(path)
                #expect(bad.status == .badRequest && bad.errorField == field, "\(path): \(bad.body)")
            }
            let empty = try await registry.call(.patch, "/v1/models/\(UUID())", "{}")
            #expect(empty.status == .badRequest && empty.errorField == "(body)")
            let nowhere = try await registry.get("/v1/nothing-here")
            #expect(nowhere.status == .notFound && nowhere.errorCode == "not_found", "\(nowhere.body)")
        }
    }

    @Test("versions: each change announced; a used version is kept, naming its device; a silent orchestrator keeps it too")
    func versions() async throws {
        let repository = InMemoryRegistryRepository()
        let user = ModelVersionUsage.User(deviceID: UUID(), serverID: "edge-01", deviceKey: "cam-1", pipeline: "people")
        let model = try await repository.createModel(NewModel(name: "people", description: nil, task: .objectDetection, format: .onnx, labels: nil))
        let path = "/v1/models/\(model.id.lowercasedString)"

        try await withRegistry(repository) { registry, announcements in
            let added = try await registry.call(.post, "\(path)/versions", Self.version)
            #expect(added.status == .created && added.json?["status"] as? String == "active", "\(added.body)")
            let again = try await registry.call(.post, "\(path)/versions", Self.version)
            #expect(again.status == .conflict && again.errorField == "version")
            #expect(try await registry.call(.post, "/v1/models/\(UUID())/versions", Self.version).status == .notFound)
            let badHash = try await registry.call(.post, "\(path)/versions", Self.version.replacingOccurrences(of: "aaaa", with: "zz"))
            #expect(badHash.status == .badRequest && badHash.errorField == "sha256")

            let deprecated = try await registry.call(.post, "\(path)/versions/1.0.0/deprecate")
            #expect(deprecated.status == .ok && deprecated.json?["status"] as? String == "deprecated")
            #expect(try await registry.get("/v1/models?status=deprecated").items.count == 1)
            #expect(try await registry.get("/v1/models?status=active").items.isEmpty)
            let refused = try await registry.call(.delete, path)
            #expect(refused.status == .conflict && refused.body.contains("1.0.0"), "\(refused.body)")
            #expect(await announcements.changes.map(\.change) == ["added", "deprecated"])
            #expect(await announcements.changes.allSatisfy { $0.modelID == model.id && $0.version == "1.0.0" })
        }
        try await withRegistry(repository, usage: Usage(answer: .init(devices: 3, examples: [user]))) { registry, announcements in
            let used = try await registry.call(.delete, "\(path)/versions/1.0.0")
            #expect(used.status == .conflict && used.errorCode == "version_in_use" && used.errorField == "version")
            #expect(used.body.contains("cam-1") && used.body.contains("edge-01") && used.body.contains("2 more"), "\(used.body)")
            #expect(await announcements.changes.isEmpty)
        }
        try await withRegistry(repository, usage: Usage(answer: nil)) { registry, _ in
            let silent = try await registry.call(.delete, "\(path)/versions/1.0.0")
            #expect(silent.status == .serviceUnavailable && silent.errorCode == "orchestrator_unavailable", "\(silent.body)")
        }
        #expect(try await repository.version(modelID: model.id, version: "1.0.0") != nil)
        try await withRegistry(repository) { registry, announcements in
            let deleted = try await registry.call(.delete, "\(path)/versions/1.0.0")
            #expect(deleted.status == .noContent, "\(deleted.body)")
            #expect(try await registry.call(.delete, "\(path)/versions/1.0.0").status == .notFound)
            #expect(await announcements.changes.map(\.change) == ["deleted"])
            #expect(try await registry.call(.delete, path).status == .noContent)
            #expect(try await registry.get(path).status == .notFound)
        }
    }

    @Test("inventory: sites and groups made and refused twice; devices filtered, grouped only within their site, renamed")
    func inventory() async throws {
        let repository = InMemoryRegistryRepository()
        func server(_ id: String, site: String, online: Bool) -> Server {
            Server(
                id: id, siteID: site, name: id, agentVersion: "1.0.0", cpuCores: 4, memoryBytes: 1 << 33, gpus: [], supportsPipelines: true,
                online: online, lastSeen: nil)
        }
        func device(_ key: String, server: String, site: String, labels: [String] = []) -> Device {
            Device(
                id: UUID(), serverID: server, siteID: site, key: key, name: key, kind: "camera", enabled: true, gone: false, groupID: nil,
                labels: labels, reachable: false, supportsPipelines: false)
        }
        let gate = device("cam-1", server: "edge-01", site: "north", labels: ["gate"])
        await repository.addServer(
            server("edge-01", site: "north", online: true), devices: [gate, device("cam-2", server: "edge-01", site: "north")])
        await repository.addServer(server("edge-02", site: "south", online: false), devices: [device("cam-3", server: "edge-02", site: "south")])

        try await withRegistry(repository) { registry, announcements in
            let sites = try await registry.get("/v1/sites").items
            let summary = sites.map {
                "\($0["id"] as? String ?? ""):\($0["online"] as? Bool == true ? "online" : "offline"):\($0["device_count"] as? Int ?? -1)"
            }
            #expect(summary == ["north:online:2", "south:offline:1"], "\(sites)")
            #expect(try await registry.call(.post, "/v1/sites", #"{"id": "east", "name": "East yard"}"#).status == .created)
            #expect(try await registry.call(.post, "/v1/sites", #"{"id": "east", "name": "Again"}"#).errorField == "id")
            #expect(try await registry.call(.post, "/v1/sites", #"{"id": "no spaces", "name": "x"}"#).errorField == "id")

            let group = try await registry.call(.post, "/v1/sites/north/groups", #"{"name": "Gates"}"#)
            #expect(group.status == .created)
            let groupID = try #require(group.json?["id"] as? String)
            #expect(try await registry.call(.post, "/v1/sites/north/groups", #"{"name": "Gates"}"#).errorField == "name")
            #expect(try await registry.call(.post, "/v1/sites/west/groups", #"{"name": "Gates"}"#).status == .notFound)
            let southGroup = try await registry.call(.post, "/v1/sites/south/groups", #"{"name": "Docks"}"#).json?["id"] as? String

            let path = "/v1/devices/\(gate.id.lowercasedString)"
            let grouped = try await registry.call(.patch, path, #"{"group_id": "\#(groupID)", "name": "Gate camera"}"#)
            #expect(grouped.status == .ok && grouped.json?["group_id"] as? String == groupID && grouped.json?["name"] as? String == "Gate camera")
            let elsewhere = try await registry.call(.patch, path, #"{"group_id": "\#(southGroup ?? "")"}"#)
            #expect(elsewhere.status == .badRequest && elsewhere.errorField == "group_id", "\(elsewhere.body)")
            #expect(try await registry.get("/v1/devices?group=\(groupID)").items.compactMap { $0["key"] as? String } == ["cam-1"])
            #expect(try await registry.get("/v1/devices?online=false").items.compactMap { $0["key"] as? String } == ["cam-3"])
            #expect(try await registry.get("/v1/devices?label=gate&site=north").items.compactMap { $0["key"] as? String } == ["cam-1"])
            let firstPage = try await registry.get("/v1/devices?limit=2")
            #expect(firstPage.items.count == 2)
            let rest = try await registry.get("/v1/devices?limit=2&cursor=\(try #require(firstPage.json?["next_cursor"] as? String))")
            #expect(rest.items.compactMap { $0["key"] as? String } == ["cam-3"] && rest.json?["next_cursor"] as? String == nil)
            #expect(await announcements.changes.map(\.deviceKey) == ["cam-1"])

            for (path, field) in [
                ("/v1/devices?online=maybe", "online"), ("/v1/devices?group=7", "group"), ("/v1/devices?site=a%20b", "site"),
                ("/v1/devices?label=gate&label=a%20b", "label"), ("/v1/devices/7", "device_id"), ("/v1/servers?online=yes", "online"),
                ("/v1/sites/a%20b", "site_id"),
            ] {
                let bad = try await registry.get(path)
                #expect(bad.status == .badRequest && bad.errorField == field, "\(path): \(bad.body)")
            }
            let badEdit = try await registry.call(.patch, path, #"{"enabled": "yes"}"#)
            #expect(badEdit.status == .badRequest && badEdit.errorField == "enabled", "\(badEdit.body)")
            #expect(try await registry.get("/v1/devices/\(UUID())").status == .notFound)
            #expect(try await registry.get("/v1/servers/edge-09").status == .notFound)

            #expect(try await registry.call(.delete, "/v1/sites/north/groups/\(groupID)").status == .noContent)
            #expect(try await registry.get(path).json?["group_id"] as? String == nil)
            #expect(try await registry.call(.delete, "/v1/sites/north/groups/\(groupID)").status == .notFound)
        }
    }
}
