import FleetContract
import Foundation
import ServiceRuntime

/// A deployment as the operator describes it: the product's form, every field. Stored whole at
/// each revision; what is absent from a request takes the default written here and in the
/// contract (`openapi.yaml`, `DeploymentSpec`).
struct DeploymentSpec: Codable, Sendable, Equatable {
    enum Environment: String, Codable, Sendable, CaseIterable {
        case development, staging, production
    }

    struct Resources: Codable, Sendable, Equatable {
        var cpuCores: Double = 1
        var memoryGB: Double = 1
        var gpuCount: Int = 0
        /// Any GPU model the fleet's servers report (`nvidia-t4`, `a100`); required when `gpuCount > 0`.
        var gpuType: String?
        var storageGB: Double = 10
        var networkMbps: Int = 100

        enum CodingKeys: String, CodingKey {
            case cpuCores = "cpu_cores"
            case memoryGB = "memory_gb"
            case gpuCount = "gpu_count"
            case gpuType = "gpu_type"
            case storageGB = "storage_gb"
            case networkMbps = "network_mbps"
        }

        init() {}

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let defaults = Resources()
            cpuCores = try container.decodeIfPresent(Double.self, forKey: .cpuCores) ?? defaults.cpuCores
            memoryGB = try container.decodeIfPresent(Double.self, forKey: .memoryGB) ?? defaults.memoryGB
            gpuCount = try container.decodeIfPresent(Int.self, forKey: .gpuCount) ?? defaults.gpuCount
            gpuType = try container.decodeIfPresent(String.self, forKey: .gpuType)
            storageGB = try container.decodeIfPresent(Double.self, forKey: .storageGB) ?? defaults.storageGB
            networkMbps = try container.decodeIfPresent(Int.self, forKey: .networkMbps) ?? defaults.networkMbps
        }

        var memoryBytes: Int64 { Int64((memoryGB * 1_073_741_824).rounded()) }
    }

    struct Scaling: Codable, Sendable, Equatable {
        var minReplicas: Int = 1
        var maxReplicas: Int = 1
        /// The instances wanted now, within min...max (the autoscaler moves it when on).
        var replicas: Int = 1
        var autoscaling = false
        var targetCPUPercent: Int? = 70
        var targetMemoryPercent: Int? = 80
        var targetGPUPercent: Int?
        /// Requests per second per instance; nil: not a target.
        var targetRequestsPerSecond: Double?
        /// Requests in progress per instance on average; nil: not a target.
        var targetInFlightRequests: Double?
        /// How long a scale-down waits: the autoscaler keeps the highest recommendation of this window.
        var scaleDownStabilizationSeconds = 300

        enum CodingKeys: String, CodingKey {
            case autoscaling, replicas
            case scaleDownStabilizationSeconds = "scale_down_stabilization_seconds"
            case targetRequestsPerSecond = "target_requests_per_second"
            case targetInFlightRequests = "target_in_flight_requests"
            case minReplicas = "min_replicas"
            case maxReplicas = "max_replicas"
            case targetCPUPercent = "target_cpu_percent"
            case targetMemoryPercent = "target_memory_percent"
            case targetGPUPercent = "target_gpu_percent"
        }

        init() {}

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let defaults = Scaling()
            minReplicas = try container.decodeIfPresent(Int.self, forKey: .minReplicas) ?? defaults.minReplicas
            maxReplicas = try container.decodeIfPresent(Int.self, forKey: .maxReplicas) ?? max(minReplicas, defaults.maxReplicas)
            replicas = try container.decodeIfPresent(Int.self, forKey: .replicas) ?? minReplicas
            autoscaling = try container.decodeIfPresent(Bool.self, forKey: .autoscaling) ?? defaults.autoscaling
            // Absent: the default; null: no target on that metric.
            func target(_ key: CodingKeys, _ fallback: Int?) throws -> Int? {
                container.contains(key) ? try container.decodeIfPresent(Int.self, forKey: key) : fallback
            }
            targetCPUPercent = try target(.targetCPUPercent, defaults.targetCPUPercent)
            targetMemoryPercent = try target(.targetMemoryPercent, defaults.targetMemoryPercent)
            targetGPUPercent = try target(.targetGPUPercent, nil)
            targetRequestsPerSecond = try container.decodeIfPresent(Double.self, forKey: .targetRequestsPerSecond)
            targetInFlightRequests = try container.decodeIfPresent(Double.self, forKey: .targetInFlightRequests)
            scaleDownStabilizationSeconds =
                try container.decodeIfPresent(Int.self, forKey: .scaleDownStabilizationSeconds) ?? defaults.scaleDownStabilizationSeconds
        }

        /// Targets without a value are written as null, so that a stored spec reads back the same.
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(minReplicas, forKey: .minReplicas)
            try container.encode(maxReplicas, forKey: .maxReplicas)
            try container.encode(replicas, forKey: .replicas)
            try container.encode(autoscaling, forKey: .autoscaling)
            try container.encode(targetCPUPercent, forKey: .targetCPUPercent)
            try container.encode(targetMemoryPercent, forKey: .targetMemoryPercent)
            try container.encode(targetGPUPercent, forKey: .targetGPUPercent)
            try container.encode(targetRequestsPerSecond, forKey: .targetRequestsPerSecond)
            try container.encode(targetInFlightRequests, forKey: .targetInFlightRequests)
            try container.encode(scaleDownStabilizationSeconds, forKey: .scaleDownStabilizationSeconds)
        }
    }

    struct LoadBalancer: Codable, Sendable, Equatable {
        enum Algorithm: String, Codable, Sendable, CaseIterable {
            case roundRobin = "round_robin"
            case leastConnections = "least_connections"
            case ipHash = "ip_hash"
        }

        var enabled = true
        var algorithm = Algorithm.roundRobin
        var healthCheckPath = "/health"
        var healthCheckIntervalSeconds = 10
        var stickySessions = false

        enum CodingKeys: String, CodingKey {
            case enabled, algorithm
            case healthCheckPath = "health_check_path"
            case healthCheckIntervalSeconds = "health_check_interval_seconds"
            case stickySessions = "sticky_sessions"
        }

        init() {}

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let defaults = LoadBalancer()
            enabled = try container.decodeIfPresent(Bool.self, forKey: .enabled) ?? defaults.enabled
            algorithm = try container.decodeIfPresent(Algorithm.self, forKey: .algorithm) ?? defaults.algorithm
            healthCheckPath = try container.decodeIfPresent(String.self, forKey: .healthCheckPath) ?? defaults.healthCheckPath
            healthCheckIntervalSeconds =
                try container.decodeIfPresent(Int.self, forKey: .healthCheckIntervalSeconds) ?? defaults.healthCheckIntervalSeconds
            stickySessions = try container.decodeIfPresent(Bool.self, forKey: .stickySessions) ?? defaults.stickySessions
        }
    }

    struct UpdateStrategy: Codable, Sendable, Equatable {
        enum Kind: String, Codable, Sendable, CaseIterable {
            case rolling
            case blueGreen = "blue_green"
            case canary
        }

        var type = Kind.rolling
        /// Rolling: instances above the wanted count while replacing, in percent of it.
        var maxSurgePercent = 25
        /// Rolling: instances that may be unavailable while replacing, in percent of the wanted count.
        var maxUnavailablePercent = 0
        /// Canary: the new version's traffic weight at each step, rising, ending at 100.
        var canarySteps: [Int]?
        /// Canary: seconds each step is analysed before the next.
        var stepSeconds = 60
        /// Blue-green: seconds the new set is watched before traffic switches (0: on promote only).
        var bakeSeconds = 300
        /// Blue-green: seconds the old set is kept after the switch, so that a rollback is a switch back.
        var scaleDownDelaySeconds = 30
        /// Seconds a change may go without an instance of its revision becoming ready before it
        /// is rolled back (Kubernetes' `progressDeadlineSeconds`, same default).
        var progressDeadlineSeconds = 600
        /// Canary: the limits the new version's live figures are held to at every step.
        var analysis = Analysis()

        /// What a canary's new version must keep to, judged on the metrics aggregator's figures
        /// for its model version (the last 10 s) once it has served `min_requests` in them.
        struct Analysis: Codable, Sendable, Equatable {
            /// Errors (5xx and failed inferences) in percent of requests, at most.
            var maxErrorPercent = 5.0
            /// p99 latency in milliseconds, at most; not checked when absent.
            var maxP99Ms: Double?
            /// p99 latency as a multiple of the stable version's, at most; not checked when absent.
            var maxP99Ratio: Double?
            /// Requests the new version must have served in the window before it is judged.
            var minRequests = 20
            /// Checks in a row (one a second) that may fail before the update is rolled back.
            var failuresAllowed = 0

            enum CodingKeys: String, CodingKey {
                case maxErrorPercent = "max_error_percent"
                case maxP99Ms = "max_p99_ms"
                case maxP99Ratio = "max_p99_ratio"
                case minRequests = "min_requests"
                case failuresAllowed = "failures_allowed"
            }

            init() {}

            init(from decoder: any Decoder) throws {
                let container = try decoder.container(keyedBy: CodingKeys.self)
                let defaults = Analysis()
                maxErrorPercent = try container.decodeIfPresent(Double.self, forKey: .maxErrorPercent) ?? defaults.maxErrorPercent
                maxP99Ms = try container.decodeIfPresent(Double.self, forKey: .maxP99Ms)
                maxP99Ratio = try container.decodeIfPresent(Double.self, forKey: .maxP99Ratio)
                minRequests = try container.decodeIfPresent(Int.self, forKey: .minRequests) ?? defaults.minRequests
                failuresAllowed = try container.decodeIfPresent(Int.self, forKey: .failuresAllowed) ?? defaults.failuresAllowed
            }
        }

        enum CodingKeys: String, CodingKey {
            case type
            case maxSurgePercent = "max_surge_percent"
            case maxUnavailablePercent = "max_unavailable_percent"
            case canarySteps = "canary_steps"
            case stepSeconds = "step_seconds"
            case bakeSeconds = "bake_seconds"
            case scaleDownDelaySeconds = "scale_down_delay_seconds"
            case progressDeadlineSeconds = "progress_deadline_seconds"
            case analysis
        }

        init() {}

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            let defaults = UpdateStrategy()
            type = try container.decodeIfPresent(Kind.self, forKey: .type) ?? defaults.type
            maxSurgePercent = try container.decodeIfPresent(Int.self, forKey: .maxSurgePercent) ?? defaults.maxSurgePercent
            maxUnavailablePercent = try container.decodeIfPresent(Int.self, forKey: .maxUnavailablePercent) ?? defaults.maxUnavailablePercent
            canarySteps = try container.decodeIfPresent([Int].self, forKey: .canarySteps) ?? (type == .canary ? [10, 25, 50, 100] : nil)
            stepSeconds = try container.decodeIfPresent(Int.self, forKey: .stepSeconds) ?? defaults.stepSeconds
            bakeSeconds = try container.decodeIfPresent(Int.self, forKey: .bakeSeconds) ?? defaults.bakeSeconds
            scaleDownDelaySeconds = try container.decodeIfPresent(Int.self, forKey: .scaleDownDelaySeconds) ?? defaults.scaleDownDelaySeconds
            progressDeadlineSeconds = try container.decodeIfPresent(Int.self, forKey: .progressDeadlineSeconds) ?? defaults.progressDeadlineSeconds
            analysis = try container.decodeIfPresent(Analysis.self, forKey: .analysis) ?? defaults.analysis
        }
    }

    /// The new version's share of the requests at each step of a staged update: a canary's
    /// `canary_steps`, or blue-green's preview (0) and switch (100); nil for a rolling update.
    var stagedSteps: [Int]? {
        switch updateStrategy.type {
        case .rolling: nil
        case .canary: updateStrategy.canarySteps ?? [10, 25, 50, 100]
        case .blueGreen: [0, 100]
        }
    }

    /// How long step `index` of a staged update lasts once its instances are ready: a canary's
    /// `step_seconds`; blue-green's bake (nil when 0: until promoted), then its scale-down delay.
    func stepSeconds(_ index: Int) -> Int? {
        guard updateStrategy.type == .blueGreen else { return updateStrategy.stepSeconds }
        if index == 0 { return updateStrategy.bakeSeconds == 0 ? nil : updateStrategy.bakeSeconds }
        return updateStrategy.scaleDownDelaySeconds
    }

    struct Runtime: Codable, Sendable, Equatable {
        enum Kind: String, Codable, Sendable, CaseIterable {
            /// The agent's own HTTP model server (`GET /health`, `POST /v1/infer`).
            case builtin
            /// Any command, given its port in `PORT`.
            case process
        }

        var kind = Kind.builtin
        var command: [String]?

        init() {}

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            kind = try container.decodeIfPresent(Kind.self, forKey: .kind) ?? .builtin
            command = try container.decodeIfPresent([String].self, forKey: .command)
        }
    }

    var description = ""
    var modelID: UUID
    var modelVersion: String
    var environment = Environment.development
    var resources = Resources()
    /// The instance's environment variables.
    var env: [String: String] = [:]
    var scaling = Scaling()
    var loadBalancer = LoadBalancer()
    var updateStrategy = UpdateStrategy()
    var runtime = Runtime()

    enum CodingKeys: String, CodingKey {
        case description, environment, resources, env, scaling, runtime
        case modelID = "model_id"
        case modelVersion = "model_version"
        case loadBalancer = "load_balancer"
        case updateStrategy = "update_strategy"
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        modelID = try container.decode(UUID.self, forKey: .modelID)
        modelVersion = try container.decode(String.self, forKey: .modelVersion)
        description = try container.decodeIfPresent(String.self, forKey: .description) ?? ""
        environment = try container.decodeIfPresent(Environment.self, forKey: .environment) ?? .development
        resources = try container.decodeIfPresent(Resources.self, forKey: .resources) ?? Resources()
        env = try container.decodeIfPresent([String: String].self, forKey: .env) ?? [:]
        scaling = try container.decodeIfPresent(Scaling.self, forKey: .scaling) ?? Scaling()
        loadBalancer = try container.decodeIfPresent(LoadBalancer.self, forKey: .loadBalancer) ?? LoadBalancer()
        updateStrategy = try container.decodeIfPresent(UpdateStrategy.self, forKey: .updateStrategy) ?? UpdateStrategy()
        runtime = try container.decodeIfPresent(Runtime.self, forKey: .runtime) ?? Runtime()
    }
}

extension APIError {
    /// A deployment field that decoded but is not acceptable: 422 naming it.
    static func unacceptable(_ field: String, _ message: String) -> APIError {
        APIError(.unprocessableContent, code: "invalid_field", message: message, field: field)
    }
}

extension DeploymentSpec {
    /// The name rules: a DNS label (RFC 1123), as the load balancer's paths and hosts use it.
    static func validateName(_ name: String) throws(APIError) -> String {
        let allowed = name.utf8.allSatisfy { (0x61...0x7a).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2d }
        guard (1...63).contains(name.utf8.count), allowed, name.first != "-", name.last != "-" else {
            throw .unacceptable("name", "must be a DNS label: 1 to 63 lower-case letters, digits and '-', not starting or ending with '-'")
        }
        return name
    }

    /// Checks every field; `gpuTypes` are the GPU models the fleet's servers report. The first
    /// problem is answered, naming its field (`resources.gpu_type`).
    func validated(gpuTypes: Set<String>) throws(APIError) -> DeploymentSpec {
        var spec = self
        guard description.unicodeScalars.count <= 2_000 else { throw .unacceptable("description", "at most 2000 characters") }
        guard (1...64).contains(modelVersion.count) else { throw .unacceptable("model_version", "must be 1 to 64 characters") }

        let resources = spec.resources
        guard resources.cpuCores >= 0.1, resources.cpuCores <= 256 else { throw .unacceptable("resources.cpu_cores", "must be 0.1 to 256") }
        guard resources.memoryGB >= 0.125, resources.memoryGB <= 4_096 else {
            throw .unacceptable("resources.memory_gb", "must be 0.125 to 4096")
        }
        guard (0...16).contains(resources.gpuCount) else { throw .unacceptable("resources.gpu_count", "must be 0 to 16") }
        if resources.gpuCount > 0 {
            guard let type = resources.gpuType, !type.isEmpty else { throw .unacceptable("resources.gpu_type", "required when gpu_count > 0") }
            guard gpuTypes.contains(type) else {
                let known = gpuTypes.isEmpty ? "none" : gpuTypes.sorted().joined(separator: ", ")
                throw .unacceptable("resources.gpu_type", "no server of the fleet reports a '\(type)' GPU (the fleet has: \(known))")
            }
        } else if resources.gpuType != nil {
            spec.resources.gpuType = nil
        }
        guard resources.storageGB >= 0, resources.storageGB <= 65_536 else { throw .unacceptable("resources.storage_gb", "must be 0 to 65536") }
        guard (1...100_000).contains(resources.networkMbps) else { throw .unacceptable("resources.network_mbps", "must be 1 to 100000") }

        guard env.count <= 64 else { throw .unacceptable("env", "at most 64 variables") }
        for (name, value) in env.sorted(by: { $0.key < $1.key }) {
            let valid = name.utf8.first.map { !(0x30...0x39).contains($0) } ?? false
            guard valid, name.count <= 128,
                name.utf8.allSatisfy({ $0 == 0x5f || (0x41...0x5a).contains($0) || (0x61...0x7a).contains($0) || (0x30...0x39).contains($0) })
            else { throw .unacceptable("env.\(name)", "a variable name is letters, digits and '_', not starting with a digit") }
            guard value.utf8.count <= 4_096 else { throw .unacceptable("env.\(name)", "at most 4096 bytes") }
        }

        let scaling = spec.scaling
        guard (1...1_000).contains(scaling.minReplicas) else { throw .unacceptable("scaling.min_replicas", "must be 1 to 1000") }
        guard scaling.maxReplicas >= scaling.minReplicas, scaling.maxReplicas <= 1_000 else {
            throw .unacceptable("scaling.max_replicas", "must be min_replicas (\(scaling.minReplicas)) to 1000")
        }
        guard (scaling.minReplicas...scaling.maxReplicas).contains(scaling.replicas) else {
            throw .unacceptable("scaling.replicas", "must be within min_replicas and max_replicas (\(scaling.minReplicas) to \(scaling.maxReplicas))")
        }
        for (field, value) in [
            ("target_cpu_percent", scaling.targetCPUPercent), ("target_memory_percent", scaling.targetMemoryPercent),
            ("target_gpu_percent", scaling.targetGPUPercent),
        ] {
            if let value, !(1...100).contains(value) { throw .unacceptable("scaling.\(field)", "must be 1 to 100") }
        }
        guard (0...3_600).contains(scaling.scaleDownStabilizationSeconds) else {
            throw .unacceptable("scaling.scale_down_stabilization_seconds", "must be 0 to 3600")
        }
        if let rate = scaling.targetRequestsPerSecond, !(rate > 0 && rate <= 1_000_000) {
            throw .unacceptable("scaling.target_requests_per_second", "must be more than 0 and at most 1000000 requests a second per instance")
        }
        if let inFlight = scaling.targetInFlightRequests, !(inFlight > 0 && inFlight <= 100_000) {
            throw .unacceptable("scaling.target_in_flight_requests", "must be more than 0 and at most 100000 requests in progress per instance")
        }
        if scaling.autoscaling && scaling.targetCPUPercent == nil && scaling.targetMemoryPercent == nil && scaling.targetGPUPercent == nil
            && scaling.targetRequestsPerSecond == nil && scaling.targetInFlightRequests == nil
        {
            throw .unacceptable(
                "scaling.autoscaling", "needs at least one target (cpu, memory or gpu percent, requests per second or in-flight requests)")
        }
        if scaling.targetGPUPercent != nil && resources.gpuCount == 0 {
            throw .unacceptable("scaling.target_gpu_percent", "needs resources.gpu_count > 0")
        }

        let balancer = spec.loadBalancer
        guard LoadBalancerView.isSafePath(balancer.healthCheckPath) else {
            throw .unacceptable(
                "load_balancer.health_check_path", "must be a path starting with '/', at most 256 of letters, digits and / . _ ~ - % ? = &")
        }
        guard (1...3_600).contains(balancer.healthCheckIntervalSeconds) else {
            throw .unacceptable("load_balancer.health_check_interval_seconds", "must be 1 to 3600")
        }

        let strategy = spec.updateStrategy
        guard (0...100).contains(strategy.maxSurgePercent) else { throw .unacceptable("update_strategy.max_surge_percent", "must be 0 to 100") }
        guard (0...100).contains(strategy.maxUnavailablePercent) else {
            throw .unacceptable("update_strategy.max_unavailable_percent", "must be 0 to 100")
        }
        guard strategy.maxSurgePercent > 0 || strategy.maxUnavailablePercent > 0 else {
            throw .unacceptable("update_strategy.max_surge_percent", "max_surge_percent and max_unavailable_percent cannot both be 0")
        }
        // Kept when the strategy changes (an edit merges), used only by a canary.
        if let steps = strategy.canarySteps {
            guard (1...20).contains(steps.count), steps.last == 100, zip(steps, steps.dropFirst()).allSatisfy({ $0 < $1 }),
                steps.allSatisfy({ (1...100).contains($0) })
            else { throw .unacceptable("update_strategy.canary_steps", "1 to 20 rising weights from 1 to 100, ending at 100") }
        }
        guard (1...86_400).contains(strategy.stepSeconds) else { throw .unacceptable("update_strategy.step_seconds", "must be 1 to 86400") }
        guard (1...86_400).contains(strategy.progressDeadlineSeconds) else {
            throw .unacceptable("update_strategy.progress_deadline_seconds", "must be 1 to 86400")
        }
        guard (0...86_400).contains(strategy.bakeSeconds) else { throw .unacceptable("update_strategy.bake_seconds", "must be 0 to 86400") }
        guard (0...86_400).contains(strategy.scaleDownDelaySeconds) else {
            throw .unacceptable("update_strategy.scale_down_delay_seconds", "must be 0 to 86400")
        }
        let analysis = strategy.analysis
        guard (0...100).contains(analysis.maxErrorPercent) else {
            throw .unacceptable("update_strategy.analysis.max_error_percent", "must be 0 to 100")
        }
        if let p99 = analysis.maxP99Ms, !(0.001...3_600_000).contains(p99) {
            throw .unacceptable("update_strategy.analysis.max_p99_ms", "must be 0.001 to 3600000")
        }
        if let ratio = analysis.maxP99Ratio, !(1...1_000).contains(ratio) {
            throw .unacceptable("update_strategy.analysis.max_p99_ratio", "must be 1 to 1000")
        }
        guard (1...1_000_000).contains(analysis.minRequests) else {
            throw .unacceptable("update_strategy.analysis.min_requests", "must be 1 to 1000000")
        }
        guard (0...100).contains(analysis.failuresAllowed) else {
            throw .unacceptable("update_strategy.analysis.failures_allowed", "must be 0 to 100")
        }

        switch spec.runtime.kind {
        case .builtin:
            guard spec.runtime.command == nil else { throw .unacceptable("runtime.command", "only for the process runtime") }
        case .process:
            guard let command = spec.runtime.command, (1...64).contains(command.count), !command[0].isEmpty else {
                throw .unacceptable("runtime.command", "the process runtime needs a command: 1 to 64 arguments, the first not empty")
            }
        }
        return spec
    }
}
