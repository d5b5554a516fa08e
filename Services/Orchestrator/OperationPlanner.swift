import DeviceProtocol
import FleetContract
import Foundation
import ServiceRuntime

/// How an operation changes one device's list of pipelines.
enum PipelineEdit: Sendable, Equatable {
    /// Replace the whole list (bulk assignment).
    case assign([DesiredState.Pipeline])
    case add(DesiredState.Pipeline)
    case replace(index: Int, with: DesiredState.Pipeline)
    case remove(index: Int)
    /// Merge `settings` into one stage of one pipeline, chosen by its position on a single device
    /// or by its name across many.
    case updateSettings(pipeline: PipelineReference, stage: Int, settings: [String: JSONValue])
    /// Each device gets the list given for it (revert).
    case restore([UUID: [DesiredState.Pipeline]])
    /// Each device gets the list given for it, sent again even when the orchestrator's record
    /// already says so: the agent failed to apply it (retry).
    case resend([UUID: [DesiredState.Pipeline]])
}

enum PipelineReference: Sendable, Equatable {
    case index(Int)
    case name(String)
}

/// Decides what an operation does to each device: pure, so that the preview and the apply are
/// the same computation and the rules are unit-tested without a database.
enum OperationPlanner {
    struct Plan: Sendable, Equatable {
        var changes: [DeviceChange] = []
        var skipped: [SkippedDevice] = []
    }

    /// Why a device cannot take pipelines, or nil when it can.
    static func ineligibility(of device: RegistryDevice) -> String? {
        if device.gone { return "gone: its server no longer lists it" }
        if !device.enabled { return "disabled" }
        if !device.supportsPipelines { return "its server does not support pipelines" }
        return nil
    }

    /// The plan for `devices`. With `single`, a device that cannot take the edit is an error (the
    /// operator named it); otherwise it is skipped with the reason. Devices whose list would not
    /// change are skipped too ("already runs this").
    static func plan(
        _ edit: PipelineEdit, devices: [RegistryDevice], current: [UUID: [DesiredState.Pipeline]], single: Bool
    ) throws(APIError) -> Plan {
        var plan = Plan()
        for device in devices {
            func skip(_ reason: String, field: String = "device_id", status: APIError? = nil) throws(APIError) {
                if single {
                    throw status
                        ?? APIError(.conflict, code: "device_unavailable", message: "device \(device.id.lowercasedString): \(reason)", field: field)
                }
                plan.skipped.append(SkippedDevice(deviceID: device.id, deviceName: device.name, reason: reason))
            }
            if let reason = ineligibility(of: device) {
                try skip(reason)
                continue
            }
            let before = current[device.id] ?? []
            var after = before
            switch edit {
            case .assign(let pipelines):
                // A pipeline the device already runs unchanged keeps its id, so the agent leaves it
                // running and assigning the same pipelines twice changes nothing.
                after = pipelines.map { pipeline in
                    guard let running = before.first(where: { $0.name == pipeline.name && $0.stages == pipeline.stages }) else { return pipeline }
                    return running
                }
            case .add(let pipeline):
                guard before.count < 64 else {
                    try skip("already runs 64 pipelines, the most a device may have", field: "pipeline")
                    continue
                }
                after.append(pipeline)
            case .replace(let index, let pipeline):
                guard before.indices.contains(index) else {
                    try skip(
                        "has no pipeline \(index) (it has \(before.count))", field: "index", status: .notFoundField("index", index, before.count))
                    continue
                }
                after[index] = pipeline
            case .remove(let index):
                guard before.indices.contains(index) else {
                    try skip(
                        "has no pipeline \(index) (it has \(before.count))", field: "index", status: .notFoundField("index", index, before.count))
                    continue
                }
                after.remove(at: index)
            case .updateSettings(let reference, let stage, let settings):
                let position: Int?
                switch reference {
                case .index(let index): position = before.indices.contains(index) ? index : nil
                case .name(let name): position = before.firstIndex { $0.name == name }
                }
                guard let position else {
                    let reason: String
                    switch reference {
                    case .index(let index): reason = "has no pipeline \(index) (it has \(before.count))"
                    case .name(let name): reason = "runs no pipeline named '\(name)'"
                    }
                    try skip(
                        reason, field: "pipeline",
                        status: APIError(.notFound, code: "not_found", message: "device \(device.id.lowercasedString) \(reason)", field: "pipeline"))
                    continue
                }
                guard after[position].stages.indices.contains(stage) else {
                    try skip(
                        "pipeline '\(after[position].name)' has no stage \(stage)", field: "stage",
                        status: APIError(
                            .notFound, code: "not_found", message: "pipeline '\(after[position].name)' has no stage \(stage)", field: "stage"))
                    continue
                }
                after[position].stages[stage].settings.merge(settings) { $1 }
                do {
                    try ModelSettings.validate(after[position].stages[stage].settings, field: "settings")
                } catch {
                    throw APIError(error)
                }
            case .restore(let lists):
                guard let list = lists[device.id] else { continue }
                after = list
            case .resend(let lists):
                guard let list = lists[device.id] else { continue }
                plan.changes.append(DeviceChange(device: device, before: before, after: list))
                continue
            }
            if after == before {
                try skip(
                    "already runs this", field: "device_id",
                    status: APIError(.conflict, code: "no_change", message: "device \(device.id.lowercasedString) already runs this"))
                continue
            }
            plan.changes.append(DeviceChange(device: device, before: before, after: after))
        }
        return plan
    }

    /// The sites touched by `plan` that are offline, when offline sites are refused.
    static func offlineSites(of plan: Plan, online: Set<String>) -> [String] {
        Set(plan.changes.map(\.device.siteID)).subtracting(online).sorted()
    }
}

extension APIError {
    static func notFoundField(_ field: String, _ index: Int, _ count: Int) -> APIError {
        APIError(.notFound, code: "not_found", message: "there is no pipeline \(index); the device has \(count)", field: field)
    }
}
