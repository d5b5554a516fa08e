import DeviceProtocol
import FleetContract
import Foundation
import Hummingbird
import Logging
import ServiceRuntime

/// The orchestrator's REST API: pipeline operations on one device or many, with previews, and
/// the operations' progress, history, revert and retry. Every route is in ``routes``; the contract
/// (`openapi.yaml`) is tested against it.
struct OrchestratorAPI: Sendable {
    let store: any OperationRepository
    let registry: any RegistryLookup
    let resolver: PipelineResolver
    /// Called after each commit (the outbox publisher's wake-up).
    let committed: @Sendable () -> Void
    let logger: Logger

    typealias Route = APIRoute<OrchestratorAPI>

    static let routes: [Route] = [
        Route(.get, "/openapi.json") { _, _, _ in .openAPIDocument(OrchestratorOpenAPI.text) },
        Route(.get, "/v1/devices/{device_id}/pipelines") { api, request, context in try await api.devicePipelines(request, context) },
        Route(.post, "/v1/devices/{device_id}/pipelines") { api, request, context in try await api.addPipeline(request, context) },
        Route(.put, "/v1/devices/{device_id}/pipelines/{index}") { api, request, context in try await api.replacePipeline(request, context) },
        Route(.delete, "/v1/devices/{device_id}/pipelines/{index}") { api, request, context in try await api.removePipeline(request, context) },
        Route(.patch, "/v1/devices/{device_id}/pipelines/{index}/stages/{stage}") { api, request, context in
            try await api.updateStageSettings(request, context)
        },
        Route(.get, "/v1/devices/{device_id}/pipelines/history") { api, request, context in try await api.deviceHistory(request, context) },
        Route(.post, "/v1/assignments") { api, request, context in try await api.assign(request, context) },
        Route(.post, "/v1/settings") { api, request, context in try await api.updateSettings(request, context) },
        Route(.get, "/v1/operations") { api, request, context in try await api.listOperations(request, context) },
        Route(.get, "/v1/operations/{operation_id}") { api, request, context in try await api.getOperation(request, context) },
        Route(.post, "/v1/operations/{operation_id}/revert") { api, request, context in try await api.revert(request, context) },
        Route(.post, "/v1/operations/{operation_id}/retry") { api, request, context in try await api.retry(request, context) },
    ]

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.add(Self.routes, for: self)
    }

    /// Who did it, for the audit trail: the name of the request's API key, prefixed `key:` so that
    /// no key passes for a service (`autoscaler`); `local` where keys are off.
    static var actor: String { APIPrincipal.current.map { "key:\($0.name)" } ?? "local" }
    static let defaultWatchdogSeconds = 120

    // MARK: Bodies

    /// How an operation is carried out; every field optional.
    struct Options: Decodable, Sendable {
        /// Plan only: what would change, nothing is written.
        var dryRun: Bool?
        /// Required to apply an operation on many devices (after a preview).
        var confirm: Bool?
        /// Accept devices of offline sites: they get their state when their servers come back.
        var allowOffline: Bool?
        /// Seconds a device has to apply once its server is online; then it is `timed_out`.
        var watchdogSeconds: Int?

        enum CodingKeys: String, CodingKey {
            case confirm
            case dryRun = "dry_run"
            case allowOffline = "allow_offline"
            case watchdogSeconds = "watchdog_seconds"
        }

        func watchdog() throws(APIError) -> Int {
            let seconds = watchdogSeconds ?? OrchestratorAPI.defaultWatchdogSeconds
            guard (1...86_400).contains(seconds) else { throw APIError.invalid(field: "watchdog_seconds", "must be 1 to 86400") }
            return seconds
        }
    }

    struct PipelineBody: Decodable, Sendable {
        var pipeline: PipelineRequest
        var options: Options
        init(from decoder: any Decoder) throws {
            pipeline = try decoder.container(keyedBy: CodingKeys.self).decode(PipelineRequest.self, forKey: .pipeline)
            options = try Options(from: decoder)
        }
        private enum CodingKeys: String, CodingKey { case pipeline }
    }

    struct SettingsBody: Decodable, Sendable {
        var settings: [String: JSONValue]
        var options: Options
        init(from decoder: any Decoder) throws {
            settings = try decoder.container(keyedBy: CodingKeys.self).decode([String: JSONValue].self, forKey: .settings)
            options = try Options(from: decoder)
        }
        private enum CodingKeys: String, CodingKey { case settings }
    }

    struct AssignmentBody: Decodable, Sendable {
        var targets: DeviceTargets
        var pipelines: [PipelineRequest]
        var options: Options
        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            targets = try container.decode(DeviceTargets.self, forKey: .targets)
            pipelines = try container.decode([PipelineRequest].self, forKey: .pipelines)
            options = try Options(from: decoder)
        }
        private enum CodingKeys: String, CodingKey { case targets, pipelines }
    }

    struct BulkSettingsBody: Decodable, Sendable {
        var targets: DeviceTargets
        var pipelineName: String
        var stage: Int
        var settings: [String: JSONValue]
        var options: Options
        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            targets = try container.decode(DeviceTargets.self, forKey: .targets)
            pipelineName = try container.decode(String.self, forKey: .pipelineName)
            stage = try container.decode(Int.self, forKey: .stage)
            settings = try container.decode([String: JSONValue].self, forKey: .settings)
            options = try Options(from: decoder)
        }
        private enum CodingKeys: String, CodingKey {
            case targets, stage, settings
            case pipelineName = "pipeline_name"
        }
    }

    // MARK: Responses

    struct ChangeView: Encodable, Sendable {
        var deviceID: UUID
        var deviceName: String
        var siteID: String
        var serverID: String
        var reachable: Bool
        var before: [DesiredState.Pipeline]
        var after: [DesiredState.Pipeline]

        enum CodingKeys: String, CodingKey {
            case reachable, before, after
            case deviceID = "device_id"
            case deviceName = "device_name"
            case siteID = "site_id"
            case serverID = "server_id"
        }
    }

    struct Preview: Encodable, Sendable {
        var dryRun = true
        var kind: OperationKind
        var changes: [ChangeView]
        var skipped: [SkippedDevice]
        /// Sites of the changes with no server online (refused unless `allow_offline`).
        var offlineSites: [String]

        enum CodingKeys: String, CodingKey {
            case kind, changes, skipped
            case dryRun = "dry_run"
            case offlineSites = "offline_sites"
        }
    }

    struct Accepted: Encodable, Sendable {
        var operation: OperationSummary
        var skipped: [SkippedDevice]
    }

    struct OperationDetail: Encodable, Sendable {
        var operation: OperationSummary
        var devices: [OperationDevice]
    }

    struct DevicePipelines: Encodable, Sendable {
        var deviceID: UUID
        var revision: Int
        var pipelines: [DesiredState.Pipeline]

        enum CodingKeys: String, CodingKey {
            case revision, pipelines
            case deviceID = "device_id"
        }
    }

    // MARK: One device

    func devicePipelines(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let device = try await self.device(context)
        let current = try await store.currentPipelines([device.id])[device.id]
        return try respond(
            DevicePipelines(deviceID: device.id, revision: current?.revision ?? 0, pipelines: current?.pipelines ?? []), .ok, request, context)
    }

    func deviceHistory(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let device = try await self.device(context)
        return try respond(Page(items: try await store.history(of: device.id), nextCursor: nil), .ok, request, context)
    }

    func addPipeline(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let body = try await JSONBody.decode(PipelineBody.self, from: request, context: context)
        let device = try await self.device(context)
        let pipeline = try await resolver.resolve(body.pipeline, field: "pipeline")
        return try await carryOut(.addPipeline, .add(pipeline), on: [device], single: true, options: body.options, body: request, context)
    }

    func replacePipeline(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let body = try await JSONBody.decode(PipelineBody.self, from: request, context: context)
        let index = try Self.index(context, "index")
        let device = try await self.device(context)
        let pipeline = try await resolver.resolve(body.pipeline, field: "pipeline")
        return try await carryOut(
            .replacePipeline, .replace(index: index, with: pipeline), on: [device], single: true, options: body.options, body: request, context)
    }

    func removePipeline(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let index = try Self.index(context, "index")
        let query = request.uri.queryParameters
        let options = Options(
            dryRun: try Self.flag(query["dry_run"], "dry_run"), confirm: nil, allowOffline: try Self.flag(query["allow_offline"], "allow_offline"),
            watchdogSeconds: nil)
        let device = try await self.device(context)
        return try await carryOut(.removePipeline, .remove(index: index), on: [device], single: true, options: options, body: request, context)
    }

    func updateStageSettings(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let body = try await JSONBody.decode(SettingsBody.self, from: request, context: context)
        let index = try Self.index(context, "index")
        let stage = try Self.index(context, "stage")
        let device = try await self.device(context)
        return try await carryOut(
            .updateSettings, .updateSettings(pipeline: .index(index), stage: stage, settings: body.settings), on: [device], single: true,
            options: body.options, body: request, context)
    }

    // MARK: Many devices

    func assign(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let body = try await JSONBody.decode(AssignmentBody.self, from: request, context: context)
        guard !body.targets.isEmpty else { throw APIError.invalid(field: "targets", "choose devices by device_ids, site_ids, group_ids or labels") }
        guard body.pipelines.count <= 64 else { throw APIError.invalid(field: "pipelines", "at most 64 pipelines per device") }
        let lookups = PipelineResolver.Lookups()
        var pipelines: [DesiredState.Pipeline] = []
        for (index, pipeline) in body.pipelines.enumerated() {
            pipelines.append(try await resolver.resolve(pipeline, field: "pipelines[\(index)]", lookups: lookups))
        }
        let clock = ContinuousClock()
        let started = clock.now
        let devices = try await selected(body.targets)
        logger.info("selected devices", metadata: ["devices": "\(devices.count)", "registry_ms": "\((clock.now - started).milliseconds)"])
        return try await carryOut(.assign, .assign(pipelines), on: devices, single: false, options: body.options, body: request, context)
    }

    func updateSettings(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let body = try await JSONBody.decode(BulkSettingsBody.self, from: request, context: context)
        guard !body.targets.isEmpty else { throw APIError.invalid(field: "targets", "choose devices by device_ids, site_ids, group_ids or labels") }
        guard body.stage >= 0 else { throw APIError.invalid(field: "stage", "must be 0 or more") }
        let devices = try await selected(body.targets)
        return try await carryOut(
            .updateSettings, .updateSettings(pipeline: .name(body.pipelineName), stage: body.stage, settings: body.settings), on: devices,
            single: false, options: body.options, body: request, context)
    }

    // MARK: Operations

    /// A list's `limit` (1 to 500, 50 by default) and `cursor` (a position this API gave).
    static func paging(_ request: Request) throws(APIError) -> (limit: Int, cursor: Int64?) {
        let query = request.uri.queryParameters
        var limit = 50
        if let text = query["limit"] {
            guard let value = Int(String(text)), (1...500).contains(value) else { throw APIError.invalid(field: "limit", "must be 1 to 500") }
            limit = value
        }
        var cursor: Int64?
        if let text = query["cursor"] {
            guard let value = Int64(String(text)), value > 0 else { throw APIError.invalid(field: "cursor", "is not a cursor this API gave") }
            cursor = value
        }
        return (limit, cursor)
    }

    func listOperations(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let (limit, before) = try Self.paging(request)
        let (items, next) = try await store.operations(limit: limit, before: before)
        return try respond(Page(items: items, nextCursor: next.map(String.init)), .ok, request, context)
    }

    func getOperation(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let id = try Self.uuid(context, "operation_id")
        var status: DeviceStatus?
        if let text = request.uri.queryParameters["status"] {
            guard let value = DeviceStatus(rawValue: String(text)) else {
                throw APIError.invalid(field: "status", "must be one of \(DeviceStatus.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            status = value
        }
        guard let operation = try await store.operation(id) else { throw APIError.notFound("no operation \(id.lowercasedString)") }
        return try respond(OperationDetail(operation: operation, devices: try await store.devices(of: id, status: status)), .ok, request, context)
    }

    /// Puts back what each device of the operation had before it.
    func revert(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let id = try Self.uuid(context, "operation_id")
        let options = try await JSONBody.decodeIfPresent(Options.self, from: request, context: context) ?? Options()
        guard try await store.operation(id) != nil else { throw APIError.notFound("no operation \(id.lowercasedString)") }
        let changes = try await store.changes(of: id)
        let lists = Dictionary(uniqueKeysWithValues: changes.map { ($0.deviceID, $0.before) })
        let devices = try await selected(DeviceTargets(deviceIDs: Array(lists.keys)))
        return try await carryOut(.revert, .restore(lists), on: devices, single: false, options: options, body: request, context, reverts: id)
    }

    /// Sends the operation's change again to its devices that failed or timed out.
    func retry(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let id = try Self.uuid(context, "operation_id")
        let options = try await JSONBody.decodeIfPresent(Options.self, from: request, context: context) ?? Options()
        guard try await store.operation(id) != nil else { throw APIError.notFound("no operation \(id.lowercasedString)") }
        let unsettled = try await store.changes(of: id).filter { $0.status == .failed || $0.status == .timedOut }
        guard !unsettled.isEmpty else {
            throw APIError(.conflict, code: "nothing_to_retry", message: "operation \(id.lowercasedString) has no failed or timed-out device")
        }
        let lists = Dictionary(uniqueKeysWithValues: unsettled.map { ($0.deviceID, $0.after) })
        let devices = try await selected(DeviceTargets(deviceIDs: Array(lists.keys)))
        return try await carryOut(.retry, .resend(lists), on: devices, single: false, options: options, body: request, context, retries: id)
    }

    // MARK: Carrying out

    /// Plans the edit, refuses offline sites unless allowed, answers a preview, or (confirmed when
    /// on many devices) commits it and wakes the publisher.
    private func carryOut(
        _ kind: OperationKind, _ edit: PipelineEdit, on devices: [RegistryDevice], single: Bool, options: Options, body request: Request,
        _ context: BasicRequestContext, reverts: UUID? = nil, retries: UUID? = nil
    ) async throws -> Response {
        let watchdog = try options.watchdog()
        let clock = ContinuousClock()
        let started = clock.now
        let current = try await store.currentPipelines(devices.map(\.id))
        let plan = try OperationPlanner.plan(edit, devices: devices, current: current.mapValues(\.pipelines), single: single)
        let offline = OperationPlanner.offlineSites(of: plan, online: try await onlineSites(of: plan))
        if options.dryRun == true {
            let views = plan.changes.map {
                ChangeView(
                    deviceID: $0.device.id, deviceName: $0.device.name, siteID: $0.device.siteID, serverID: $0.device.serverID,
                    reachable: $0.device.reachable, before: $0.before, after: $0.after)
            }
            return try respond(Preview(kind: kind, changes: views, skipped: plan.skipped, offlineSites: offline), .ok, request, context)
        }
        // A preview shows offline sites; applying to one needs the operator's word.
        if !offline.isEmpty && options.allowOffline != true {
            throw APIError(
                .conflict, code: "site_offline",
                message: "site \(offline.joined(separator: ", ")) is offline; set allow_offline to deliver when its servers come back",
                field: "allow_offline")
        }
        if !single && options.confirm != true {
            throw APIError.invalid(
                field: "confirm", "applying to \(plan.changes.count) device(s) needs confirm: true; preview it first with dry_run: true")
        }
        guard !plan.changes.isEmpty else {
            throw APIError(
                .conflict, code: "no_change",
                message: "no device would change (\(plan.skipped.count) skipped: \(plan.skipped.prefix(3).map(\.reason).joined(separator: "; ")))",
                field: "targets")
        }
        let operation = NewOperation(
            kind: kind, actor: Self.actor, request: try Self.auditRecord(kind: kind, edit: edit, options: options), reverts: reverts,
            retries: retries,
            watchdogSeconds: watchdog, changes: plan.changes, revisions: current.mapValues(\.revision))
        let planned = clock.now
        let (generations, summary) = try await store.apply(operation)
        self.committed()
        let committed = clock.now
        logger.info(
            "operation committed",
            metadata: [
                "operation_id": "\(operation.id)", "kind": "\(kind.rawValue)", "devices": "\(plan.changes.count)", "agents": "\(generations.count)",
                "plan_ms": "\((planned - started).milliseconds)", "commit_ms": "\((committed - planned).milliseconds)",
            ])
        return try respond(Accepted(operation: summary, skipped: plan.skipped), .accepted, request, context)
    }

    /// What the audit trail keeps of a request: its kind, options and the edit's parameters.
    private static func auditRecord(kind: OperationKind, edit: PipelineEdit, options: Options) throws -> String {
        var record: [String: JSONValue] = ["kind": .string(kind.rawValue)]
        switch edit {
        case .assign(let pipelines): record["pipelines"] = .array(pipelines.map { .string($0.name) })
        case .add(let pipeline): record["pipeline"] = .string(pipeline.name)
        case .replace(let index, let pipeline): record["index"] = .number(Double(index)); record["pipeline"] = .string(pipeline.name)
        case .remove(let index): record["index"] = .number(Double(index))
        case .updateSettings(let reference, let stage, let settings):
            switch reference {
            case .index(let index): record["index"] = .number(Double(index))
            case .name(let name): record["pipeline_name"] = .string(name)
            }
            record["stage"] = .number(Double(stage))
            record["settings"] = .object(settings)
        case .restore, .resend: break
        }
        record["allow_offline"] = .bool(options.allowOffline ?? false)
        return String(decoding: try ContractCoding.encoder.encode(JSONValue.object(record)), as: UTF8.self)
    }

    // MARK: Helpers

    private func device(_ context: BasicRequestContext) async throws -> RegistryDevice {
        let id = try Self.uuid(context, "device_id")
        guard let device = try await registry.devices(DeviceTargets(deviceIDs: [id])).first else {
            throw APIError.notFound("no device \(id.lowercasedString)")
        }
        return device
    }

    /// The plan's sites that are online. A site with a reachable device in the plan is online;
    /// only the others are asked of the registry (one of their servers outside the plan may be
    /// online), so a large operation does not fetch its devices a second time.
    private func onlineSites(of plan: OperationPlanner.Plan) async throws -> Set<String> {
        let online = Set(plan.changes.lazy.filter(\.device.reachable).map(\.device.siteID))
        let unsure = Set(plan.changes.map(\.device.siteID)).subtracting(online).sorted()
        return online.union(try await registry.onlineSites(unsure))
    }

    private func selected(_ targets: DeviceTargets) async throws -> [RegistryDevice] {
        let devices = try await registry.devices(targets)
        if let ids = targets.deviceIDs, targets.siteIDs == nil, targets.groupIDs == nil, targets.labels == nil {
            let known = Set(devices.map(\.id))
            if let missing = ids.first(where: { !known.contains($0) }) {
                throw APIError(.notFound, code: "not_found", message: "no device \(missing.lowercasedString)", field: "targets.device_ids")
            }
        }
        guard devices.count <= 100_000 else { throw APIError.invalid(field: "targets", "selects more than 100,000 devices") }
        return devices
    }

    private static func uuid(_ context: BasicRequestContext, _ name: String) throws -> UUID {
        guard let text = context.parameters.get(name), let id = UUID(uuidString: text) else {
            throw APIError.invalid(field: name, "must be a UUID")
        }
        return id
    }

    private static func index(_ context: BasicRequestContext, _ name: String) throws -> Int {
        guard let text = context.parameters.get(name), let index = Int(text), index >= 0 else {
            throw APIError.invalid(field: name, "must be a position from 0")
        }
        return index
    }

    private static func flag(_ text: Substring?, _ name: String) throws -> Bool? {
        guard let text else { return nil }
        guard let value = Bool(String(text)) else { throw APIError.invalid(field: name, "must be true or false") }
        return value
    }

    private func respond(
        _ value: some Encodable & Sendable, _ status: HTTPResponse.Status, _ request: Request, _ context: BasicRequestContext
    ) throws
        -> Response
    {
        try JSONResponse(value, status: status, encoder: ContractCoding.encoder).response(from: request, context: context)
    }
}

extension OrchestratorOpenAPI {
    static let json = Data(text.utf8)
}

extension Duration {
    /// Whole milliseconds, for log lines.
    fileprivate var milliseconds: Int64 { components.seconds * 1_000 + components.attoseconds / 1_000_000_000_000_000 }
}
