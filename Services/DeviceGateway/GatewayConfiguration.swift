import ServiceRuntime

/// The gateway's own settings, from the environment (the common ones are in `ServiceConfiguration`).
struct GatewayConfiguration: Sendable, Equatable {
    /// Seconds without a heartbeat (or any message) after which an agent is offline.
    var heartbeatTimeout: Double
    /// Sustained messages per second each agent may send; more are dropped and counted.
    var agentRate: Double
    /// How many messages an agent may send in a burst above the rate.
    var agentBurst: Double
    /// Agents one replica keeps at most; messages of an agent first heard of when the table is
    /// full are dropped and counted. Well above the fleet: an entry costs about 1 KB.
    var maximumAgents: Int
    /// Seconds an offline agent that never sent this replica a hello (and has no desired state)
    /// is remembered.
    var forgetAfter: Double

    static let defaults = GatewayConfiguration(heartbeatTimeout: 15, agentRate: 20, agentBurst: 100, maximumAgents: 50_000, forgetAfter: 300)

    init(heartbeatTimeout: Double, agentRate: Double, agentBurst: Double, maximumAgents: Int, forgetAfter: Double) {
        self.heartbeatTimeout = heartbeatTimeout
        self.agentRate = agentRate
        self.agentBurst = agentBurst
        self.maximumAgents = maximumAgents
        self.forgetAfter = forgetAfter
    }

    init(environment: [String: String]) throws(ConfigurationError) {
        let env = EnvironmentReader(environment)
        let maximumAgents = try env.number("MODELFLEET_GATEWAY_MAX_AGENTS", default: Double(Self.defaults.maximumAgents), in: 1...10_000_000)
        guard maximumAgents.rounded() == maximumAgents else {
            throw ConfigurationError(variable: "MODELFLEET_GATEWAY_MAX_AGENTS", reason: "'\(maximumAgents)' is not a whole number")
        }
        self.init(
            heartbeatTimeout: try env.number("MODELFLEET_GATEWAY_HEARTBEAT_TIMEOUT", default: Self.defaults.heartbeatTimeout, in: 1...3600),
            agentRate: try env.number("MODELFLEET_GATEWAY_AGENT_RATE", default: Self.defaults.agentRate, in: 0.1...100_000),
            agentBurst: try env.number("MODELFLEET_GATEWAY_AGENT_BURST", default: Self.defaults.agentBurst, in: 1...1_000_000),
            maximumAgents: Int(maximumAgents),
            forgetAfter: try env.number("MODELFLEET_GATEWAY_FORGET_AFTER", default: Self.defaults.forgetAfter, in: 1...604_800)
        )
    }

    var limits: AgentTable.Limits {
        AgentTable.Limits(
            rate: agentRate, burst: agentBurst, heartbeatTimeout: heartbeatTimeout, capacity: maximumAgents, forgetAfter: forgetAfter)
    }
}
