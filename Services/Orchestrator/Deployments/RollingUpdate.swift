/// The budget of a rolling update and its next step, as Kubernetes' Deployment controller takes
/// them: new instances start beside the old ones up to `max_surge` above the wanted count, and old
/// ones go only while `max_unavailable` allows, counting only ready instances as available. Pure:
/// the store counts the instances and carries the step out.
struct RollingUpdate: Sendable, Equatable {
    let replicas: Int
    /// Instances allowed above `replicas` while replacing: the percentage rounded up.
    let maxSurge: Int
    /// Instances allowed below `replicas` in service: the percentage rounded down, and 1 when
    /// both come to 0 (a roll that could do neither would never move).
    let maxUnavailable: Int

    init(replicas: Int, strategy: DeploymentSpec.UpdateStrategy) {
        self.replicas = replicas
        let surge = (replicas * strategy.maxSurgePercent + 99) / 100
        let unavailable = replicas * strategy.maxUnavailablePercent / 100
        maxSurge = surge
        maxUnavailable = surge == 0 && unavailable == 0 ? 1 : unavailable
    }

    /// The deployment's instances by revision (old: running a spec the current one restarts)
    /// and readiness; pending instances are not ready.
    struct Counts: Sendable, Equatable {
        var oldReady = 0
        var oldNotReady = 0
        var newReady = 0
        var newNotReady = 0

        var total: Int { oldReady + oldNotReady + newReady + newNotReady }
        var new: Int { newReady + newNotReady }
    }

    struct Step: Sendable, Equatable {
        /// Old instances that serve nothing, removed first.
        var removeOldNotReady = 0
        /// Old instances in service, removed only while enough stay available.
        var removeOldReady = 0
        /// New instances started on the current revision.
        var add = 0
    }

    /// What to do now: remove old instances that are not ready while the rest stays above the
    /// minimum available (Kubernetes' clean-up of unhealthy old replicas), then ready old ones
    /// while the ready instances exceed that minimum, then start new ones up to the surge.
    func step(_ counts: Counts) -> Step {
        let minimumAvailable = max(0, replicas - maxUnavailable)
        var step = Step()
        step.removeOldNotReady = min(counts.oldNotReady, max(0, counts.total - minimumAvailable - counts.newNotReady))
        let available = counts.oldReady + counts.newReady
        step.removeOldReady = min(counts.oldReady, max(0, available - minimumAvailable))
        let total = counts.total - step.removeOldNotReady - step.removeOldReady
        step.add = max(0, min(replicas - counts.new, replicas + maxSurge - total))
        return step
    }
}
