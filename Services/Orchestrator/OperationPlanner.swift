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

    /// What an edit does to one device: its new list, or why it is left alone. `status` is the
    /// error answered when the operator named that one device (`single`).
    enum Outcome {
        case change(after: [DesiredState.Pipeline])
        /// Sent even when the orchestrator's record says the device has it (retry).
        case resend(after: [DesiredState.Pipeline])
        case skip(reason: String, field: String, status: APIError?)
        /// Not part of this operation (a revert or retry of other devices).
        case untouched
    }

    /// The plan for `devices`. With `single`, a device that cannot take the edit is an error (the
    /// operator named it); otherwise it is skipped with the reason. Devices whose list would not
    /// change are skipped too ("already runs this").
    static func plan(
        _ edit: PipelineEdit, devices: [RegistryDevice], current: [UUID: [DesiredState.Pipeline]], single: Bool
    ) throws(APIError) -> Plan {
        var plan = Plan()
        for device in devices {
            let before = current[device.id] ?? []
            var outcome: Outcome
            if let reason = ineligibility(of: device) {
                outcome = .skip(reason: reason, field: "device_id", status: nil)
            } else {
                outcome = try edited(device, before, by: edit)
            }
            if case .change(let after) = outcome, after == before {
                outcome = .skip(
                    reason: "already runs this", field: "device_id",
                    status: APIError(.conflict, code: "no_change", message: "device \(device.id.lowercasedString) already runs this"))
            }
            switch outcome {
            case .change(let after), .resend(let after):
                plan.changes.append(DeviceChange(device: device, before: before, after: after))
            case .skip(let reason, let field, let status):
                if single {
                    throw status
                        ?? APIError(.conflict, code: "device_unavailable", message: "device \(device.id.lowercasedString): \(reason)", field: field)
                }
                plan.skipped.append(SkippedDevice(deviceID: device.id, deviceName: device.name, reason: reason))
            case .untouched:
                continue
            }
        }
        return plan
    }

    /// One device's outcome of `edit`, from the list it runs now.
    static func edited(_ device: RegistryDevice, _ before: [DesiredState.Pipeline], by edit: PipelineEdit) throws(APIError) -> Outcome {
        switch edit {
        case .assign(let pipelines): return .change(after: assigning(pipelines, over: before))
        case .add(let pipeline): return adding(pipeline, to: before)
        case .replace(let index, let pipeline): return replacing(index, with: pipeline, in: before)
        case .remove(let index): return removing(index, from: before)
        case .updateSettings(let reference, let stage, let settings):
            return try updatingSettings(of: reference, stage: stage, with: settings, in: before, device: device)
        case .restore(let lists): return lists[device.id].map { .change(after: $0) } ?? .untouched
        case .resend(let lists): return lists[device.id].map { .resend(after: $0) } ?? .untouched
        }
    }

    /// The whole list replaced. A pipeline the device already runs unchanged keeps its id, so the
    /// agent leaves it running and assigning the same pipelines twice changes nothing.
    static func assigning(_ pipelines: [DesiredState.Pipeline], over before: [DesiredState.Pipeline]) -> [DesiredState.Pipeline] {
        pipelines.map { pipeline in before.first { $0.name == pipeline.name && $0.stages == pipeline.stages } ?? pipeline }
    }

    static func adding(_ pipeline: DesiredState.Pipeline, to before: [DesiredState.Pipeline]) -> Outcome {
        guard before.count < 64 else { return .skip(reason: "already runs 64 pipelines, the most a device may have", field: "pipeline", status: nil) }
        return .change(after: before + [pipeline])
    }

    static func replacing(_ index: Int, with pipeline: DesiredState.Pipeline, in before: [DesiredState.Pipeline]) -> Outcome {
        guard before.indices.contains(index) else { return missing(index, in: before) }
        var after = before
        after[index] = pipeline
        return .change(after: after)
    }

    static func removing(_ index: Int, from before: [DesiredState.Pipeline]) -> Outcome {
        guard before.indices.contains(index) else { return missing(index, in: before) }
        var after = before
        after.remove(at: index)
        return .change(after: after)
    }

    private static func missing(_ index: Int, in before: [DesiredState.Pipeline]) -> Outcome {
        .skip(reason: "has no pipeline \(index) (it has \(before.count))", field: "index", status: .notFoundField("index", index, before.count))
    }

    /// `settings` merged into one stage of the pipeline at a position or of a name; the merged
    /// settings must be valid (an invalid one is an error, whoever the device).
    static func updatingSettings(
        of reference: PipelineReference, stage: Int, with settings: [String: JSONValue], in before: [DesiredState.Pipeline], device: RegistryDevice
    ) throws(APIError) -> Outcome {
        let position: Int?
        let reason: String
        switch reference {
        case .index(let index):
            position = before.indices.contains(index) ? index : nil
            reason = "has no pipeline \(index) (it has \(before.count))"
        case .name(let name):
            position = before.firstIndex { $0.name == name }
            reason = "runs no pipeline named '\(name)'"
        }
        guard let position else {
            return .skip(
                reason: reason, field: "pipeline",
                status: APIError(.notFound, code: "not_found", message: "device \(device.id.lowercasedString) \(reason)", field: "pipeline"))
        }
        var after = before
        guard after[position].stages.indices.contains(stage) else {
            let reason = "pipeline '\(after[position].name)' has no stage \(stage)"
            return .skip(reason: reason, field: "stage", status: APIError(.notFound, code: "not_found", message: reason, field: "stage"))
        }
        after[position].stages[stage].settings.merge(settings) { $1 }
        do {
            try ModelSettings.validate(after[position].stages[stage].settings, field: "settings")
        } catch {
            throw APIError(error)
        }
        return .change(after: after)
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
