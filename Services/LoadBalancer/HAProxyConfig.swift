import FleetContract

/// HAProxy's configuration for a set of deployments (pure: tested without HAProxy). One frontend
/// serves every deployment on one port, by path: `/d/<name>/…` goes to the deployment's backend
/// with the prefix taken off; a stopped deployment is answered 503, an unknown one 404, both JSON.
/// Each backend has the deployment's algorithm, health check and stickiness, and its servers as
/// they are when the file is written (later ones come and go through the runtime API).
struct HAProxyConfig: Sendable, Equatable {
    struct Settings: Sendable, Equatable {
        /// Where deployments are served.
        var trafficHost = "0.0.0.0"
        var trafficPort = 8088
        /// HAProxy's Prometheus exporter (`/metrics`) and its stats page (`/stats`).
        var adminHost = "127.0.0.1"
        var adminPort = 8089
        /// The runtime API's socket and the server-state file live here.
        var directory: String
        /// The key of sticky sessions' dynamic cookies: the same on every replica, so that a
        /// session sticks whichever replica takes it.
        var cookieKey = "modelfleet"
        /// Health checks: up after `rise` passes, down after `fall` failures.
        var rise = 2
        var fall = 3
        /// HAProxy's threads; nil: its default, one per core.
        var threads: Int?

        var socketPath: String { "\(directory)/admin.sock" }
        var stateFile: String { "\(directory)/server-state" }
        var configFile: String { "\(directory)/haproxy.cfg" }
    }

    /// What only a reload changes: a backend's existence and its settings. Servers are changed at
    /// run time.
    struct BackendShape: Sendable, Equatable {
        var deployment: String
        var state: LoadBalancerView.State
        var algorithm: LoadBalancerView.Algorithm
        var healthCheckPath: String
        var healthCheckIntervalSeconds: Int
        var stickySessions: Bool

        init(_ view: LoadBalancerView) {
            deployment = view.deployment
            state = view.state
            algorithm = view.algorithm
            healthCheckPath = view.healthCheckPath
            healthCheckIntervalSeconds = view.healthCheckIntervalSeconds
            stickySessions = view.stickySessions
        }
    }

    static func backendName(_ deployment: String) -> String { "d_\(deployment)" }

    /// The `server` line's options, also what `add server` takes (dynamic servers inherit no
    /// `default-server`, so every option is spelled out).
    static func serverOptions(_ server: LoadBalancerView.Server, view: LoadBalancerView, settings: Settings) -> String {
        let interval = max(1, view.healthCheckIntervalSeconds)
        return "\(server.address) weight \(min(256, max(0, server.weight))) check inter \(interval)s rise \(settings.rise) fall \(settings.fall)"
    }

    /// The whole file for `views` (by deployment name).
    static func render(_ views: [LoadBalancerView], settings: Settings) -> String {
        let ordered = views.sorted { $0.deployment < $1.deployment }
        var lines = [
            "# Written by the ModelFleet load-balancer; changes here are lost at its next write.",
            "global",
            "    master-worker",
            "    stats socket \(settings.socketPath) mode 600 level admin expose-fd listeners",
            "    server-state-file \(settings.stateFile)",
            "    hard-stop-after 30s",
        ]
        if let threads = settings.threads { lines.append("    nbthread \(threads)") }
        lines += [
            "",
            "defaults",
            "    mode http",
            "    timeout connect 2s",
            "    timeout client 60s",
            "    timeout server 60s",
            "    timeout http-request 10s",
            "    timeout queue 10s",
            "    option redispatch",
            "    retries 2",
            "    load-server-state-from-file global",
            "",
            "frontend admin",
            "    bind \(settings.adminHost):\(settings.adminPort)",
            "    http-request use-service prometheus-exporter if { path /metrics }",
            "    stats enable",
            "    stats uri /stats",
            "    stats refresh 5s",
            "",
            "frontend deployments",
            "    bind \(settings.trafficHost):\(settings.trafficPort)",
            "    http-request return status 404 content-type application/json string \(quoted(problem("not_found", "no deployment at this path; deployments are served at /d/<name>/"))) unless { path_beg /d/ }",
        ]
        // HAProxy runs every http-request rule before any use_backend: the answers first.
        var routes: [String] = []
        for view in ordered {
            let acl = "{ path_beg /d/\(view.deployment)/ } || { path /d/\(view.deployment) }"
            switch view.state {
            case .serving:
                routes.append("    use_backend \(backendName(view.deployment)) if \(acl)")
            case .stopped:
                let body = problem("deployment_stopped", "deployment '\(view.deployment)' is stopped")
                lines.append("    http-request return status 503 content-type application/json string \(quoted(body)) if \(acl)")
            case .disabled:
                let body = problem("load_balancer_disabled", "deployment '\(view.deployment)' has its load balancer switched off")
                lines.append("    http-request return status 404 content-type application/json string \(quoted(body)) if \(acl)")
            }
        }
        lines += routes
        lines.append("    default_backend unknown")
        lines += [
            "",
            "backend unknown",
            "    http-request return status 404 content-type application/json string \(quoted(problem("not_found", "no such deployment")))",
        ]
        for view in ordered where view.state == .serving {
            let name = view.deployment
            lines += ["", "backend \(backendName(name))"]
            switch view.algorithm {
            case .roundRobin: lines.append("    balance roundrobin")
            case .leastConnections: lines.append("    balance leastconn")
            case .ipHash: lines += ["    balance source", "    hash-type consistent"]
            }
            lines += [
                "    option httpchk GET \(view.healthCheckPath)",
                "    http-check expect status 200",
                "    http-request replace-path ^/d/\(name)/?(.*) /\\1",
                "    http-request set-header X-ModelFleet-Deployment \(name)",
            ]
            if view.stickySessions {
                lines += [
                    "    cookie MF_\(name.replacingOccurrences(of: "-", with: "_")) insert indirect nocache dynamic",
                    "    dynamic-cookie-key \(settings.cookieKey)",
                ]
            }
            lines.append("    errorfile 503 \(settings.directory)/no-instance.http")
            for server in view.servers.sorted(by: { $0.instanceID < $1.instanceID }) {
                lines.append("    server \(server.instanceID) \(serverOptions(server, view: view, settings: settings))")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The raw HTTP answer of a backend with no server up (`errorfile 503`).
    static let noInstanceAnswer =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
        + problem("no_instance", "no instance of this deployment is ready to take the request")

    /// The JSON error body every ModelFleet service answers with.
    static func problem(_ code: String, _ message: String) -> String {
        #"{"error":{"code":"\#(code)","message":"\#(message)"}}"#
    }

    /// A string argument of an HAProxy directive, in double quotes (its escapes: backslash and quote).
    static func quoted(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}
