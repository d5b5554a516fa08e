import FleetContract
import Foundation
import MQTT
import ServiceRuntime

/// The registry's question to the orchestrator, over MQTT 5 request/response
/// (`docs/mqtt-contract.md`): which devices' pipelines use a model version.
struct OrchestratorClient: ModelVersionUsageSource {
    let mqtt: MQTTClient
    /// How long a delete waits for the orchestrator before it is refused as unavailable.
    var timeout: Duration = .seconds(3)

    /// The devices using the version. Without an answer the registry cannot tell that nothing
    /// uses it, so the caller refuses the delete rather than guess (decision in `docs/decisions.md`).
    func usage(of modelID: UUID, version: String) async throws -> ModelVersionUsage {
        let answer: MQTTMessage
        do {
            answer = try await mqtt.request(
                Topic.orchestratorModelVersionUsage.path,
                payload: try ContractCoding.encoder.encode(ModelVersionUsageQuery(modelID: modelID, version: version)), timeout: timeout)
        } catch {
            throw DomainError.unavailable(
                code: "orchestrator_unavailable",
                "the orchestrator did not say whether a pipeline uses this version (\(error)); try again when it runs")
        }
        return try ContractCoding.decoder.decode(ModelVersionUsage.self, from: answer.payload)
    }
}
