import FleetContract
import Testing

@testable import Orchestrator

/// A canary's pure rules (``Canary``): instances per step, weights, and the analysis's verdicts.
@Suite("Canary rules")
struct CanaryTests {
    @Test("a step's new instances: its share of the replicas rounded up, at least one, all at 100 %")
    func newInstances() {
        #expect(Canary.newInstances(replicas: 4, weight: 10) == 1)
        #expect(Canary.newInstances(replicas: 4, weight: 25) == 1)
        #expect(Canary.newInstances(replicas: 4, weight: 50) == 2)
        #expect(Canary.newInstances(replicas: 10, weight: 25) == 3)
        #expect(Canary.newInstances(replicas: 3, weight: 100) == 3)
        #expect(Canary.newInstances(replicas: 1, weight: 1) == 1)
    }

    @Test("weights give each side its share of the requests, whatever its instance count, within HAProxy's 0-256")
    func weights() {
        for (weight, stable, canary) in [(10, 3, 1), (25, 4, 1), (50, 4, 2), (1, 10, 1), (90, 2, 5), (10, 1, 1)] {
            let (stableEach, canaryEach) = Canary.weights(weight: weight, stable: stable, canary: canary)
            #expect((1...256).contains(stableEach) && (1...256).contains(canaryEach), "\(weight) \(stable) \(canary)")
            let share = Double(canaryEach * canary) / Double(canaryEach * canary + stableEach * stable) * 100
            #expect(abs(share - Double(weight)) < 1, "\(weight) % on \(canary) of \(stable + canary): \(share) %")
        }
        #expect(Canary.weights(weight: 100, stable: 3, canary: 3) == (0, 256), "at 100 % the stable side gets nothing new")
    }

    private func figures(requests: Int, errors: Int, p99: Double) -> MetricsFigures {
        MetricsFigures(
            windowSeconds: 10, requests: requests, requestsPerSecond: Double(requests) / 10, errors: errors,
            errorRatio: requests > 0 ? Double(errors) / Double(requests) : nil, latencyMs: .init(p50: p99 / 3, p95: p99 / 2, p99: p99, mean: p99 / 3),
            cpuCores: nil, cpuUtilization: nil, memoryBytes: nil, memoryUtilization: nil, gpuUtilization: nil)
    }

    @Test("the analysis: too few requests are not judged; errors, an absolute p99 and a p99 against the stable version fail")
    func analysis() {
        var limits = DeploymentSpec.UpdateStrategy.Analysis()
        limits.maxP99Ms = 500
        limits.maxP99Ratio = 2
        let stable = figures(requests: 500, errors: 0, p99: 40)
        #expect(Canary.judge(canary: nil, stable: stable, limits: limits) == .notJudged("0 of 20 requests to judge"))
        #expect(
            Canary.judge(canary: figures(requests: 19, errors: 19, p99: 900), stable: stable, limits: limits)
                == .notJudged("19 of 20 requests to judge"))
        #expect(
            Canary.judge(canary: figures(requests: 100, errors: 5, p99: 60), stable: stable, limits: limits)
                == .pass("100 requests, errors 5 %, p99 60 ms"))
        #expect(
            Canary.judge(canary: figures(requests: 100, errors: 20, p99: 60), stable: stable, limits: limits)
                == .fail("errors 20 % of 100 requests, above 5 %"))
        #expect(
            Canary.judge(canary: figures(requests: 100, errors: 0, p99: 600), stable: stable, limits: limits) == .fail("p99 600 ms, above 500 ms"))
        #expect(
            Canary.judge(canary: figures(requests: 100, errors: 0, p99: 120), stable: stable, limits: limits)
                == .fail("p99 120 ms, above 2 × the stable version's 40 ms"))
        // Without a stable figure the ratio is not checked.
        #expect(
            Canary.judge(canary: figures(requests: 100, errors: 0, p99: 120), stable: nil, limits: limits)
                == .pass("100 requests, errors 0 %, p99 120 ms"))
    }
}
