import Foundation
import TestSupport
import Testing

// A load-balancer process for the tests that send traffic through HAProxy (LoadBalancerProcessTests,
// AutoscalerProcessTests).

/// A load-balancer replica and its HAProxy's traffic port.
struct Balancer {
    let service: ServiceProcess
    let traffic: Int

    /// Through HAProxy: `POST /d/<deployment>/v1/infer`.
    func infer(_ deployment: String, headers: [String: String] = [:], source: String? = nil) async throws -> HTTPResult {
        try await httpRequest(
            port: traffic, method: "POST", path: "/d/\(deployment)/v1/infer", body: Data("frame".utf8), headers: headers, source: source)
    }
}

/// A short folder: HAProxy's socket path must fit in 108 bytes.
func balancerDirectory() -> String { "/tmp/mflb-\(UUID().uuidString.prefix(8))" }

func startBalancer(_ fleet: Fleet, name: String = "lb-1", traffic: Int? = nil, directory: String? = nil) async throws -> Balancer {
    let port = try traffic ?? freePort()
    let directory = directory ?? balancerDirectory()
    let service = try ServiceProcess(
        "load-balancer",
        environment: [
            "MODELFLEET_MQTT_URL": fleet.broker.url, "MODELFLEET_INSTANCE_ID": name, "MODELFLEET_LB_TRAFFIC_HOST": "127.0.0.1",
            "MODELFLEET_LB_TRAFFIC_PORT": "\(port)", "MODELFLEET_LB_ADMIN_PORT": "\(try freePort())", "MODELFLEET_LB_STATE_DIR": directory,
        ])
    try await service.waitUntilReady()
    return Balancer(service: service, traffic: port)
}

/// Runs `body` with a load-balancer, stopped with SIGTERM afterwards whatever happens, so that
/// it stops its HAProxy (a SIGKILL would leave that running).
func withBalancer(_ fleet: Fleet, name: String = "lb-1", _ body: (Balancer) async throws -> Void) async throws {
    let balancer = try await startBalancer(fleet, name: name)
    do {
        try await body(balancer)
    } catch {
        await stopBalancer(balancer)
        throw error
    }
    await stopBalancer(balancer)
}

func stopBalancer(_ balancer: Balancer) async {
    balancer.service.process.send(SIGTERM)
    _ = await balancer.service.process.waitForExit(timeout: .seconds(15))
}
