import DeviceProtocol
import Foundation
import Histograms
import Synchronization

/// What one deployment instance did since the agent last collected its figures (every second):
/// requests, errors and their latencies in an HdrHistogram, and its use of the CPU and memory.
///
/// The built-in server records each request it answers, and when it starts, so that the requests
/// in flight are integrated over time (their average is the interval's request-seconds over its
/// length, counting requests still running at its end); its CPU use is the time its requests
/// took (the synthetic model's latency counts as work, so that its CPU follows its load, as a
/// real model's does), and its memory, shared with the agent's process, is not measured. A
/// process instance's requests go to its own port and are not seen here: its CPU time and
/// resident memory are read from `/proc/<pid>`.
final class InstanceMeter: Sendable {
    private struct Interval {
        var latencies = DenseHistogram(layout: .latencyMicroseconds)
        var requests = 0
        var errors = 0
        var busy = Duration.zero
        var started = ContinuousClock.now
        /// Requests in progress now, and the request-time they have accumulated this interval.
        var inFlight = 0
        var inFlightSince = ContinuousClock.now
        var inFlightArea = Duration.zero

        /// Adds the time since the last change at the current count, as of `now` (an instant read
        /// before a change that took the lock first adds nothing, rather than a negative time).
        mutating func accumulate(_ now: ContinuousClock.Instant) {
            guard now > inFlightSince else { return }
            inFlightArea += (now - inFlightSince) * inFlight
            inFlightSince = now
        }
        /// The process's CPU seconds at the start of the interval.
        var processCPUSeconds: Double?
    }

    private let interval = Mutex(Interval())
    private let processID = Atomic<Int32>(0)

    /// A request starts; ``record(latency:failed:)`` ends it.
    func begin() {
        interval.withLock {
            $0.accumulate(ContinuousClock.now)
            $0.inFlight += 1
        }
    }

    /// Counts a request answered in `latency` (`failed`: a 5xx or a failed inference), begun with
    /// ``begin()``.
    func record(latency: Duration, failed: Bool) {
        let microseconds = max(latency.components.seconds * 1_000_000 + latency.components.attoseconds / 1_000_000_000_000, 0)
        interval.withLock {
            $0.accumulate(ContinuousClock.now)
            $0.inFlight = max($0.inFlight - 1, 0)
            $0.latencies.record(UInt64(microseconds))
            $0.requests += 1
            if failed { $0.errors += 1 }
            $0.busy += latency
        }
    }

    /// The process the instance runs now (0: none), whose CPU and memory are sampled.
    func watch(processID pid: Int32) {
        processID.store(pid, ordering: .releasing)
        interval.withLock { $0.processCPUSeconds = pid > 0 ? Self.cpuSeconds(of: pid) : nil }
    }

    /// The figures since the last call, as the telemetry carries them; the next interval starts now.
    func collect(definition: DesiredState.Instance, ready: Bool) -> AgentMessage.Telemetry.Instance {
        let pid = processID.load(ordering: .acquiring)
        let now = ContinuousClock.now
        let processCPU = pid > 0 ? Self.cpuSeconds(of: pid) : nil
        let memory = pid > 0 ? Self.residentBytes(of: pid) : nil
        return interval.withLock { interval in
            let elapsed = now - interval.started
            let seconds = max(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18, 0.001)
            let figures: AgentMessage.Telemetry.Instance
            if definition.runtime.kind == .process {
                var cores: Double?
                if let processCPU, let before = interval.processCPUSeconds { cores = max(processCPU - before, 0) / seconds }
                interval.processCPUSeconds = processCPU
                figures = .init(
                    instanceID: definition.instanceID, deployment: definition.deployment, version: definition.version, ready: ready, requests: nil,
                    errors: nil, latencyUs: nil, cpuCores: cores.map { min($0, 1024) }, cpuRequestedCores: definition.resources.cpuCores,
                    memoryBytes: memory, memoryRequestedBytes: definition.resources.memoryBytes)
            } else {
                interval.accumulate(now)
                let area = Double(interval.inFlightArea.components.seconds) + Double(interval.inFlightArea.components.attoseconds) / 1e18
                let busy = Double(interval.busy.components.seconds) + Double(interval.busy.components.attoseconds) / 1e18
                figures = .init(
                    instanceID: definition.instanceID, deployment: definition.deployment, version: definition.version, ready: ready,
                    requests: interval.requests, errors: interval.errors,
                    latencyUs: interval.requests > 0 ? HdrHistogramV2.encodeBase64(interval.latencies.sparse) : nil,
                    cpuCores: min(busy / seconds, 1024), cpuRequestedCores: definition.resources.cpuCores, memoryBytes: nil,
                    memoryRequestedBytes: definition.resources.memoryBytes, inFlight: min(area / seconds, 1_000_000))
            }
            interval.latencies.reset()
            interval.requests = 0
            interval.errors = 0
            interval.busy = .zero
            interval.inFlightArea = .zero
            interval.started = now
            return figures
        }
    }

    /// User and system CPU seconds of `pid` (`/proc/<pid>/stat` fields 14 and 15); nil once it is gone.
    private static func cpuSeconds(of pid: Int32) -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return nil }
        // After the command's closing parenthesis: state is field 3, utime 14, stime 15.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Resident memory of `pid` (`/proc/<pid>/statm`, second field, in pages); nil once it is gone.
    private static func residentBytes(of pid: Int32) -> Int64? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/statm", encoding: .utf8) else { return nil }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int64(fields[1]) else { return nil }
        return pages * Int64(sysconf(Int32(_SC_PAGESIZE)))
    }
}
