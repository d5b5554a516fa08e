import FleetContract
import Foundation
import TestSupport
import Testing

@testable import Autoscaler

private func view(
    replicas: Int, min: Int = 1, max: Int = 10, cpu: Double? = 0.7, memory: Double? = nil, gpu: Double? = nil, rate: Double? = nil,
    inFlight: Double? = nil, window: Int = 300
) -> AutoscalingView {
    AutoscalingView(
        deployment: "people", enabled: true, replicas: replicas, minReplicas: min, maxReplicas: max, targetCPU: cpu, targetMemory: memory,
        targetGPU: gpu, targetRequestsPerSecond: rate, targetInFlight: inFlight, scaleDownStabilizationSeconds: window, revision: 3)
}

private func seen(_ instances: Int, cpu: Double? = nil, memory: Double? = nil, gpu: Double? = nil, age: Double = 0.5) -> ScalingPolicy.Observation {
    var utilization: [ScalingPolicy.Metric: Double] = [:]
    utilization[.cpu] = cpu
    utilization[.memory] = memory
    utilization[.gpu] = gpu
    return ScalingPolicy.Observation(instances: instances, ready: instances, utilization: utilization, dataAgeSeconds: age)
}

@Suite("Scaling policy")
struct ScalingPolicyTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var view: AutoscalingView
        var observation: ScalingPolicy.Observation?
        var desired: Int
        var reason: String
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        // The HPA's formula: ceil(instances × utilisation / target).
        Case(
            name: "CPU at twice its target doubles", view: view(replicas: 2), observation: seen(2, cpu: 1.4), desired: 4,
            reason: "cpu at 140 % of its 70 % target"),
        Case(
            name: "CPU at half its target halves, without a window", view: view(replicas: 4, window: 0), observation: seen(4, cpu: 0.35),
            desired: 2, reason: "cpu at 35 %"),
        Case(
            name: "a new policy holds a scale-down for its first window", view: view(replicas: 4), observation: seen(4, cpu: 0.35), desired: 4,
            reason: "held at 4, the highest of the last 300 s (wanted 2)"),
        Case(name: "within the tolerance: no change", view: view(replicas: 3), observation: seen(3, cpu: 0.75), desired: 3, reason: "cpu at 75 %"),
        Case(name: "just past the tolerance: a change", view: view(replicas: 3), observation: seen(3, cpu: 0.78), desired: 4, reason: "cpu at 78 %"),
        // The largest over the metrics.
        Case(
            name: "memory asks more than CPU: memory wins", view: view(replicas: 2, memory: 0.8), observation: seen(2, cpu: 0.7, memory: 1.6),
            desired: 4, reason: "memory at 160 % of its 80 % target"),
        Case(
            name: "a metric without a target does not count", view: view(replicas: 2, cpu: 0.7, memory: nil),
            observation: seen(2, cpu: 0.7, memory: 3),
            desired: 2, reason: "cpu at 70 %"),
        // Requests per second per instance: total rate / target.
        Case(
            name: "25 requests a second per instance against 10: 2 become 5", view: view(replicas: 2, cpu: nil, rate: 10),
            observation: ScalingPolicy.Observation(instances: 2, ready: 2, utilization: [.requests: 25], dataAgeSeconds: 0.5), desired: 5,
            reason: "requests at 25.0/s per instance against its 10.0/s target"),
        Case(
            name: "a rate target where the rate is not measured (process instances): hold", view: view(replicas: 2, cpu: nil, rate: 10),
            observation: seen(2, cpu: 3), desired: 2, reason: "no metric with a target has a value"),
        // In-flight requests per instance: total in progress / target (Knative's concurrency).
        Case(
            name: "3 requests in flight per instance against 2: 4 become 6", view: view(replicas: 4, cpu: 0.7, inFlight: 2),
            observation: ScalingPolicy.Observation(instances: 4, ready: 4, utilization: [.cpu: 0.7, .inFlight: 3], dataAgeSeconds: 0.5),
            desired: 6, reason: "in-flight requests at 3.0 per instance against its 2.0 target"),
        Case(
            name: "in-flight requests not measured (process instances) while CPU is: CPU decides", view: view(replicas: 2, cpu: 0.5, inFlight: 2),
            observation: seen(2, cpu: 1.0), desired: 4, reason: "cpu at 100 % of its 50 % target"),
        // Bounds.
        Case(
            name: "clamped to max_replicas", view: view(replicas: 4, max: 5), observation: seen(4, cpu: 2.8), desired: 5,
            reason: "wanted 16, at max_replicas"),
        Case(
            name: "clamped to min_replicas", view: view(replicas: 3, min: 2, window: 0), observation: seen(3, cpu: 0.01), desired: 2,
            reason: "wanted 1, at min_replicas"),
        // Missing and stale metrics: hold.
        Case(name: "no metrics yet: hold", view: view(replicas: 3), observation: nil, desired: 3, reason: "no metrics yet: holding 3"),
        Case(
            name: "stale metrics: hold", view: view(replicas: 3), observation: seen(3, cpu: 2, age: 30), desired: 3,
            reason: "no fresh metrics (newest 30 s old)"),
        Case(name: "no instance reporting: hold", view: view(replicas: 3), observation: seen(0, cpu: nil), desired: 3, reason: "no fresh metrics"),
        Case(
            name: "the targeted metric absent: hold", view: view(replicas: 3), observation: seen(3, memory: 0.9), desired: 3,
            reason: "no metric with a target has a value"),
        // Instances placed but not reporting count as using all they asked for when scaling down.
        Case(
            name: "scale down with 2 of 4 silent: the silent ones count as 100 %", view: view(replicas: 4), observation: seen(2, cpu: 0.1),
            desired: 4, reason: "cpu at 10 %"),
        // Scale up is limited to max(100 %, 4) over the replicas of 15 s before.
        Case(
            name: "from 2, at most 6 at once", view: view(replicas: 2, max: 50), observation: seen(2, cpu: 7), desired: 6, reason: "up to 6 for now"),
        Case(name: "from 10, at most 20 at once", view: view(replicas: 10, max: 50), observation: seen(10, cpu: 7), desired: 20, reason: "wanted 50"),
    ]

    @Test("one evaluation", arguments: cases)
    func evaluate(_ example: Case) {
        var policy = ScalingPolicy()
        let decision = policy.decide(example.view, example.observation, now: 1_000)
        #expect(decision.desired == example.desired, "\(decision)")
        #expect(decision.reason.contains(example.reason), "\(decision.reason)")
    }

    @Test("scale down waits for the highest recommendation of the window; up goes at once")
    func stabilization() {
        var policy = ScalingPolicy()
        let current = view(replicas: 6, window: 60)
        // A peak that wants 6, then 60 s of load that wants 2.
        #expect(policy.decide(current, seen(6, cpu: 0.7), now: 0).desired == 6)
        for second in 1...59 {
            let decision = policy.decide(current, seen(6, cpu: 0.2), now: Double(second))
            #expect(decision.desired == 6, "second \(second): \(decision)")
        }
        // The peak leaves the window: down to what the last minute wanted.
        let down = policy.decide(current, seen(6, cpu: 0.2), now: 61)
        #expect(down.desired == 2 && down.recommendation == 2, "\(down)")
        // Load comes back: up at once, whatever the window holds.
        let up = policy.decide(view(replicas: 2, window: 60), seen(2, cpu: 1.4), now: 62)
        #expect(up.desired == 4, "\(up)")
    }

    @Test("steady load with ±20 % noise around the target: no change at all")
    func noFlapping() {
        var policy = ScalingPolicy()
        var replicas = 4
        var changes = 0
        var state: UInt64 = 7
        for second in 0..<600 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let noise = (Double(state >> 11) / Double(1 << 53) - 0.5) * 0.4
            // Load worth 4 instances at the target, ±20 %, spread over the replicas there are.
            let utilization = 0.7 * 4 / Double(replicas) * (1 + noise)
            let decision = policy.decide(view(replicas: replicas), seen(replicas, cpu: utilization), now: Double(second))
            if decision.desired != replicas {
                changes += 1
                replicas = decision.desired
            }
        }
        // Up on a +20 % second is allowed (5 instances), down never within the window; then steady.
        #expect(changes <= 1, "changes: \(changes), ending at \(replicas)")
        #expect((4...5).contains(replicas))
    }

    @Test("burst: the last 2 s may scale up before the 10 s window shows it, never down")
    func burst() {
        var policy = ScalingPolicy()
        var step = seen(2, cpu: 0.74)
        step.burstUtilization = [.cpu: 1.4]
        let up = policy.decide(view(replicas: 2), step, now: 0)
        #expect(up.desired == 4 && up.reason.contains("(last 2 s)"), "\(up)")
        var quiet = seen(4, cpu: 0.7)
        quiet.burstUtilization = [.cpu: 0.05]
        let held = policy.decide(view(replicas: 4), quiet, now: 1)
        #expect(held.desired == 4, "a quiet burst window does not scale down: \(held)")
    }

    @Test("capacity: an increase is limited to what the fleet can place, and says why")
    func capacity() {
        let decision = ScalingPolicy.Decision(desired: 8, recommendation: 8, reason: "cpu at 280 % of its 70 % target")
        let limited = ScalingPolicy.limit(decision, current: 2, placeable: 3, why: "no online server has 1 free a100 GPU(s)")
        #expect(limited.desired == 5)
        #expect(limited.reason.hasSuffix("wanted 8, placeable 5: no online server has 1 free a100 GPU(s)"), "\(limited.reason)")
        #expect(ScalingPolicy.limit(decision, current: 2, placeable: 6, why: nil) == decision)
        let down = ScalingPolicy.Decision(desired: 1, recommendation: 1, reason: "")
        #expect(ScalingPolicy.limit(down, current: 2, placeable: 0, why: "full") == down)
    }
}
