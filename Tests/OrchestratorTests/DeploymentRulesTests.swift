import Foundation
import ServiceRuntime
import Testing

@testable import FleetContract
@testable import Orchestrator

/// The deployment's pure rules: what a request may say (every field named when it may not) and
/// where instances go.
@Suite("Deployment rules")
struct DeploymentRulesTests {
    private static let model = UUID()

    private func spec(_ json: String) throws -> DeploymentSpec {
        try ContractCoding.decoder.decode(DeploymentSpec.self, from: Data(#"{"model_id": "\#(Self.model)", "model_version": "1.0.0"\#(json)}"#.utf8))
    }

    @Test("absent fields take the documented defaults; replicas start at the minimum")
    func defaults() throws {
        let spec = try spec(#", "scaling": {"min_replicas": 2, "max_replicas": 5}"#).validated(gpuTypes: [])
        #expect(spec.environment == .development && spec.resources.gpuCount == 0 && spec.resources.cpuCores == 1)
        #expect(spec.scaling.replicas == 2 && !spec.scaling.autoscaling && spec.scaling.targetCPUPercent == 70)
        #expect(spec.loadBalancer.algorithm == .roundRobin && spec.loadBalancer.healthCheckPath == "/health")
        #expect(spec.updateStrategy.type == .rolling && spec.updateStrategy.maxSurgePercent == 25 && spec.runtime.kind == .builtin)
        let canary = try self.spec(#", "update_strategy": {"type": "canary"}"#).validated(gpuTypes: [])
        #expect(canary.updateStrategy.canarySteps == [10, 25, 50, 100])
    }

    @Test("every unacceptable field is a 422 naming it")
    func unacceptableFields() throws {
        for (json, field) in [
            (#", "resources": {"gpu_count": 1}"#, "resources.gpu_type"),
            (#", "resources": {"gpu_count": 1, "gpu_type": "v100"}"#, "resources.gpu_type"),
            (#", "resources": {"gpu_count": 17, "gpu_type": "t4"}"#, "resources.gpu_count"),
            (#", "resources": {"cpu_cores": 0}"#, "resources.cpu_cores"),
            (#", "resources": {"memory_gb": 0.01}"#, "resources.memory_gb"),
            (#", "resources": {"network_mbps": 0}"#, "resources.network_mbps"),
            (#", "env": {"1ABC": "x"}"#, "env.1ABC"),
            (#", "env": {"A-B": "x"}"#, "env.A-B"),
            (#", "scaling": {"min_replicas": 0}"#, "scaling.min_replicas"),
            (#", "scaling": {"min_replicas": 3, "max_replicas": 2}"#, "scaling.max_replicas"),
            (#", "scaling": {"min_replicas": 1, "max_replicas": 2, "replicas": 3}"#, "scaling.replicas"),
            (#", "scaling": {"target_cpu_percent": 0}"#, "scaling.target_cpu_percent"),
            (#", "scaling": {"target_gpu_percent": 50}"#, "scaling.target_gpu_percent"),
            (#", "scaling": {"target_requests_per_second": 0}"#, "scaling.target_requests_per_second"),
            (#", "scaling": {"target_in_flight_requests": -1}"#, "scaling.target_in_flight_requests"),
            (#", "scaling": {"target_in_flight_requests": 100001}"#, "scaling.target_in_flight_requests"),
            (
                #", "scaling": {"autoscaling": true, "target_cpu_percent": null, "target_memory_percent": null}"#,
                "scaling.autoscaling"
            ),
            (#", "load_balancer": {"health_check_path": "health"}"#, "load_balancer.health_check_path"),
            // What HAProxy's configuration would read as syntax: a quote, a comment, a backslash.
            (#", "load_balancer": {"health_check_path": "/health\"x"}"#, "load_balancer.health_check_path"),
            (#", "load_balancer": {"health_check_path": "/health#x"}"#, "load_balancer.health_check_path"),
            (#", "load_balancer": {"health_check_path": "/a\\b"}"#, "load_balancer.health_check_path"),
            (#", "load_balancer": {"health_check_interval_seconds": 0}"#, "load_balancer.health_check_interval_seconds"),
            (#", "update_strategy": {"max_surge_percent": 0, "max_unavailable_percent": 0}"#, "update_strategy.max_surge_percent"),
            (#", "update_strategy": {"type": "canary", "canary_steps": [50, 20, 100]}"#, "update_strategy.canary_steps"),
            (#", "update_strategy": {"type": "canary", "canary_steps": [10, 50]}"#, "update_strategy.canary_steps"),
            (#", "update_strategy": {"type": "canary", "canary_steps": [0, 100]}"#, "update_strategy.canary_steps"),
            (#", "update_strategy": {"scale_down_delay_seconds": -1}"#, "update_strategy.scale_down_delay_seconds"),
            (#", "update_strategy": {"analysis": {"max_error_percent": 101}}"#, "update_strategy.analysis.max_error_percent"),
            (#", "update_strategy": {"analysis": {"max_p99_ms": 0}}"#, "update_strategy.analysis.max_p99_ms"),
            (#", "update_strategy": {"analysis": {"max_p99_ratio": 0.5}}"#, "update_strategy.analysis.max_p99_ratio"),
            (#", "update_strategy": {"analysis": {"min_requests": 0}}"#, "update_strategy.analysis.min_requests"),
            (#", "update_strategy": {"analysis": {"failures_allowed": 101}}"#, "update_strategy.analysis.failures_allowed"),
            (#", "update_strategy": {"progress_deadline_seconds": 0}"#, "update_strategy.progress_deadline_seconds"),
            (#", "runtime": {"kind": "process"}"#, "runtime.command"),
            (#", "runtime": {"kind": "builtin", "command": ["x"]}"#, "runtime.command"),
            (#", "description": "\#(String(repeating: "d", count: 2_001))""#, "description"),
        ] {
            let error = #expect(throws: APIError.self, "\(json)") { try self.spec(json).validated(gpuTypes: ["t4"]) }
            #expect(error?.status == .unprocessableContent && error?.field == field, "\(json): \(String(describing: error))")
        }
        let gpu = try spec(#", "resources": {"gpu_count": 2, "gpu_type": "t4"}, "scaling": {"target_gpu_percent": 60}"#).validated(gpuTypes: ["t4"])
        #expect(gpu.resources.gpuType == "t4" && gpu.scaling.targetGPUPercent == 60)
        let concurrency = try spec(
            #", "scaling": {"autoscaling": true, "target_cpu_percent": null, "target_memory_percent": null, "target_in_flight_requests": 4}"#
        ).validated(gpuTypes: [])
        #expect(concurrency.scaling.targetInFlightRequests == 4 && concurrency.scaling.targetCPUPercent == nil)
        #expect(throws: APIError.self) { try DeploymentSpec.validateName("People") }
        #expect(throws: APIError.self) { try DeploymentSpec.validateName("-people") }
        #expect(throws: APIError.self) { try DeploymentSpec.validateName(String(repeating: "a", count: 64)) }
        #expect(try DeploymentSpec.validateName("people-api-2") == "people-api-2")
    }

    private static let gib: Int64 = 1 << 30

    private func server(_ id: String, cpu: Double = 8, memoryGB: Int64 = 16, gpus: [String: Int] = [:], online: Bool = true) -> Placement.Server {
        Placement.Server(id: id, online: online, cpuCores: cpu, memoryBytes: memoryGB * Self.gib, gpus: gpus)
    }

    @Test("instances spread over the servers that fit, counting what others hold; offline servers take none")
    func spread() {
        let servers = [server("edge-01"), server("edge-02", cpu: 4), server("edge-03", online: false)]
        let one = Placement.Demand(cpuCores: 2, memoryBytes: 2 * Self.gib)
        let result = Placement.place(count: 4, demand: one, servers: servers, used: [:])
        #expect(result.unplaced == 0 && result.servers.sorted() == ["edge-01", "edge-01", "edge-02", "edge-02"])
        #expect(result.servers.first == "edge-01", "the most free CPU first")

        // edge-01 has 7 of 8 cores held by other deployments: only edge-02 fits.
        let busy = Placement.place(
            count: 2, demand: one, servers: servers, used: ["edge-01": Placement.Usage(cpuCores: 7, memoryBytes: 0, gpus: [:])])
        #expect(busy.servers == ["edge-02", "edge-02"] && busy.unplaced == 0)
        // This deployment's instances already there count for the spread.
        let spread = Placement.place(count: 1, demand: one, servers: servers, used: [:], spread: ["edge-01": 2])
        #expect(spread.servers == ["edge-02"])
    }

    @Test("GPUs of the asked type; what cannot be placed is pending with a reason naming the closest server")
    func gpusAndReasons() {
        let servers = [server("edge-01", gpus: ["a100": 1]), server("edge-07", gpus: ["a100": 1, "t4": 2]), server("edge-09")]
        let a100 = Placement.Demand(cpuCores: 1, memoryBytes: Self.gib, gpuCount: 1, gpuType: "a100")
        let placed = Placement.place(count: 3, demand: a100, servers: servers, used: [:])
        #expect(placed.servers.sorted() == ["edge-01", "edge-07"] && placed.unplaced == 1)
        #expect(placed.reason == "no online server has 1 free a100 GPU(s); best: edge-01 with 0", "\(placed.reason ?? "")")

        let two = Placement.Demand(cpuCores: 1, memoryBytes: Self.gib, gpuCount: 2, gpuType: "a100")
        #expect(
            Placement.place(count: 1, demand: two, servers: servers, used: [:]).reason
                == "no online server has 2 free a100 GPU(s); best: edge-01 with 1")

        let big = Placement.Demand(cpuCores: 12, memoryBytes: 4 * Self.gib)
        let cpu = Placement.place(count: 1, demand: big, servers: servers, used: ["edge-09": Placement.Usage(cpuCores: 0.5)])
        #expect(cpu.unplaced == 1 && cpu.reason == "no online server has 12 free CPU cores and 4 GB of memory; best: edge-01 with 8 cores and 16 GB")
        let offline = Placement.place(count: 1, demand: big, servers: [server("edge-01", online: false)], used: [:])
        #expect(offline.reason == "no server is online (1 known, all offline)")
        #expect(Placement.place(count: 1, demand: big, servers: [], used: [:]).reason == "the fleet has no servers")
    }
}
