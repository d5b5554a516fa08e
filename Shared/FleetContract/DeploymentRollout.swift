package import Foundation

/// A deployment's roll under way, as the orchestrator answers it (`rollout` of `Deployment` in
/// its openapi.yaml) and fleetctl reads it: how far it is, and when it is rolled back without
/// progress.
package struct DeploymentRollout: Codable, Sendable, Equatable {
    /// The last revision rolled out whole, where the roll goes back to if it stalls.
    package var fromRevision: Int
    package var toRevision: Int
    /// Instances on `toRevision`, ready or not, of ``instances``.
    package var moved: Int
    package var instances: Int
    /// Instances per model version.
    package var versions: [String: Int]
    package var progressDeadlineAt: Date?
    /// A staged update's step (canary or blue-green); absent for a rolling update.
    package var stage: Stage?

    /// Where a canary or blue-green update stands.
    package struct Stage: Codable, Sendable, Equatable {
        /// `canary` or `blue_green`.
        package var strategy: String
        /// 1-based, of ``steps``.
        package var step: Int
        package var steps: Int
        /// The new version's share of the requests, in percent.
        package var weight: Int
        package var paused: Bool
        /// When the step's time is up (the next step follows once its instances are ready and
        /// the analysis passes); absent while paused, when it ends as soon as they are ready, or
        /// when it waits for a promote (blue-green without a bake time).
        package var stepEndsAt: Date?
        /// The last analysis of the new version's figures.
        package var analysis: String?

        package init(strategy: String, step: Int, steps: Int, weight: Int, paused: Bool, stepEndsAt: Date?, analysis: String?) {
            self.strategy = strategy
            self.step = step
            self.steps = steps
            self.weight = weight
            self.paused = paused
            self.stepEndsAt = stepEndsAt
            self.analysis = analysis
        }

        private enum CodingKeys: String, CodingKey {
            case strategy, step, steps, weight, paused, analysis
            case stepEndsAt = "step_ends_at"
        }
    }

    package init(fromRevision: Int, toRevision: Int, moved: Int, instances: Int, versions: [String: Int], progressDeadlineAt: Date?) {
        self.fromRevision = fromRevision
        self.toRevision = toRevision
        self.moved = moved
        self.instances = instances
        self.versions = versions
        self.progressDeadlineAt = progressDeadlineAt
    }

    private enum CodingKeys: String, CodingKey {
        case moved, instances, versions, stage
        case fromRevision = "from_revision"
        case toRevision = "to_revision"
        case progressDeadlineAt = "progress_deadline_at"
    }
}
