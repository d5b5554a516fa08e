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

    package init(fromRevision: Int, toRevision: Int, moved: Int, instances: Int, versions: [String: Int], progressDeadlineAt: Date?) {
        self.fromRevision = fromRevision
        self.toRevision = toRevision
        self.moved = moved
        self.instances = instances
        self.versions = versions
        self.progressDeadlineAt = progressDeadlineAt
    }

    private enum CodingKeys: String, CodingKey {
        case moved, instances, versions
        case fromRevision = "from_revision"
        case toRevision = "to_revision"
        case progressDeadlineAt = "progress_deadline_at"
    }
}
