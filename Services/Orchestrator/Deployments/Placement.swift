import Foundation

/// Where a deployment's instances run: pure, so that the rules are tested without a fleet.
///
/// The rules (docs/orchestrator.md, "Placement"): an instance goes to an online server with the
/// free CPU, memory and GPUs of the asked type it needs, counting what every instance already
/// placed there holds. Among those, the one running the fewest instances of this deployment
/// (spread), then the most free CPU, then the lowest id. An instance no server can take stays
/// pending with a reason a person can act on, naming the server that came closest.
enum Placement {
    /// A server as placement sees it.
    struct Server: Sendable, Equatable {
        var id: String
        var online: Bool
        var cpuCores: Double
        var memoryBytes: Int64
        /// GPUs by model.
        var gpus: [String: Int]
    }

    /// What one instance holds.
    struct Demand: Sendable, Equatable {
        var cpuCores: Double
        var memoryBytes: Int64
        var gpuCount: Int
        var gpuType: String?

        init(cpuCores: Double, memoryBytes: Int64, gpuCount: Int = 0, gpuType: String? = nil) {
            self.cpuCores = cpuCores
            self.memoryBytes = memoryBytes
            self.gpuCount = gpuCount
            self.gpuType = gpuType
        }

        init(_ resources: DeploymentSpec.Resources) {
            self.init(cpuCores: resources.cpuCores, memoryBytes: resources.memoryBytes, gpuCount: resources.gpuCount, gpuType: resources.gpuType)
        }
    }

    /// What is held on a server already.
    struct Usage: Sendable, Equatable {
        var cpuCores: Double = 0
        var memoryBytes: Int64 = 0
        var gpus: [String: Int] = [:]

        mutating func add(_ demand: Demand) {
            cpuCores += demand.cpuCores
            memoryBytes += demand.memoryBytes
            if let type = demand.gpuType, demand.gpuCount > 0 { gpus[type, default: 0] += demand.gpuCount }
        }
    }

    struct Result: Sendable, Equatable {
        /// The server of each new instance, in order.
        var servers: [String]
        /// Instances no server could take.
        var unplaced: Int
        /// Why, when `unplaced > 0`.
        var reason: String?
    }

    /// Places `count` new instances of `demand`. `used` is what every placed instance holds per
    /// server; `spread` counts this deployment's instances per server already.
    static func place(count: Int, demand: Demand, servers: [Server], used: [String: Usage], spread: [String: Int] = [:]) -> Result {
        var used = used
        var spread = spread
        var placed: [String] = []
        let online = servers.filter(\.online)
        for _ in 0..<count {
            let fitting = online.filter { fits(demand, on: $0, used: used[$0.id] ?? Usage()) }
            guard
                let best = fitting.min(by: { a, b in
                    let (sa, sb) = (spread[a.id] ?? 0, spread[b.id] ?? 0)
                    if sa != sb { return sa < sb }
                    let (fa, fb) = (a.cpuCores - (used[a.id]?.cpuCores ?? 0), b.cpuCores - (used[b.id]?.cpuCores ?? 0))
                    if fa != fb { return fa > fb }
                    return a.id < b.id
                })
            else {
                return Result(servers: placed, unplaced: count - placed.count, reason: reason(demand, servers: servers, used: used))
            }
            placed.append(best.id)
            used[best.id, default: Usage()].add(demand)
            spread[best.id, default: 0] += 1
        }
        return Result(servers: placed, unplaced: 0, reason: nil)
    }

    static func fits(_ demand: Demand, on server: Server, used: Usage) -> Bool {
        let free = (cpu: server.cpuCores - used.cpuCores, memory: server.memoryBytes - used.memoryBytes)
        guard demand.cpuCores <= free.cpu + 1e-9, demand.memoryBytes <= free.memory else { return false }
        guard demand.gpuCount > 0, let type = demand.gpuType else { return true }
        return (server.gpus[type] ?? 0) - (used.gpus[type] ?? 0) >= demand.gpuCount
    }

    /// Why no server can take one more instance, naming the closest one.
    static func reason(_ demand: Demand, servers: [Server], used: [String: Usage]) -> String {
        let online = servers.filter(\.online)
        guard !online.isEmpty else {
            return servers.isEmpty ? "the fleet has no servers" : "no server is online (\(servers.count) known, all offline)"
        }
        func free(_ server: Server) -> (cpu: Double, memory: Int64, gpus: Int) {
            let held = used[server.id] ?? Usage()
            let gpus = demand.gpuType.map { (server.gpus[$0] ?? 0) - (held.gpus[$0] ?? 0) } ?? 0
            return (server.cpuCores - held.cpuCores, server.memoryBytes - held.memoryBytes, gpus)
        }
        if demand.gpuCount > 0, let type = demand.gpuType {
            let best = online.max { (free($0).gpus, $1.id) < (free($1).gpus, $0.id) }!
            let bestFree = free(best).gpus
            if bestFree < demand.gpuCount {
                return "no online server has \(demand.gpuCount) free \(type) GPU(s); best: \(best.id) with \(max(0, bestFree))"
            }
        }
        let best = online.max { (free($0).cpu, $1.id) < (free($1).cpu, $0.id) }!
        let room = free(best)
        return "no online server has \(format(demand.cpuCores)) free CPU cores and \(gigabytes(demand.memoryBytes)) GB of memory"
            + (demand.gpuCount > 0 ? " beside its GPUs" : "")
            + "; best: \(best.id) with \(format(max(0, room.cpu))) cores and \(gigabytes(max(0, room.memory))) GB"
    }

    private static func format(_ value: Double) -> String {
        value.rounded() == value ? String(Int(value)) : String(format: "%.2f", value)
    }

    private static func gigabytes(_ bytes: Int64) -> String { format((Double(bytes) / 1_073_741_824 * 100).rounded() / 100) }
}
