import FleetContract
import Foundation

// The orchestrator's deployments as the tool reads them (`Deployment` and `DeploymentRevision` in
// its openapi.yaml). The contract gives them as JSON, not generated types, to keep their nulls
// (decision 92); these read that JSON. States and statuses are strings, so a new one is printed.

struct DeploymentSummary: Decodable, Sendable {
    struct Resources: Decodable, Sendable {
        var cpuCores: Double
        var memoryGB: Double
        var gpuCount: Int
        var gpuType: String?

        enum CodingKeys: String, CodingKey {
            case cpuCores = "cpu_cores"
            case memoryGB = "memory_gb"
            case gpuCount = "gpu_count"
            case gpuType = "gpu_type"
        }
    }

    struct Scaling: Decodable, Sendable {
        var minReplicas: Int
        var maxReplicas: Int
        var replicas: Int
        var autoscaling: Bool

        enum CodingKeys: String, CodingKey {
            case replicas, autoscaling
            case minReplicas = "min_replicas"
            case maxReplicas = "max_replicas"
        }
    }

    struct Replicas: Decodable, Sendable {
        var desired: Int
        var ready: Int
        var pending: Int
    }

    struct Instance: Decodable, Sendable {
        var id: String
        var serverID: String?
        var state: String
        var reason: String?
        var address: String?
        var modelVersion: String
        var revision: Int
        /// The revision whose spec it runs (behind during a restart).
        var runsRevision: Int?

        enum CodingKeys: String, CodingKey {
            case id, state, reason, address, revision
            case serverID = "server_id"
            case modelVersion = "model_version"
            case runsRevision = "runs_revision"
        }
    }

    var name: String
    var description: String
    var modelID: UUID
    var modelVersion: String
    var environment: String
    var revision: Int
    var status: String
    var resources: Resources
    var scaling: Scaling
    var replicas: Replicas
    var instances: [Instance]
    /// The load balancers' path for it (`/d/<name>/`); nil when its load balancer is off.
    var endpoint: String?
    /// A roll under way: how far, and when it is rolled back without progress.
    var rollout: DeploymentRollout?
    /// Why the orchestrator rolled it back by itself, until an operator's next change.
    var rolledBackBecause: String?
    var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case name, description, environment, revision, status, resources, scaling, replicas, instances, endpoint, rollout
        case rolledBackBecause = "rolled_back_because"
        case modelID = "model_id"
        case modelVersion = "model_version"
        case createdAt = "created_at"
    }
}

struct DeploymentRevisionView: Decodable, Sendable {
    var revision: Int
    var actor: String
    var change: String
    var createdAt: Date

    enum CodingKeys: String, CodingKey {
        case revision, actor, change
        case createdAt = "created_at"
    }
}

struct DeploymentEditAnswer: Decodable, Sendable {
    var deployment: DeploymentSummary
    var restart: Bool
}

extension DeploymentSummary {
    /// A deployment the orchestrator's generated client gave as JSON.
    init(_ json: JSONValue, from service: ServiceClient) throws {
        self = try contractAnswer(json, from: service)
    }
}
