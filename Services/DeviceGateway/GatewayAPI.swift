import FleetContract
import Foundation
import Hummingbird
import ServiceRuntime

/// `GET /v1/agents` and `GET /v1/agents/{id}`: the agents this replica knows (see ``AgentTable``).
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

    /// One page of agents, by id.
    struct AgentList: Encodable, Sendable {
        var replica: String
        var replicas: [String]
        /// Online agents in this replica's table, on every page.
        var online: Int
        var agents: [AgentView]
        /// The `after` of the next page; null on the last.
        var next: String?

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(replica, forKey: .replica)
            try container.encode(replicas, forKey: .replicas)
            try container.encode(online, forKey: .online)
            try container.encode(agents, forKey: .agents)
            try container.encode(next, forKey: .next)  // null, not absent, on the last page
        }

        private enum CodingKeys: String, CodingKey { case replica, replicas, online, agents, next }
    }

    /// Agents on a page unless `limit` says otherwise, and the most it may say. A page of the
    /// largest is about 2 MB; the whole table of a flooded replica was 13 MB in one answer.
    static let defaultPageSize = 1_000
    static let maximumPageSize = 10_000

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.get("/v1/agents") { request, _ in try self.list(request) }
        router.get("/v1/agents/{id}") { _, context in try self.agent(context.parameters.require("id")) }
    }

    /// `GET /v1/agents?online=&limit=&after=`: the agents by id, a page at a time.
    func list(_ request: Request) throws -> JSONResponse<AgentList> {
        let query = request.uri.queryParameters
        for (name, _) in query where !["online", "limit", "after"].contains(String(name)) {
            throw APIError.invalid(field: String(name), "unknown query parameter; the parameters are 'online', 'limit' and 'after'")
        }
        var online: Bool?
        if let text = query["online"] {
            guard let value = Bool(String(text)) else { throw APIError.invalid(field: "online", "must be true or false, not '\(text)'") }
            online = value
        }
        var limit = Self.defaultPageSize
        if let text = query["limit"] {
            guard let value = Int(String(text)), (1...Self.maximumPageSize).contains(value) else {
                throw APIError.invalid(field: "limit", "must be a whole number from 1 to \(Self.maximumPageSize), not '\(text)'")
            }
            limit = value
        }
        var after: String?
        if let text = query["after"] {
            guard (try? TopicLevel(String(text))) != nil else {
                throw APIError.invalid(field: "after", "'\(text)' is not an agent id (the 'next' of the previous page)")
            }
            after = String(text)
        }
        let moment = Moment.now()
        let (page, more, onlineCount) = state.withTable { table in
            let page = table.page(after: after, limit: limit, online: online, at: moment)
            return (page.agents, page.more, table.onlineCount)
        }
        return JSONResponse(
            AgentList(
                replica: state.instance, replicas: state.replicas, online: onlineCount, agents: page.map(view),
                next: more ? page.last?.agentID : nil),
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
