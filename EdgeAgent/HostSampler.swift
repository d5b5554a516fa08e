import Foundation
import Synchronization

/// The host's CPU and memory use, from `/proc` (Linux). Shared by every agent of a process and
/// read at most once a second, so a thousand simulated agents do not read `/proc` a thousand times.
final class HostSampler: Sendable {
    struct Sample: Sendable {
        var cpuPercent: Double
        var memoryUsedBytes: Int64
    }

    private struct State {
        var last: Sample = Sample(cpuPercent: 0, memoryUsedBytes: 0)
        var takenAt: ContinuousClock.Instant?
        var cpuTimes: (busy: Double, total: Double)?
    }

    private let state = Mutex(State())

    func sample() -> Sample {
        state.withLock { state in
            let now = ContinuousClock.now
            if let takenAt = state.takenAt, now - takenAt < .seconds(1) { return state.last }
            state.takenAt = now
            if let times = Self.cpuTimes() {
                if let previous = state.cpuTimes, times.total > previous.total {
                    state.last.cpuPercent = min(100, max(0, 100 * (times.busy - previous.busy) / (times.total - previous.total)))
                }
                state.cpuTimes = times
            }
            if let used = Self.memoryUsed() { state.last.memoryUsedBytes = used }
            return state.last
        }
    }

    /// Busy and total jiffies of all cores: the first line of /proc/stat.
    private static func cpuTimes() -> (busy: Double, total: Double)? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8), let line = text.split(separator: "\n").first else { return nil }
        let fields = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard fields.count >= 5 else { return nil }
        let idle = fields[3] + fields[4]  // idle + iowait
        let total = fields.reduce(0, +)
        return (total - idle, total)
    }

    /// MemTotal − MemAvailable from /proc/meminfo, in bytes.
    private static func memoryUsed() -> Int64? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        var total: Int64?
        var available: Int64?
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, let kilobytes = Int64(parts[1]) else { continue }
            if parts[0] == "MemTotal:" { total = kilobytes * 1024 }
            if parts[0] == "MemAvailable:" { available = kilobytes * 1024 }
        }
        guard let total, let available else { return nil }
        return total - available
    }
}
