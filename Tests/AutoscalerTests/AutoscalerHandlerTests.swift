import FleetContract
import Foundation
import Hummingbird
import HummingbirdTesting
import ServiceRuntime
import TestSupport
import Testing

@testable import Autoscaler

/// The autoscaler's REST API in process (`app.test(.router)`): its generated `APIProtocol` over
/// entries given here, behind the service's error middleware.
@Suite("Autoscaler REST handlers")
struct AutoscalerHandlerTests {
    struct FixedEntries: AutoscalingSource {
        var entries: [String: Scaler.Entry]
        func entry(_ deployment: String) -> Scaler.Entry? { entries[deployment] }
        func owner(of deployment: String) -> String { "autoscaler-a" }
    }

    private func withAPI(_ body: @escaping @Sendable (RouterClient) async throws -> Void) async throws {
        let at = Date(timeIntervalSince1970: 1_800_000_000.25)
        var entry = Scaler.Entry(
            view: AutoscalingView(
                deployment: "people", enabled: true, replicas: 3, minReplicas: 1, maxReplicas: 6, targetCPU: 0.7, targetMemory: nil, targetGPU: nil,
                targetRequestsPerSecond: 50, scaleDownStabilizationSeconds: 300, revision: 4))
        entry.latest = (
            at, ScalingPolicy.Decision(desired: 3, recommendation: 4, reason: "cpu at 140 % of its 70 % target over 2 instance(s)"),
            ScalingPolicy.Observation(instances: 2, ready: 2, utilization: [.cpu: 0.98, .requests: 12], dataAgeSeconds: 0.4)
        )
        entry.decisions = [
            (at.addingTimeInterval(-60), ScalingDecision(deployment: "people", revision: 2, from: 1, to: 2, reason: "first")),
            (at.addingTimeInterval(-30), ScalingDecision(deployment: "people", revision: 3, from: 2, to: 3, reason: "second")),
        ]
        let router = Router()
        router.add(middleware: APIErrorMiddleware())
        try AutoscalerAPI(scaler: FixedEntries(entries: ["people": entry])).addRoutes(to: router)
        try await Application(router: router).test(.router) { client in try await body(RouterClient(client)) }
    }

    @Test("a deployment's autoscaling: targets by metric, the latest recommendation, decisions newest first")
    func autoscaling() async throws {
        try await withAPI { api in
            let answer = try await api.get("/v1/deployments/people/autoscaling")
            #expect(answer.status == .ok, "\(answer.body)")
            let json = try #require(answer.json)
            #expect(json["min_replicas"] as? Int == 1 && json["max_replicas"] as? Int == 6 && json["owner"] as? String == "autoscaler-a")
            #expect(json["scale_down_stabilization_seconds"] as? Int == 300)
            // Only the targets set, under their contract names.
            #expect(json["targets"] as? [String: Double] == ["cpu": 0.7, "requests_per_second": 50], "\(json)")
            let latest = try #require(json["latest"] as? [String: Any])
            #expect(latest["desired"] as? Int == 3 && latest["recommendation"] as? Int == 4 && latest["ready_instances"] as? Int == 2)
            #expect(latest["utilization"] as? [String: Double] == ["cpu": 0.98, "requests": 12], "\(latest)")
            #expect(latest["at"] as? String == "2027-01-15T08:00:00.250Z", "\(latest)")
            let decisions = try #require(json["decisions"] as? [[String: Any]])
            #expect(decisions.compactMap { $0["reason"] as? String } == ["second", "first"])
            #expect(decisions.first?["revision"] as? Int == 3 && decisions.first?["to"] as? Int == 3)
        }
    }

    @Test("an unknown deployment is 404 with the contract's error body; the document is served")
    func unknownAndDocument() async throws {
        try await withAPI { api in
            let unknown = try await api.get("/v1/deployments/nobody/autoscaling")
            #expect(unknown.status == .notFound && unknown.errorCode == "not_found", "\(unknown.body)")
            #expect((unknown.error?["message"] as? String)?.contains("no deployment named 'nobody'") == true, "\(unknown.body)")
            let document = try await api.get("/openapi.json")
            let paths = try #require(document.json?["paths"] as? [String: Any])
            #expect(document.status == .ok && paths.keys.contains("/v1/deployments/{deployment}/autoscaling"))
        }
    }
}
