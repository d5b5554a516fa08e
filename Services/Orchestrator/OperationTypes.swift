import DeviceProtocol
import FleetContract
import Foundation
import ServiceRuntime

/// What an operator asks for, the devices it touches, and what became of each.

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
