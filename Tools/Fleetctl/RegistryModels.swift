import FleetContract
import Foundation

// The registry's answers as the tool reads them (Services/Registry/InventoryTypes.swift and
// CatalogueTypes.swift). Closed sets (task, format, status) are read as strings so that a value
// added to the API later is printed rather than refused.

/// A site in `GET /v1/sites`.
struct SiteSummary: Decodable, Sendable {
    var id: String
    var name: String
    var online: Bool
    var serverCount: Int
    var deviceCount: Int

    enum CodingKeys: String, CodingKey {
        case id, name, online
        case serverCount = "server_count"
        case deviceCount = "device_count"
    }
}

/// `GET /v1/sites/{site_id}`: the site with its servers, groups and first page of devices.
struct SiteDetail: Decodable, Sendable {
    var site: SiteSummary
    var servers: [ServerSummary]
    var groups: [GroupSummary]
    var devices: Page<DeviceSummary>
}

/// An edge server (one agent).
struct ServerSummary: Decodable, Sendable {
    var id: String
    var name: String
    var agentVersion: String
    var online: Bool
    var supportsPipelines: Bool
    var lastSeen: Date?

    enum CodingKeys: String, CodingKey {
        case id, name, online
        case agentVersion = "agent_version"
        case supportsPipelines = "supports_pipelines"
        case lastSeen = "last_seen"
    }
}

/// A device group of a site.
struct GroupSummary: Decodable, Sendable {
    var id: UUID
    var siteID: String
    var name: String

    enum CodingKeys: String, CodingKey {
        case id, name
        case siteID = "site_id"
    }
}

/// A device in `GET /v1/devices`.
struct DeviceSummary: Decodable, Sendable {
    var id: UUID
    var serverID: String
    var siteID: String
    var key: String
    var name: String
    var kind: String
    var enabled: Bool
    var gone: Bool
    var groupID: UUID?
    var labels: [String]
    var reachable: Bool
    var supportsPipelines: Bool

    enum CodingKeys: String, CodingKey {
        case id, key, name, kind, enabled, gone, labels, reachable
        case serverID = "server_id"
        case siteID = "site_id"
        case groupID = "group_id"
        case supportsPipelines = "supports_pipelines"
    }
}

/// A model of the catalogue; `versions` only on a single model's page.
struct ModelSummary: Decodable, Sendable {
    var id: UUID
    var name: String
    var description: String?
    var task: String
    var format: String
    var labels: [String]
    var createdAt: Date
    var versions: [ModelVersionSummary]?

    enum CodingKeys: String, CodingKey {
        case id, name, description, task, format, labels, versions
        case createdAt = "created_at"
    }
}

/// A version of a model: its artifact and the settings it runs with unless told otherwise.
struct ModelVersionSummary: Decodable, Sendable {
    var modelID: UUID
    var version: String
    var status: String
    var artifactURI: String
    var sha256: String
    var sizeBytes: Int64
    var defaultSettings: [String: JSONValue]
    var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case version, status, sha256
        case modelID = "model_id"
        case artifactURI = "artifact_uri"
        case sizeBytes = "size_bytes"
        case defaultSettings = "default_settings"
        case createdAt = "created_at"
    }
}
