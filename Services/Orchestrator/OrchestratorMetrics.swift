import Metrics

/// The orchestrator's own metrics, each name spelled once (served at `/metrics`; listed in
/// docs/orchestrator.md). Made at each use, as the rest of the code does: a handle made before
/// the metrics system is bootstrapped would count nowhere.
enum OrchestratorMetrics {
    /// What became of an agent's report.
    enum ReportOutcome: String {
        /// Recorded: its devices settled.
        case applied
        /// Of a generation the agent was never sent: answered with a newer document.
        case drift
        /// An in-progress report: its agent's progress noted, its devices' watchdog started again.
        case inProgress = "in_progress"
        /// Not a report (dropped).
        case invalid
        /// The database refused it (text it cannot store); dropped alone, not with its batch.
        case refused
        /// Not recorded while the database was away; its agent is asked again.
        case error
    }

    static func reports(_ outcome: ReportOutcome) -> Counter {
        Counter(label: "orchestrator_reports_total", dimensions: [("outcome", outcome.rawValue)])
    }

    /// Desired-state documents published from the outbox.
    static var desiredStatesPublished: Counter { Counter(label: "orchestrator_desired_states_published_total") }
    /// Latest documents sent again to agents behind them.
    static var desiredStatesRepublished: Counter { Counter(label: "orchestrator_desired_states_republished_total") }
    /// Agents sent a newer document because they reported a generation never sent to them.
    static var driftRepairs: Counter { Counter(label: "orchestrator_drift_repairs_total") }
    /// Devices the watchdog gave up on.
    static var devicesTimedOut: Counter { Counter(label: "orchestrator_devices_timed_out_total") }
    /// Metrics snapshots for the canary analysis that were not snapshots (dropped).
    static var snapshotsDropped: Counter { Counter(label: "orchestrator_metrics_snapshots_dropped_total") }
    /// Transactions run again after PostgreSQL aborted them to break a deadlock.
    static var transactionsRetried: Counter { Counter(label: "orchestrator_transactions_retried_total") }
}
