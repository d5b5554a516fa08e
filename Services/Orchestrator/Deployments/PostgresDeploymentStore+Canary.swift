import FleetContract
import Foundation
import PostgresNIO
import ServiceRuntime

/// Staged updates, canary and blue-green (``Canary``): the stable version keeps its instances
/// while new ones take a share of the traffic through the load balancers' weights, step by step,
/// judged on the metrics aggregator's live figures; a failed judgement rolls the change back at
/// once. Blue-green is two steps: the whole new set beside the old with no traffic (a preview, for
/// `bake_seconds` or until promoted), then every request on it while the old set waits
/// `scale_down_delay_seconds`, so that a rollback is a switch back.
extension PostgresDeploymentStore {
    /// A snapshot older than this says nothing about now: the analysis waits for a fresh one.
    static let freshFigures: TimeInterval = 5

    /// One step of every canary under way: its instances and weights for the step, the analysis
    /// of the new version, and the next step when the step's time is up (or the end, every
    /// instance on the new version). Returns how many instances were started or removed.
    func advanceCanaries(
        servers: [Placement.Server], figures: [String: DeploymentMetricsSnapshot], on connection: PostgresConnection
    ) async throws -> Int {
        var canaries: [CanaryState] = []
        for try await row in try await connection.query(
            """
            SELECT id, name, revision, spec::text, rolling_from, canary_step, step_at, paused, failed_checks, judged_at
            FROM orchestrator.deployments
            WHERE canary_step IS NOT NULL AND rolling_from IS NOT NULL AND deleted_at IS NULL AND NOT stopped
            """, logger: logger
        ).decode((UUID, String, Int, String, Int, Int, Date?, Bool, Int, Date?).self) {
            canaries.append(
                CanaryState(
                    id: row.0, name: row.1, revision: row.2, spec: try spec(row.3), from: row.4, step: row.5, stepAt: row.6, paused: row.7,
                    failedChecks: row.8, judgedAt: row.9))
        }
        var changed = 0
        for canary in canaries {
            changed += try await canaryStep(canary, snapshot: figures[canary.name], servers: servers, on: connection)
        }
        return changed
    }

    /// A canary under way, as its deployment's row has it.
    private struct CanaryState {
        var id: UUID
        var name: String
        var revision: Int
        var spec: DeploymentSpec
        /// The stable revision, where a rollback goes.
        var from: Int
        var step: Int
        var stepAt: Date?
        var paused: Bool
        var failedChecks: Int
        /// The time of the last snapshot judged.
        var judgedAt: Date?
    }

    private func canaryStep(
        _ canary: CanaryState, snapshot: DeploymentMetricsSnapshot?, servers: [Placement.Server], on connection: PostgresConnection
    ) async throws -> Int {
        let (id, name, revision, spec, from, step, stepAt, paused) = (
            canary.id, canary.name, canary.revision, canary.spec, canary.from, canary.step, canary.stepAt, canary.paused
        )
        var instances: [(id: String, revision: Int, ready: Bool, version: String)] = []
        for try await row in try await connection.query(
            """
            SELECT id, spec_revision, state = 'ready', model_version FROM orchestrator.deployment_instances
            WHERE deployment_id = \(id) ORDER BY created_at, id
            """, logger: logger
        ).decode((String, Int, Bool, String).self) {
            instances.append(row)
        }
        let stable = instances.filter { $0.revision < revision }
        let new = instances.filter { $0.revision == revision }
        let steps = spec.stagedSteps ?? [100]
        let index = min(step, steps.count - 1)
        let weight = steps[index]
        let blueGreen = spec.updateStrategy.type == .blueGreen
        let what = blueGreen ? (weight == 0 ? "blue-green preview" : "blue-green switch") : "canary analysis at \(weight) %"

        // The analysis: each snapshot of the last seconds is one check, judged once.
        let limits = spec.updateStrategy.analysis
        let fresh = snapshot.flatMap { Date().timeIntervalSince($0.at) < Self.freshFigures ? $0 : nil }
        let stableVersion = stable.first?.version
        let verdict = Canary.judge(
            canary: fresh?.versions.first { $0.version == spec.modelVersion }?.figures,
            stable: fresh?.versions.first { $0.version == stableVersion }?.figures, limits: limits)
        // PostgreSQL keeps microseconds: a snapshot judged already comes back a little earlier.
        let unjudged = fresh.map { $0.at.timeIntervalSince(canary.judgedAt ?? .distantPast) > 0.001 } ?? false
        if let fresh, unjudged {
            var failed = 0
            var summary = verdict.summary
            if case .fail(let reason) = verdict {
                failed = canary.failedChecks + 1
                guard failed <= limits.failuresAllowed else {
                    let why = "\(what) (step \(index + 1) of \(steps.count)): \(reason)"
                    return try await rollBack(id, name: name, from: revision, to: from, because: why, servers: servers, on: connection)
                }
                summary = "check failed (\(failed) of \(limits.failuresAllowed + 1) before a rollback): \(reason)"
            }
            try await connection.query(
                "UPDATE orchestrator.deployments SET failed_checks = \(failed), judged_at = \(fresh.at), analysis = \(summary) WHERE id = \(id)",
                logger: logger)
        } else if fresh == nil {
            try await connection.query(
                "UPDATE orchestrator.deployments SET analysis = \(verdict.summary) WHERE id = \(id) AND analysis IS DISTINCT FROM \(verdict.summary)",
                logger: logger)
        }

        // The step's instances and weights.
        var changed = 0
        // Blue-green starts the whole new set at once, beside the old.
        let wanted = blueGreen ? spec.scaling.replicas : Canary.newInstances(replicas: spec.scaling.replicas, weight: weight)
        if new.count < wanted {
            try await addInstances(
                wanted - new.count, to: id, name: name, spec: spec, revision: revision, servers: servers, existing: Set(instances.map(\.id)),
                on: connection)
            try await connection.query("UPDATE orchestrator.deployments SET progress_at = now() WHERE id = \(id)", logger: logger)
            changed += wanted - new.count
        }
        let weights = Canary.weights(weight: weight, stable: stable.count, canary: max(new.count, wanted))
        try await connection.query(
            """
            UPDATE orchestrator.deployment_instances
            SET weight = CASE WHEN spec_revision = \(revision) THEN \(weights.canary) ELSE \(weights.stable) END
            WHERE deployment_id = \(id) AND weight <> CASE WHEN spec_revision = \(revision) THEN \(weights.canary) ELSE \(weights.stable) END
            """, logger: logger)

        // The next step, once this one's instances serve and its time is up.
        let serving = new.count >= wanted && new.allSatisfy(\.ready)
        // No start (a promote) is time up; no length (blue-green without a bake) waits for a promote.
        let timeUp = stepAt.map { start in spec.stepSeconds(index).map { Date().timeIntervalSince(start) >= Double($0) } ?? false } ?? true
        // Not while the figures fail the limits: the failures in a row decide first.
        if case .fail = verdict { return changed }
        guard serving && timeUp && !paused else { return changed }
        if index + 1 < steps.count {
            try await connection.query(
                "UPDATE orchestrator.deployments SET canary_step = \(index + 1), step_at = now(), progress_at = now() WHERE id = \(id)",
                logger: logger)
            let next =
                blueGreen
                ? "blue-green switch: every request on model version \(spec.modelVersion); the old set kept \(spec.updateStrategy.scaleDownDelaySeconds) s"
                : "canary at \(steps[index + 1]) % (step \(index + 2) of \(steps.count)); \(verdict.summary)"
            try await record(id, [("canary_step", next, Self.orchestratorActor)], on: connection)
            // The next step's instances and weights at once (a blue-green switch in this transaction).
            var following = canary
            following.step = index + 1
            following.stepAt = Date()
            if unjudged, let fresh { (following.judgedAt, following.failedChecks) = (fresh.at, 0) }
            return changed + (try await canaryStep(following, snapshot: snapshot, servers: servers, on: connection))
        }
        // The last step (100 %) done: the stable instances go, and the roll with them.
        let removed = stable.map(\.id)
        try await connection.query("DELETE FROM orchestrator.deployment_instances WHERE id = ANY(\(removed))", logger: logger)
        try await connection.query("UPDATE orchestrator.deployment_instances SET weight = 100 WHERE deployment_id = \(id)", logger: logger)
        try await connection.query(
            """
            UPDATE orchestrator.deployments SET canary_step = NULL, step_at = NULL, paused = false, rolling_from = NULL, progress_at = now()
            WHERE id = \(id)
            """, logger: logger)
        try await record(
            id,
            [
                (
                    "promoted",
                    "\(blueGreen ? "blue-green" : "canary") done: every instance on model version \(spec.modelVersion); \(verdict.summary)",
                    Self.orchestratorActor
                )
            ],
            on: connection)
        return changed + removed.count
    }

    enum CanaryCommand: String, Sendable {
        case promote, promoteFully, pause, resume
    }

    /// An operator's command to the canary under way: `promote` ends the step now (its
    /// instances still have to be ready), `promoteFully` goes to the last step and ends it as soon
    /// as every new instance is ready, `pause` holds the step, `resume` starts its time again.
    /// Nil when there is no such deployment; `DomainError.conflict` on `name` when no canary is
    /// under way.
    func command(_ command: CanaryCommand, name: String, actor: String) async throws -> Deployment? {
        let found = try await inPlacementTransaction { connection -> Bool in
            guard let (id, _, _) = try await lockDeployment(name, on: connection) else { return false }
            var state: (step: Int?, paused: Bool) = (nil, false)
            for try await row in try await connection.query(
                "SELECT canary_step, paused FROM orchestrator.deployments WHERE id = \(id)", logger: logger
            ).decode((Int?, Bool).self) {
                state = row
            }
            guard let step = state.step else {
                throw DomainError.conflict("deployment '\(name)' has no canary or blue-green update under way", field: "name", code: "no_canary")
            }
            let spec = try await currentSpec(id, on: connection)
            let steps = spec.stagedSteps ?? [100]
            let last = steps.count - 1
            let message: String
            switch command {
            case .promote:
                // The step ends now; the next one (or the end) follows once its instances are ready.
                try await connection.query("UPDATE orchestrator.deployments SET step_at = NULL, paused = false WHERE id = \(id)", logger: logger)
                message = "promoted: step \(step + 1) of \(steps.count) ends now"
            case .promoteFully:
                try await connection.query(
                    "UPDATE orchestrator.deployments SET canary_step = \(last), step_at = NULL, paused = false WHERE id = \(id)", logger: logger)
                message = "promoted fully: every instance moves to the new version at once"
            case .pause:
                try await connection.query("UPDATE orchestrator.deployments SET paused = true WHERE id = \(id)", logger: logger)
                message = "paused at step \(step + 1) of \(steps.count)"
            case .resume:
                try await connection.query(
                    "UPDATE orchestrator.deployments SET paused = false, step_at = now() WHERE id = \(id)", logger: logger)
                message = "resumed at step \(step + 1) of \(steps.count)"
            }
            try await record(id, [(command == .pause ? "paused" : command == .resume ? "resumed" : "promoted", message, actor)], on: connection)
            return true
        }
        return found ? try await deployment(named: name) : nil
    }
}
