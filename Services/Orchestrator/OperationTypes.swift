import DeviceProtocol
import FleetContract
import Foundation
import ServiceRuntime

/// What an operator asks for, the devices it touches, and what became of each.

extension RegistryModelVersion {
    /// `found`, which must exist and be active to run: else 422 `unknown_model_version` or
    /// `model_version_deprecated`, naming `field`.
    static func active(_ found: RegistryModelVersion?, modelID: UUID, version: String, field: String) throws(APIError) -> RegistryModelVersion {
        guard let found else {
            throw APIError(
                .unprocessableContent, code: "unknown_model_version",
                message: "no model \(modelID.lowercasedString) version \(version) in the registry", field: field)
        }
        guard found.status == "active" else {
            throw APIError(
                .unprocessableContent, code: "model_version_deprecated",
                message: "model \(found.modelName) version \(found.version) is \(found.status)",
                field: field)
        }
        return found
    }
}

/// A server as the registry answers the orchestrator (`servers-query`), for placement.
struct RegistryServer: Codable, Sendable, Equatable {
    struct GPU: Codable, Sendable, Equatable {
        var type: String
        var count: Int
    }

    var id: String
    var siteID: String
    var cpuCores: Double
    var memoryBytes: Int64
    var gpus: [GPU]
    var online: Bool

    enum CodingKeys: String, CodingKey {
        case id, gpus, online
        case siteID = "site_id"
        case cpuCores = "cpu_cores"
        case memoryBytes = "memory_bytes"
    }

    var placement: Placement.Server {
        Placement.Server(
            id: id, online: online, cpuCores: cpuCores, memoryBytes: memoryBytes,
            gpus: gpus.reduce(into: [:]) { $0[$1.type, default: 0] += $1.count })
    }
}

/// A device as the registry answers the orchestrator (`devices-query`).
struct RegistryDevice: Codable, Sendable, Equatable {
    var id: UUID
    var serverID: String
    var siteID: String
    var key: String
    var name: String
    var enabled: Bool
    var gone: Bool
    var groupID: UUID?
    var labels: [String]
    var reachable: Bool
    var supportsPipelines: Bool

    enum CodingKeys: String, CodingKey {
        case id, key, name, enabled, gone, labels, reachable
        case serverID = "server_id"
        case siteID = "site_id"
        case groupID = "group_id"
        case supportsPipelines = "supports_pipelines"
    }
}

/// A model version as the registry answers `model-version-query`.
struct RegistryModelVersion: Codable, Sendable, Equatable {
    var modelID: UUID
    var modelName: String
    var version: String
    var artifactURI: String
    var sha256: String
    var defaultSettings: [String: JSONValue]
    var status: String

    enum CodingKeys: String, CodingKey {
        case version, sha256, status
        case modelID = "model_id"
        case modelName = "model_name"
        case artifactURI = "artifact_uri"
        case defaultSettings = "default_settings"
    }
}

/// A stage as an operator writes it: a model version and how to run it. The artifact and its
/// checksum come from the registry.
struct StageRequest: Codable, Sendable, Equatable {
    var modelID: UUID
    var version: String
    /// Merged over the version's default settings.
    var settings: [String: JSONValue]?
    var preProcessors: [DesiredState.Processor]?
    var postProcessors: [DesiredState.Processor]?

    enum CodingKeys: String, CodingKey {
        case version, settings
        case modelID = "model_id"
        case preProcessors = "pre_processors"
        case postProcessors = "post_processors"
    }
}

struct PipelineRequest: Codable, Sendable, Equatable {
    var name: String
    var stages: [StageRequest]
}

/// Which devices an operation on many devices takes: ids, or a selector (every field narrows),
/// or both (their union).
struct DeviceTargets: Codable, Sendable, Equatable {
    var deviceIDs: [UUID]?
    var siteIDs: [String]?
    var groupIDs: [UUID]?
    var labels: [String]?

    enum CodingKeys: String, CodingKey {
        case labels
        case deviceIDs = "device_ids"
        case siteIDs = "site_ids"
        case groupIDs = "group_ids"
    }

    var isEmpty: Bool { (deviceIDs ?? []).isEmpty && (siteIDs ?? []).isEmpty && (groupIDs ?? []).isEmpty && (labels ?? []).isEmpty }
}

/// The kinds of operation, as the audit trail names them.
enum OperationKind: String, Codable, Sendable, CaseIterable {
    /// Replace all pipelines of every chosen device (the product's bulk assignment).
    case assign
    case addPipeline = "add_pipeline"
    case replacePipeline = "replace_pipeline"
    case removePipeline = "remove_pipeline"
    case updateSettings = "update_settings"
    /// Put back what each device of an earlier operation had before it.
    case revert
    /// Send an earlier operation's change again to its failed and timed-out devices.
    case retry
}

/// Where one device of an operation stands.
enum DeviceStatus: String, Codable, Sendable, CaseIterable {
    /// Committed; the desired state is waiting to be published.
    case pending
    /// Published to the agent's topic (retained: the agent gets it when it connects).
    case delivered
    /// The agent reported the generation with this device's pipelines running.
    case applied
    /// The agent reported a pipeline of this device failed (the reason says which and why).
    case failed
    /// Not applied within the watchdog.
    case timedOut = "timed_out"

    var isSettled: Bool { self == .applied || self == .failed || self == .timedOut }
}

/// One device's change in a plan: what it runs now and what it will run.
struct DeviceChange: Sendable, Equatable {
    var device: RegistryDevice
    var before: [DesiredState.Pipeline]
    var after: [DesiredState.Pipeline]
}

/// A device an operation leaves alone, and why.
struct SkippedDevice: Sendable, Equatable, Codable {
    var deviceID: UUID
    var deviceName: String?
    var reason: String

    enum CodingKeys: String, CodingKey {
        case reason
        case deviceID = "device_id"
        case deviceName = "device_name"
    }
}

/// An API field error, from the contract's error type.
extension APIError {
    init(_ error: ContractError) {
        self = APIError.invalid(field: error.field, error.reason)
    }
}

// MARK: Operations as the repository keeps them

/// One revision of a device's pipelines, newest first in its history.
struct PipelineHistoryEntry: Codable, Sendable {
    var revision: Int
    var pipelines: [DesiredState.Pipeline]
    var operationID: UUID
    var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case revision, pipelines
        case operationID = "operation_id"
        case createdAt = "created_at"
    }
}

/// An operation ready to commit: its devices' changes, planned against `revisions`.
struct NewOperation: Sendable {
    var id = UUID()
    var kind: OperationKind
    var actor: String
    /// The request as the operator sent it (its JSON), for the audit trail.
    var request: String
    var reverts: UUID?
    var retries: UUID?
    var watchdogSeconds: Int
    var changes: [DeviceChange]
    /// The revision of each device when the plan was made; a device changed since is a conflict.
    var revisions: [UUID: Int]
}

/// An operation with its devices counted by status.
struct OperationSummary: Codable, Sendable {
    var id: UUID
    var kind: OperationKind
    var actor: String
    var createdAt: Date
    var reverts: UUID?
    var retries: UUID?
    var watchdogSeconds: Int
    var counts: [String: Int]
    var devices: Int
    /// Every device settled (applied, failed or timed out).
    var finished: Bool

    enum CodingKeys: String, CodingKey {
        case id, kind, actor, reverts, retries, counts, devices, finished
        case createdAt = "created_at"
        case watchdogSeconds = "watchdog_seconds"
    }
}

/// One device of an operation and how far it is.
struct OperationDevice: Codable, Sendable {
    var deviceID: UUID
    var deviceName: String
    var siteID: String
    var serverID: String
    var generation: Int64
    var status: DeviceStatus
    var reason: String?
    /// While its agent applies the generation and says how far it is (an in-progress report).
    var progress: ApplyProgress?
    var updatedAt: Date

    enum CodingKeys: String, CodingKey {
        case status, reason, generation, progress
        case deviceID = "device_id"
        case deviceName = "device_name"
        case siteID = "site_id"
        case serverID = "server_id"
        case updatedAt = "updated_at"
    }
}

/// How far an agent's apply is, from its last in-progress report.
struct ApplyProgress: Codable, Sendable {
    var bytesFetched: Int64
    var bytesTotal: Int64?
    var reportedAt: Date

    enum CodingKeys: String, CodingKey {
        case bytesFetched = "bytes_fetched"
        case bytesTotal = "bytes_total"
        case reportedAt = "reported_at"
    }
}

/// A device's pipelines before and after an operation, and its status, for revert and retry.
struct OperationChange: Sendable, Equatable {
    var deviceID: UUID
    var status: DeviceStatus
    var before: [DesiredState.Pipeline]
    var after: [DesiredState.Pipeline]
}
