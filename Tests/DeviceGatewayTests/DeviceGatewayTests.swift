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
        #expect(first == [true, true, true, false, false])
        // Half a second later, one token (2 per second) is back.
        let refilled = table.admit("edge", at: at(100.5))
        #expect(refilled)
        let overLimit = table.admit("edge", at: at(100.5))
        #expect(!overLimit)
        // Another agent has its own bucket.
        let otherAgent = table.admit("other", at: at(100.5))
        #expect(otherAgent)
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

    @Test("the published generation only grows")
    func generations() {
        var table = AgentTable(limits: limits)
        table.noteDesired("edge", generation: 4, at: at(0))
        table.noteDesired("edge", generation: 2, at: at(1))
        #expect(table.desiredGeneration(of: "edge") == 4)
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
        for variable in ["MODELFLEET_GATEWAY_HEARTBEAT_TIMEOUT", "MODELFLEET_GATEWAY_AGENT_RATE", "MODELFLEET_GATEWAY_AGENT_BURST"] {
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
