import ServiceRuntime

/// The gateway's own settings, from the environment (the common ones are in `ServiceConfiguration`).
struct GatewayConfiguration: Sendable, Equatable {
    /// Seconds without a heartbeat (or any message) after which an agent is offline.
    var heartbeatTimeout: Double
    /// Sustained messages per second each agent may send; more are dropped and counted.
    var agentRate: Double
    /// How many messages an agent may send in a burst above the rate.
    var agentBurst: Double

    static let defaults = GatewayConfiguration(heartbeatTimeout: 15, agentRate: 20, agentBurst: 100)

    init(heartbeatTimeout: Double, agentRate: Double, agentBurst: Double) {
        self.heartbeatTimeout = heartbeatTimeout
        self.agentRate = agentRate
        self.agentBurst = agentBurst
    }

    init(environment: [String: String]) throws(ConfigurationError) {
        let env = EnvironmentReader(environment)
        self.init(
            heartbeatTimeout: try env.number("MODELFLEET_GATEWAY_HEARTBEAT_TIMEOUT", default: Self.defaults.heartbeatTimeout, in: 1...3600),
            agentRate: try env.number("MODELFLEET_GATEWAY_AGENT_RATE", default: Self.defaults.agentRate, in: 0.1...100_000),
            agentBurst: try env.number("MODELFLEET_GATEWAY_AGENT_BURST", default: Self.defaults.agentBurst, in: 1...1_000_000)
        )
    }

    var limits: AgentTable.Limits {
        AgentTable.Limits(rate: agentRate, burst: agentBurst, heartbeatTimeout: heartbeatTimeout)
    }
}
