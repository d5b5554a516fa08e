import DeviceProtocol
import FleetContract
import Metrics

/// The gateway's own metrics, each name spelled once (served at `/metrics`; listed in
/// docs/gateway.md). Handles are made where they are used, after the metrics system is
/// bootstrapped; the hot path keeps its handles in ``InboundCounters``.
enum GatewayMetrics {
    /// Why a message was dropped besides what the validator refuses (``AgentMessageRejection``).
    enum DropReason: String {
        /// The broker did not take the forwarded message.
        case forwardFailed = "forward_failed"
        /// Another replica's status message could not be read.
        case badPeerStatus = "bad_peer_status"
        /// A valid message of an agent first heard of while the agent table was full.
        case agentTableFull = "agent_table_full"
    }

    /// What became of a desired state from the orchestrator.
    enum DesiredStateOutcome: String {
        case published
        /// The same generation again: the orchestrator asks for the agent's report once more.
        case republished
        /// Not a valid desired state (schema, or an agent id that cannot be a topic level).
        case invalid
        /// Another replica owns the agent.
        case notOwner = "not_owner"
        /// Older than what the agent's topic has.
        case stale
        case publishFailed = "publish_failed"
    }

    static func received(_ channel: Topic.AgentChannel) -> Counter {
        Counter(label: "gateway_messages_received_total", dimensions: [("channel", channel.rawValue)])
    }

    static func forwarded(_ channel: Topic.AgentChannel) -> Counter {
        Counter(label: "gateway_messages_forwarded_total", dimensions: [("channel", channel.rawValue)])
    }

    static func dropped(_ rejection: AgentMessageRejection) -> Counter { dropped(reason: rejection.rawValue) }
    static func dropped(_ reason: DropReason) -> Counter { dropped(reason: reason.rawValue) }
    private static func dropped(reason: String) -> Counter {
        Counter(label: "gateway_messages_dropped_total", dimensions: [("reason", reason)])
    }

    static func desiredStates(_ outcome: DesiredStateOutcome) -> Counter {
        Counter(label: "gateway_desired_states_total", dimensions: [("outcome", outcome.rawValue)])
    }

    /// What became of a request for an agent (``AgentRequests``).
    enum RequestOutcome: String {
        case answered
        /// The agent is not online (on any replica's table: presence reaches every replica).
        case offline
        /// No response within ``AgentRequests/timeout``.
        case timedOut = "timed_out"
        /// Not a request this gateway understands.
        case invalid
    }

    static func requests(_ outcome: RequestOutcome) -> Counter {
        Counter(label: "gateway_agent_requests_total", dimensions: [("outcome", outcome.rawValue)])
    }

    static func presenceEvents(_ state: AgentPresence.State) -> Counter {
        Counter(label: "gateway_presence_events_total", dimensions: [("state", state.rawValue)])
    }

    /// Forwarded telemetry batches; `gateway_messages_forwarded_total{channel="telemetry"}` over
    /// this is the mean batch size.
    static var telemetryBatches: Counter { Counter(label: "gateway_telemetry_batches_total") }
    static var agentsOnline: Gauge { Gauge(label: "gateway_agents_online") }
    static var agentsKnown: Gauge { Gauge(label: "gateway_agents_known") }
    /// Strangers removed from the agent table after their grace period.
    static var agentsForgotten: Counter { Counter(label: "gateway_agents_forgotten_total") }
    /// Seconds in which the expiry was held back because the inbound queues were behind.
    static var expiryHeld: Counter { Counter(label: "gateway_expiry_held_total") }
}
