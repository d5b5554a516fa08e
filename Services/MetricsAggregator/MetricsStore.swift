import FleetContract
import Histograms

/// What the figures are added up for: each instance report counts once in each of its keys.
enum MetricsKey: Hashable, Sendable {
    case instance(String)
    case deployment(String)
    /// A deployment's instances of one model version: what canary analysis compares.
    case version(deployment: String, version: String)
    case server(String)
    case site(String)
}

/// One instance's report for one interval (about a second), decoded.
struct InstanceSample: Sendable {
    var instanceID: String
    var deployment: String
    var version: String
    var server: String
    var site: String?
    var ready: Bool
    /// Whether the agent measured the instance's requests (a process instance's it does not see).
    var measuresRequests = true
    var requests: Int
    var errors: Int
    var latencies: SparseHistogram
    var cpuCores: Double?
    var cpuRequested: Double?
    var memoryBytes: Double?
    var memoryRequested: Double?
    var gpuUtilization: Double?
    /// Requests in progress on average over the report's interval.
    var inFlight: Double?
}

/// Sums that add up across instances and seconds.
struct MetricSums: Sendable {
    /// Reports that measured requests: none means the rate is unknown, not 0.
    var requestSamples = 0
    var requests = 0
    var errors = 0
    var cpuCores = 0.0
    var cpuRequested = 0.0
    var cpuSamples = 0
    var memoryBytes = 0.0
    var memoryRequested = 0.0
    var memorySamples = 0
    var gpuUtilization = 0.0
    var gpuSamples = 0
    /// Request-seconds: each report's average in flight over its second.
    var inFlight = 0.0
    var inFlightSamples = 0

    mutating func add(_ sample: InstanceSample) {
        if sample.measuresRequests { requestSamples += 1 }
        requests += sample.requests
        errors += sample.errors
        if let cores = sample.cpuCores {
            cpuCores += cores
            cpuRequested += sample.cpuRequested ?? 0
            cpuSamples += 1
        }
        if let memory = sample.memoryBytes {
            memoryBytes += memory
            memoryRequested += sample.memoryRequested ?? 0
            memorySamples += 1
        }
        if let gpu = sample.gpuUtilization {
            gpuUtilization += gpu
            gpuSamples += 1
        }
        if let inFlight = sample.inFlight {
            self.inFlight += inFlight
            inFlightSamples += 1
        }
    }

    mutating func add(_ other: MetricSums) {
        requestSamples += other.requestSamples
        requests += other.requests
        errors += other.errors
        cpuCores += other.cpuCores
        cpuRequested += other.cpuRequested
        cpuSamples += other.cpuSamples
        memoryBytes += other.memoryBytes
        memoryRequested += other.memoryRequested
        memorySamples += other.memorySamples
        gpuUtilization += other.gpuUtilization
        gpuSamples += other.gpuSamples
        inFlight += other.inFlight
        inFlightSamples += other.inFlightSamples
    }
}

/// The rolling windows of one key: a slot per second for the last ``MetricsStore/fineSeconds``
/// and a slot per minute for the last hour, each with its sums and its merged latencies.
struct MetricSeries: Sendable {
    struct Slot: Sendable {
        /// The slot's start in whole seconds since 1970; a slot whose start is not the one a
        /// second maps to holds older data, and is reused.
        var start = Int64.min
        var sums = MetricSums()
        var latencies = SparseHistogram()
        /// Histograms received since the last compaction.
        var pending: [SparseHistogram] = []
    }

    var fine: [Slot]
    var coarse: [Slot]
    /// The second of the newest report.
    var newest = Int64.min
    /// The slots with pending histograms (fine, coarse), so that compaction touches only them.
    private var dirtyFine: [Int] = []
    private var dirtyCoarse: [Int] = []

    init(fineSeconds: Int, coarseMinutes: Int) {
        fine = Array(repeating: Slot(), count: fineSeconds)
        coarse = Array(repeating: Slot(), count: coarseMinutes)
    }

    mutating func add(_ sample: InstanceSample, second: Int64) {
        let fineIndex = Int(second % Int64(fine.count))
        if Self.add(sample, start: second, to: &fine[fineIndex]) { dirtyFine.append(fineIndex) }
        let minute = second - second % 60
        let coarseIndex = Int((minute / 60) % Int64(coarse.count))
        if Self.add(sample, start: minute, to: &coarse[coarseIndex]) { dirtyCoarse.append(coarseIndex) }
        newest = max(newest, second)
    }

    /// True when the slot's first pending histogram was added.
    private static func add(_ sample: InstanceSample, start: Int64, to slot: inout Slot) -> Bool {
        if slot.start != start { slot = Slot(start: start) }
        slot.sums.add(sample)
        guard !sample.latencies.isEmpty else { return false }
        slot.pending.append(sample.latencies)
        return slot.pending.count == 1
    }

    /// Merges the pending histograms of every slot into its own, with `scratch` (left empty).
    mutating func compact(using scratch: inout DenseHistogram) {
        for index in dirtyFine where !fine[index].pending.isEmpty { Self.compact(&fine[index], using: &scratch) }
        for index in dirtyCoarse where !coarse[index].pending.isEmpty { Self.compact(&coarse[index], using: &scratch) }
        dirtyFine.removeAll(keepingCapacity: true)
        dirtyCoarse.removeAll(keepingCapacity: true)
    }

    private static func compact(_ slot: inout Slot, using scratch: inout DenseHistogram) {
        scratch.add(slot.latencies)
        for histogram in slot.pending { scratch.add(histogram) }
        slot.latencies = scratch.sparse
        slot.pending = []
        scratch.reset()
    }
}

/// The aggregator's memory: every key's ``MetricSeries``, and what each instance last said.
///
/// Pure and single-threaded (the service holds it under a lock): every method takes the time
/// (`now`, seconds since 1970) it works at, so tests drive it second by second.
struct MetricsStore: Sendable {
    /// Seconds kept at one-second resolution: the longest current window (5 m) and the series
    /// with a step under a minute.
    static let fineSeconds = 300
    /// Minutes kept at one-minute resolution: the last hour.
    static let coarseMinutes = 60
    /// An instance silent for longer is stale: absent from the figures of the last seconds, and
    /// named as such.
    static let staleAfterSeconds = 3.0

    struct InstanceState: Sendable {
        var deployment: String
        var version: String
        var server: String
        var site: String?
        var ready: Bool
        /// When its last report arrived.
        var lastSeen: Double
    }

    private(set) var seriesByKey: [MetricsKey: MetricSeries] = [:]
    private(set) var instances: [String: InstanceState] = [:]
    private var scratch = DenseHistogram(layout: .latencyMicroseconds)

    init() {}

    /// Counts `sample` in the second `now` falls in.
    mutating func add(_ sample: InstanceSample, now: Double) {
        let second = Int64(now.rounded(.down))
        var keys: [MetricsKey] = [
            .instance(sample.instanceID), .deployment(sample.deployment), .version(deployment: sample.deployment, version: sample.version),
            .server(sample.server),
        ]
        if let site = sample.site { keys.append(.site(site)) }
        for key in keys {
            seriesByKey[key, default: MetricSeries(fineSeconds: Self.fineSeconds, coarseMinutes: Self.coarseMinutes)].add(sample, second: second)
        }
        instances[sample.instanceID] = InstanceState(
            deployment: sample.deployment, version: sample.version, server: sample.server, site: sample.site, ready: sample.ready, lastSeen: now)
    }

    /// Merges what arrived since the last call, and forgets keys with no data in the last hour.
    mutating func compact(now: Double) {
        let horizon = Int64(now) - Int64(Self.coarseMinutes * 60)
        for key in Array(seriesByKey.keys) {
            if seriesByKey[key]!.newest < horizon {
                seriesByKey[key] = nil
                continue
            }
            seriesByKey[key]!.compact(using: &scratch)
        }
        instances = instances.filter { $0.value.lastSeen >= Double(horizon) }
    }

    // MARK: Reading

    /// The figures of `key` over the `window` whole seconds before the current one; nil when the
    /// key has no data in the last hour.
    mutating func figures(_ key: MetricsKey, window: Int, now: Double) -> MetricsFigures? {
        guard let keySeries = seriesByKey[key] else { return nil }
        let current = Int64(now.rounded(.down))
        return figures(of: keySeries.fine, from: current - Int64(window), to: current, windowSeconds: window)
    }

    /// `key`'s figures for each step of `range` seconds ending at the current second (oldest
    /// first); steps of a minute or more over a range beyond the fine slots use the minute slots.
    mutating func series(_ key: MetricsKey, range: Int, step: Int, now: Double) -> [(end: Int64, figures: MetricsFigures)] {
        guard let keySeries = seriesByKey[key] else { return [] }
        let current = Int64(now.rounded(.down))
        let useCoarse = range > Self.fineSeconds
        let slots = useCoarse ? keySeries.coarse : keySeries.fine
        // Aligned to the step, so that points are the same from one call to the next.
        let alignedEnd = useCoarse ? current - current % 60 : current
        var points: [(end: Int64, figures: MetricsFigures)] = []
        var end = alignedEnd - Int64(range) + Int64(step)
        while end <= alignedEnd {
            points.append((end, figures(of: slots, from: end - Int64(step), to: end, windowSeconds: step)))
            end += Int64(step)
        }
        return points
    }

    /// Adds the slots that start in [from, to).
    private mutating func figures(of slots: [MetricSeries.Slot], from: Int64, to: Int64, windowSeconds: Int) -> MetricsFigures {
        var sums = MetricSums()
        for slot in slots where slot.start >= from && slot.start < to {
            sums.add(slot.sums)
            scratch.add(slot.latencies)
            for pending in slot.pending { scratch.add(pending) }
        }
        defer { scratch.reset() }
        var latency: MetricsFigures.Latency?
        if let values = scratch.values(atPercentiles: [50, 95, 99]), let mean = scratch.mean {
            latency = MetricsFigures.Latency(
                p50: Double(values[0]) / 1_000, p95: Double(values[1]) / 1_000, p99: Double(values[2]) / 1_000, mean: mean / 1_000)
        }
        let seconds = Double(max(windowSeconds, 1))
        return MetricsFigures(
            windowSeconds: windowSeconds, requests: sums.requests, requestsPerSecond: Double(sums.requests) / seconds, errors: sums.errors,
            errorRatio: sums.requests > 0 ? Double(sums.errors) / Double(sums.requests) : nil, latencyMs: latency,
            cpuCores: sums.cpuSamples > 0 ? sums.cpuCores / seconds : nil,
            cpuUtilization: sums.cpuRequested > 0 ? sums.cpuCores / sums.cpuRequested : nil,
            memoryBytes: sums.memorySamples > 0 ? sums.memoryBytes / Double(sums.memorySamples) : nil,
            memoryUtilization: sums.memoryRequested > 0 ? sums.memoryBytes / sums.memoryRequested : nil,
            gpuUtilization: sums.gpuSamples > 0 ? sums.gpuUtilization / Double(sums.gpuSamples) : nil, requestSamples: sums.requestSamples,
            inFlight: sums.inFlightSamples > 0 ? sums.inFlight / seconds : nil)
    }

    /// The deployments with data in the last hour.
    var deployments: [String] {
        seriesByKey.keys.compactMap { if case .deployment(let name) = $0 { name } else { nil } }.sorted()
    }

    /// The instances of `deployment` heard from in the last hour, by id.
    func instances(of deployment: String) -> [(id: String, state: InstanceState)] {
        instances.filter { $0.value.deployment == deployment }.map { ($0.key, $0.value) }.sorted { $0.id < $1.id }
    }

    /// `deployment`'s snapshot over the last `window` seconds.
    mutating func snapshot(of deployment: String, window: Int, now: Double) -> DeploymentMetricsSnapshot? {
        guard let overall = figures(.deployment(deployment), window: window, now: now) else { return nil }
        let members = instances(of: deployment)
        let fresh = members.filter { now - $0.state.lastSeen <= Self.staleAfterSeconds }
        let newest = members.map(\.state.lastSeen).max() ?? 0
        let versions = Set(members.map(\.state.version)).sorted().compactMap { version -> DeploymentMetricsSnapshot.Version? in
            guard let figures = figures(.version(deployment: deployment, version: version), window: window, now: now) else { return nil }
            let ofVersion = fresh.filter { $0.state.version == version }
            return .init(version: version, instances: ofVersion.count, readyInstances: ofVersion.filter(\.state.ready).count, figures: figures)
        }
        return DeploymentMetricsSnapshot(
            deployment: deployment, at: .init(timeIntervalSince1970: now), instances: fresh.count, readyInstances: fresh.filter(\.state.ready).count,
            newestDataAgeSeconds: max(now - newest, 0), staleAfterSeconds: Self.staleAfterSeconds, figures: overall, versions: versions)
    }
}
