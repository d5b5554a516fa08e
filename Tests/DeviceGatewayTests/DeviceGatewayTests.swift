import Foundation
import Testing

@testable import DeviceGateway
@testable import ServiceRuntime

private func at(_ seconds: Double) -> Moment {
    Moment(monotonic: seconds, wall: Date(timeIntervalSince1970: 1_800_000_000 + seconds))
}

@Suite("Agent table")
struct AgentTableTests {
    let limits = AgentTable.Limits(rate: 2, burst: 3, heartbeatTimeout: 10)

    @Test("the token bucket lets a burst through, then the rate, and counts the rest")
    func rateLimit() {
        var table = AgentTable(limits: limits)
        let first = (0..<5).map { _ in table.admit("edge", at: at(100)) }
        #expect(first == [.admitted, .admitted, .admitted, .rateLimited, .rateLimited])
        // Half a second later, one token (2 per second) is back.
        let refilled = table.admit("edge", at: at(100.5))
        #expect(refilled == .admitted)
        let overLimit = table.admit("edge", at: at(100.5))
        #expect(overLimit == .rateLimited)
        // Another agent has its own bucket.
        let otherAgent = table.admit("other", at: at(100.5))
        #expect(otherAgent == .admitted)
        let summary = table.summary(of: "edge", at: at(100.5))
        #expect(summary?.received == 7 && summary?.dropped == 3)
    }

    @Test("presence changes are reported once, and silence past the timeout is offline")
    func presence() {
        var table = AgentTable(limits: limits)
        let firstSign = table.markAlive("edge", at: at(0))
        #expect(firstSign == .online)
        let stillAlive = table.markAlive("edge", at: at(5))
        #expect(stillAlive == nil)
        let withinTimeout = table.expire(at: at(14))
        #expect(withinTimeout.isEmpty, "9 s of silence is within the timeout")
        let pastTimeout = table.expire(at: at(15.5))
        #expect(pastTimeout == ["edge"])
        let expiredAgain = table.expire(at: at(30))
        #expect(expiredAgain.isEmpty, "expired once")
        #expect(!table.isOnline("edge"))
        let back = table.markAlive("edge", at: at(31))
        #expect(back == .online)
        let saysOffline = table.markOffline("edge", at: at(32))
        #expect(saysOffline == .offline)
        let saysOfflineAgain = table.markOffline("edge", at: at(33))
        #expect(saysOfflineAgain == nil)
        // An agent first heard of through its (retained) offline presence: that is news too.
        let retainedOffline = table.markOffline("new", at: at(33))
        #expect(retainedOffline == .offline)
        #expect(table.onlineCount == 0 && table.count == 2)
    }

    @Test("a message received before the agent went offline, handled after, does not bring it back")
    func staleSignOfLife() {
        var table = AgentTable(limits: limits)
        _ = table.markAlive("edge", at: at(0))
        // The last will (received at 20) is handled before telemetry received at 19.5.
        let will = table.markOffline("edge", at: at(20))
        #expect(will == .offline)
        let late = table.markAlive("edge", at: at(19.5))
        #expect(late == nil && !table.isOnline("edge"))
        let reconnected = table.markAlive("edge", at: at(21))
        #expect(reconnected == .online)
        // The same after the heartbeat timeout.
        _ = table.expire(at: at(40))
        let beforeExpiry = table.markAlive("edge", at: at(39))
        #expect(beforeExpiry == nil && !table.isOnline("edge"))
    }

    @Test("messages per second over the last minute")
    func rates() {
        var table = AgentTable(limits: AgentTable.Limits(rate: 1000, burst: 1000, heartbeatTimeout: 10))
        for second in 0..<60 {
            for _ in 0..<3 { _ = table.admit("edge", at: at(1000 + Double(second))) }
        }
        #expect(table.summary(of: "edge", at: at(1059.5))?.messagesPerSecond == 3)
        // Thirty seconds of silence: half the minute is gone.
        #expect(table.summary(of: "edge", at: at(1089.5))?.messagesPerSecond == 1.5)
        #expect(table.summary(of: "edge", at: at(1200))?.messagesPerSecond == 0)
    }

    @Test("silence is counted from the gateway's last backlog: no agent is declared silent while its queues are behind")
    func expiryWaitsForBacklog() {
        var table = AgentTable(limits: limits)
        _ = table.markAlive("edge", at: at(0))
        // The heartbeat queue was behind at 8 s: the heartbeats of 0-8 s may be waiting in it, or lost.
        let held = table.expire(at: at(15), lastBacklog: 8)
        #expect(held.isEmpty && table.isOnline("edge"))
        let stillHeld = table.expire(at: at(18), lastBacklog: 8)
        #expect(stillHeld.isEmpty, "10 s after the backlog is within the timeout")
        let caughtUp = table.expire(at: at(18.5), lastBacklog: 8)
        #expect(caughtUp == ["edge"], "silent for the whole timeout since the queues caught up")
    }

    @Test("an offline agent without a hello here is forgotten after the grace period; one greeted, online or with a desired state is kept")
    func forgetting() {
        var table = AgentTable(limits: AgentTable.Limits(rate: 2, burst: 3, heartbeatTimeout: 10, capacity: 100, forgetAfter: 60))
        for agent in ["stranger", "greeted", "online", "addressed", "will"] { _ = table.admit(agent, at: at(0)) }
        _ = table.markAlive("stranger", at: at(0))
        _ = table.markAlive("greeted", at: at(0))
        table.noteHello("greeted")
        table.noteDesired("addressed", generation: 3, at: at(0))
        _ = table.markOffline("will", at: at(30))
        _ = table.expire(at: at(11))
        // Online all along: heartbeats.
        for second in stride(from: 0.0, through: 120, by: 5) { _ = table.markAlive("online", at: at(second)) }
        #expect(table.forget(at: at(70)) == 0, "the stranger went offline at 11 s: 59 s ago")
        #expect(table.forget(at: at(72)) == 1)
        #expect(table.summary(of: "stranger", at: at(72)) == nil)
        #expect(table.forget(at: at(91)) == 1, "the last will came at 30 s")
        #expect(table.summaries(at: at(91)).map(\.agentID) == ["addressed", "greeted", "online"])
        // A forgotten agent that comes back is an agent again.
        let back = table.markAlive("stranger", at: at(100))
        #expect(back == .online && table.isOnline("stranger"))
    }

    @Test("a full table refuses new agents and counts them; those already in it go on")
    func capacity() {
        var table = AgentTable(limits: AgentTable.Limits(rate: 2, burst: 3, heartbeatTimeout: 10, capacity: 2, forgetAfter: 60))
        #expect(table.admit("a", at: at(0)) == .admitted)
        #expect(table.admit("b", at: at(0)) == .admitted)
        _ = table.markAlive("a", at: at(0))
        #expect(table.admit("c", at: at(0)) == .refused)
        #expect(table.markAlive("c", at: at(0)) == nil)
        let desired = table.noteDesired("c", generation: 1, at: at(0))
        #expect(!desired)
        #expect(table.admit("a", at: at(0)) == .admitted)
        #expect(table.count == 2 && table.refusedCount == 3 && table.summary(of: "c", at: at(0)) == nil)
        // Room again once an agent is forgotten.
        _ = table.markOffline("b", at: at(1))
        #expect(table.forget(at: at(62)) == 1)
        #expect(table.admit("c", at: at(62)) == .admitted)
    }

    @Test("the list pages by id after a cursor, filtered by presence")
    func pages() {
        var table = AgentTable(limits: limits)
        for index in 0..<7 { _ = table.markAlive("edge-\(index)", at: at(0)) }
        _ = table.markOffline("edge-3", at: at(1))
        let first = table.page(after: nil, limit: 3, online: nil, at: at(1))
        #expect(first.agents.map(\.agentID) == ["edge-0", "edge-1", "edge-2"] && first.more)
        let second = table.page(after: "edge-2", limit: 3, online: true, at: at(1))
        #expect(second.agents.map(\.agentID) == ["edge-4", "edge-5", "edge-6"] && !second.more)
        let offline = table.page(after: nil, limit: 3, online: false, at: at(1))
        #expect(offline.agents.map(\.agentID) == ["edge-3"] && !offline.more)
        // A cursor need not be in the table (it may have been forgotten meanwhile).
        let gone = table.page(after: "edge-35", limit: 10, online: nil, at: at(1))
        #expect(gone.agents.map(\.agentID) == ["edge-4", "edge-5", "edge-6"])
    }

    @Test("the published generation only grows")
    func generations() {
        var table = AgentTable(limits: limits)
        table.noteDesired("edge", generation: 4, at: at(0))
        table.noteDesired("edge", generation: 2, at: at(1))
        #expect(table.desiredGeneration(of: "edge") == 4)
    }
}

@Suite("Inbound backlog")
struct InboundBacklogTests {
    typealias Reading = InboundBacklog.Reading

    @Test("a queue that takes what waited is not behind, however busy; one that still holds it, or drops, is")
    func behind() {
        var backlog = InboundBacklog()
        let looks = [
            Reading(waiting: 500, taken: 1_000, dropped: 0),
            // 500 waited; 20,000 taken since: each message waited less than the interval.
            Reading(waiting: 300, taken: 21_000, dropped: 0),
            // 300 waited; only 200 taken since.
            Reading(waiting: 900, taken: 21_200, dropped: 0),
            Reading(waiting: 0, taken: 22_100, dropped: 0),
            // Messages were dropped.
            Reading(waiting: 0, taken: 22_100, dropped: 7),
            Reading(waiting: 0, taken: 22_100, dropped: 7),
        ].map { backlog.isBehind([$0]) }
        #expect(looks == [false, false, true, false, true, false])
        // Any of several queues.
        var two = InboundBacklog()
        let quiet = Reading(waiting: 0, taken: 0, dropped: 0)
        let both = [[quiet, Reading(waiting: 10, taken: 0, dropped: 0)], [quiet, Reading(waiting: 10, taken: 5, dropped: 0)]].map { two.isBehind($0) }
        #expect(both == [false, true])
    }
}

@Suite("Replica membership")
struct ReplicaMembershipTests {
    private let agents = (0..<3000).map { "agent-\($0)" }

    private func membership(_ me: String, peers: [String]) -> ReplicaMembership {
        var membership = ReplicaMembership(me: me)
        for peer in peers { membership.update(instance: peer, online: true) }
        return membership
    }

    @Test("every agent has exactly one owner, the same from every replica, and the load is spread")
    func oneOwner() {
        let replicas = ["gw-a", "gw-b", "gw-c"]
        let views = replicas.map { me in membership(me, peers: replicas) }
        var owned: [String: Int] = [:]
        for agent in agents {
            let owners = views.filter { $0.owns(agent) }.map(\.me)
            #expect(owners.count == 1, "\(agent): \(owners)")
            #expect(Set(views.map { $0.owner(of: agent) }).count == 1)
            owned[owners.first ?? "", default: 0] += 1
        }
        for replica in replicas {
            #expect((800...1200).contains(owned[replica] ?? 0), "\(replica) owns \(owned[replica] ?? 0) of 3000")
        }
    }

    @Test("when a replica leaves, only its agents move")
    func replicaLeaves() {
        var view = membership("gw-a", peers: ["gw-b", "gw-c"])
        let before = Dictionary(uniqueKeysWithValues: agents.map { ($0, view.owner(of: $0)) })
        view.update(instance: "gw-c", online: false)
        for agent in agents where before[agent] != "gw-c" {
            #expect(view.owner(of: agent) == before[agent])
        }
        #expect(agents.allSatisfy { view.owner(of: $0) != "gw-c" })
        // A replica cannot remove itself.
        view.update(instance: "gw-a", online: false)
        #expect(view.replicas == ["gw-a", "gw-b"])
    }
}

@Suite("Gateway configuration")
struct GatewayConfigurationTests {
    @Test("defaults, and bad values name their variable")
    func environment() throws {
        #expect(try GatewayConfiguration(environment: [:]) == .defaults)
        let set = try GatewayConfiguration(environment: ["MODELFLEET_GATEWAY_HEARTBEAT_TIMEOUT": "3", "MODELFLEET_GATEWAY_AGENT_RATE": "0.5"])
        #expect(set.heartbeatTimeout == 3 && set.agentRate == 0.5 && set.agentBurst == 100)
        let table = try GatewayConfiguration(environment: ["MODELFLEET_GATEWAY_MAX_AGENTS": "2000", "MODELFLEET_GATEWAY_FORGET_AFTER": "30"])
        #expect(table.limits.capacity == 2000 && table.limits.forgetAfter == 30)
        #expect(throws: ConfigurationError.self) { try GatewayConfiguration(environment: ["MODELFLEET_GATEWAY_MAX_AGENTS": "2000.5"]) }
        for variable in [
            "MODELFLEET_GATEWAY_HEARTBEAT_TIMEOUT", "MODELFLEET_GATEWAY_AGENT_RATE", "MODELFLEET_GATEWAY_AGENT_BURST",
            "MODELFLEET_GATEWAY_MAX_AGENTS", "MODELFLEET_GATEWAY_FORGET_AFTER",
        ] {
            for bad in ["0", "-1", "fast"] {
                #expect(throws: ConfigurationError.self) { try GatewayConfiguration(environment: [variable: bad]) }
                do {
                    _ = try GatewayConfiguration(environment: [variable: bad])
                } catch {
                    #expect(error.variable == variable)
                }
            }
        }
    }
}
