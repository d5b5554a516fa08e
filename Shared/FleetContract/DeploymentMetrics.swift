package import Foundation

/// Figures over a window of whole seconds, as the metrics aggregator computes them for an
/// instance, a deployment, a version of it, a server or a site (docs/metrics.md).
///
/// Percentiles come from the merged HdrHistograms of every request in the window (3 significant
/// digits); a figure with nothing to compute it from is absent, never 0.
package struct MetricsFigures: Codable, Sendable, Hashable {
    package struct Latency: Codable, Sendable, Hashable {
        package var p50: Double
        package var p95: Double
        package var p99: Double
        package var mean: Double

        package init(p50: Double, p95: Double, p99: Double, mean: Double) {
            self.p50 = p50
            self.p95 = p95
            self.p99 = p99
            self.mean = mean
        }
    }

    package var windowSeconds: Int
    package var requests: Int
    package var requestsPerSecond: Double
    package var errors: Int
    /// errors / requests; absent without requests.
    package var errorRatio: Double?
    /// In milliseconds; absent without requests.
    package var latencyMs: Latency?
    /// Cores used, on average over the window, by everything counted (all instances of a deployment).
    package var cpuCores: Double?
    /// Cores used / cores requested, over the instances that report their CPU.
    package var cpuUtilization: Double?
    /// Resident memory per instance, on average.
    package var memoryBytes: Double?
    /// Memory used / memory requested, over the instances that report their memory.
    package var memoryUtilization: Double?
    /// GPU use as a fraction of the GPUs of the instances that report it.
    package var gpuUtilization: Double?
    /// The instance reports in the window that measured requests; 0: the request figures are
    /// unknown (process instances serve their own port), not a quiet deployment.
    package var requestSamples: Int?
    /// Requests in progress on average over the window, over all the instances that report them
    /// (the built-in runtime's); nil where none does.
    package var inFlight: Double?

    package init(
        windowSeconds: Int, requests: Int, requestsPerSecond: Double, errors: Int, errorRatio: Double?, latencyMs: Latency?, cpuCores: Double?,
        cpuUtilization: Double?, memoryBytes: Double?, memoryUtilization: Double?, gpuUtilization: Double?, requestSamples: Int? = nil,
        inFlight: Double? = nil
    ) {
        self.windowSeconds = windowSeconds
        self.requests = requests
        self.requestsPerSecond = requestsPerSecond
        self.errors = errors
        self.errorRatio = errorRatio
        self.latencyMs = latencyMs
        self.cpuCores = cpuCores
        self.cpuUtilization = cpuUtilization
        self.memoryBytes = memoryBytes
        self.memoryUtilization = memoryUtilization
        self.gpuUtilization = gpuUtilization
        self.requestSamples = requestSamples
        self.inFlight = inFlight
    }

    private enum CodingKeys: String, CodingKey {
        case windowSeconds = "window_seconds"
        case requests
        case requestsPerSecond = "requests_per_second"
        case errors
        case errorRatio = "error_ratio"
        case latencyMs = "latency_ms"
        case cpuCores = "cpu_cores"
        case cpuUtilization = "cpu_utilization"
        case memoryBytes = "memory_bytes"
        case memoryUtilization = "memory_utilization"
        case gpuUtilization = "gpu_utilization"
        case requestSamples = "request_samples"
        case inFlight = "in_flight"
    }
}

/// One deployment's figures, every second on ``Topic/deploymentMetrics(_:)`` (QoS 0, not
/// retained), for the autoscaler and the rollouts: the last ``MetricsFigures/windowSeconds``
/// overall and per model version, with how many instances are ready and how fresh the data is.
package struct DeploymentMetricsSnapshot: ContractPayload, Equatable {
    package static let messageType = "metrics.deployment-snapshot"

    package struct Version: Codable, Sendable, Equatable {
        package var version: String
        package var instances: Int
        package var readyInstances: Int
        package var figures: MetricsFigures

        package init(version: String, instances: Int, readyInstances: Int, figures: MetricsFigures) {
            self.version = version
            self.instances = instances
            self.readyInstances = readyInstances
            self.figures = figures
        }

        private enum CodingKeys: String, CodingKey {
            case version, instances, figures
            case readyInstances = "ready_instances"
        }
    }

    package var deployment: String
    package var at: Date
    /// Instances that reported within ``staleAfterSeconds``.
    package var instances: Int
    /// Of those, the ones whose last report said they were ready.
    package var readyInstances: Int
    /// Seconds since the newest report of any of the deployment's instances.
    package var newestDataAgeSeconds: Double
    /// Instances silent for longer are left out of the figures (their rate is absent, not 0).
    package var staleAfterSeconds: Double
    package var figures: MetricsFigures
    package var versions: [Version]
    /// The last 2 seconds alone, in the snapshots: what the autoscaler's burst rule reads.
    package var burst: MetricsFigures?

    package init(
        deployment: String, at: Date, instances: Int, readyInstances: Int, newestDataAgeSeconds: Double, staleAfterSeconds: Double,
        figures: MetricsFigures, versions: [Version], burst: MetricsFigures? = nil
    ) {
        self.deployment = deployment
        self.at = at
        self.instances = instances
        self.readyInstances = readyInstances
        self.newestDataAgeSeconds = newestDataAgeSeconds
        self.staleAfterSeconds = staleAfterSeconds
        self.figures = figures
        self.versions = versions
        self.burst = burst
    }

    private enum CodingKeys: String, CodingKey {
        case deployment, at, instances, figures, versions, burst
        case readyInstances = "ready_instances"
        case newestDataAgeSeconds = "newest_data_age_seconds"
        case staleAfterSeconds = "stale_after_seconds"
    }
}

extension Topic {
    /// `modelfleet/v1/internal/metrics/deployments/<name>`: a deployment's
    /// ``DeploymentMetricsSnapshot`` every second.
    package static func deploymentMetrics(_ deployment: TopicLevel) -> Topic {
        root.appending("internal").appending("metrics").appending("deployments").appending(deployment.value)
    }

    /// Every deployment's snapshots.
    package static let everyDeploymentMetrics = root.appending("internal").appending("metrics").appending("deployments").appending("+")
}
