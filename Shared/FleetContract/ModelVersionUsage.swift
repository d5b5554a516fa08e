package import Foundation

extension Topic {
    /// Requests to the orchestrator: which devices' pipelines use a model version (the registry
    /// asks before it deletes one).
    package static let orchestratorModelVersionUsage = root.appending("internal").appending("orchestrator").appending(
        "model-version-usage")
}

/// The question on ``Topic/orchestratorModelVersionUsage``: `{"model_id": uuid, "version": "1.2.0"}`.
package struct ModelVersionUsageQuery: Codable, Sendable, Equatable {
    package var modelID: UUID
    package var version: String

    package init(modelID: UUID, version: String) {
        self.modelID = modelID
        self.version = version
    }

    private enum CodingKeys: String, CodingKey {
        case modelID = "model_id"
        case version
    }
}

/// The orchestrator's answer: how many devices have a pipeline with a stage on the version now
/// (assigned, whether or not the agent has applied it yet), and the first few of them.
package struct ModelVersionUsage: Codable, Sendable, Equatable {
    /// A device whose pipeline uses the version.
    package struct User: Codable, Sendable, Equatable {
        package var deviceID: UUID
        package var serverID: String
        package var deviceKey: String
        package var pipeline: String

        package init(deviceID: UUID, serverID: String, deviceKey: String, pipeline: String) {
            self.deviceID = deviceID
            self.serverID = serverID
            self.deviceKey = deviceKey
            self.pipeline = pipeline
        }

        private enum CodingKeys: String, CodingKey {
            case deviceID = "device_id"
            case serverID = "server_id"
            case deviceKey = "device_key"
            case pipeline
        }
    }

    /// Devices using the version.
    package var devices: Int
    /// At most ``exampleLimit`` of them, ordered by server and device key.
    package var examples: [User]

    package static let exampleLimit = 10

    package init(devices: Int, examples: [User]) {
        self.devices = devices
        self.examples = examples
    }
}
