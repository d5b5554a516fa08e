import Foundation

/// What the autoscaler needs of one deployment, retained on ``Topic/autoscalingDeployment(_:)``
/// by the orchestrator after every change (an empty message once it is deleted): its replicas
/// and bounds, its targets, and whether it is to be scaled at all.
package struct AutoscalingView: ContractPayload, Equatable {
    package static let messageType = "autoscaling.view"

    package var deployment: String
    /// On, and the deployment not stopped: the autoscaler decides for it.
    package var enabled: Bool
    package var replicas: Int
    package var minReplicas: Int
    package var maxReplicas: Int
    /// Utilisation targets, 0 to 1 (used over requested); nil: not a target.
    package var targetCPU: Double?
    package var targetMemory: Double?
    package var targetGPU: Double?
    /// Requests per second per instance; nil: not a target.
    package var targetRequestsPerSecond: Double?
    /// Requests in progress per instance; nil: not a target.
    package var targetInFlight: Double?
    /// How long a scale-down waits for the highest recommendation of that window.
    package var scaleDownStabilizationSeconds: Int
    /// The deployment's revision: decisions name it, so one made on an older view is refused.
    package var revision: Int

    package init(
        deployment: String, enabled: Bool, replicas: Int, minReplicas: Int, maxReplicas: Int, targetCPU: Double?, targetMemory: Double?,
        targetGPU: Double?, targetRequestsPerSecond: Double? = nil, targetInFlight: Double? = nil, scaleDownStabilizationSeconds: Int,
        revision: Int
    ) {
        self.deployment = deployment
        self.enabled = enabled
        self.replicas = replicas
        self.minReplicas = minReplicas
        self.maxReplicas = maxReplicas
        self.targetCPU = targetCPU
        self.targetMemory = targetMemory
        self.targetGPU = targetGPU
        self.targetRequestsPerSecond = targetRequestsPerSecond
        self.targetInFlight = targetInFlight
        self.scaleDownStabilizationSeconds = scaleDownStabilizationSeconds
        self.revision = revision
    }

    private enum CodingKeys: String, CodingKey {
        case deployment, enabled, replicas, revision
        case minReplicas = "min_replicas"
        case maxReplicas = "max_replicas"
        case targetCPU = "target_cpu"
        case targetMemory = "target_memory"
        case targetGPU = "target_gpu"
        case targetRequestsPerSecond = "target_requests_per_second"
        case targetInFlight = "target_in_flight"
        case scaleDownStabilizationSeconds = "scale_down_stabilization_seconds"
    }
}

/// A scaling decision, autoscaler → orchestrator on ``Topic/autoscalingDecisions`` (QoS 1,
/// shared by the orchestrators): the deployment at `revision` with `from` replicas is to have
/// `to`, and why. The orchestrator applies it only while the deployment still has that revision
/// and autoscaling on, and writes the reason into the deployment's events.
package struct ScalingDecision: ContractPayload, Equatable {
    package static let messageType = "autoscaling.decision"

    package var deployment: String
    package var revision: Int
    package var from: Int
    package var to: Int
    /// Why, for a person: the metric and its value against its target, and any rule that held
    /// the change back ("wanted 8, placeable 5: no free a100").
    package var reason: String

    package init(deployment: String, revision: Int, from: Int, to: Int, reason: String) {
        self.deployment = deployment
        self.revision = revision
        self.from = from
        self.to = to
        self.reason = reason
    }
}

/// Autoscaler → orchestrator, a request on ``Topic/capacityRequests``: how many more instances of
/// `deployment` could the fleet place now (up to `wanted`)?
package struct CapacityQuestion: ContractPayload, Equatable {
    package static let messageType = "autoscaling.capacity-question"

    package var deployment: String
    package var wanted: Int

    package init(deployment: String, wanted: Int) {
        self.deployment = deployment
        self.wanted = wanted
    }
}

/// The orchestrator's answer: `placeable` of the `wanted` (no more), and why not all.
package struct CapacityAnswer: ContractPayload, Equatable {
    package static let messageType = "autoscaling.capacity-answer"

    package var deployment: String
    package var placeable: Int
    package var reason: String?

    package init(deployment: String, placeable: Int, reason: String?) {
        self.deployment = deployment
        self.placeable = placeable
        self.reason = reason
    }
}

extension Topic {
    /// `modelfleet/v1/internal/autoscaler/deployments/<name>`: a deployment's ``AutoscalingView``, retained.
    package static func autoscalingDeployment(_ name: TopicLevel) -> Topic {
        root.appending("internal").appending("autoscaler").appending("deployments").appending(name.value)
    }

    package static let everyAutoscalingDeployment = root.appending("internal").appending("autoscaler").appending("deployments").appending("+")

    /// The autoscaler's decisions (``ScalingDecision``), for the orchestrators.
    package static let autoscalingDecisions = root.appending("internal").appending("autoscaler").appending("decisions")

    /// Capacity questions to the orchestrators (``CapacityQuestion``, answered with ``CapacityAnswer``).
    package static let capacityRequests = root.appending("internal").appending("orchestrator").appending("capacity")
}
