import FleetContract
import Foundation
import Hummingbird
import ServiceRuntime

/// The registry's REST API. Every route is in ``routes``, which both the router and the test of
/// the contract (`openapi.yaml`) read, so a route cannot be served without being documented.
struct RegistryAPI: Sendable {
    let store: any RegistryRepository
    let events: any RegistryChangePublishing
    let orchestrator: any ModelVersionUsageSource

    typealias Route = APIRoute<RegistryAPI>

    static let routes: [Route] = [
        Route(.get, "/openapi.json") { _, _, _ in .openAPIDocument(RegistryOpenAPI.text) },
        Route(.post, "/v1/models") { api, request, context in try await api.createModel(request, context) },
        Route(.get, "/v1/models") { api, request, context in try await api.listModels(request, context) },
        Route(.get, "/v1/models/{model_id}") { api, request, context in try await api.getModel(request, context) },
        Route(.patch, "/v1/models/{model_id}") { api, request, context in try await api.updateModel(request, context) },
        Route(.delete, "/v1/models/{model_id}") { api, request, context in try await api.deleteModel(request, context) },
        Route(.post, "/v1/models/{model_id}/versions") { api, request, context in try await api.addVersion(request, context) },
        Route(.get, "/v1/models/{model_id}/versions/{version}") { api, request, context in try await api.getVersion(request, context) },
        Route(.post, "/v1/models/{model_id}/versions/{version}/deprecate") { api, request, context in
            try await api.deprecateVersion(request, context)
        },
        Route(.delete, "/v1/models/{model_id}/versions/{version}") { api, request, context in try await api.deleteVersion(request, context) },
        Route(.get, "/v1/sites") { api, request, context in try await api.listSites(request, context) },
        Route(.post, "/v1/sites") { api, request, context in try await api.createSite(request, context) },
        Route(.get, "/v1/sites/{site_id}") { api, request, context in try await api.getSitePage(request, context) },
        Route(.get, "/v1/sites/{site_id}/groups") { api, request, context in try await api.listGroups(request, context) },
        Route(.post, "/v1/sites/{site_id}/groups") { api, request, context in try await api.createGroup(request, context) },
        Route(.delete, "/v1/sites/{site_id}/groups/{group_id}") { api, request, context in try await api.deleteGroup(request, context) },
        Route(.get, "/v1/servers") { api, request, context in try await api.listServers(request, context) },
        Route(.get, "/v1/servers/{server_id}") { api, request, context in try await api.getServer(request, context) },
        Route(.get, "/v1/devices") { api, request, context in try await api.listDevices(request, context) },
        Route(.get, "/v1/devices/{device_id}") { api, request, context in try await api.getDevice(request, context) },
        Route(.patch, "/v1/devices/{device_id}") { api, request, context in try await api.updateDevice(request, context) },
    ]

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.add(Self.routes, for: self)
    }

    // MARK: Models

    func createModel(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let new = try await JSONBody.decode(NewModel.self, from: request, context: context).validated()
        return try respond(try await store.createModel(new), .created, request, context)
    }

    func listModels(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        let task = try query.get("task").map { text throws(APIError) in
            guard let task = ModelTask(rawValue: text) else {
                throw APIError.invalid(field: "task", "must be one of \(ModelTask.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return task
        }
        let status = try query.get("status").map { text throws(APIError) in
            guard let status = VersionStatus(rawValue: text) else { throw APIError.invalid(field: "status", "must be active or deprecated") }
            return status
        }
        let label = try query.get("label").map { text throws(APIError) in try Validate.label(text, field: "label") }
        let search = try query.get("q").map { text throws(APIError) in try Validate.text(text, field: "q", maximum: 128) }
        let page = try await store.listModels(
            task: task,
            label: label,
            status: status,
            search: search,
            limit: try Validate.limit(query.get("limit")),
            after: try Cursor.decode(query.get("cursor"))
        )
        return try respond(page, .ok, request, context)
    }

    private func modelID(_ context: BasicRequestContext) throws -> UUID {
        try Validate.uuid(try context.parameters.require("model_id"), field: "model_id")
    }

    func getModel(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let id = try modelID(context)
        guard let model = try await store.model(id: id) else { throw APIError.notFound("no model \(id.lowercasedString)") }
        return try respond(model, .ok, request, context)
    }

    func updateModel(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let id = try modelID(context)
        let update = try await JSONBody.decode(ModelUpdate.self, from: request, context: context).validated()
        guard let model = try await store.updateModel(id: id, update) else { throw APIError.notFound("no model \(id.lowercasedString)") }
        return try respond(model, .ok, request, context)
    }

    func deleteModel(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let id = try modelID(context)
        switch try await store.deleteModel(id: id) {
        case .deleted:
            return Response(status: .noContent)
        case .notFound:
            throw APIError.notFound("no model \(id.lowercasedString)")
        case .hasVersions(let versions):
            throw APIError(
                .conflict, code: "conflict",
                message: "model \(id.lowercasedString) still has versions \(versions.joined(separator: ", ")); delete them first")
        }
    }

    func addVersion(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let id = try modelID(context)
        let new = try await JSONBody.decode(NewModelVersion.self, from: request, context: context).validated()
        guard let version = try await store.addVersion(modelID: id, new) else { throw APIError.notFound("no model \(id.lowercasedString)") }
        await events.publish(RegistryChange(kind: .modelVersionChanged, change: "added", modelID: id, version: version.version))
        return try respond(version, .created, request, context)
    }

    private func versionPath(_ context: BasicRequestContext) throws -> (UUID, String) {
        (try modelID(context), try Validate.semanticVersion(try context.parameters.require("version"), field: "version"))
    }

    func getVersion(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let (id, version) = try versionPath(context)
        guard let found = try await store.version(modelID: id, version: version) else {
            throw APIError.notFound("model \(id.lowercasedString) has no version \(version)")
        }
        return try respond(found, .ok, request, context)
    }

    func deprecateVersion(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let (id, version) = try versionPath(context)
        guard let updated = try await store.setStatus(modelID: id, version: version, .deprecated) else {
            throw APIError.notFound("model \(id.lowercasedString) has no version \(version)")
        }
        await events.publish(RegistryChange(kind: .modelVersionChanged, change: "deprecated", modelID: id, version: version))
        return try respond(updated, .ok, request, context)
    }

    func deleteVersion(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let (id, version) = try versionPath(context)
        guard try await store.version(modelID: id, version: version) != nil else {
            throw APIError.notFound("model \(id.lowercasedString) has no version \(version)")
        }
        // A version a pipeline runs stays; agents would keep a stage whose model nobody can look up.
        let usage = try await orchestrator.usage(of: id, version: version)
        if usage.devices > 0 {
            let examples = usage.examples.map { "device \($0.deviceKey) on server \($0.serverID) (pipeline '\($0.pipeline)')" }
            let more = usage.devices > usage.examples.count ? ", and \(usage.devices - usage.examples.count) more" : ""
            throw APIError(
                .conflict, code: "version_in_use",
                message:
                    "model \(id.lowercasedString) version \(version) is used by the pipelines of \(usage.devices) device(s): \(examples.joined(separator: ", "))\(more); replace or remove those pipelines first",
                field: "version")
        }
        guard try await store.deleteVersion(modelID: id, version: version) else {
            throw APIError.notFound("model \(id.lowercasedString) has no version \(version)")
        }
        await events.publish(RegistryChange(kind: .modelVersionChanged, change: "deleted", modelID: id, version: version))
        return Response(status: .noContent)
    }

    // MARK: Inventory

    func listSites(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        try respond(Page(items: try await store.sites(), nextCursor: nil), .ok, request, context)
    }

    private struct NewSite: Decodable {
        var id: String
        var name: String
    }

    func createSite(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let new = try await JSONBody.decode(NewSite.self, from: request, context: context)
        let site = try await store.createSite(id: try Validate.identifier(new.id, field: "id"), name: try Validate.name(new.name, field: "name"))
        return try respond(site, .created, request, context)
    }

    private func siteID(_ context: BasicRequestContext) throws -> String {
        try Validate.identifier(try context.parameters.require("site_id"), field: "site_id")
    }

    func getSitePage(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let id = try siteID(context)
        guard let site = try await store.site(id: id) else { throw APIError.notFound("no site '\(id)'") }
        let page = SitePage(
            site: site,
            servers: try await store.servers(site: id, online: nil),
            groups: try await store.groups(site: id),
            devices: try await store.devices(DeviceSelection(siteIDs: [id]), limit: 100, after: 0)
        )
        return try respond(page, .ok, request, context)
    }

    func listGroups(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let id = try siteID(context)
        guard try await store.site(id: id) != nil else { throw APIError.notFound("no site '\(id)'") }
        return try respond(Page(items: try await store.groups(site: id), nextCursor: nil), .ok, request, context)
    }

    func createGroup(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let id = try siteID(context)
        let new = try await JSONBody.decode(NewDeviceGroup.self, from: request, context: context)
        let name = try Validate.name(new.name, field: "name")
        guard try await store.site(id: id) != nil else { throw APIError.notFound("no site '\(id)'") }
        return try respond(try await store.createGroup(site: id, name: name), .created, request, context)
    }

    func deleteGroup(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let site = try siteID(context)
        let group = try Validate.uuid(try context.parameters.require("group_id"), field: "group_id")
        guard try await store.deleteGroup(site: site, id: group) else {
            throw APIError.notFound("site '\(site)' has no group \(group.lowercasedString)")
        }
        return Response(status: .noContent)
    }

    func listServers(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        let site = try query.get("site").map { text throws(APIError) in try Validate.identifier(text, field: "site") }
        let servers = try await store.servers(site: site, online: try Validate.bool(query.get("online"), field: "online"))
        return try respond(Page(items: servers, nextCursor: nil), .ok, request, context)
    }

    func getServer(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let id = try Validate.identifier(try context.parameters.require("server_id"), field: "server_id")
        guard let server = try await store.server(id: id) else { throw APIError.notFound("no server '\(id)'") }
        return try respond(server, .ok, request, context)
    }

    func listDevices(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        var selection = DeviceSelection()
        if let site = query.get("site") { selection.siteIDs = [try Validate.identifier(site, field: "site")] }
        if let server = query.get("server") { selection.serverIDs = [try Validate.identifier(server, field: "server")] }
        if let group = query.get("group") { selection.groupIDs = [try Validate.uuid(group, field: "group")] }
        let labels = query.getAll("label")
        if !labels.isEmpty {
            guard labels.count <= 32 else { throw APIError.invalid(field: "label", "at most 32 labels") }
            selection.labels = Set(try labels.map { text throws(APIError) in try Validate.label(text, field: "label") }).sorted()
        }
        selection.enabled = try Validate.bool(query.get("enabled"), field: "enabled")
        selection.online = try Validate.bool(query.get("online"), field: "online")
        let page = try await store.devices(selection, limit: try Validate.limit(query.get("limit")), after: try Cursor.decode(query.get("cursor")))
        return respondJSON(page.json)
    }

    private func deviceID(_ context: BasicRequestContext) throws -> UUID {
        try Validate.uuid(try context.parameters.require("device_id"), field: "device_id")
    }

    func getDevice(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let id = try deviceID(context)
        guard let device = try await store.device(id: id) else { throw APIError.notFound("no device \(id.lowercasedString)") }
        return respondJSON(device.json)
    }

    func updateDevice(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let id = try deviceID(context)
        let update = try await JSONBody.decode(DeviceUpdate.self, from: request, context: context).validated()
        guard let device = try await store.updateDevice(id: id, update) else { throw APIError.notFound("no device \(id.lowercasedString)") }
        await events.publish(RegistryChange(kind: .deviceChanged, serverID: device.serverID, deviceKey: device.key, change: "updated"))
        return try respond(device, .ok, request, context)
    }

    /// A 200 with JSON written by hand (see `Device.appendJSON`).
    private func respondJSON(_ bytes: [UInt8]) -> Response {
        Response(status: .ok, headers: [.contentType: "application/json; charset=utf-8"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

}

/// `value` as the JSON of the contract (snake_case, ISO 8601 dates) with `status`: every
/// handler's answer.
func respond(
    _ value: some Encodable & Sendable, _ status: HTTPResponse.Status, _ request: Request, _ context: BasicRequestContext
) throws -> Response {
    try JSONResponse(value, status: status, encoder: ContractCoding.encoder).response(from: request, context: context)
}

/// The registry's contract, `openapi.yaml`, served as JSON (`RegistryOpenAPI.swift` is generated).
enum OpenAPIDocument {
    static let json = Data(RegistryOpenAPI.text.utf8)
}
