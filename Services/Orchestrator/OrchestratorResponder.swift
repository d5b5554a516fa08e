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
    let store: OperationStore
    let logger: Logger

    func run() async throws {
        try await database.waitUntilMigrated()
        await cancelWhenGracefulShutdown {
            do {
                try await mqtt.serveRequests(on: Topic.orchestratorModelVersionUsage.shared(by: "orchestrator")) { request in
                    let query: ModelVersionUsageQuery
                    do {
                        query = try ContractCoding.decoder.decode(ModelVersionUsageQuery.self, from: request.payload)
                    } catch let error as DecodingError {
                        throw ContractError(decodingError: error)
                    }
                    let usage = try await store.usage(of: query.modelID, version: query.version)
                    return MQTTReply(payload: try ContractCoding.encoder.encode(usage), contentType: "application/json")
                }
            } catch is CancellationError {
            } catch {
                logger.error("stopped answering model-version usage requests", metadata: ["error": "\(error)"])
            }
        }
    }
}
