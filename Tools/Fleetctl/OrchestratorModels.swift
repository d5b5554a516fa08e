import FleetContract
import Foundation

// The orchestrator's answers as the tool reads them (Services/Orchestrator/OrchestratorAPI.swift,
// OperationTypes.swift). Kinds and statuses are read as strings so that one added later is
// printed rather than refused.

/// A pipeline as a device runs it (the agent's desired state: stages with artifacts resolved).
struct PipelineView: Decodable, Sendable, Equatable {
    var id: String
    var name: String
    var stages: [StageView]
}

/// One model of a pipeline, with the processors around it.
struct StageView: Decodable, Sendable, Equatable {
    var modelID: UUID
    var modelName: String
    var version: String
    var settings: [String: JSONValue]
    var preProcessors: [ProcessorView]
    var postProcessors: [ProcessorView]

    enum CodingKeys: String, CodingKey {
        case version, settings
        case modelID = "model_id"
        case modelName = "model_name"
        case preProcessors = "pre_processors"
        case postProcessors = "post_processors"
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        modelID = try container.decode(UUID.self, forKey: .modelID)
        modelName = try container.decode(String.self, forKey: .modelName)
        version = try container.decode(String.self, forKey: .version)
        settings = try container.decodeIfPresent([String: JSONValue].self, forKey: .settings) ?? [:]
        preProcessors = try container.decodeIfPresent([ProcessorView].self, forKey: .preProcessors) ?? []
        postProcessors = try container.decodeIfPresent([ProcessorView].self, forKey: .postProcessors) ?? []
    }
}

/// A pre- or post-processor of a stage.
struct ProcessorView: Decodable, Sendable, Equatable {
    var name: String
    var settings: [String: JSONValue]?
}

/// `GET /v1/devices/{device_id}/pipelines`.
struct DevicePipelines: Decodable, Sendable {
    var deviceID: UUID
    var revision: Int
    var pipelines: [PipelineView]

    enum CodingKeys: String, CodingKey {
        case revision, pipelines
        case deviceID = "device_id"
    }
}

/// One revision of a device's pipelines, in `GET /v1/devices/{device_id}/pipelines/history`.
struct PipelineRevision: Decodable, Sendable {
    var revision: Int
    var pipelines: [PipelineView]
    var operationID: UUID
    var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case revision, pipelines
        case operationID = "operation_id"
        case createdAt = "created_at"
    }
}

/// An operation and how many of its devices stand where.
struct OperationSummary: Decodable, Sendable {
    var id: UUID
    var kind: String
    var createdAt: Date
    var reverts: UUID?
    var retries: UUID?
    var watchdogSeconds: Int
    /// Devices per status: pending, delivered, applied, failed, timed_out.
    var counts: [String: Int]
    var devices: Int
    /// Every device settled (applied, failed or timed out).
    var finished: Bool

    enum CodingKeys: String, CodingKey {
        case id, kind, reverts, retries, counts, devices, finished
        case createdAt = "created_at"
        case watchdogSeconds = "watchdog_seconds"
    }

    var applied: Int { counts["applied", default: 0] }
    var failed: Int { counts["failed", default: 0] }
    var timedOut: Int { counts["timed_out", default: 0] }
    /// Not settled yet: waiting to be published, or published and not reported.
    var pending: Int { counts["pending", default: 0] + counts["delivered", default: 0] }
    var settled: Int { applied + failed + timedOut }
}

/// One device of an operation and where it stands.
struct OperationDevice: Decodable, Sendable {
    var deviceID: UUID
    var deviceName: String
    var siteID: String
    var serverID: String
    var status: String
    var reason: String?
    var progress: Progress?

    /// How far its agent's apply is (its last in-progress report).
    struct Progress: Decodable, Sendable {
        var bytesFetched: Int64
        var bytesTotal: Int64?

        enum CodingKeys: String, CodingKey {
            case bytesFetched = "bytes_fetched"
            case bytesTotal = "bytes_total"
        }
    }

    /// The reason, or how far the apply is while it goes on: "downloading 12.0 MiB of 50.0 MiB".
    var note: String {
        if let reason { return reason }
        guard let progress else { return "" }
        return "downloading \(Format.bytes(progress.bytesFetched))" + (progress.bytesTotal.map { " of \(Format.bytes($0))" } ?? "")
    }

    enum CodingKeys: String, CodingKey {
        case status, reason, progress
        case deviceID = "device_id"
        case deviceName = "device_name"
        case siteID = "site_id"
        case serverID = "server_id"
    }
}

/// `GET /v1/operations/{operation_id}`.
struct OperationDetail: Decodable, Sendable {
    var operation: OperationSummary
    var devices: [OperationDevice]
}

/// A device an operation leaves alone, and why.
struct SkippedDevice: Decodable, Sendable {
    var deviceID: UUID
    var deviceName: String?
    var reason: String

    enum CodingKeys: String, CodingKey {
        case reason
        case deviceID = "device_id"
        case deviceName = "device_name"
    }
}

/// The 202 answer to an operation: it is committed, and these devices were left out.
struct AcceptedOperation: Decodable, Sendable {
    var operation: OperationSummary
    var skipped: [SkippedDevice]
}

/// The 200 answer to `dry_run: true`: what each device runs now and would run after.
struct OperationPreview: Decodable, Sendable {
    var kind: String
    var changes: [Change]
    var skipped: [SkippedDevice]
    /// Sites of the changes with no server online (only with `allow_offline`; without it they
    /// are an error).
    var offlineSites: [String]

    enum CodingKeys: String, CodingKey {
        case kind, changes, skipped
        case offlineSites = "offline_sites"
    }

    /// One device's change.
    struct Change: Decodable, Sendable {
        var deviceID: UUID
        var deviceName: String
        var siteID: String
        var serverID: String
        var reachable: Bool
        var before: [PipelineView]
        var after: [PipelineView]

        enum CodingKeys: String, CodingKey {
            case reachable, before, after
            case deviceID = "device_id"
            case deviceName = "device_name"
            case siteID = "site_id"
            case serverID = "server_id"
        }
    }
}
