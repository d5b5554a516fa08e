// `gateway-bench metrics`: the metrics aggregator's accuracy and throughput, fed the way the
// device gateway feeds it (telemetry batches on its internal topic).

import ArgumentParser
import DeviceProtocol
import FleetContract
import Foundation
import Histograms
import MQTT
import Synchronization

struct MetricsLoad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: """
            Feed a metrics-aggregator instance figures as the gateway forwards them: (1) accuracy, \
            percentiles per deployment against the exact ones of every raw sample, with a \
            Prometheus histogram's estimate as the baseline; (2) throughput, instances reporting \
            every second, with the aggregator's CPU and its snapshots.
            """)

    @Option(help: "Broker URL.") var mqttURL = "mqtt://127.0.0.1:1883"
    @Option(help: "The metrics-aggregator's base URL.") var aggregatorURL = "http://127.0.0.1:8084"
    @Option(help: "The metrics-aggregator's process id, for its CPU time.") var aggregatorPID: Int32
    @Option(help: "Instances in the accuracy part (10 deployments).") var accuracyInstances = 1_000
    @Option(help: "Requests per instance in the accuracy part, over 3 seconds.") var accuracyRequests = 300
    @Option(help: "Instances reporting every second in the throughput part.") var instances = 10_000
    @Option(help: "Deployments they belong to.") var deployments = 100
    @Option(help: "Seconds of the throughput window.") var seconds = 20.0

    func validate() throws {
        guard accuracyInstances >= 10, accuracyRequests >= 10, instances >= deployments, deployments > 0, seconds >= 5 else {
            throw ValidationError("need accuracy-instances >= 10, accuracy-requests >= 10, instances >= deployments > 0, seconds >= 5")
        }
    }

    func run() async throws {
        let aggregator = try HTTPService(url: aggregatorURL)
        try aggregator.checkReady("metrics-aggregator")
        let client = try makeBenchClient(url: mqttURL, role: "metrics")
        let runner = Task { try await client.run() }
        defer { runner.cancel() }
        try await client.waitUntilConnected(timeout: .seconds(10))
        try await accuracy(client, aggregator)
        try await throughput(client, aggregator)
    }

    // MARK: Accuracy

    /// Latency-like samples in microseconds, each instance its own distribution: log-normal with
    /// a median from 2 to 200 ms and a spread from 0.2 to 1.0, a fifth of them with a Pareto tail.
    struct Source {
        var state: UInt64
        let median: Double
        let sigma: Double
        let heavyTail: Bool

        init(seed: UInt64) {
            state = seed &* 0x9e37_79b9_7f4a_7c15 | 1
            var probe = state
            func draw() -> Double {
                probe = probe &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return Double(probe >> 11) / Double(1 << 53)
            }
            median = 2_000 * pow(100, draw())
            sigma = 0.2 + 0.8 * draw()
            heavyTail = draw() < 0.2
            state = probe
        }

        mutating func uniform() -> Double {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return max(Double(state >> 11) / Double(1 << 53), 1e-12)
        }

        mutating func next() -> UInt64 {
            let normal = (-2 * log(uniform())).squareRoot() * cos(2 * .pi * uniform())
            var value = median * exp(sigma * normal)
            if heavyTail, uniform() < 0.05 { value *= pow(1 / uniform(), 1 / 1.5) }
            return UInt64(max(1, min(value, 3_000_000_000)))
        }
    }

    /// Prometheus's default histogram buckets (seconds) and histogram_quantile's estimate from them.
    static let prometheusBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    static func prometheusEstimate(_ sortedMicroseconds: [UInt64], quantile: Double) -> Double {
        let bounds = prometheusBuckets.map { $0 * 1_000_000 }
        var cumulative: [Double] = []
        var index = 0
        for bound in bounds {
            while index < sortedMicroseconds.count && Double(sortedMicroseconds[index]) <= bound { index += 1 }
            cumulative.append(Double(index))
        }
        let total = Double(sortedMicroseconds.count)
        let rank = quantile * total
        guard let bucket = cumulative.firstIndex(where: { $0 >= rank }) else { return bounds[bounds.count - 2] }
        let lower = bucket == 0 ? 0 : bounds[bucket - 1]
        let countBelow = bucket == 0 ? 0 : cumulative[bucket - 1]
        let inBucket = cumulative[bucket] - countBelow
        return lower + (bounds[bucket] - lower) * (inBucket > 0 ? (rank - countBelow) / inBucket : 0)
    }

    private struct DeploymentAnswer: Decodable {
        struct Figures: Decodable {
            var requests: Int
            var latencyMs: [String: Double]?
            enum CodingKeys: String, CodingKey {
                case requests
                case latencyMs = "latency_ms"
            }
        }
        var figures: Figures
    }

    private func accuracy(_ client: MQTTClient, _ aggregator: HTTPService) async throws {
        let deploymentCount = 10
        var raw: [[UInt64]] = Array(repeating: [], count: deploymentCount)
        var sources = (0..<accuracyInstances).map { Source(seed: UInt64($0) + 1) }
        let perSecond = accuracyRequests / 3
        for second in 0..<3 {
            var messages: [Data] = []
            for agent in 0..<(accuracyInstances / 10) {
                var figures: [AgentMessage.Telemetry.Instance] = []
                for slot in 0..<10 {
                    let instance = agent * 10 + slot
                    let deployment = instance % deploymentCount
                    var histogram = DenseHistogram()
                    for _ in 0..<perSecond {
                        let value = sources[instance].next()
                        histogram.record(value)
                        raw[deployment].append(value)
                    }
                    figures.append(
                        .init(
                            instanceID: "acc-\(instance)", deployment: "accuracy-\(deployment)", version: "1.0.0", ready: true, requests: perSecond,
                            errors: 0, latencyUs: HdrHistogramV2.encodeBase64(histogram.sparse), cpuCores: 0.1, cpuRequestedCores: 1,
                            memoryBytes: nil,
                            memoryRequestedBytes: nil))
                }
                messages.append(try telemetry(agent: "acc-agent-\(agent)", figures))
            }
            try await publish(messages, client)
            if second < 2 { try await Task.sleep(for: .seconds(1)) }
        }
        try await Task.sleep(for: .seconds(2))

        say(
            "accuracy: \(accuracyInstances) instances in \(deploymentCount) deployments, \(perSecond * 3) requests each, log-normal medians 2-200 ms, a fifth with Pareto tails"
        )
        let headers = ["requests", "p50 exact", "p50 error", "p99 exact", "p99 error", "p99 Prom.", "Prom. error"]
        let widths = [9, 12, 12, 12, 12, 12, 12]
        say("deployment    " + zip(headers, widths).map { " " + String(repeating: " ", count: max($1 - $0.count, 0)) + $0 }.joined())
        var worst = 0.0
        var worstPrometheus = 0.0
        var counted = 0
        for deployment in 0..<deploymentCount {
            let answer = try aggregator.getJSON(DeploymentAnswer.self, "/v1/deployments/accuracy-\(deployment)/metrics?window=5m")
            counted += answer.figures.requests
            let sorted = raw[deployment].sorted()
            var errors: [String: Double] = [:]
            for (name, quantile) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
                let rank = max(Int((quantile * Double(sorted.count)).rounded(.up)), 1)
                let exact = Double(sorted[rank - 1]) / 1_000
                let found = answer.figures.latencyMs?[name] ?? .nan
                errors[name] = abs(found - exact) / exact
                let prometheus = Self.prometheusEstimate(sorted, quantile: quantile) / 1_000
                worstPrometheus = max(worstPrometheus, abs(prometheus - exact) / exact)
            }
            worst = max(worst, errors.values.max() ?? .infinity)
            let p50 = Double(sorted[max(Int((0.5 * Double(sorted.count)).rounded(.up)), 1) - 1]) / 1_000
            let p99 = Double(sorted[max(Int((0.99 * Double(sorted.count)).rounded(.up)), 1) - 1]) / 1_000
            let prometheus99 = Self.prometheusEstimate(sorted, quantile: 0.99) / 1_000
            say(
                String(
                    format: "%-14@ %9d %10.2fms %11.3f%% %10.1fms %11.3f%% %10.1fms %11.1f%%", "accuracy-\(deployment)" as NSString,
                    answer.figures.requests, p50, 100 * (errors["p50"] ?? .nan), p99, 100 * (errors["p99"] ?? .nan), prometheus99,
                    100 * abs(prometheus99 - p99) / p99))
        }
        let sent = accuracyInstances * perSecond * 3
        say(
            String(
                format:
                    "worst p50/p95/p99 error: %.3f %% (target <= 1 %%: %@); Prometheus default buckets' worst: %.1f %% (%.0f times larger); requests counted %d of %d",
                100 * worst, worst <= 0.01 ? "met" : "NOT met", 100 * worstPrometheus, worstPrometheus / max(worst, 1e-9), counted, sent))
        say(
            String(
                format: "result phase=metrics-accuracy worst_error_pct=%.4f prometheus_worst_error_pct=%.2f counted=%d sent=%d", 100 * worst,
                100 * worstPrometheus, counted, sent))
    }

    // MARK: Throughput

    private func throughput(_ client: MQTTClient, _ aggregator: HTTPService) async throws {
        // One second of reports, encoded once and sent every second: 10 instances per agent, 20
        // requests each, latencies from 50 distinct histograms.
        var shapes: [String] = []
        for shape in 0..<50 {
            var source = Source(seed: UInt64(10_000 + shape))
            var histogram = DenseHistogram()
            for _ in 0..<20 { histogram.record(source.next()) }
            shapes.append(HdrHistogramV2.encodeBase64(histogram.sparse))
        }
        var messages: [Data] = []
        for agent in 0..<((instances + 9) / 10) {
            let figures = (0..<10).compactMap { slot -> AgentMessage.Telemetry.Instance? in
                let instance = agent * 10 + slot
                guard instance < instances else { return nil }
                return .init(
                    instanceID: "load-\(instance)", deployment: "load-\(instance % deployments)", version: "1.0.0", ready: true, requests: 20,
                    errors: 0,
                    latencyUs: shapes[instance % shapes.count], cpuCores: 0.3, cpuRequestedCores: 1, memoryBytes: 500_000_000,
                    memoryRequestedBytes: 1_000_000_000)
            }
            messages.append(try telemetry(agent: "load-agent-\(agent)", figures))
        }
        let batches = Self.batches(messages)

        let snapshotClient = try makeBenchClient(url: mqttURL, role: "snapshots")
        let snapshotRunner = Task { try await snapshotClient.run() }
        defer { snapshotRunner.cancel() }
        try await snapshotClient.waitUntilConnected(timeout: .seconds(10))
        let snapshots = try await snapshotClient.subscribe(to: Topic.everyDeploymentMetrics.path, qos: .atMostOnce, bufferCapacity: 1 << 20)
        let perSecond = Mutex<[Int: Int]>([:])
        let windowStart = now() + 3
        let counting = Task {
            for await _ in snapshots {
                let second = Int(now() - windowStart)
                perSecond.withLock { $0[second, default: 0] += 1 }
            }
        }
        defer { counting.cancel() }

        // Two seconds of warm-up, then the window.
        let stat = "/proc/\(aggregatorPID)/stat"
        var cpuAtStart: Double?
        var samplesAtStart = 0.0
        var behind = 0
        let end = windowStart + seconds
        var tick = now()
        while tick < end {
            if cpuAtStart == nil, tick >= windowStart {
                cpuAtStart = cpuSeconds(statPath: stat)
                samplesAtStart = try samplesCounted(aggregator)
            }
            try await publishBatches(batches, client)
            tick += 1
            if now() > tick { behind += 1 }
            try await sleep(until: tick)
        }
        let cpu = (cpuSeconds(statPath: stat) ?? .nan) - (cpuAtStart ?? .nan)
        let residentMB = Self.residentMegabytes(pid: aggregatorPID)
        try await Task.sleep(for: .seconds(2))
        let counted = try samplesCounted(aggregator) - samplesAtStart
        let seconds = Int(self.seconds)
        let snapshotCounts = perSecond.withLock { counts in (1..<seconds).map { counts[$0] ?? 0 } }
        let fullSeconds = snapshotCounts.filter { $0 >= deployments }.count

        let offered = Double(instances)
        say("")
        say(
            "throughput: \(instances) instances in \(deployments) deployments reporting every second (\(batches.count) batches a second), \(seconds) s"
        )
        say(
            String(
                format: "offered %.0f reports/s; counted %.0f in the window (%.0f/s); publisher late in %d of %d seconds", offered, counted,
                counted / self.seconds, behind, seconds))
        say(
            String(
                format:
                    "aggregator CPU: %.2f cores (%.1f µs per report); seconds with every deployment's snapshot: %d of %d (min %d, max %d a second)",
                cpu / self.seconds, 1e6 * cpu / max(counted, 1), fullSeconds, snapshotCounts.count, snapshotCounts.min() ?? 0,
                snapshotCounts.max() ?? 0))
        say(
            String(
                format: "aggregator resident memory: %.0f MB after %.0f s (the one-second slots fill over 5 minutes)", residentMB,
                now() - windowStart + 3))
        say(
            String(
                format: "target: %d instances on one core with snapshots every second: %@", instances,
                cpu / self.seconds <= 1 && fullSeconds == snapshotCounts.count && counted >= 0.99 * offered * self.seconds ? "met" : "NOT met"))
        say(
            String(
                format: "result phase=metrics-throughput instances=%d counted_per_s=%.0f cores=%.3f us_per_report=%.2f snapshot_seconds=%d/%d",
                instances,
                counted / self.seconds, cpu / self.seconds, 1e6 * cpu / max(counted, 1), fullSeconds, snapshotCounts.count))
    }

    // MARK: Shared

    private func telemetry(agent: String, _ figures: [AgentMessage.Telemetry.Instance]) throws -> Data {
        try Envelope(
            payload: AgentMessage.Telemetry(
                agentID: agent, siteID: "bench-site", intervalSeconds: 1, host: .init(cpuPercent: 10, memoryUsedBytes: 1 << 30), pipelines: [],
                instances: figures)
        ).encoded()
    }

    /// The messages in batches as the gateway makes them (``TelemetryBatch``'s limits).
    static func batches(_ messages: [Data]) -> [(payload: Data, count: Int)] {
        var batches: [(Data, Int)] = []
        var start = 0
        while start < messages.count {
            var end = start
            var bytes = 0
            while end < messages.count && end - start < TelemetryBatch.maximumMessages
                && (end == start || bytes + messages[end].count <= TelemetryBatch.maximumBytes)
            {
                bytes += messages[end].count
                end += 1
            }
            batches.append((TelemetryBatch.encode(Array(messages[start..<end])), end - start))
            start = end
        }
        return batches
    }

    private func publish(_ messages: [Data], _ client: MQTTClient) async throws {
        try await publishBatches(Self.batches(messages), client)
    }

    private func publishBatches(_ batches: [(payload: Data, count: Int)], _ client: MQTTClient) async throws {
        for batch in batches {
            try await client.publish(
                Topic.agentTelemetryEvents.path, payload: batch.payload, qos: .atMostOnce,
                properties: MQTTProperties(
                    contentType: "application/json", userProperties: [MQTTUserProperty(TelemetryBatch.countProperty, String(batch.count))]))
        }
    }

    /// VmRSS of `pid`, in megabytes.
    static func residentMegabytes(pid: Int32) -> Double {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }
        return (line?.split(separator: " ").dropFirst().first.flatMap { Double($0) } ?? .nan) / 1_024
    }

    /// The aggregator's count of instance reports, from its /metrics.
    private func samplesCounted(_ aggregator: HTTPService) throws -> Double {
        let text = String(decoding: try aggregator.get("/metrics").body, as: UTF8.self)
        let line = text.split(separator: "\n").first { $0.hasPrefix("metrics_aggregator_instance_samples_total") }
        return line.flatMap { $0.split(separator: " ").last }.flatMap { Double($0) } ?? 0
    }
}
