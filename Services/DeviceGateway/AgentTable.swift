import Foundation

/// A point in time, twice: monotonic seconds for timeouts and rates (immune to clock steps), and
/// the wall clock for what people and other services read.
struct Moment: Sendable {
    var monotonic: Double
    var wall: Date

    static func now() -> Moment {
        let elapsed = ContinuousClock.now - Moment.origin
        return Moment(
            monotonic: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
            wall: Date()
        )
    }

    private static let origin = ContinuousClock.now
}

/// A change of an agent's presence that the gateway announces.
enum PresenceChange: String, Sendable, Equatable {
    case online
    case offline
}

/// What one gateway replica knows about every agent it has heard from: presence, last seen,
/// message rates, the per-agent rate limit, and the generations applied and published.
///
/// Only valid messages make an entry (the relay validates before it admits), and the table is
/// bounded twice: it holds at most ``Limits/capacity`` agents, and it forgets an agent that is
/// offline, that this replica never had a hello from and that has no desired state after
/// ``Limits/forgetAfter`` seconds. Hellos are shared between replicas, so another replica may
/// hold an agent's hello; presence and heartbeats reach every replica, so an online agent is
/// never forgotten, and one that comes back is an entry again at its first message.
///
/// Pure state, driven by the relay with explicit moments, so that its rules are unit-tested
/// without a broker or a clock.
struct AgentTable: Sendable {
    struct Limits: Sendable {
        /// Sustained inbound messages per second per agent (token bucket refill).
        var rate: Double
        /// Messages an agent may send at once (bucket size).
        var burst: Double
        /// Offline after this long without a heartbeat (or any other message).
        var heartbeatTimeout: Double
        /// Agents the table holds at most; one first heard of when it is full is refused.
        var capacity = GatewayConfiguration.defaults.maximumAgents
        /// Seconds an offline agent without a hello here (nor a desired state) is remembered.
        var forgetAfter = GatewayConfiguration.defaults.forgetAfter
    }

    /// What ``AgentTable/admit(_:at:)`` decided about a message.
    enum Admission: Sendable, Equatable {
        case admitted
        /// Over the agent's rate limit.
        case rateLimited
        /// The agent is new and the table is full.
        case refused
    }

    /// One agent's line, as `GET /v1/agents` shows it.
    struct Summary: Sendable, Equatable {
        var agentID: String
        var online: Bool
        var lastSeen: Date
        var appliedGeneration: Int?
        var desiredGeneration: Int?
        var messagesPerSecond: Double
        var received: Int
        var dropped: Int
    }

    private struct Entry {
        var online = false
        /// Whether the state was ever announced or learned; a new entry's first presence is news.
        var known = false
        var lastAlive: Double
        var lastSeen: Date
        /// When the agent was last marked offline. A message received before that, which another
        /// worker handles after it (the last telemetry before a last will), is no news of life.
        var offlineSince = -Double.infinity
        var tokens: Double
        var tokensAt: Double
        var appliedGeneration: Int?
        var desiredGeneration: Int?
        /// This replica handled a valid hello from the agent: it is kept while offline.
        var greeted = false
        var received = 0
        var dropped = 0
        /// Messages per second over the last ``AgentTable/rateWindow`` seconds: one bucket per second.
        var buckets = [Int](repeating: 0, count: AgentTable.rateWindow)
        var bucketSecond = 0
    }

    static let rateWindow = 60

    let limits: Limits
    private var entries: [String: Entry] = [:]
    /// Agents refused because the table was full, since the start.
    private(set) var refusedCount = 0

    init(limits: Limits) {
        self.limits = limits
    }

    var count: Int { entries.count }
    var onlineCount: Int { entries.values.count(where: \.online) }

    /// Runs `body` on the agent's entry where it is stored, made first if the agent is new and
    /// the table has room; nil (and counted) when it has none.
    /// In place: copying an entry out and back would also copy its buckets for each message.
    private mutating func withEntry<T>(_ agentID: String, at moment: Moment, _ body: (inout Entry) -> T) -> T? {
        if entries[agentID] == nil {
            guard entries.count < limits.capacity else {
                refusedCount += 1
                return nil
            }
            entries[agentID] = Entry(lastAlive: moment.monotonic, lastSeen: moment.wall, tokens: limits.burst, tokensAt: moment.monotonic)
        }
        return body(&entries[agentID]!)
    }

    /// Counts a valid message from `agentID` and takes a token for it. Anything but
    /// ``Admission/admitted`` means the message is to be dropped.
    mutating func admit(_ agentID: String, at moment: Moment) -> Admission {
        let limits = limits
        return withEntry(agentID, at: moment) { entry in Self.admit(&entry, at: moment, limits: limits) ? .admitted : .rateLimited } ?? .refused
    }

    private static func admit(_ entry: inout Entry, at moment: Moment, limits: Limits) -> Bool {
        entry.received += 1
        let second = Int(moment.monotonic)
        if second != entry.bucketSecond {
            // Clear the buckets of the seconds that passed without a message.
            for skipped in (entry.bucketSecond + 1)...max(entry.bucketSecond + 1, min(second, entry.bucketSecond + Self.rateWindow)) {
                entry.buckets[skipped % Self.rateWindow] = 0
            }
            entry.bucketSecond = second
        }
        entry.buckets[second % Self.rateWindow] += 1
        entry.tokens = min(limits.burst, entry.tokens + (moment.monotonic - entry.tokensAt) * limits.rate)
        entry.tokensAt = moment.monotonic
        guard entry.tokens >= 1 else {
            entry.dropped += 1
            return false
        }
        entry.tokens -= 1
        return true
    }

    /// A valid message from the agent: it is alive. Returns `.online` when that is news.
    mutating func markAlive(_ agentID: String, at moment: Moment) -> PresenceChange? {
        withEntry(agentID, at: moment) { entry -> PresenceChange? in
            guard moment.monotonic >= entry.offlineSince else { return nil }
            entry.lastAlive = max(entry.lastAlive, moment.monotonic)
            entry.lastSeen = max(entry.lastSeen, moment.wall)
            guard !entry.online || !entry.known else { return nil }
            entry.online = true
            entry.known = true
            return .online
        } ?? nil
    }

    /// Whether the table has an entry for `agentID`.
    func knows(_ agentID: String) -> Bool { entries[agentID] != nil }

    /// The agent said it is offline (or its last will did). Returns `.offline` when that is news.
    mutating func markOffline(_ agentID: String, at moment: Moment) -> PresenceChange? {
        withEntry(agentID, at: moment) { entry -> PresenceChange? in
            guard entry.online || !entry.known else { return nil }
            entry.online = false
            entry.known = true
            entry.offlineSince = moment.monotonic
            return .offline
        } ?? nil
    }

    /// The online agents silent for longer than the heartbeat timeout, now marked offline.
    ///
    /// `lastBacklog` is the last moment the gateway's own inbound queues were behind or dropped
    /// messages: an agent's heartbeat may have been among them, so silence counts from then at
    /// the earliest, and no agent is declared silent while the gateway is behind.
    mutating func expire(at moment: Moment, lastBacklog: Double = -.infinity) -> [String] {
        guard moment.monotonic - lastBacklog > limits.heartbeatTimeout else { return [] }
        var expired: [String] = []
        for (agentID, entry) in entries where entry.online && moment.monotonic - entry.lastAlive > limits.heartbeatTimeout {
            entries[agentID]?.online = false
            entries[agentID]?.offlineSince = moment.monotonic
            expired.append(agentID)
        }
        return expired.sorted()
    }

    /// Removes the agents offline for longer than ``Limits/forgetAfter`` that this replica never
    /// had a hello from and has no desired state for (whose generation is the floor of the next);
    /// returns how many.
    mutating func forget(at moment: Moment) -> Int {
        let forgetAfter = limits.forgetAfter
        let forgotten = entries.compactMap { id, entry in
            entry.online || entry.greeted || entry.desiredGeneration != nil
                || moment.monotonic - max(entry.lastAlive, entry.offlineSince) <= forgetAfter ? nil : id
        }
        for id in forgotten { entries[id] = nil }
        // A flood of ids leaves the storage of its peak behind: give it back once most is free.
        if !forgotten.isEmpty && entries.capacity > 4 * max(entries.count, 1024) {
            var smaller = [String: Entry](minimumCapacity: entries.count)
            for (id, entry) in entries { smaller[id] = entry }
            entries = smaller
        }
        return forgotten.count
    }

    /// A valid hello from the agent reached this replica: it is kept while offline.
    mutating func noteHello(_ agentID: String) {
        entries[agentID]?.greeted = true
    }

    mutating func noteApplied(_ agentID: String, generation: Int) {
        entries[agentID]?.appliedGeneration = generation
    }

    /// The generation on the agent's retained desired-state topic (seen on the topic itself, so
    /// every replica learns what any replica published). False when the agent is new and the
    /// table is full.
    @discardableResult
    mutating func noteDesired(_ agentID: String, generation: Int, at moment: Moment) -> Bool {
        withEntry(agentID, at: moment) { entry in entry.desiredGeneration = max(entry.desiredGeneration ?? 0, generation) } != nil
    }

    func desiredGeneration(of agentID: String) -> Int? { entries[agentID]?.desiredGeneration }

    func isOnline(_ agentID: String) -> Bool { entries[agentID]?.online ?? false }

    func summary(of agentID: String, at moment: Moment) -> Summary? {
        entries[agentID].map { Self.summarise(agentID, $0, at: moment) }
    }

    /// Every agent heard from, by id.
    func summaries(at moment: Moment) -> [Summary] {
        page(after: nil, limit: .max, online: nil, at: moment).agents
    }

    /// The first `limit` agents by id after `after` (all when nil) whose presence is `online`
    /// (any when nil), and whether more follow.
    func page(after: String?, limit: Int, online: Bool?, at moment: Moment) -> (agents: [Summary], more: Bool) {
        var ids = entries.compactMap { id, entry in
            (after.map { id > $0 } ?? true) && (online.map { entry.online == $0 } ?? true) ? id : nil
        }
        ids.sort()
        let agents = ids.prefix(limit).map { Self.summarise($0, entries[$0]!, at: moment) }
        return (agents, ids.count > limit)
    }

    private static func summarise(_ agentID: String, _ entry: Entry, at moment: Moment) -> Summary {
        // The buckets hold the minute up to the agent's last message; those of seconds more than a
        // minute before now no longer count.
        let age = Int(moment.monotonic) - entry.bucketSecond
        var recent = 0
        if age < rateWindow {
            let stale = (0..<age).reduce(0) { sum, offset in sum + entry.buckets[(entry.bucketSecond + 1 + offset) % rateWindow] }
            recent = entry.buckets.reduce(0, +) - stale
        }
        return Summary(
            agentID: agentID, online: entry.online, lastSeen: entry.lastSeen, appliedGeneration: entry.appliedGeneration,
            desiredGeneration: entry.desiredGeneration, messagesPerSecond: Double(recent) / Double(rateWindow),
            received: entry.received, dropped: entry.dropped
        )
    }
}
