import FleetContract
import Foundation
import Hummingbird
import ServiceRuntime

/// `GET /v1/agents` and `GET /v1/agents/{id}`: the agents this replica has heard from.
struct GatewayAPI: Sendable {
    let state: GatewayState

    /// One agent as the API shows it.
    struct AgentView: Codable, Sendable {
        var agentID: String
        var online: Bool
        var lastSeen: Date
        var appliedGeneration: Int?
        var desiredGeneration: Int?
        /// Inbound messages per second over the last minute, as this replica received them (with
        /// several replicas, hello, telemetry and report are shared between them).
        var messagesPerSecond: Double
        var messagesReceived: Int
        var messagesRateLimited: Int
        /// The replica that announces this agent's presence and publishes its desired state.
        var owner: String

        private enum CodingKeys: String, CodingKey {
            case agentID = "agent_id"
            case online
            case lastSeen = "last_seen"
            case appliedGeneration = "applied_generation"
            case desiredGeneration = "desired_generation"
            case messagesPerSecond = "messages_per_second"
            case messagesReceived = "messages_received"
            case messagesRateLimited = "messages_rate_limited"
            case owner
        }
    }

    struct AgentList: Codable, Sendable {
        var replica: String
        var replicas: [String]
        var online: Int
        var agents: [AgentView]
    }

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.get("/v1/agents") { request, _ in try self.list(request) }
        router.get("/v1/agents/{id}") { _, context in try self.agent(context.parameters.require("id")) }
    }

    func list(_ request: Request) throws -> JSONResponse<AgentList> {
        let query = request.uri.queryParameters
        for (name, _) in query where name != "online" {
            throw APIError.invalid(field: String(name), "unknown query parameter; the only filter is 'online'")
        }
        var online: Bool?
        if let text = query["online"] {
            guard let value = Bool(String(text)) else { throw APIError.invalid(field: "online", "must be true or false, not '\(text)'") }
            online = value
        }
        let moment = Moment.now()
        let agents = state.withTable { $0.summaries(at: moment) }
            .filter { online == nil || $0.online == online }
            .map(view)
        return JSONResponse(
            AgentList(replica: state.instance, replicas: state.replicas, online: agents.count(where: \.online), agents: agents),
            encoder: ContractCoding.encoder)
    }

    func agent(_ id: String) throws -> JSONResponse<AgentView> {
        guard (try? TopicLevel(id)) != nil else {
            throw APIError.invalid(field: "id", "'\(id)' is not an agent id (letters, digits, '-', '_', '.', at most 128)")
        }
        let moment = Moment.now()
        guard let summary = state.withTable({ $0.summary(of: id, at: moment) }) else {
            throw APIError.notFound("no agent '\(id)' has been heard from by this gateway")
        }
        return JSONResponse(view(summary), encoder: ContractCoding.encoder)
    }

    private func view(_ summary: AgentTable.Summary) -> AgentView {
        AgentView(
            agentID: summary.agentID, online: summary.online, lastSeen: summary.lastSeen, appliedGeneration: summary.appliedGeneration,
            desiredGeneration: summary.desiredGeneration, messagesPerSecond: summary.messagesPerSecond, messagesReceived: summary.received,
            messagesRateLimited: summary.dropped, owner: state.owner(of: summary.agentID))
    }
}
