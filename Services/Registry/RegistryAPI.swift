import FleetContract
import Foundation
import Hummingbird
import OpenAPIRuntime
import RegistryContract
import ServiceRuntime

/// The registry's REST API: its contract's `APIProtocol` (openapi.yaml, generated into
/// RegistryContract; decision 91), and the three device routes the generator's filter leaves
/// out, plain routes in ``plainRoutes`` (the device page's hand-written JSON, and a device edit
/// whose `"group_id": null` a generated Optional cannot tell from an absent one).
///
/// Handlers read the generated request types, work on the domain's (``NewModel``, ``Model``…,
/// validated with field names as before) and answer with the generated response types, recast
/// from the domain's through the contract's JSON (``ContractCoding/recast(_:as:)``).
struct RegistryAPI: APIProtocol {
    let store: any RegistryRepository
    let events: any RegistryChangePublishing
    let orchestrator: any ModelVersionUsageSource
    /// `/v1/enrollments`; nil where the API is served without the broker's accounts (tests).
    var enrollments: EnrollmentAPI? = nil
    /// `/v1/keys`; nil when the registry runs without API keys (no signing key configured).
    var keys: APIKeysAPI? = nil

    typealias Route = APIRoute<RegistryAPI>

    /// The routes served by hand, each documented in openapi.yaml.
    static let plainRoutes: [Route] = [
        Route(.get, "/v1/devices") { api, request, context in try await api.listDevices(request, context) },
        Route(.get, "/v1/devices/{device_id}") { api, request, context in try await api.getDevice(request, context) },
        Route(.patch, "/v1/devices/{device_id}") { api, request, context in try await api.updateDevice(request, context) },
    ]

    func addRoutes(to router: Router<BasicRequestContext>) throws {
        try router.addContract(document: RegistryOpenAPI.text) { try registerHandlers(on: $0, configuration: $1, middlewares: $2) }
        router.add(Self.plainRoutes, for: self)
    }

    // MARK: Models

    func createModel(_ input: Operations.CreateModel.Input) async throws -> Operations.CreateModel.Output {
        let body =
            switch input.body {
            case .json(let json): json
            }
        let new = try JSONBody.recast(body, as: NewModel.self).validated()
        return .created(.init(body: .json(try answer(try await store.createModel(new)))))
    }

    func listModels(_ input: Operations.ListModels.Input) async throws -> Operations.ListModels.Output {
        let query = input.query
        let label = try query.label.map { text throws(APIError) in try Validate.label(text, field: "label") }
        let search = try query.q.map { text throws(APIError) in try Validate.text(text, field: "q", maximum: 128) }
        let page = try await store.listModels(
            task: try query.task.map { try ContractCoding.recast($0) },
            label: label,
            status: try query.status.map { try ContractCoding.recast($0) },
            search: search,
            limit: try Validate.limit(query.limit),
            after: try Cursor.decode(query.cursor)
        )
        return .ok(.init(body: .json(try answer(page))))
    }

    func getModel(_ input: Operations.GetModel.Input) async throws -> Operations.GetModel.Output {
        let id = try Validate.uuid(input.path.modelId, field: "model_id")
        guard let model = try await store.model(id: id) else { throw APIError.notFound("no model \(id.lowercasedString)") }
        return .ok(.init(body: .json(try answer(model))))
    }

    func updateModel(_ input: Operations.UpdateModel.Input) async throws -> Operations.UpdateModel.Output {
        let id = try Validate.uuid(input.path.modelId, field: "model_id")
        let body =
            switch input.body {
            case .json(let json): json
            }
        let update = try JSONBody.recast(body, as: ModelUpdate.self).validated()
        guard let model = try await store.updateModel(id: id, update) else { throw APIError.notFound("no model \(id.lowercasedString)") }
        return .ok(.init(body: .json(try answer(model))))
    }

    func deleteModel(_ input: Operations.DeleteModel.Input) async throws -> Operations.DeleteModel.Output {
        let id = try Validate.uuid(input.path.modelId, field: "model_id")
        switch try await store.deleteModel(id: id) {
        case .deleted:
            return .noContent(.init())
        case .notFound:
            throw APIError.notFound("no model \(id.lowercasedString)")
        case .hasVersions(let versions):
            throw APIError(
                .conflict, code: "conflict",
                message: "model \(id.lowercasedString) still has versions \(versions.joined(separator: ", ")); delete them first")
        }
    }

    func addModelVersion(_ input: Operations.AddModelVersion.Input) async throws -> Operations.AddModelVersion.Output {
        let id = try Validate.uuid(input.path.modelId, field: "model_id")
        let body =
            switch input.body {
            case .json(let json): json
            }
        let new = try JSONBody.recast(body, as: NewModelVersion.self).validated()
        guard let version = try await store.addVersion(modelID: id, new) else { throw APIError.notFound("no model \(id.lowercasedString)") }
        await events.publish(RegistryChange(kind: .modelVersionChanged, change: "added", modelID: id, version: version.version))
        return .created(.init(body: .json(try answer(version))))
    }

    /// A version's path, checked: the model's id and the version.
    private func versionPath(modelID: String, version: String) throws(APIError) -> (UUID, String) {
        (try Validate.uuid(modelID, field: "model_id"), try Validate.semanticVersion(version, field: "version"))
    }

    func getModelVersion(_ input: Operations.GetModelVersion.Input) async throws -> Operations.GetModelVersion.Output {
        let (id, version) = try versionPath(modelID: input.path.modelId, version: input.path.version)
        guard let found = try await store.version(modelID: id, version: version) else {
            throw APIError.notFound("model \(id.lowercasedString) has no version \(version)")
        }
        return .ok(.init(body: .json(try answer(found))))
    }

    func deprecateModelVersion(_ input: Operations.DeprecateModelVersion.Input) async throws -> Operations.DeprecateModelVersion.Output {
        let (id, version) = try versionPath(modelID: input.path.modelId, version: input.path.version)
        guard let updated = try await store.setStatus(modelID: id, version: version, .deprecated) else {
            throw APIError.notFound("model \(id.lowercasedString) has no version \(version)")
        }
        await events.publish(RegistryChange(kind: .modelVersionChanged, change: "deprecated", modelID: id, version: version))
        return .ok(.init(body: .json(try answer(updated))))
    }

    func deleteModelVersion(_ input: Operations.DeleteModelVersion.Input) async throws -> Operations.DeleteModelVersion.Output {
        let (id, version) = try versionPath(modelID: input.path.modelId, version: input.path.version)
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
        return .noContent(.init())
    }

    // MARK: Inventory

    func listSites(_ input: Operations.ListSites.Input) async throws -> Operations.ListSites.Output {
        .ok(.init(body: .json(try answer(Page(items: try await store.sites(), nextCursor: nil)))))
    }

    func createSite(_ input: Operations.CreateSite.Input) async throws -> Operations.CreateSite.Output {
        let new =
            switch input.body {
            case .json(let body): body
            }
        let site = try await store.createSite(id: try Validate.identifier(new.id, field: "id"), name: try Validate.name(new.name, field: "name"))
        return .created(.init(body: .json(try answer(site))))
    }

    func getSitePage(_ input: Operations.GetSitePage.Input) async throws -> Operations.GetSitePage.Output {
        let id = try Validate.identifier(input.path.siteId, field: "site_id")
        guard let site = try await store.site(id: id) else { throw APIError.notFound("no site '\(id)'") }
        let page = SitePage(
            site: site,
            servers: try await store.servers(site: id, online: nil),
            groups: try await store.groups(site: id),
            devices: try await store.devices(DeviceSelection(siteIDs: [id]), limit: 100, after: 0)
        )
        return .ok(.init(body: .json(try answer(page))))
    }

    func listDeviceGroups(_ input: Operations.ListDeviceGroups.Input) async throws -> Operations.ListDeviceGroups.Output {
        let id = try Validate.identifier(input.path.siteId, field: "site_id")
        guard try await store.site(id: id) != nil else { throw APIError.notFound("no site '\(id)'") }
        return .ok(.init(body: .json(try answer(Page(items: try await store.groups(site: id), nextCursor: nil)))))
    }

    func createDeviceGroup(_ input: Operations.CreateDeviceGroup.Input) async throws -> Operations.CreateDeviceGroup.Output {
        let id = try Validate.identifier(input.path.siteId, field: "site_id")
        let new =
            switch input.body {
            case .json(let body): body
            }
        let name = try Validate.name(new.name, field: "name")
        guard try await store.site(id: id) != nil else { throw APIError.notFound("no site '\(id)'") }
        return .created(.init(body: .json(try answer(try await store.createGroup(site: id, name: name)))))
    }

    func deleteDeviceGroup(_ input: Operations.DeleteDeviceGroup.Input) async throws -> Operations.DeleteDeviceGroup.Output {
        let site = try Validate.identifier(input.path.siteId, field: "site_id")
        let group = try Validate.uuid(input.path.groupId, field: "group_id")
        guard try await store.deleteGroup(site: site, id: group) else {
            throw APIError.notFound("site '\(site)' has no group \(group.lowercasedString)")
        }
        return .noContent(.init())
    }

    func listServers(_ input: Operations.ListServers.Input) async throws -> Operations.ListServers.Output {
        let site = try input.query.site.map { text throws(APIError) in try Validate.identifier(text, field: "site") }
        let servers = try await store.servers(site: site, online: input.query.online)
        return .ok(.init(body: .json(try answer(Page(items: servers, nextCursor: nil)))))
    }

    func getServer(_ input: Operations.GetServer.Input) async throws -> Operations.GetServer.Output {
        let id = try Validate.identifier(input.path.serverId, field: "server_id")
        guard let server = try await store.server(id: id) else { throw APIError.notFound("no server '\(id)'") }
        return .ok(.init(body: .json(try answer(server))))
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

/// `value` as the JSON of the contract (snake_case, ISO 8601 dates) with `status`: the plain
/// routes' answer.
func respond(
    _ value: some Encodable & Sendable, _ status: HTTPResponse.Status, _ request: Request, _ context: BasicRequestContext
) throws -> Response {
    try JSONResponse(value, status: status, encoder: ContractCoding.encoder).response(from: request, context: context)
}

/// The registry's contract, `openapi.yaml`, served as JSON (`RegistryOpenAPI.swift` is generated).
enum OpenAPIDocument {
    static let json = Data(RegistryOpenAPI.text.utf8)
}
