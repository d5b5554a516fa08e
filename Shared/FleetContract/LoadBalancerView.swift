/// What a load balancer serves for one deployment: published by the orchestrator, retained, on
/// ``Topic/loadBalancerDeployment(_:)``, whenever it changes; an empty retained message when the
/// deployment is deleted. A load balancer that starts rebuilds everything from the retained views.
package struct LoadBalancerView: ContractPayload, Equatable {
    package static let messageType = "deployment.load-balancer"

    package enum State: String, ClosedSet {
        /// Traffic goes to the servers (those passing their health check).
        case serving
        /// The deployment is stopped: requests are answered 503.
        case stopped
        /// The deployment's load balancer is switched off: requests are answered 404.
        case disabled
    }

    package enum Algorithm: String, ClosedSet {
        case roundRobin = "round_robin"
        case leastConnections = "least_connections"
        case ipHash = "ip_hash"
    }

    /// One instance with an address: a server of the deployment's backend.
    package struct Server: Codable, Sendable, Hashable {
        package var instanceID: String
        /// `host:port`.
        package var address: String
        /// 0-256: its share of the traffic (0: none new).
        package var weight: Int
        package var version: String

        package init(instanceID: String, address: String, weight: Int, version: String) {
            self.instanceID = instanceID
            self.address = address
            self.weight = weight
            self.version = version
        }

        private enum CodingKeys: String, CodingKey {
            case instanceID = "instance_id"
            case address, weight, version
        }
    }

    package var deployment: String
    package var state: State
    package var algorithm: Algorithm
    package var healthCheckPath: String
    package var healthCheckIntervalSeconds: Int
    package var stickySessions: Bool
    package var servers: [Server]

    package init(
        deployment: String, state: State, algorithm: Algorithm, healthCheckPath: String, healthCheckIntervalSeconds: Int, stickySessions: Bool,
        servers: [Server]
    ) {
        self.deployment = deployment
        self.state = state
        self.algorithm = algorithm
        self.healthCheckPath = healthCheckPath
        self.healthCheckIntervalSeconds = healthCheckIntervalSeconds
        self.stickySessions = stickySessions
        self.servers = servers
    }

    /// A health check path HAProxy's configuration can carry as it is: no space, quote, `#` or
    /// backslash, which its parser would read as syntax.
    package static func isSafePath(_ path: String) -> Bool {
        path.hasPrefix("/") && path.utf8.count <= 256
            && path.utf8.allSatisfy { byte in
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || "/._~-%?=&".utf8.contains(byte)
            }
    }

    private enum CodingKeys: String, CodingKey {
        case deployment, state, algorithm, servers
        case healthCheckPath = "health_check_path"
        case healthCheckIntervalSeconds = "health_check_interval_seconds"
        case stickySessions = "sticky_sessions"
    }
}

extension Topic {
    /// `modelfleet/v1/internal/load-balancer/deployments/<name>`: a deployment's
    /// ``LoadBalancerView``, retained.
    package static func loadBalancerDeployment(_ name: TopicLevel) -> Topic {
        root.appending("internal").appending("load-balancer").appending("deployments").appending(name.value)
    }

    /// Every deployment's view.
    package static let everyLoadBalancerDeployment = root.appending("internal").appending("load-balancer").appending("deployments").appending("+")

    /// Each load-balancer replica's figures from HAProxy, every second (``LoadBalancerFigures``).
    package static let loadBalancerFigures = root.appending("internal").appending("load-balancer").appending("figures")
}
