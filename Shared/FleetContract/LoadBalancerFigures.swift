/// A load-balancer replica's figures from its HAProxy, every second on
/// ``Topic/loadBalancerFigures`` (QoS 0), for the metrics aggregator: counters since HAProxy
/// started (a reload keeps them per server name), current connections and health.
package struct LoadBalancerFigures: ContractPayload, Equatable {
    package static let messageType = "load-balancer.figures"

    package struct Server: Codable, Sendable, Equatable {
        package var instanceID: String
        package var requestsTotal: Int
        package var responses5xxTotal: Int
        package var activeConnections: Int
        /// HAProxy's status: `UP`, `DOWN`, `MAINT`, `DRAIN`, `no check`, or a transition (`UP 1/3`).
        package var status: String

        package init(instanceID: String, requestsTotal: Int, responses5xxTotal: Int, activeConnections: Int, status: String) {
            self.instanceID = instanceID
            self.requestsTotal = requestsTotal
            self.responses5xxTotal = responses5xxTotal
            self.activeConnections = activeConnections
            self.status = status
        }

        private enum CodingKeys: String, CodingKey {
            case instanceID = "instance_id"
            case requestsTotal = "requests_total"
            case responses5xxTotal = "responses_5xx_total"
            case activeConnections = "active_connections"
            case status
        }
    }

    package struct Deployment: Codable, Sendable, Equatable {
        package var deployment: String
        package var requestsTotal: Int
        package var responses5xxTotal: Int
        package var activeConnections: Int
        package var servers: [Server]

        package init(deployment: String, requestsTotal: Int, responses5xxTotal: Int, activeConnections: Int, servers: [Server]) {
            self.deployment = deployment
            self.requestsTotal = requestsTotal
            self.responses5xxTotal = responses5xxTotal
            self.activeConnections = activeConnections
            self.servers = servers
        }

        private enum CodingKeys: String, CodingKey {
            case deployment, servers
            case requestsTotal = "requests_total"
            case responses5xxTotal = "responses_5xx_total"
            case activeConnections = "active_connections"
        }
    }

    /// The replica's instance id.
    package var replica: String
    package var deployments: [Deployment]

    package init(replica: String, deployments: [Deployment]) {
        self.replica = replica
        self.deployments = deployments
    }
}
