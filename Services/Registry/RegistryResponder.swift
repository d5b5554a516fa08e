import FleetContract
import Foundation
import Logging
import MQTT
import ServiceLifecycle
import ServiceRuntime

/// Answers other services' questions over MQTT 5 request/response (shared between replicas).
///
/// Requests and replies carry the JSON body directly (no envelope: the MQTT 5 correlation data
/// already ties them together); a failure answers with the `error` user property.
struct RegistryResponder: Service {
    let mqtt: MQTTClient
    let database: DatabaseService
    let store: any RegistryRepository
    let logger: Logger

    /// `{"model_id": "…", "version": "1.2.0"}` or `{"model_name": "…", "version": "…"}`.
    struct ModelVersionQuery: Decodable {
        var modelID: UUID?
        var modelName: String?
        var version: String

        enum CodingKeys: String, CodingKey {
            case version
            case modelID = "model_id"
            case modelName = "model_name"
        }
    }

    /// A model version as `GET /v1/models/{id}/versions/{version}` shows it, plus its model's
    /// name (a pipeline stage carries both).
    struct VersionAnswer: Encodable {
        var version: ModelVersion
        var modelName: String

        private enum CodingKeys: String, CodingKey {
            case modelName = "model_name"
        }

        func encode(to encoder: any Encoder) throws {
            try version.encode(to: encoder)
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(modelName, forKey: .modelName)
        }
    }

    func run() async throws {
        try await database.waitUntilMigrated()
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask {
                    await serve(Topic.registryDeviceQuery) { request in
                        let selection = try ContractCoding.decoder.decode(DeviceSelection.self, from: request.payload)
                        return Data(try await store.allDevices(selection).json)
                    }
                }
                group.addTask {
                    // Every server, with its capacity and presence; the request body is ignored.
                    await serve(Topic.registryServerQuery) { _ in
                        try ContractCoding.encoder.encode(try await store.servers(site: nil, online: nil))
                    }
                }
                group.addTask {
                    await serve(Topic.registryModelVersionQuery) { request in
                        let query = try ContractCoding.decoder.decode(ModelVersionQuery.self, from: request.payload)
                        let found: ModelVersion?
                        if let id = query.modelID {
                            found = try await store.version(modelID: id, version: query.version)
                        } else if let name = query.modelName {
                            found = try await store.version(modelName: name, version: query.version)
                        } else {
                            throw APIError.invalid(field: "model_id", "give model_id or model_name")
                        }
                        guard let found, let model = try await store.model(id: found.modelID) else {
                            throw APIError.notFound("no such model version: \(query.version)")
                        }
                        return try ContractCoding.encoder.encode(VersionAnswer(version: found, modelName: model.name))
                    }
                }
            }
        }
    }

    private func serve(_ topic: Topic, _ answer: @escaping @Sendable (MQTTMessage) async throws -> Data) async {
        await serveRequests(on: topic, sharedBy: "registry", mqtt: mqtt, logger: logger, answer: answer)
    }
}
