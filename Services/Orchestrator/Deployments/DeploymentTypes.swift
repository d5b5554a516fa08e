import FleetContract
import Foundation

/// Where an instance stands (`InstanceState` in the contract).
enum InstanceState: String, Codable, Sendable, CaseIterable {
    /// No server can take it; `reason` says why.
    case pending
    /// Placed on a server, which has not reported it yet.
    case assigned
    /// As its agent reported it: started and not answering its health check yet, answering it,
    /// failed (being restarted; `reason` says why), or shut down.
    case starting, ready, failed, stopped
}

/// One instance of a deployment, placed or pending.
struct DeploymentInstance: Codable, Sendable, Equatable {
    var id: String
    var serverID: String?
    var state: InstanceState
    var reason: String?
    var address: String?
    var modelVersion: String
    var revision: Int
    /// The revision whose spec (environment, resources, runtime) it runs: behind `revision` of
    /// its deployment while an edit restarts the instances one by one.
    var runsRevision: Int
    var weight: Int
    /// How many times its agent restarted it after a crash.
    var restarts: Int
    var updatedAt: Date

    enum CodingKeys: String, CodingKey {
        case id, state, reason, address, revision, weight, restarts
        case runsRevision = "runs_revision"
        case serverID = "server_id"
        case modelVersion = "model_version"
        case updatedAt = "updated_at"
    }
}

/// A deployment as stored, with its instances.
struct Deployment: Sendable, Equatable {
    enum Status: String, Codable, Sendable {
        case deploying, running, degraded, stopped
        /// An edit's restart goes through the instances one by one.
        case restarting
    }

    var id: UUID
    var seq: Int64
    var name: String
    var revision: Int
    var spec: DeploymentSpec
    var stopped: Bool
    var createdAt: Date
    var updatedAt: Date
    var instances: [DeploymentInstance]
    /// While a change restarts instances: the last revision rolled out whole, where the roll
    /// goes back to if it stalls.
    var rollingFrom: Int? = nil
    /// The roll's last progress: the revision's change, or the last instance moved to it.
    var progressAt: Date? = nil
    /// A canary update under way: its step (an index into `update_strategy.canary_steps`), when
    /// the step began (nil: it ends as soon as its instances are ready), whether it is paused, and
    /// the last analysis of the new version's figures.
    var canaryStep: Int? = nil
    var stepAt: Date? = nil
    var paused = false
    var analysis: String? = nil
    /// Why the orchestrator rolled the deployment back by itself, until an operator's next change.
    var rolledBackBecause: String? = nil

    var ready: Int { instances.count { $0.state == .ready } }

    /// A roll under way, as the API shows it: how far it is, and when it is rolled back
    /// without progress.
    var rollout: DeploymentRollout? {
        guard let rollingFrom, !stopped else { return nil }
        var rollout = DeploymentRollout(
            fromRevision: rollingFrom, toRevision: revision, moved: instances.count { $0.runsRevision >= revision }, instances: instances.count,
            versions: Dictionary(grouping: instances, by: \.modelVersion).mapValues(\.count),
            progressDeadlineAt: progressAt?.addingTimeInterval(Double(spec.updateStrategy.progressDeadlineSeconds)))
        if let canaryStep, let steps = spec.stagedSteps {
            let seconds = spec.stepSeconds(canaryStep)
            rollout.stage = DeploymentRollout.Stage(
                strategy: spec.updateStrategy.type.rawValue, step: canaryStep + 1, steps: steps.count,
                weight: steps.indices.contains(canaryStep) ? steps[canaryStep] : 100, paused: paused,
                stepEndsAt: paused ? nil : seconds.flatMap { seconds in stepAt.map { $0.addingTimeInterval(Double(seconds)) } }, analysis: analysis)
        }
        return rollout
    }

    /// Where the load balancers serve it.
    var endpointPath: String { "/d/\(name)/" }

    /// What the load balancers serve for it: its ready instances, or a stop.
    var loadBalancerView: LoadBalancerView {
        let balancer = spec.loadBalancer
        let algorithm: LoadBalancerView.Algorithm
        switch balancer.algorithm {
        case .roundRobin: algorithm = .roundRobin
        case .leastConnections: algorithm = .leastConnections
        case .ipHash: algorithm = .ipHash
        }
        let servers = instances.compactMap { instance -> LoadBalancerView.Server? in
            guard instance.state == .ready, let address = instance.address else { return nil }
            return LoadBalancerView.Server(instanceID: instance.id, address: address, weight: instance.weight, version: instance.modelVersion)
        }
        return LoadBalancerView(
            deployment: name, state: !balancer.enabled ? .disabled : stopped ? .stopped : .serving, algorithm: algorithm,
            healthCheckPath: balancer.healthCheckPath, healthCheckIntervalSeconds: balancer.healthCheckIntervalSeconds,
            stickySessions: balancer.stickySessions, servers: servers)
    }
    var pending: Int { instances.count { $0.state == .pending } }

    /// What the autoscaler decides from: on only while the deployment runs.
    var autoscalingView: AutoscalingView {
        let scaling = spec.scaling
        return AutoscalingView(
            deployment: name, enabled: scaling.autoscaling && !stopped, replicas: scaling.replicas, minReplicas: scaling.minReplicas,
            maxReplicas: scaling.maxReplicas, targetCPU: scaling.targetCPUPercent.map { Double($0) / 100 },
            targetMemory: scaling.targetMemoryPercent.map { Double($0) / 100 }, targetGPU: scaling.targetGPUPercent.map { Double($0) / 100 },
            targetRequestsPerSecond: scaling.targetRequestsPerSecond, targetInFlight: scaling.targetInFlightRequests,
            scaleDownStabilizationSeconds: scaling.scaleDownStabilizationSeconds,
            revision: revision)
    }

    var status: Status {
        if stopped { return .stopped }
        if rolledBackBecause != nil || instances.contains(where: { $0.state == .failed || $0.state == .pending }) { return .degraded }
        if instances.contains(where: { $0.runsRevision < revision }) { return .restarting }
        return ready >= spec.scaling.replicas ? .running : .deploying
    }
}

/// A deployment as the API answers it: the spec's fields, then its identity and live status.
struct DeploymentView: Encodable, Sendable {
    var deployment: Deployment

    private enum CodingKeys: String, CodingKey {
        case id, name, revision, status, replicas, instances, endpoint, rollout
        case rolledBackBecause = "rolled_back_because"
        case createdAt = "created_at"
        case updatedAt = "updated_at"
    }

    private struct Replicas: Encodable {
        var desired: Int
        var ready: Int
        var pending: Int
    }

    func encode(to encoder: any Encoder) throws {
        try deployment.spec.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(deployment.id, forKey: .id)
        try container.encode(deployment.name, forKey: .name)
        try container.encode(deployment.revision, forKey: .revision)
        try container.encode(deployment.status, forKey: .status)
        let desired = deployment.stopped ? 0 : deployment.spec.scaling.replicas
        try container.encode(Replicas(desired: desired, ready: deployment.ready, pending: deployment.pending), forKey: .replicas)
        try container.encode(deployment.instances, forKey: .instances)
        try container.encode(deployment.spec.loadBalancer.enabled ? deployment.endpointPath : nil, forKey: .endpoint)
        try container.encode(deployment.rollout, forKey: .rollout)
        try container.encode(deployment.rolledBackBecause, forKey: .rolledBackBecause)
        try container.encode(deployment.createdAt, forKey: .createdAt)
        try container.encode(deployment.updatedAt, forKey: .updatedAt)
    }
}

/// Something that happened to a deployment.
struct DeploymentEvent: Codable, Sendable, Equatable {
    var kind: String
    var message: String
    var actor: String
    var at: Date
}

/// One revision of a deployment's spec.
struct DeploymentRevision: Codable, Sendable {
    var revision: Int
    var spec: DeploymentSpec
    var actor: String
    var change: String
    var createdAt: Date
    /// What its instances fetch; kept for rollbacks, not shown (the spec names the version).
    var artifact: DeploymentArtifact?

    enum CodingKeys: String, CodingKey {
        case revision, spec, actor, change
        case createdAt = "created_at"
    }
}
