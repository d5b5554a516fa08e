import DeviceProtocol
import FleetContract
import Foundation
import Histograms
import Logging
import MQTT
import Metrics
import Prometheus
import ServiceLifecycle
import ServiceRuntime
import Synchronization

/// Adds up the instances' figures from the agents' telemetry (forwarded by the device gateway
/// in batches) into rolling windows, and every second publishes each deployment's snapshot and
/// updates its Prometheus gauges (docs/metrics.md).
///
/// Replicas: every replica reads every report and keeps every figure, so any of them answers a
/// query in full and takes over a deployment with its windows already filled; a deployment's
/// snapshot and gauges come from its owner alone (``ReplicaMembership`` over the replicas'
/// retained service statuses), so nothing is published or scraped twice.
final class Aggregator: Service, Sendable {
    static let service = "metrics-aggregator"

    /// The window of the snapshots (for the autoscaler and the rollouts).
    static let snapshotWindow = 10
    /// The snapshots' short window, for the autoscaler's burst rule.
    static let burstWindow = 2
    /// The window of the Prometheus gauges.
    static let gaugeWindow = 60

    private let mqtt: MQTTClient
    private let registry: PrometheusCollectorRegistry
    private let logger: Logger
    private let store = Mutex(MetricsStore())
    private let gauges: Mutex<DeploymentGauges>
    private let now: @Sendable () -> Double
    private let membership: Mutex<ReplicaMembership>

    init(
        mqtt: MQTTClient, registry: PrometheusCollectorRegistry, instance: String, logger: Logger,
        now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }
    ) {
        self.mqtt = mqtt
        self.registry = registry
        self.logger = logger
        self.now = now
        membership = Mutex(ReplicaMembership(me: instance))
        gauges = Mutex(DeploymentGauges(registry: registry))
    }

    /// The replicas online, this one included.
    var replicas: [String] { membership.withLock { $0.replicas } }

    func run() async throws {
        // Peers first: their retained statuses arrive before the first tick, so a replica that
        // starts beside others does not publish their deployments' snapshots once.
        let peers = try await mqtt.subscribe(to: Topic.serviceInstanceTopics(of: try TopicLevel(Self.service)).path, qos: .atLeastOnce)
        let telemetry = try await mqtt.subscribe(to: Topic.agentTelemetryEvents.path, qos: .atMostOnce, bufferCapacity: 65_536)
        await consumeUntilShutdown([telemetry, peers]) { group in
            group.addTask {
                await telemetry.forEachBatch(upTo: 64) { messages in
                    for message in messages { self.receive(message.payload) }
                    await Task.yield()
                }
            }
            group.addTask {
                for await message in peers where message.topic.hasSuffix("/status") {
                    guard let status = try? Envelope<ServiceStatus>.decode(from: message.payload).payload else { continue }
                    let changed = self.membership.withLock { membership in
                        let before = membership.replicas
                        membership.update(instance: status.instance, online: status.state == .online)
                        return before != membership.replicas
                    }
                    if changed {
                        self.logger.info("metrics-aggregator replicas", metadata: ["replicas": "\(self.replicas.joined(separator: ","))"])
                    }
                }
            }
        } background: {
            await self.tick()
        }
    }

    /// Reads the store under its lock (the REST API's queries).
    func read<Result>(_ body: (inout MetricsStore, Double) -> Result) -> Result {
        let moment = now()
        return store.withLock { body(&$0, moment) }
    }

    // MARK: Telemetry

    /// The parts of a forwarded batch the aggregator reads: each agent's telemetry payload.
    private struct Batch: Decodable {
        struct Payload: Decodable { var messages: [Message] }
        struct Message: Decodable { var payload: AgentMessage.Telemetry }
        var payload: Payload
    }

    /// Adds the instances of every telemetry message of a batch; what cannot be read is counted
    /// and dropped, the rest of the batch kept.
    func receive(_ data: Data) {
        let batch: Batch
        do {
            batch = try JSONDecoder().decode(Batch.self, from: data)
        } catch {
            AggregatorMetrics.dropped("batch").increment()
            logger.warning("dropped a telemetry batch that does not decode", metadata: ["error": "\(error)"])
            return
        }
        var samples: [InstanceSample] = []
        for message in batch.payload.messages {
            let telemetry = message.payload
            for figures in telemetry.instances ?? [] {
                do {
                    samples.append(try Self.sample(figures, agent: telemetry.agentID, site: telemetry.siteID))
                } catch {
                    AggregatorMetrics.dropped("latency_histogram").increment()
                    logger.debug(
                        "dropped an instance's figures",
                        metadata: ["instance_id": "\(figures.instanceID)", "agent_id": "\(telemetry.agentID)", "error": "\(error)"])
                }
            }
        }
        guard !samples.isEmpty else { return }
        let moment = now()
        store.withLock { store in
            for sample in samples { store.add(sample, now: moment) }
        }
        AggregatorMetrics.samples.increment(by: samples.count)
    }

    /// One instance's figures as the store counts them; throws when its histogram does not
    /// decode or disagrees with its request count.
    static func sample(_ figures: AgentMessage.Telemetry.Instance, agent: String, site: String?) throws -> InstanceSample {
        var latencies = SparseHistogram()
        if let encoded = figures.latencyUs {
            latencies = try HdrHistogramV2.decode(base64: encoded)
        }
        let requests = figures.requests ?? 0
        let errors = figures.errors ?? 0
        guard errors <= requests, latencies.isEmpty || latencies.totalCount == UInt64(requests) else {
            throw SampleMismatch(description: "requests \(requests), errors \(errors) and \(latencies.totalCount) recorded latencies do not agree")
        }
        return InstanceSample(
            instanceID: figures.instanceID, deployment: figures.deployment, version: figures.version, server: agent, site: site, ready: figures.ready,
            measuresRequests: figures.requests != nil,
            requests: requests, errors: errors, latencies: latencies, cpuCores: figures.cpuCores, cpuRequested: figures.cpuRequestedCores,
            memoryBytes: figures.memoryBytes.map(Double.init), memoryRequested: figures.memoryRequestedBytes.map(Double.init),
            gpuUtilization: figures.gpuUtilization, inFlight: figures.inFlight)
    }

    // MARK: Every second

    /// Compacts the windows, then publishes every deployment's snapshot and sets its gauges, at
    /// the start of each second.
    private func tick() async {
        while !Task.isCancelled {
            let moment = now()
            let untilNextSecond = 1 - (moment - moment.rounded(.down))
            try? await Task.sleep(for: .milliseconds(Int64(untilNextSecond * 1_000) + 5))
            guard !Task.isCancelled else { return }
            let started = ContinuousClock.now
            let owned = membership.withLock { $0 }
            let (snapshots, gaugeFigures) = store.withLock { store in
                let moment = now()
                store.compact(now: moment)
                // This replica's deployments with data in the last five minutes.
                let recent = store.deployments.filter { name in
                    owned.owns(name)
                        && store.seriesByKey[.deployment(name)].map { Double($0.newest) >= moment - Double(MetricsStore.fineSeconds) } ?? false
                }
                let snapshots = recent.compactMap { name in
                    store.snapshot(of: name, window: Self.snapshotWindow, now: moment).map { snapshot in
                        var snapshot = snapshot
                        snapshot.burst = store.figures(.deployment(name), window: Self.burstWindow, now: moment)
                        return snapshot
                    }
                }
                let gaugeFigures = recent.compactMap { store.snapshot(of: $0, window: Self.gaugeWindow, now: moment) }
                return (snapshots, gaugeFigures)
            }
            gauges.withLock { $0.update(gaugeFigures) }
            for snapshot in snapshots {
                guard let level = try? TopicLevel(snapshot.deployment), let payload = try? Envelope(payload: snapshot).encoded() else { continue }
                try? await mqtt.publish(
                    Topic.deploymentMetrics(level).path, payload: payload, qos: .atMostOnce,
                    properties: MQTTProperties(contentType: "application/json"))
            }
            AggregatorMetrics.tickSeconds.recordNanoseconds((ContinuousClock.now - started).nanoseconds)
            AggregatorMetrics.deployments.record(snapshots.count)
        }
    }
}

struct SampleMismatch: Error, CustomStringConvertible {
    let description: String
}

extension Duration {
    var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
}

/// The per-deployment gauges of `/metrics` over the last minute. A figure that cannot be
/// computed (no requests, no instance reporting its memory) has no series, rather than a 0; a
/// deployment without data for 5 minutes loses all of its series.
struct DeploymentGauges: Sendable {
    private let registry: PrometheusCollectorRegistry
    private var current: [String: Prometheus.Gauge] = [:]

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    mutating func update(_ snapshots: [DeploymentMetricsSnapshot]) {
        var wanted: [String: (name: String, labels: [(String, String)], value: Double)] = [:]
        func set(_ name: String, _ deployment: String, _ value: Double?, extra: [(String, String)] = []) {
            guard let value else { return }
            let labels = [("deployment", deployment)] + extra
            wanted[name + labels.map { "|\($0.0)=\($0.1)" }.joined()] = (name, labels, value)
        }
        for snapshot in snapshots {
            let name = snapshot.deployment
            let figures = snapshot.figures
            set("modelfleet_deployment_requests_per_second", name, figures.requestsPerSecond)
            set("modelfleet_deployment_error_ratio", name, figures.errorRatio)
            if let latency = figures.latencyMs {
                for (quantile, value) in [("0.5", latency.p50), ("0.95", latency.p95), ("0.99", latency.p99)] {
                    set("modelfleet_deployment_latency_seconds", name, value / 1_000, extra: [("quantile", quantile)])
                }
            }
            set("modelfleet_deployment_cpu_utilization", name, figures.cpuUtilization)
            set("modelfleet_deployment_memory_utilization", name, figures.memoryUtilization)
            set("modelfleet_deployment_gpu_utilization", name, figures.gpuUtilization)
            set("modelfleet_deployment_in_flight_requests", name, figures.inFlight)
            set("modelfleet_deployment_instances", name, Double(snapshot.instances))
            set("modelfleet_deployment_ready_instances", name, Double(snapshot.readyInstances))
            set("modelfleet_deployment_data_age_seconds", name, snapshot.newestDataAgeSeconds)
        }
        for (key, gauge) in current where wanted[key] == nil {
            registry.unregisterGauge(gauge)
            current[key] = nil
        }
        for (key, entry) in wanted {
            let descriptor = MetricNameDescriptor(metricName: entry.name, unitName: "", helpText: Self.help[entry.name] ?? "")
            let gauge = current[key] ?? registry.makeGauge(descriptor: descriptor, labels: entry.labels)
            gauge.set(entry.value)
            current[key] = gauge
        }
    }

    static let help = [
        "modelfleet_deployment_requests_per_second": "Requests answered per second by the deployment's instances over the last minute.",
        "modelfleet_deployment_error_ratio": "Share of the last minute's requests answered 5xx or failed.",
        "modelfleet_deployment_latency_seconds": "Latency percentiles of the last minute's requests, from merged HdrHistograms.",
        "modelfleet_deployment_cpu_utilization": "CPU used over CPU requested by the deployment's instances, last minute.",
        "modelfleet_deployment_memory_utilization": "Memory used over memory requested by the instances that report it, last minute.",
        "modelfleet_deployment_gpu_utilization": "GPU use of the instances that report it, last minute.",
        "modelfleet_deployment_instances": "Instances reporting within the last 3 seconds.",
        "modelfleet_deployment_ready_instances": "Of those, the ones that said they were ready.",
        "modelfleet_deployment_data_age_seconds": "Seconds since the newest report of any of the deployment's instances.",
    ]
}

/// The aggregator's own metrics, each name spelled once.
enum AggregatorMetrics {
    static func dropped(_ reason: String) -> Metrics.Counter {
        Metrics.Counter(label: "metrics_aggregator_dropped_total", dimensions: [("reason", reason)])
    }
    static var samples: Metrics.Counter { Metrics.Counter(label: "metrics_aggregator_instance_samples_total") }
    static var tickSeconds: Metrics.Timer { Metrics.Timer(label: "metrics_aggregator_tick_seconds") }
    static var deployments: Metrics.Recorder { Metrics.Recorder(label: "metrics_aggregator_deployments", aggregate: false) }
}
