import FleetContract
import Foundation
import Hummingbird
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
    parts.routes = { router in AutoscalerAPI(scaler: scaler).addRoutes(to: router) }
    return parts
}

/// `GET /v1/deployments/{deployment}/autoscaling` (openapi.yaml): the current recommendation and
/// the decisions with their reasons.
struct AutoscalerAPI: Sendable {
    let scaler: Scaler

    typealias Route = APIRoute<AutoscalerAPI>

    static let routes: [Route] = [
        Route(.get, "/v1/deployments/{deployment}/autoscaling") { api, request, context in try api.get(request, context) },
        Route(.get, "/openapi.json") { _, _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(string: AutoscalerOpenAPI.text)))
        },
    ]

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.add(Self.routes, for: self)
    }

    struct Recommendation: Encodable {
        var at: Date
        var desired: Int
        var recommendation: Int
        var reason: String
        var instances: Int?
        var readyInstances: Int?
        var utilization: [String: Double]?

        enum CodingKeys: String, CodingKey {
            case at, desired, recommendation, reason, instances, utilization
            case readyInstances = "ready_instances"
        }
    }

    struct Decision: Encodable {
        var at: Date
        var from: Int
        var to: Int
        var revision: Int
        var reason: String
    }

    struct Body: Encodable {
        var deployment: String
        var enabled: Bool
        var replicas: Int
        var minReplicas: Int
        var maxReplicas: Int
        var targets: [String: Double]
        var scaleDownStabilizationSeconds: Int
        /// The autoscaler replica that decides for this deployment (the others have no `latest`).
        var owner: String
        var latest: Recommendation?
        var decisions: [Decision]

        enum CodingKeys: String, CodingKey {
            case deployment, enabled, replicas, targets, owner, latest, decisions
            case minReplicas = "min_replicas"
            case maxReplicas = "max_replicas"
            case scaleDownStabilizationSeconds = "scale_down_stabilization_seconds"
        }
    }

    func get(_ request: Request, _ context: BasicRequestContext) throws -> Response {
        let name = context.parameters.get("deployment") ?? ""
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
            Recommendation(
                at: latest.at, desired: latest.decision.desired, recommendation: latest.decision.recommendation, reason: latest.decision.reason,
                instances: latest.observation?.instances, readyInstances: latest.observation?.ready,
                utilization: latest.observation.map { Dictionary(uniqueKeysWithValues: $0.utilization.map { ($0.key.rawValue, $0.value) }) })
        }
        let body = Body(
            deployment: view.deployment, enabled: view.enabled, replicas: view.replicas, minReplicas: view.minReplicas, maxReplicas: view.maxReplicas,
            targets: targets, scaleDownStabilizationSeconds: view.scaleDownStabilizationSeconds, owner: scaler.owner(of: name),
            latest: latest,
            decisions: entry.decisions.reversed().map {
                Decision(at: $0.at, from: $0.decision.from, to: $0.decision.to, revision: $0.decision.revision, reason: $0.decision.reason)
            })
        return try JSONResponse(body, status: .ok, encoder: ContractCoding.encoder).response(from: request, context: context)
    }
}
