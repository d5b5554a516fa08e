import FleetContract
import Foundation
import ServiceRuntime

struct Site: Codable, Sendable {
    var id: String
    var name: String
    /// True when at least one of its servers is online.
    var online: Bool
    var serverCount: Int
    var deviceCount: Int

    enum CodingKeys: String, CodingKey {
        case id, name, online
        case serverCount = "server_count"
        case deviceCount = "device_count"
    }
}

struct Server: Codable, Sendable {
    var id: String
    var siteID: String
    var name: String
    var agentVersion: String
    var cpuCores: Double
    var memoryBytes: Int64
    var gpus: [AgentHello.GPU]
    var supportsPipelines: Bool
    var online: Bool
    var lastSeen: Date?

    enum CodingKeys: String, CodingKey {
        case id, name, gpus, online
        case siteID = "site_id"
        case agentVersion = "agent_version"
        case cpuCores = "cpu_cores"
        case memoryBytes = "memory_bytes"
        case supportsPipelines = "supports_pipelines"
        case lastSeen = "last_seen"
    }
}

struct Device: Codable, Sendable {
    var id: UUID
    var serverID: String
    var siteID: String
    var key: String
    var name: String
    var kind: String
    var enabled: Bool
    /// The server's last hello no longer lists it; kept with its history, never deleted silently.
    var gone: Bool
    var groupID: UUID?
    var labels: [String]
    /// Its server is online (and it is not gone).
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

struct DeviceGroup: Codable, Sendable {
    var id: UUID
    var siteID: String
    var name: String

    enum CodingKeys: String, CodingKey {
        case id, name
        case siteID = "site_id"
    }
}

/// The product's site page in one answer.
struct SitePage: Encodable, Sendable {
    var site: Site
    var servers: [Server]
    var groups: [DeviceGroup]
    /// The first page of the site's devices; the rest through `GET /v1/devices?site=…&cursor=…`.
    var devices: Page<Device>
}

struct NewDeviceGroup: Decodable, Sendable {
    var name: String
}

/// An operator's change to a device. `group_id: null` takes it out of its group.
struct DeviceUpdate: Decodable, Sendable {
    var name: String?
    var enabled: Bool?
    var groupID: UUID??
    var labels: [String]?

    enum CodingKeys: String, CodingKey {
        case name, enabled, labels
        case groupID = "group_id"
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        name = try container.decodeIfPresent(String.self, forKey: .name)
        enabled = try container.decodeIfPresent(Bool.self, forKey: .enabled)
        labels = try container.decodeIfPresent([String].self, forKey: .labels)
        if container.contains(.groupID) {
            groupID = .some(try container.decodeNil(forKey: .groupID) ? nil : try container.decode(UUID.self, forKey: .groupID))
        } else {
            groupID = .none
        }
    }

    func validated() throws(APIError) -> DeviceUpdate {
        guard name != nil || enabled != nil || groupID != nil || labels != nil else {
            throw APIError.invalid(field: "(body)", "nothing to change: give name, enabled, group_id and/or labels")
        }
        var copy = self
        copy.name = try name.map { value throws(APIError) in try Validate.name(value, field: "name") }
        copy.labels = try labels.map { value throws(APIError) in try Validate.labels(value, field: "labels") }
        return copy
    }
}

/// Which devices a list or a request means; every field narrows it.
struct DeviceSelection: Codable, Sendable {
    var deviceIDs: [UUID]?
    var siteIDs: [String]?
    var serverIDs: [String]?
    var groupIDs: [UUID]?
    var labels: [String]?
    var enabled: Bool?
    var online: Bool?

    /// Chooses by site alone (no other filter).
    var isOnlySites: Bool {
        deviceIDs == nil && serverIDs == nil && groupIDs == nil && labels == nil && enabled == nil && online == nil
    }

    enum CodingKeys: String, CodingKey {
        case labels, enabled, online
        case deviceIDs = "device_ids"
        case siteIDs = "site_ids"
        case serverIDs = "server_ids"
        case groupIDs = "group_ids"
    }
}

extension Device {
    /// The same JSON as `JSONEncoder` writes for a device (a missing group is left out), by hand:
    /// device pages are the registry's hottest answer.
    func write(to json: inout JSONWriter) {
        json.raw("{\"id\":")
        json.string(id.lowercasedString)
        json.raw(",\"server_id\":")
        json.string(serverID)
        json.raw(",\"site_id\":")
        json.string(siteID)
        json.raw(",\"key\":")
        json.string(key)
        json.raw(",\"name\":")
        json.string(name)
        json.raw(",\"kind\":")
        json.string(kind)
        json.raw(",\"enabled\":")
        json.bool(enabled)
        json.raw(",\"gone\":")
        json.bool(gone)
        if let groupID {
            json.raw(",\"group_id\":")
            json.string(groupID.lowercasedString)
        }
        json.raw(",\"labels\":")
        json.strings(labels)
        json.raw(",\"reachable\":")
        json.bool(reachable)
        json.raw(",\"supports_pipelines\":")
        json.bool(supportsPipelines)
        json.raw("}")
    }

    var json: [UInt8] {
        var writer = JSONWriter(capacity: 320)
        write(to: &writer)
        return writer.bytes
    }
}

extension [Device] {
    /// A JSON array of devices, written by hand: the answer to another service's devices query
    /// holds every device of a selection (10,000 for a large assignment).
    var json: [UInt8] {
        var writer = JSONWriter(capacity: 2 + count * 320)
        writer.raw("[")
        for (index, device) in enumerated() {
            if index > 0 { writer.raw(",") }
            device.write(to: &writer)
        }
        writer.raw("]")
        return writer.bytes
    }
}

extension Page<Device> {
    var json: [UInt8] {
        var writer = JSONWriter(capacity: 64 + items.count * 320)
        writer.raw("{\"items\":[")
        for (index, device) in items.enumerated() {
            if index > 0 { writer.raw(",") }
            device.write(to: &writer)
        }
        writer.raw("]")
        if let nextCursor {
            writer.raw(",\"next_cursor\":")
            writer.string(nextCursor)
        }
        writer.raw("}")
        return writer.bytes
    }
}
