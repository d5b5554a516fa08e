import AutoscalerContract
import FleetContract
import Foundation
import Hummingbird
import OpenAPIRuntime
import ServiceRuntime

/// The `autoscaler` executable: each autoscaled deployment's replicas from its CPU, memory and GPU
/// utilisation against its targets, decided every second from the metrics aggregator's snapshots,
/// limited to what the fleet can place, and applied by the orchestrator (docs/autoscaler.md).
@main
enum AutoscalerMain {
    static func main() async {
        await ServiceMain.run(.autoscaler, setup: buildAutoscaler)
    }
}

extension ServiceDescriptor {
    static let autoscaler = ServiceDescriptor(name: "autoscaler", defaultHTTPPort: 8083)
}

/// Wires the autoscaler's parts onto the runtime.
func buildAutoscaler(_ context: ServiceContext) throws -> ServiceParts {
    let scaler = Scaler(mqtt: context.mqtt, instance: context.configuration.instanceID, logger: context.logger)
    var parts = ServiceParts()
    parts.services = [scaler]
    parts.routes = { router in try AutoscalerAPI(scaler: scaler).addRoutes(to: router) }
    return parts
}

/// `GET /v1/deployments/{deployment}/autoscaling` (openapi.yaml, generated into
/// AutoscalerContract): the current recommendation and the decisions with their reasons.
struct AutoscalerAPI: APIProtocol {
    let scaler: any AutoscalingSource

    func addRoutes(to router: Router<BasicRequestContext>) throws {
        try router.addContract(document: AutoscalerOpenAPI.text) { try registerHandlers(on: $0, configuration: $1, middlewares: $2) }
    }

    private typealias Schemas = Components.Schemas

    func getDeploymentAutoscaling(_ input: Operations.GetDeploymentAutoscaling.Input) async throws -> Operations.GetDeploymentAutoscaling.Output {
        let name = input.path.deployment
        guard let entry = scaler.entry(name) else {
            throw APIError.notFound("no deployment named '\(name)' in the orchestrator's views (the autoscaler knows every live deployment)")
        }
        let view = entry.view
        var targets: [String: Double] = [:]
        targets["cpu"] = view.targetCPU
        targets["memory"] = view.targetMemory
        targets["gpu"] = view.targetGPU
        targets["requests_per_second"] = view.targetRequestsPerSecond
        targets["in_flight_requests"] = view.targetInFlight
        let latest = entry.latest.map { latest in
            Schemas.Recommendation(
                at: latest.at, desired: latest.decision.desired, recommendation: latest.decision.recommendation, reason: latest.decision.reason,
                instances: latest.observation?.instances, readyInstances: latest.observation?.ready,
                utilization: latest.observation.map {
                    .init(additionalProperties: Dictionary(uniqueKeysWithValues: $0.utilization.map { ($0.key.rawValue, $0.value) }))
                })
        }
        let body = Schemas.Autoscaling(
            deployment: view.deployment, enabled: view.enabled, replicas: view.replicas, minReplicas: view.minReplicas, maxReplicas: view.maxReplicas,
            targets: .init(additionalProperties: targets), scaleDownStabilizationSeconds: view.scaleDownStabilizationSeconds,
            owner: scaler.owner(of: name), latest: latest,
            decisions: entry.decisions.reversed().map {
                Schemas.Decision(at: $0.at, from: $0.decision.from, to: $0.decision.to, revision: $0.decision.revision, reason: $0.decision.reason)
            })
        return .ok(.init(body: .json(body)))
    }
}

/// What the REST API reads: the ``Scaler``, or entries the handler tests give.
protocol AutoscalingSource: Sendable {
    func entry(_ deployment: String) -> Scaler.Entry?
    func owner(of deployment: String) -> String
}

extension Scaler: AutoscalingSource {}
