import FleetContract

/// How many replicas a deployment should have, from its latest metrics: pure, so every rule is
/// tested without a network (docs/autoscaler.md).
///
/// - Per metric with a target: desired = ceil(instances × utilisation / target) — the Kubernetes
///   HPA's formula — unless utilisation / target is within the tolerance of 1; the largest over
///   the metrics; clamped to min...max.
/// - No fresh data (no instance reported within ``Settings/staleAfterSeconds``), or no metric with
///   a value: no change (but the bounds still hold).
/// - Instances placed but not reporting: when the metrics say scale down, they count as using
///   all they asked for (the HPA's rule for missing pods: conservative in the direction of the
///   change); when they say scale up, they count as using nothing, which the reported average
///   already does for instances that are starting.
/// - Up: at once, but by at most max(100 %, 4 instances) over the replicas of 15 s before.
/// - Down: to the highest recommendation of the stabilization window (300 s by default), so a
///   dip does not remove instances that the next second needs again.
/// - Burst: the last 2 seconds' utilisation may ask for more than the 10 s window, never less,
///   so a step in load is answered within a couple of seconds.
struct ScalingPolicy: Sendable {
    struct Settings: Sendable, Equatable {
        var tolerance = 0.1
        var staleAfterSeconds = 10.0
        var upPeriodSeconds = 15.0
        var upPercent = 100.0
        var upInstances = 4
    }

    enum Metric: String, Sendable, CaseIterable {
        case cpu, memory, gpu
        /// Requests per second per instance (its "utilisation" is the rate, its target a rate).
        case requests
        /// Requests in progress per instance, on average over the window (Knative's concurrency).
        case inFlight = "in_flight"
    }

    /// What the latest snapshot says.
    struct Observation: Sendable, Equatable {
        var instances: Int
        var ready: Int
        /// Over the snapshot's window (10 s).
        var utilization: [Metric: Double]
        /// Over its last seconds (2 s): the burst rule scales up on it, never down.
        var burstUtilization: [Metric: Double] = [:]
        var dataAgeSeconds: Double
    }

    struct Decision: Sendable, Equatable {
        /// Replicas to have now.
        var desired: Int
        /// Before the stabilization window and the rate limit.
        var recommendation: Int
        /// Why, for a person.
        var reason: String
    }

    let settings: Settings
    /// Recent recommendations, for the scale-down window: (time, replicas), oldest first.
    private(set) var recommendations: [(at: Double, replicas: Int)] = []
    /// Replicas wanted over time, for the scale-up rate limit: (time, replicas), oldest first.
    private(set) var history: [(at: Double, replicas: Int)] = []

    init(settings: Settings = Settings()) {
        self.settings = settings
    }

    mutating func decide(_ view: AutoscalingView, _ observation: Observation?, now: Double) -> Decision {
        let current = view.replicas
        Self.record(&history, (now, current), keeping: settings.upPeriodSeconds, now: now)
        let bounded = min(max(current, view.minReplicas), view.maxReplicas)
        guard let observation, observation.instances > 0, observation.dataAgeSeconds <= settings.staleAfterSeconds else {
            let why =
                if let observation {
                    observation.instances == 0
                        ? "no fresh metrics (no instance reporting)" : "no fresh metrics (newest \(Self.seconds(observation.dataAgeSeconds)) old)"
                } else {
                    "no metrics yet"
                }
            return Decision(
                desired: bounded, recommendation: bounded, reason: bounded == current ? "\(why): holding \(current)" : "\(why); kept within min...max"
            )
        }
        guard var driving = proposal(view, observation.utilization, instances: observation.instances) else {
            return Decision(desired: bounded, recommendation: bounded, reason: "no metric with a target has a value: holding \(current)")
        }
        var window = "10 s"
        // The burst rule: the last seconds may ask for more, never for less.
        if let burst = proposal(view, observation.burstUtilization, instances: observation.instances), burst.replicas > max(driving.replicas, current)
        {
            driving = burst
            window = "last 2 s"
        }
        let recommendation = min(max(driving.replicas, view.minReplicas), view.maxReplicas)
        // A new policy (autoscaling just on, or the autoscaler just started) has no history: the
        // replicas it finds count as recommended, so nothing goes down before a whole window.
        if recommendations.isEmpty && view.scaleDownStabilizationSeconds > 0 { recommendations.append((now, current)) }
        Self.record(&recommendations, (now, recommendation), keeping: Double(view.scaleDownStabilizationSeconds), now: now)
        let because =
            Self.describe(driving.metric, driving.utilization, driving.target) + " over \(observation.instances) instance(s)"
            + (window == "10 s" ? "" : " (\(window))")
        var desired = recommendation
        var reason = because
        if recommendation < current {
            let highest = recommendations.map(\.replicas).max() ?? recommendation
            if highest > recommendation {
                desired = min(highest, current)
                reason +=
                    desired == current
                    ? "; held at \(current), the highest of the last \(view.scaleDownStabilizationSeconds) s (wanted \(recommendation))"
                    : "; down to \(desired), the highest of the last \(view.scaleDownStabilizationSeconds) s, not \(recommendation)"
            }
        } else if recommendation > current {
            let base = history.first?.replicas ?? current
            let limit = max(Int((Double(base) * (1 + settings.upPercent / 100)).rounded(.down)), base + settings.upInstances)
            if recommendation > limit {
                desired = max(limit, current)
                reason += "; up to \(desired) for now (at most max(100 %, 4) per \(Int(settings.upPeriodSeconds)) s), wanted \(recommendation)"
            }
        } else if bounded != current {
            desired = bounded
        }
        if desired == recommendation, driving.replicas != recommendation {
            reason +=
                driving.replicas > recommendation ? "; wanted \(driving.replicas), at max_replicas" : "; wanted \(driving.replicas), at min_replicas"
        }
        return Decision(desired: desired, recommendation: recommendation, reason: reason)
    }

    /// The replicas the metric that asks for most wants, by the HPA's formula; nil when no metric
    /// with a target has a value.
    private func proposal(
        _ view: AutoscalingView, _ utilization: [Metric: Double], instances: Int
    ) -> (metric: Metric, replicas: Int, utilization: Double, target: Double)? {
        let current = view.replicas
        let targets: [(Metric, Double?)] = [
            (.cpu, view.targetCPU), (.memory, view.targetMemory), (.gpu, view.targetGPU), (.requests, view.targetRequestsPerSecond),
            (.inFlight, view.targetInFlight),
        ]
        var proposals: [(metric: Metric, replicas: Int, utilization: Double, target: Double)] = []
        for case (let metric, let target?) in targets where target > 0 {
            guard let value = utilization[metric] else { continue }
            let ratio = value / target
            var replicas = current
            if abs(ratio - 1) > settings.tolerance {
                replicas = Int((Double(instances) * ratio - 1e-9).rounded(.up))
                let missing = current - instances
                if replicas < current && missing > 0 {
                    // Missing instances as if at 100 % of their request.
                    let total = value * Double(instances) + Double(missing)
                    replicas = max(Int((total / target - 1e-9).rounded(.up)), replicas)
                }
            }
            proposals.append((metric, replicas, value, target))
        }
        return proposals.max { $0.replicas < $1.replicas }
    }

    /// Limits an increase to what the fleet can place.
    static func limit(_ decision: Decision, current: Int, placeable: Int, why: String?) -> Decision {
        guard decision.desired > current, current + placeable < decision.desired else { return decision }
        var limited = decision
        limited.desired = current + max(placeable, 0)
        limited.reason += "; wanted \(decision.desired), placeable \(limited.desired)" + (why.map { ": \($0)" } ?? "")
        return limited
    }

    private static func record(_ list: inout [(at: Double, replicas: Int)], _ entry: (Double, Int), keeping seconds: Double, now: Double) {
        list.append((entry.0, entry.1))
        list.removeAll { $0.at < now - seconds }
    }

    /// "cpu at 140 % of its 70 % target", "requests at 12.5/s per instance against its 10/s target",
    /// "in-flight requests at 3.2 per instance against its 2 target".
    static func describe(_ metric: Metric, _ value: Double, _ target: Double) -> String {
        func rate(_ value: Double) -> String { value >= 100 ? "\(Int(value.rounded()))" : "\((value * 10).rounded() / 10)" }
        switch metric {
        case .cpu, .memory, .gpu: return "\(metric.rawValue) at \(percent(value)) of its \(percent(target)) target"
        case .requests: return "requests at \(rate(value))/s per instance against its \(rate(target))/s target"
        case .inFlight: return "in-flight requests at \(rate(value)) per instance against its \(rate(target)) target"
        }
    }

    static func percent(_ value: Double) -> String { "\(Int((value * 100).rounded())) %" }
    static func seconds(_ value: Double) -> String { value < 100 ? "\(Int(value.rounded())) s" : "\(Int((value / 60).rounded())) min" }
}
