import Foundation
import Hummingbird
import HummingbirdTesting
import LoadBalancerContract
import ServiceRuntime
import TestSupport
import Testing

@testable import LoadBalancer

/// The load balancer's REST API in process (`app.test(.router)`): its generated `APIProtocol`
/// over endpoints given here, behind the service's error middleware.
@Suite("Load balancer REST handlers")
struct LoadBalancerHandlerTests {
    struct FixedEndpoints: EndpointSource {
        func endpoints() -> [Components.Schemas.Endpoint] {
            [
                .init(
                    deployment: "people", url: "http://127.0.0.1:8090/d/people/", state: .serving, algorithm: .leastConnections,
                    stickySessions: true, healthCheckPath: "/health", requestsTotal: 12, activeConnections: 1,
                    servers: [
                        .init(instanceId: "i-1", address: "127.0.0.1:9001", weight: 100, version: "1.0.0", health: "UP", requestsTotal: 12)
                    ]),
                .init(
                    deployment: "quiet", url: "http://127.0.0.1:8090/d/quiet/", state: .stopped, algorithm: .roundRobin, stickySessions: false,
                    healthCheckPath: "/health", requestsTotal: 0, activeConnections: 0, servers: []),
            ]
        }
    }

    private func withAPI(_ body: @escaping @Sendable (RouterClient) async throws -> Void) async throws {
        let router = Router()
        router.add(middleware: APIErrorMiddleware())
        try LoadBalancerAPI(balancer: FixedEndpoints()).addRoutes(to: router)
        try await Application(router: router).test(.router) { client in try await body(RouterClient(client)) }
    }

    @Test("the endpoints, listed and one by one, in the contract's names; an unknown one is 404")
    func endpoints() async throws {
        try await withAPI { api in
            let list = try await api.get("/v1/endpoints")
            #expect(list.status == .ok && list.items.compactMap { $0["deployment"] as? String } == ["people", "quiet"], "\(list.body)")
            #expect(list.json?["next_cursor"] == nil)
            let one = try await api.get("/v1/endpoints/people")
            #expect(one.json?["algorithm"] as? String == "least_connections" && one.json?["sticky_sessions"] as? Bool == true, "\(one.body)")
            let server = (one.json?["servers"] as? [[String: Any]])?.first
            #expect(server?["instance_id"] as? String == "i-1" && server?["requests_total"] as? Int == 12, "\(one.body)")
            #expect(try await api.get("/v1/endpoints/quiet").json?["state"] as? String == "stopped")
            let unknown = try await api.get("/v1/endpoints/nobody")
            #expect(unknown.status == .notFound && unknown.errorCode == "not_found", "\(unknown.body)")
        }
    }
}
