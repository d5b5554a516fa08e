/// The topics of the device protocol (`docs/device-protocol.md`): each agent's own topics, and
/// the internal topics on which the device gateway hands agent traffic to the other services.
extension Topic {
    /// What an agent publishes, or (for ``desired``) receives, under `modelfleet/v1/agents/<agent id>/`.
    package enum AgentChannel: String, Sendable, CaseIterable {
        /// Agent → gateway, retained, QoS 1: online after each connect; offline before a clean
        /// disconnect and as the agent's last will.
        case presence
        /// Agent → gateway, QoS 1: site, server, capacity and devices, after each connect.
        case hello
        /// Agent → gateway, QoS 0, every few seconds.
        case heartbeat
        /// Agent → gateway, QoS 0: per-pipeline and host figures, every few seconds.
        case telemetry
        /// Agent → gateway, QoS 1: the state of each pipeline after applying a desired state.
        case report
        /// Gateway → agent, retained, QoS 1: the one desired-state document of the agent.
        case desired
        /// Gateway → agent, QoS 1: a question (an instance's logs), answered on ``response``.
        case request
        /// Agent → gateway, QoS 1: the answer to a ``request``.
        case response

        /// The channels on which agents publish (all but ``desired`` and ``request``).
        package static let inbound: [AgentChannel] = [.presence, .hello, .heartbeat, .telemetry, .report, .response]
    }

    /// `modelfleet/v1/agents`, under which each agent has its own topics.
    package static let agents = root.appending("agents")

    /// `modelfleet/v1/agents/<agent id>/<channel>`.
    package static func agent(_ agentID: TopicLevel, _ channel: AgentChannel) -> Topic {
        agents.appending(agentID.value).appending(channel.rawValue)
    }

    /// `modelfleet/v1/agents/+/<channel>`: one channel of every agent.
    package static func everyAgent(_ channel: AgentChannel) -> Topic {
        agents.appending("+").appending(channel.rawValue)
    }

    /// Filters for the topics under `modelfleet/v1/agents/` that cannot be an agent's own
    /// `<agent id>/<kind>`: one level (`agents/x`) and three or more (`agents/x/heartbeat/y`).
    /// They overlap no channel's subscription, so no agent message comes to the gateway twice.
    /// Two levels with an unknown kind (`agents/x/status`) cannot be told apart by a filter
    /// without `agents/+/+`, which would bring every agent message a second time; the broker's
    /// access control (an agent may publish only its five kinds; issue 24) is what is to stop those.
    package static let strayAgentTopics: [Topic] = [agents.appending("+"), agents.appending("+").appending("+").appending("+").appending("#")]

    /// `modelfleet/v1/agents/`, made once: every agent message's topic is parsed.
    private static let agentTopicPrefix = agents.path + "/"

    /// The agent id and channel of an agent topic, or nil when `topic` is not one.
    package static func parseAgentTopic(_ topic: String) -> (agentID: TopicLevel, channel: AgentChannel)? {
        let prefix = agentTopicPrefix
        guard topic.hasPrefix(prefix) else { return nil }
        let rest = topic.utf8.dropFirst(prefix.utf8.count)
        guard let slash = rest.firstIndex(of: UInt8(ascii: "/")) else { return nil }
        guard let channel = AgentChannel(rawValue: String(Substring(rest[rest.index(after: slash)...]))),
            let agentID = try? TopicLevel(String(Substring(rest[..<slash])))
        else { return nil }
        return (agentID, channel)
    }

    /// Each valid agent report, forwarded unchanged by the gateway (QoS 1), for the orchestrator.
    package static let agentReportEvents = root.appending("internal").appending("agents").appending("report")
    /// The agents' valid telemetry messages, forwarded unchanged by the gateway in batches
    /// (``TelemetryBatch``, QoS 0), for the metrics aggregator.
    package static let agentTelemetryEvents = root.appending("internal").appending("agents").appending("telemetry")
    /// New desired-state documents from the orchestrator (QoS 1, not retained). Every gateway
    /// replica subscribes; the one that owns the agent publishes the document to the agent.
    package static let agentDesiredStateRequests = root.appending("internal").appending("agents").appending("desired")
    /// MQTT 5 requests for agents (an instance's logs), served by the gateway replicas together
    /// (`$share/device-gateway/…`): the gateway asks the agent and answers with what it said.
    package static let agentRequests = root.appending("internal").appending("agents").appending("requests")
}
