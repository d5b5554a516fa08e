/// When to send an agent that is behind its desired generation its document again: first when
/// it is found behind (its document was sent ``DeliveryTracker/reportGraceSeconds`` ago without a
/// report), then after `first`, twice that, and so on up to `cap` apart, as long as it stays
/// behind the same generation. A new generation starts over, and so does an agent that comes
/// back online.
///
/// Pure state driven with explicit instants, so that the backoff is unit-tested without a clock.
struct RepublishSchedule: Sendable {
    var first: Duration = .seconds(5)
    var cap: Duration = .seconds(300)

    private struct Entry {
        var generation: Int64
        var attempts: Int
        var dueAt: ContinuousClock.Instant
        /// Came back online since it was last sent: due at once.
        var cameOnline = false
    }

    private var agents: [String: Entry] = [:]

    /// Of the agents behind now, those due at `now`, each with its next time set. Agents no
    /// longer behind are forgotten.
    mutating func due(_ behind: [PostgresOperationStore.AgentBehind], at now: ContinuousClock.Instant) -> [String] {
        var due: [String] = []
        var next: [String: Entry] = [:]
        next.reserveCapacity(behind.count)
        for agent in behind {
            var entry =
                agents[agent.agentID].flatMap { $0.generation == agent.generation ? $0 : nil }
                ?? Entry(generation: agent.generation, attempts: 0, dueAt: now)
            if entry.cameOnline || now >= entry.dueAt {
                due.append(agent.agentID)
                entry.cameOnline = false
                entry.dueAt = now + min(first * (1 << min(entry.attempts, 20)), cap)
                entry.attempts += 1
            }
            next[agent.agentID] = entry
        }
        agents = next
        return due
    }

    /// The agent is back online: due at once if it is still behind.
    mutating func cameOnline(_ agentID: String) {
        agents[agentID]?.cameOnline = true
    }

    /// How many agents are behind, as last seen.
    var count: Int { agents.count }
}
