import DeviceProtocol
import FleetContract
import Foundation
import Histograms
import TestSupport
import Testing

@testable import MetricsAggregator

private let start = 1_800_000_000.0

private func sample(
    _ instance: String, deployment: String = "people", version: String = "1.0.0", server: String = "edge-1", site: String? = "plant",
    requests: Int = 0, errors: Int = 0, latencies: [UInt64] = [], cpu: Double? = nil, ready: Bool = true
) -> InstanceSample {
    var histogram = DenseHistogram()
    for value in latencies { histogram.record(value) }
    return InstanceSample(
        instanceID: instance, deployment: deployment, version: version, server: server, site: site, ready: ready, requests: requests,
        errors: errors, latencies: histogram.sparse, cpuCores: cpu, cpuRequested: cpu.map { _ in 1 }, memoryBytes: nil, memoryRequested: nil,
        gpuUtilization: nil)
}

@Suite("Metrics store: windows, versions, staleness")
struct MetricsStoreTests {
    @Test("a window adds up the whole seconds before the current one: rate, errors, percentiles of every request")
    func window() throws {
        var store = MetricsStore()
        // Two instances, 10 seconds: a fast one (1 ms, 10 requests a second) and a slow one (10
        // ms, 5 a second, one error each second).
        for second in 0..<10 {
            let now = start + Double(second) + 0.5
            store.add(sample("a", requests: 10, latencies: Array(repeating: 1_000, count: 10), cpu: 0.5), now: now)
            store.add(sample("b", server: "edge-2", requests: 5, errors: 1, latencies: Array(repeating: 10_000, count: 5), cpu: 0.25), now: now)
            store.compact(now: now)
        }
        let now = start + 10.2
        let figuresFound = store.figures(.deployment("people"), window: 10, now: now)
        let figures = try #require(figuresFound)
        #expect(figures.requests == 150 && figures.requestsPerSecond == 15 && figures.errors == 10)
        #expect(figures.errorRatio == 10.0 / 150)
        let latency = try #require(figures.latencyMs)
        // 100 of 150 at 1 ms: p50 is 1 ms, p95 and p99 10 ms (within HdrHistogram's 0.1 %).
        #expect(abs(latency.p50 - 1) < 0.002 && abs(latency.p95 - 10) < 0.011 && abs(latency.p99 - 10) < 0.011, "\(latency)")
        // 0.75 cores used on average of 2 requested.
        #expect(figures.cpuCores == 0.75 && figures.cpuUtilization == 0.375)
        #expect(figures.memoryUtilization == nil && figures.gpuUtilization == nil, "nothing reported them: absent, not 0")

        // Per instance, server and site.
        #expect(store.figures(.instance("b"), window: 10, now: now)?.requests == 50)
        #expect(store.figures(.server("edge-1"), window: 10, now: now)?.requests == 100)
        #expect(store.figures(.site("plant"), window: 10, now: now)?.requests == 150)
        // A shorter window: the last 2 seconds only.
        #expect(store.figures(.deployment("people"), window: 2, now: now)?.requests == 30)
        // The current second is left out until it is over.
        store.add(sample("a", requests: 1000), now: now)
        #expect(store.figures(.deployment("people"), window: 10, now: now)?.requests == 150)
        #expect(store.figures(.deployment("people"), window: 10, now: now + 1)?.requests == 1135)
        #expect(store.figures(.deployment("nobody"), window: 10, now: now) == nil)
    }

    @Test("per version: a canary's errors and latency apart from the stable version's")
    func versions() throws {
        var store = MetricsStore()
        for second in 0..<5 {
            let now = start + Double(second)
            store.add(sample("stable-1", requests: 90, latencies: Array(repeating: 2_000, count: 90)), now: now)
            store.add(sample("canary-1", version: "2.0.0", requests: 10, errors: 2, latencies: Array(repeating: 6_000, count: 10)), now: now)
        }
        let snapshotFound = store.snapshot(of: "people", window: 5, now: start + 5)
        let snapshot = try #require(snapshotFound)
        #expect(snapshot.figures.requests == 500 && snapshot.instances == 2 && snapshot.readyInstances == 2)
        let byVersion = Dictionary(uniqueKeysWithValues: snapshot.versions.map { ($0.version, $0) })
        #expect(byVersion["2.0.0"]?.figures.errorRatio == 0.2 && byVersion["1.0.0"]?.figures.errorRatio == 0)
        #expect(
            abs((byVersion["2.0.0"]?.figures.latencyMs?.p99 ?? 0) - 6) < 0.01 && abs((byVersion["1.0.0"]?.figures.latencyMs?.p99 ?? 0) - 2) < 0.01)
        #expect(byVersion["2.0.0"]?.instances == 1)
    }

    @Test("an instance that stops reporting is absent from the rate and named stale; the snapshot says how old the data is")
    func stale() throws {
        var store = MetricsStore()
        for second in 0..<20 {
            let now = start + Double(second)
            store.add(sample("a", requests: 10), now: now)
            if second < 10 { store.add(sample("b", requests: 10, ready: false), now: now) }
        }
        // At 20.5 s, b's last report is 10.5 s old: the last 5 seconds have a's requests only.
        let now = start + 20.5
        #expect(store.figures(.deployment("people"), window: 5, now: now)?.requestsPerSecond == 10)
        let snapshotFound = store.snapshot(of: "people", window: 5, now: now)
        let snapshot = try #require(snapshotFound)
        #expect(snapshot.instances == 1 && snapshot.readyInstances == 1, "b is stale: not counted")
        #expect(abs(snapshot.newestDataAgeSeconds - 1.5) < 1e-9)
        // Nobody reporting: the age grows, the rate is that of the seconds that had data.
        let laterFound = store.snapshot(of: "people", window: 5, now: start + 60)
        let later = try #require(laterFound)
        #expect(later.instances == 0 && later.newestDataAgeSeconds == 41 && later.figures.requests == 0 && later.figures.latencyMs == nil)
    }

    @Test("series: steps of the fine slots, and of the minute slots over the last hour")
    func series() throws {
        var store = MetricsStore()
        // 30 minutes, one request per second, 1 ms each, from minute 0.
        for second in 0..<1_800 {
            store.add(sample("a", requests: 1, latencies: [1_000]), now: start + Double(second))
            if second % 60 == 59 { store.compact(now: start + Double(second)) }
        }
        let now = start + 1_800.5
        let fine = store.series(.deployment("people"), range: 60, step: 10, now: now)
        #expect(fine.count == 6 && fine.allSatisfy { $0.figures.requests == 10 }, "\(fine.map(\.figures.requests))")
        #expect(fine.last?.end == Int64(start) + 1_800)
        let coarse = store.series(.deployment("people"), range: 3_600, step: 600, now: now)
        #expect(coarse.count == 6)
        // The first three steps are before any data; the last three hold 10 minutes each.
        #expect(coarse.map(\.figures.requests) == [0, 0, 0, 600, 600, 600], "\(coarse.map(\.figures.requests))")
        #expect(coarse.last.map { abs(($0.figures.latencyMs?.p99 ?? 0) - 1) < 0.002 } == true)
    }

    @Test("request figures of instances whose requests are not measured are unknown, not 0")
    func unmeasuredRequests() throws {
        var store = MetricsStore()
        var process = sample("p", deployment: "onnx", cpu: 0.5)
        process.measuresRequests = false
        store.add(process, now: start)
        store.add(sample("b", requests: 3, latencies: [1_000, 1_000, 1_000]), now: start)
        #expect(store.figures(.deployment("onnx"), window: 1, now: start + 1)?.requestSamples == 0)
        #expect(store.figures(.deployment("people"), window: 1, now: start + 1)?.requestSamples == 1)
    }

    @Test("keys without data for an hour are forgotten")
    func expiry() {
        var store = MetricsStore()
        store.add(sample("a", requests: 1), now: start)
        store.compact(now: start + 3_000)
        #expect(store.figures(.instance("a"), window: 10, now: start + 3_000) != nil)
        store.compact(now: start + 3_700)
        #expect(store.figures(.instance("a"), window: 10, now: start + 3_700) == nil && store.deployments.isEmpty)
    }
}

@Suite("Aggregator: agents' figures as the store counts them")
struct AggregatorSampleTests {
    @Test("an instance's telemetry becomes a sample; a histogram that does not decode or disagrees with the count is refused")
    func samples() throws {
        var histogram = DenseHistogram()
        for value: UInt64 in [1_000, 2_000, 3_000] { histogram.record(value) }
        let encoded = HdrHistogramV2.encodeBase64(histogram.sparse)
        let figures = AgentMessage.Telemetry.Instance(
            instanceID: "people-1", deployment: "people", version: "1.0.0", ready: true, requests: 3, errors: 1, latencyUs: encoded,
            cpuCores: 0.5, cpuRequestedCores: 2, memoryBytes: 1_000, memoryRequestedBytes: 4_000)
        let sample = try Aggregator.sample(figures, agent: "edge-1", site: "plant")
        #expect(sample.requests == 3 && sample.latencies.totalCount == 3 && sample.server == "edge-1" && sample.site == "plant")
        #expect(sample.cpuRequested == 2 && sample.memoryRequested == 4_000)

        var wrongCount = figures
        wrongCount.requests = 4
        #expect(throws: SampleMismatch.self) { try Aggregator.sample(wrongCount, agent: "edge-1", site: nil) }
        var moreErrors = figures
        moreErrors.errors = 5
        #expect(throws: SampleMismatch.self) { try Aggregator.sample(moreErrors, agent: "edge-1", site: nil) }
        var garbage = figures
        garbage.latencyUs = "AAAAAAAA"
        #expect(throws: HdrHistogramV2.DecodingError.self) { try Aggregator.sample(garbage, agent: "edge-1", site: nil) }
    }

    @Test("the REST durations: seconds, minutes, hours; anything else refused")
    func durations() {
        #expect(MetricsAPI.parseDuration("10s") == 10 && MetricsAPI.parseDuration("5m") == 300 && MetricsAPI.parseDuration("1h") == 3_600)
        for bad in ["", "s", "0s", "-1m", "1d", "1.5m", "10", "m5"] { #expect(MetricsAPI.parseDuration(bad) == nil, "\(bad)") }
    }
}
