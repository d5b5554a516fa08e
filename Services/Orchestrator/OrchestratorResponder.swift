import FleetContract
import Foundation
import Logging
import MQTT
import ServiceLifecycle
import ServiceRuntime

/// Answers other services' questions over MQTT 5 request/response (shared between replicas):
/// which devices' pipelines use a model version, which the registry asks before deleting one.
struct OrchestratorResponder: Service {
    let mqtt: MQTTClient
    let database: DatabaseService
    let store: PostgresOperationStore
    let logger: Logger

    func run() async throws {
        try await database.waitUntilMigrated()
        await cancelWhenGracefulShutdown {
            await serveRequests(on: Topic.orchestratorModelVersionUsage, sharedBy: "orchestrator", mqtt: mqtt, logger: logger) { request in
                let query = try ContractCoding.decoder.decode(ModelVersionUsageQuery.self, from: request.payload)
                return try ContractCoding.encoder.encode(try await store.usage(of: query.modelID, version: query.version))
            }
        }
    }
}
