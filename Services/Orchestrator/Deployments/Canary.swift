import FleetContract
import Foundation

/// A canary update's pure rules: how many new instances a step has, the load balancer's weights
/// that give the new version its share of the traffic, and the judgement of its live figures.
enum Canary {
    /// New instances at a step of `weight` percent: the same share of the replicas, rounded up,
    /// at least one; all of them at 100.
    static func newInstances(replicas: Int, weight: Int) -> Int {
        weight >= 100 ? replicas : max(1, (replicas * weight + 99) / 100)
    }

    /// Per-instance weights (HAProxy's 0-256) so that `stable` instances share `100 - weight`
    /// percent of the requests and `canary` instances `weight` percent: each side's share divided
    /// among its instances, scaled so that the larger per-instance weight is 256. A side with a
    /// share gets at least 1; the stable side gets 0 at 100 %.
    static func weights(weight: Int, stable: Int, canary: Int) -> (stable: Int, canary: Int) {
        let stableEach = stable > 0 ? Double(100 - weight) / Double(stable) : 0
        let canaryEach = canary > 0 ? Double(weight) / Double(canary) : 0
        let scale = 256 / max(stableEach, canaryEach, 1e-9)
        func scaled(_ each: Double) -> Int { each == 0 ? 0 : min(256, max(1, Int((each * scale).rounded()))) }
        return (scaled(stableEach), scaled(canaryEach))
    }

    enum Verdict: Sendable, Equatable {
        /// Within every limit; the summary is for the deployment's status.
        case pass(String)
        /// Outside a limit: the canary is aborted, with this reason.
        case fail(String)
        /// Too few requests (or no figures) to judge yet.
        case notJudged(String)

        var summary: String {
            switch self {
            case .pass(let text), .fail(let text), .notJudged(let text): text
            }
        }
    }

    /// The new version's figures against `limits`, the stable version's p99 for a ratio limit.
    static func judge(canary: MetricsFigures?, stable: MetricsFigures?, limits: DeploymentSpec.UpdateStrategy.Analysis) -> Verdict {
        guard let canary, canary.requests >= limits.minRequests else {
            return .notJudged("\(canary?.requests ?? 0) of \(limits.minRequests) requests to judge")
        }
        let errorPercent = (canary.errorRatio ?? 0) * 100
        var summary = "\(canary.requests) requests, errors \(format(errorPercent)) %"
        if errorPercent > limits.maxErrorPercent {
            return .fail("errors \(format(errorPercent)) % of \(canary.requests) requests, above \(format(limits.maxErrorPercent)) %")
        }
        if let p99 = canary.latencyMs?.p99 {
            summary += ", p99 \(format(p99)) ms"
            if let limit = limits.maxP99Ms, p99 > limit {
                return .fail("p99 \(format(p99)) ms, above \(format(limit)) ms")
            }
            if let ratio = limits.maxP99Ratio, let stableP99 = stable?.latencyMs?.p99, stableP99 > 0, p99 > ratio * stableP99 {
                return .fail("p99 \(format(p99)) ms, above \(format(ratio)) × the stable version's \(format(stableP99)) ms")
            }
        }
        return .pass(summary)
    }

    private static func format(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(format: "%.1f", value)
    }
}
