import FleetContract
import Foundation
import Histograms
import Hummingbird
import HummingbirdTesting
import ServiceRuntime
import Synchronization
import TestSupport
import Testing

@testable import MetricsAggregator

/// The aggregator's REST API in process (`app.test(.router)`): the handlers of the generated
/// `APIProtocol` over a store filled here, behind the same error middleware as the service.
@Suite("Metrics REST handlers")
struct MetricsHandlerTests {
    private static let start = 1_800_000_000.0

    /// A store at a fixed time: `people` 1.0.0 on edge-1 (10 requests a second, 1 ms) and 2.0.0
    /// on edge-2 (5 a second, one error each, 10 ms) for 10 seconds; `quiet` with no requests.
    final class FixedSource: MetricsSource {
        let store = Mutex(MetricsStore())
        let now: Double

        init(now: Double) { self.now = now }

        func read<Result>(_ body: (inout MetricsStore, Double) -> Result) -> Result {
            store.withLock { body(&$0, now) }
        }
    }

    private static func sample(
        _ instance: String, deployment: String, version: String, server: String, requests: Int, errors: Int = 0, latency: UInt64
    ) -> InstanceSample {
        var histogram = DenseHistogram()
        for _ in 0..<requests { histogram.record(latency) }
        return InstanceSample(
            instanceID: instance, deployment: deployment, version: version, server: server, site: "plant", ready: true, requests: requests,
            errors: errors, latencies: histogram.sparse, cpuCores: 0.5, cpuRequested: 1, memoryBytes: nil, memoryRequested: nil,
            gpuUtilization: nil)
    }

    private func withAPI(_ body: @escaping @Sendable (RouterClient) async throws -> Void) async throws {
        let source = FixedSource(now: Self.start + 10.25)
        source.store.withLock { store in
            for second in 0..<10 {
                let now = Self.start + Double(second) + 0.5
                store.add(Self.sample("a", deployment: "people", version: "1.0.0", server: "edge-1", requests: 10, latency: 1_000), now: now)
                store.add(
                    Self.sample("b", deployment: "people", version: "2.0.0", server: "edge-2", requests: 5, errors: 1, latency: 10_000), now: now)
                store.add(Self.sample("q", deployment: "quiet", version: "1.0.0", server: "edge-1", requests: 0, latency: 0), now: now)
                store.compact(now: now)
            }
        }
        let router = Router()
        router.add(middleware: APIErrorMiddleware())
        try MetricsAPI(aggregator: source).addRoutes(to: router)
        try await Application(router: router).test(.router) { client in try await body(RouterClient(client)) }
    }

    @Test("every documented route is served, by the generated server or as a plain route")
    func everyRouteServed() async throws {
        let documented = try OpenAPIDocumentCheck.documentedRoutes(Data(MetricsAggregatorOpenAPI.text.utf8))
        #expect(documented.count == 6)
        try await withAPI { api in
            for route in documented.sorted() {
                let parts = route.split(separator: " ")
                let path = String(parts[1]).replacingOccurrences(of: "{deployment}", with: "people")
                    .replacingOccurrences(of: "{server_id}", with: "edge-1").replacingOccurrences(of: "{site_id}", with: "plant")
                let answer = try await api.call(HTTPRequest.Method(String(parts[0]))!, path)
                #expect(answer.status == .ok, "\(route): \(answer.status) \(answer.body)")
            }
        }
    }

    @Test("a deployment's figures: overall, per version, per instance, in the contract's date format")
    func deploymentFigures() async throws {
        try await withAPI { api in
            let answer = try await api.get("/v1/deployments/people/metrics?window=10s")
            #expect(answer.status == .ok, "\(answer.body)")
            let json = try #require(answer.json)
            let figures = try #require(json["figures"] as? [String: Any])
            #expect(figures["requests"] as? Int == 150 && figures["errors"] as? Int == 10 && figures["window_seconds"] as? Int == 10)
            #expect((figures["requests_per_second"] as? Double) == 15)
            let versions = try #require(json["versions"] as? [[String: Any]])
            #expect(Set(versions.compactMap { $0["version"] as? String }) == ["1.0.0", "2.0.0"])
            let instances = try #require(json["instance_figures"] as? [[String: Any]])
            #expect(Set(instances.compactMap { $0["instance_id"] as? String }) == ["a", "b"])
            // ISO 8601 with milliseconds in UTC, as every other answer of the control plane.
            let at = try #require(json["at"] as? String)
            #expect(at == "2027-01-15T08:00:10.250Z", "\(at)")
            #expect(!answer.body.contains("\\/"))
        }
    }

    @Test("the top deployments, ranked by the figure asked for, those without it last")
    func top() async throws {
        try await withAPI { api in
            let byRate = try await api.get("/v1/metrics/top?by=rate&window=10s")
            #expect(byRate.items.compactMap { $0["deployment"] as? String } == ["people", "quiet"], "\(byRate.body)")
            let byErrors = try await api.get("/v1/metrics/top?by=errors&limit=1")
            #expect(byErrors.status == .ok && byErrors.items.count == 1 && byErrors.json?["by"] as? String == "errors")
        }
    }

    @Test("bad input: 400 naming the field, whether the generated code or the handler refuses it; unknown names 404")
    func badInput() async throws {
        try await withAPI { api in
            // Refused by the generated code before the handler (not the schema's type or values).
            for (query, field, reason) in [
                ("limit=ten", "limit", "whole number from 1 to 100"), ("by=latency", "by", "one of rate, errors, p99"),
                ("limit=1.5", "limit", "whole number"),
            ] {
                let answer = try await api.get("/v1/metrics/top?\(query)")
                #expect(answer.status == .badRequest && answer.errorField == field && answer.errorCode == "invalid_field", "\(query): \(answer.body)")
                #expect((answer.error?["message"] as? String)?.contains(reason) == true, "\(query): \(answer.body)")
            }
            // Refused by the handler (what the schema does not say).
            for (uri, field) in [
                ("/v1/metrics/top?limit=0", "limit"), ("/v1/metrics/top?limit=101", "limit"), ("/v1/metrics/top?window=5x", "window"),
                ("/v1/deployments/people/metrics?window=10m", "window"), ("/v1/deployments/people/metrics/series?range=5m&step=7s", "step"),
                ("/v1/deployments/people/metrics/series?version=1.0.0&instance=a", "instance"), ("/v1/sites/plant/metrics?window=0s", "window"),
            ] {
                let answer = try await api.get(uri)
                #expect(answer.status == .badRequest && answer.errorField == field && answer.errorCode == "invalid_field", "\(uri): \(answer.body)")
            }
            for uri in ["/v1/deployments/nobody/metrics", "/v1/servers/edge-9/metrics", "/v1/deployments/people/metrics/series?instance=zz"] {
                let answer = try await api.get(uri)
                #expect(answer.status == .notFound && answer.errorCode == "not_found", "\(uri): \(answer.body)")
            }
        }
    }
}
