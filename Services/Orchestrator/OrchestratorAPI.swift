import DeviceProtocol
import FleetContract
import Foundation
import Hummingbird
import Logging
import OpenAPIRuntime
import OrchestratorContract
import ServiceRuntime

/// The orchestrator's REST API: its contract's `APIProtocol` (openapi.yaml, generated into
/// OrchestratorContract; decision 91): pipeline operations on one device or many, with previews,
/// and the operations' progress, history, revert and retry; the deployments' operations are
/// ``DeploymentAPI``'s (in its file). Handlers read the generated request types, recast them to
/// the domain's and answer with the generated types recast from the domain's (decision 92).
struct OrchestratorAPI: APIProtocol {
    let store: any OperationRepository
    let registry: any RegistryLookup
    let resolver: PipelineResolver
    /// Called after each commit (the outbox publisher's wake-up).
    let committed: @Sendable () -> Void
    let logger: Logger
    /// `/v1/deployments`; nil where only the pipeline operations are served (their tests).
    var deployments: DeploymentAPI? = nil

    func addRoutes(to router: Router<BasicRequestContext>) throws {
        try router.addContract(document: OrchestratorOpenAPI.text) { try registerHandlers(on: $0, configuration: $1, middlewares: $2) }
        if let deployments { router.add(DeploymentAPI.plainRoutes, for: deployments) }
    }

    private typealias Schemas = Components.Schemas

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

    func getDevicePipelines(_ input: Operations.GetDevicePipelines.Input) async throws -> Operations.GetDevicePipelines.Output {
        let device = try await self.device(input.path.deviceId)
        let current = try await store.currentPipelines([device.id])[device.id]
        let pipelines = DevicePipelines(deviceID: device.id, revision: current?.revision ?? 0, pipelines: current?.pipelines ?? [])
        return .ok(.init(body: .json(try answer(pipelines))))
    }

    func getDevicePipelineHistory(_ input: Operations.GetDevicePipelineHistory.Input) async throws -> Operations.GetDevicePipelineHistory.Output {
        let device = try await self.device(input.path.deviceId)
        return .ok(.init(body: .json(try answer(Page(items: try await store.history(of: device.id), nextCursor: nil)))))
    }

    func addDevicePipeline(_ input: Operations.AddDevicePipeline.Input) async throws -> Operations.AddDevicePipeline.Output {
        let json =
            switch input.body {
            case .json(let body): body
            }
        let body = try JSONBody.recast(json, as: PipelineBody.self)
        let device = try await self.device(input.path.deviceId)
        let pipeline = try await resolver.resolve(body.pipeline, field: "pipeline")
        switch try await carryOut(.addPipeline, .add(pipeline), on: [device], single: true, options: body.options) {
        case .preview(let preview): return .ok(.init(body: .json(try answer(preview))))
        case .accepted(let accepted): return .accepted(.init(body: .json(try answer(accepted))))
        }
    }

    func replaceDevicePipeline(_ input: Operations.ReplaceDevicePipeline.Input) async throws -> Operations.ReplaceDevicePipeline.Output {
        let json =
            switch input.body {
            case .json(let body): body
            }
        let body = try JSONBody.recast(json, as: PipelineBody.self)
        let index = try Self.position(input.path.index, "index")
        let device = try await self.device(input.path.deviceId)
        let pipeline = try await resolver.resolve(body.pipeline, field: "pipeline")
        switch try await carryOut(.replacePipeline, .replace(index: index, with: pipeline), on: [device], single: true, options: body.options) {
        case .preview(let preview): return .ok(.init(body: .json(try answer(preview))))
        case .accepted(let accepted): return .accepted(.init(body: .json(try answer(accepted))))
        }
    }

    func removeDevicePipeline(_ input: Operations.RemoveDevicePipeline.Input) async throws -> Operations.RemoveDevicePipeline.Output {
        let index = try Self.position(input.path.index, "index")
        let options = Options(dryRun: input.query.dryRun, confirm: nil, allowOffline: input.query.allowOffline, watchdogSeconds: nil)
        let device = try await self.device(input.path.deviceId)
        switch try await carryOut(.removePipeline, .remove(index: index), on: [device], single: true, options: options) {
        case .preview(let preview): return .ok(.init(body: .json(try answer(preview))))
        case .accepted(let accepted): return .accepted(.init(body: .json(try answer(accepted))))
        }
    }

    func updateDeviceStageSettings(
        _ input: Operations.UpdateDeviceStageSettings.Input
    ) async throws
        -> Operations.UpdateDeviceStageSettings.Output
    {
        let json =
            switch input.body {
            case .json(let body): body
            }
        let body = try JSONBody.recast(json, as: SettingsBody.self)
        let index = try Self.position(input.path.index, "index")
        let stage = try Self.position(input.path.stage, "stage")
        let device = try await self.device(input.path.deviceId)
        let edit = PipelineEdit.updateSettings(pipeline: .index(index), stage: stage, settings: body.settings)
        switch try await carryOut(.updateSettings, edit, on: [device], single: true, options: body.options) {
        case .preview(let preview): return .ok(.init(body: .json(try answer(preview))))
        case .accepted(let accepted): return .accepted(.init(body: .json(try answer(accepted))))
        }
    }

    // MARK: Many devices

    func assignPipelines(_ input: Operations.AssignPipelines.Input) async throws -> Operations.AssignPipelines.Output {
        let json =
            switch input.body {
            case .json(let body): body
            }
        let body = try JSONBody.recast(json, as: AssignmentBody.self)
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
        switch try await carryOut(.assign, .assign(pipelines), on: devices, single: false, options: body.options) {
        case .preview(let preview): return .ok(.init(body: .json(try answer(preview))))
        case .accepted(let accepted): return .accepted(.init(body: .json(try answer(accepted))))
        }
    }

    func updateSettingsOfMany(_ input: Operations.UpdateSettingsOfMany.Input) async throws -> Operations.UpdateSettingsOfMany.Output {
        let json =
            switch input.body {
            case .json(let body): body
            }
        let body = try JSONBody.recast(json, as: BulkSettingsBody.self)
        guard !body.targets.isEmpty else { throw APIError.invalid(field: "targets", "choose devices by device_ids, site_ids, group_ids or labels") }
        guard body.stage >= 0 else { throw APIError.invalid(field: "stage", "must be 0 or more") }
        let devices = try await selected(body.targets)
        let edit = PipelineEdit.updateSettings(pipeline: .name(body.pipelineName), stage: body.stage, settings: body.settings)
        switch try await carryOut(.updateSettings, edit, on: devices, single: false, options: body.options) {
        case .preview(let preview): return .ok(.init(body: .json(try answer(preview))))
        case .accepted(let accepted): return .accepted(.init(body: .json(try answer(accepted))))
        }
    }

    // MARK: Operations

    /// A list's `limit` (1 to 500, 50 by default) and `cursor` (a position this API gave).
    static func paging(limit: Int?, cursor: String?) throws(APIError) -> (limit: Int, cursor: Int64?) {
        let limit = limit ?? 50
        guard (1...500).contains(limit) else { throw APIError.invalid(field: "limit", "must be 1 to 500") }
        guard let cursor else { return (limit, nil) }
        guard let value = Int64(cursor), value > 0 else { throw APIError.invalid(field: "cursor", "is not a cursor this API gave") }
        return (limit, value)
    }

    func listOperations(_ input: Operations.ListOperations.Input) async throws -> Operations.ListOperations.Output {
        let (limit, before) = try Self.paging(limit: input.query.limit, cursor: input.query.cursor)
        let (items, next) = try await store.operations(limit: limit, before: before)
        return .ok(.init(body: .json(try answer(Page(items: items, nextCursor: next.map(String.init))))))
    }

    func getOperation(_ input: Operations.GetOperation.Input) async throws -> Operations.GetOperation.Output {
        let id = try Self.uuid(input.path.operationId, "operation_id")
        let status: DeviceStatus? = try input.query.status.map { try ContractCoding.recast($0) }
        guard let operation = try await store.operation(id) else { throw APIError.notFound("no operation \(id.lowercasedString)") }
        let detail = OperationDetail(operation: operation, devices: try await store.devices(of: id, status: status))
        return .ok(.init(body: .json(try answer(detail))))
    }

    /// Puts back what each device of the operation had before it.
    func revertOperation(_ input: Operations.RevertOperation.Input) async throws -> Operations.RevertOperation.Output {
        let id = try Self.uuid(input.path.operationId, "operation_id")
        let options = try Self.options(
            input.body.map { body in
                switch body {
                case .json(let options): options
                }
            })
        guard try await store.operation(id) != nil else { throw APIError.notFound("no operation \(id.lowercasedString)") }
        let changes = try await store.changes(of: id)
        let lists = Dictionary(uniqueKeysWithValues: changes.map { ($0.deviceID, $0.before) })
        let devices = try await selected(DeviceTargets(deviceIDs: Array(lists.keys)))
        switch try await carryOut(.revert, .restore(lists), on: devices, single: false, options: options, reverts: id) {
        case .preview(let preview): return .ok(.init(body: .json(try answer(preview))))
        case .accepted(let accepted): return .accepted(.init(body: .json(try answer(accepted))))
        }
    }

    /// Sends the operation's change again to its devices that failed or timed out.
    func retryOperation(_ input: Operations.RetryOperation.Input) async throws -> Operations.RetryOperation.Output {
        let id = try Self.uuid(input.path.operationId, "operation_id")
        let options = try Self.options(
            input.body.map { body in
                switch body {
                case .json(let options): options
                }
            })
        guard try await store.operation(id) != nil else { throw APIError.notFound("no operation \(id.lowercasedString)") }
        let unsettled = try await store.changes(of: id).filter { $0.status == .failed || $0.status == .timedOut }
        guard !unsettled.isEmpty else {
            throw APIError(.conflict, code: "nothing_to_retry", message: "operation \(id.lowercasedString) has no failed or timed-out device")
        }
        let lists = Dictionary(uniqueKeysWithValues: unsettled.map { ($0.deviceID, $0.after) })
        let devices = try await selected(DeviceTargets(deviceIDs: Array(lists.keys)))
        switch try await carryOut(.retry, .resend(lists), on: devices, single: false, options: options, retries: id) {
        case .preview(let preview): return .ok(.init(body: .json(try answer(preview))))
        case .accepted(let accepted): return .accepted(.init(body: .json(try answer(accepted))))
        }
    }

    /// The options of a revert or retry, whose body may be left out.
    private static func options(_ given: Schemas.Options?) throws -> Options {
        try given.map { try JSONBody.recast($0, as: Options.self) } ?? Options()
    }

    // MARK: Carrying out

    /// Plans the edit, refuses offline sites unless allowed, answers a preview, or (confirmed when
    /// on many devices) commits it and wakes the publisher.
    private func carryOut(
        _ kind: OperationKind, _ edit: PipelineEdit, on devices: [RegistryDevice], single: Bool, options: Options, reverts: UUID? = nil,
        retries: UUID? = nil
    ) async throws -> CarriedOut {
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
            return .preview(Preview(kind: kind, changes: views, skipped: plan.skipped, offlineSites: offline))
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
        return .accepted(Accepted(operation: summary, skipped: plan.skipped))
    }

    /// What an operation's request came to: a preview (`dry_run`), or the operation committed.
    private enum CarriedOut {
        case preview(Preview)
        case accepted(Accepted)
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

    private func device(_ text: String) async throws -> RegistryDevice {
        let id = try Self.uuid(text, "device_id")
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

    private static func uuid(_ text: String, _ name: String) throws(APIError) -> UUID {
        guard let id = UUID(uuidString: text) else { throw APIError.invalid(field: name, "must be a UUID") }
        return id
    }

    private static func position(_ index: Int, _ name: String) throws(APIError) -> Int {
        guard index >= 0 else { throw APIError.invalid(field: name, "must be a position from 0") }
        return index
    }
}

extension OrchestratorOpenAPI {
    static let json = Data(text.utf8)
}

extension Duration {
    /// Whole milliseconds, for log lines.
    fileprivate var milliseconds: Int64 { components.seconds * 1_000 + components.attoseconds / 1_000_000_000_000_000 }
}
