package import Foundation

extension Topic {
    /// The device gateway forwards each valid agent hello here (internal; the registry consumes it
    /// through `$share/registry/…`).
    package static let agentHelloEvents = root.appending("internal").appending("agents").appending("hello")
    /// The device gateway's presence changes of agents: online or offline, with when it was observed.
    package static let agentPresenceEvents = root.appending("internal").appending("agents").appending("presence")
    /// The registry's revocations of agents' enrolments (QoS 1, not retained). The broker
    /// disconnects a revoked agent without its last will, so every gateway replica takes this as
    /// the agent's going offline.
    package static let agentRevocations = root.appending("internal").appending("agents").appending("revoked")
    /// Requests to the registry: the devices of a selection, with the flags other services need.
    package static let registryDeviceQuery = root.appending("internal").appending("registry").appending("devices-query")
    /// Requests to the registry: the servers with their capacity and presence (placement).
    package static let registryServerQuery = root.appending("internal").appending("registry").appending("servers-query")
    /// Requests to the registry: one model version's artifact and default settings.
    package static let registryModelVersionQuery = root.appending("internal").appending("registry").appending("model-version-query")
    /// Change events the registry publishes, one topic per kind.
    package static func registryEvent(_ kind: RegistryEventKind) -> Topic {
        root.appending("events").appending("registry").appending(kind.rawValue)
    }

    /// A shared-subscription filter for the replicas of `service`.
    package func shared(by service: String) -> String { "$share/\(service)/\(path)" }
}

package enum RegistryEventKind: String, Sendable, CaseIterable {
    case deviceChanged = "device-changed"
    case serverPresence = "server-presence"
    case modelVersionChanged = "model-version-changed"
}

/// What an edge agent says when it connects, as forwarded by the device gateway: its site, its
/// server and the devices on it.
package struct AgentHello: ContractPayload, Equatable {
    package static let messageType = "agent.hello"

    package struct Site: Codable, Sendable, Equatable {
        package var id: String
        package var name: String
        package init(id: String, name: String) {
            self.id = id
            self.name = name
        }
    }

    package struct GPU: Codable, Sendable, Equatable {
        package var type: String
        package var count: Int
        package init(type: String, count: Int) {
            self.type = type
            self.count = count
        }
    }

    package struct Capacity: Codable, Sendable, Equatable {
        package var cpuCores: Double
        package var memoryBytes: Int64
        package var gpus: [GPU]

        package init(cpuCores: Double, memoryBytes: Int64, gpus: [GPU]) {
            self.cpuCores = cpuCores
            self.memoryBytes = memoryBytes
            self.gpus = gpus
        }

        private enum CodingKeys: String, CodingKey {
            case cpuCores = "cpu_cores"
            case memoryBytes = "memory_bytes"
            case gpus
        }
    }

    package struct Device: Codable, Sendable, Equatable {
        /// The device's id on its server, stable across hellos (a camera's serial, say).
        package var key: String
        package var name: String
        package var kind: String
        package init(key: String, name: String, kind: String) {
            self.key = key
            self.name = name
            self.kind = kind
        }
    }

    package var agentID: String
    package var site: Site
    package var serverName: String
    package var agentVersion: String
    package var capacity: Capacity
    package var supportsPipelines: Bool
    package var devices: [Device]
    /// When the gateway received the hello; older than what the registry stored means stale.
    package var observedAt: Date

    package init(
        agentID: String,
        site: Site,
        serverName: String,
        agentVersion: String,
        capacity: Capacity,
        supportsPipelines: Bool,
        devices: [Device],
        observedAt: Date
    ) {
        self.agentID = agentID
        self.site = site
        self.serverName = serverName
        self.agentVersion = agentVersion
        self.capacity = capacity
        self.supportsPipelines = supportsPipelines
        self.devices = devices
        self.observedAt = observedAt
    }

    private enum CodingKeys: String, CodingKey {
        case agentID = "agent_id"
        case site
        case serverName = "server_name"
        case agentVersion = "agent_version"
        case capacity
        case supportsPipelines = "supports_pipelines"
        case devices
        case observedAt = "observed_at"
    }
}

/// An agent went online or offline, as the device gateway saw it.
package struct AgentPresence: ContractPayload, Equatable {
    package static let messageType = "agent.presence"

    package enum State: String, Codable, Sendable {
        case online
        case offline
    }

    package var agentID: String
    package var state: State
    package var observedAt: Date

    package init(agentID: String, state: State, observedAt: Date) {
        self.agentID = agentID
        self.state = state
        self.observedAt = observedAt
    }

    private enum CodingKeys: String, CodingKey {
        case agentID = "agent_id"
        case state
        case observedAt = "observed_at"
    }
}

/// An agent's enrolment revoked, on ``Topic/agentRevocations``.
package struct AgentRevocation: ContractPayload, Equatable {
    package static let messageType = "agent.revoked"

    package var agentID: String
    package var revokedAt: Date

    package init(agentID: String, revokedAt: Date) {
        self.agentID = agentID
        self.revokedAt = revokedAt
    }

    private enum CodingKeys: String, CodingKey {
        case agentID = "agent_id"
        case revokedAt = "revoked_at"
    }
}

/// A change the registry announces on ``Topic/registryEvent(_:)``; which fields are set depends on
/// the kind: `server-presence` (server_id, online), `device-changed` (server_id, device_key,
/// change: added | gone | updated), `model-version-changed` (model_id, version, change: added |
/// deprecated | deleted).
package struct RegistryChange: ContractPayload, Equatable {
    package static let messageType = "registry.change"

    package var kind: String
    package var serverID: String?
    package var online: Bool?
    package var deviceKey: String?
    package var change: String?
    package var modelID: UUID?
    package var version: String?

    package init(
        kind: RegistryEventKind, serverID: String? = nil, online: Bool? = nil, deviceKey: String? = nil,
        change: String? = nil, modelID: UUID? = nil, version: String? = nil
    ) {
        self.kind = kind.rawValue
        self.serverID = serverID
        self.online = online
        self.deviceKey = deviceKey
        self.change = change
        self.modelID = modelID
        self.version = version
    }

    private enum CodingKeys: String, CodingKey {
        case kind, online, change, version
        case serverID = "server_id"
        case deviceKey = "device_key"
        case modelID = "model_id"
    }
}

extension Topic {
    /// The ids of every revoked API key still unexpired (retained, QoS 1), published by the
    /// registry on every change; each service refuses those keys (docs/security.md).
    package static let apiKeyRevocations = root.appending("internal").appending("api-keys").appending("revoked")
}

/// The revoked API keys, on ``Topic/apiKeyRevocations``: the whole list each time.
package struct APIKeyRevocations: ContractPayload, Equatable {
    package static let messageType = "api-keys.revoked"

    package var revoked: [String]

    package init(revoked: [String]) {
        self.revoked = revoked
    }
}
