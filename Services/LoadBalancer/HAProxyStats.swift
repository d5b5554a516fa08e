import FleetContract

/// HAProxy's `show stat` (CSV, one row per frontend, backend and server), read into the figures
/// the load-balancer publishes.
enum HAProxyStats {
    struct Row: Equatable {
        enum Kind: Equatable { case frontend, backend, server, listener }

        var proxy: String
        var name: String
        var kind: Kind
        var currentSessions: Int
        var requestsTotal: Int
        var responses5xx: Int
        var status: String
    }

    /// The rows of `show stat`'s CSV (its header names the columns; unknown columns are ignored).
    static func parse(_ csv: String) -> [Row] {
        let lines = csv.split(separator: "\n", omittingEmptySubsequences: true)
        guard let header = lines.first, header.hasPrefix("# ") else { return [] }
        let columns = header.dropFirst(2).split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        func index(_ name: String) -> Int? { columns.firstIndex(of: name) }
        guard let proxy = index("pxname"), let service = index("svname"), let type = index("type"), let current = index("scur"),
            let total = index("stot"), let status = index("status")
        else { return [] }
        let requests = index("req_tot")
        let errors = index("hrsp_5xx")
        return lines.dropFirst().compactMap { line in
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard fields.count > max(proxy, service, type, current, total, status) else { return nil }
            let kind: Row.Kind
            switch fields[type] {
            case "0": kind = .frontend
            case "1": kind = .backend
            case "2": kind = .server
            default: kind = .listener
            }
            // Servers count requests in `stot` (sessions: one request each without keep-alive)
            // when `req_tot` is empty, as it is for servers in HAProxy 2.6.
            let requestCount = requests.flatMap { Int(fields[$0]) } ?? Int(fields[total]) ?? 0
            return Row(
                proxy: fields[proxy], name: fields[service], kind: kind, currentSessions: Int(fields[current]) ?? 0, requestsTotal: requestCount,
                responses5xx: errors.flatMap { Int(fields[$0]) } ?? 0, status: fields[status])
        }
    }

    /// Per deployment (backend `d_<name>`) and per server.
    static func figures(_ rows: [Row], replica: String) -> LoadBalancerFigures {
        let prefix = "d_"
        var deployments: [String: LoadBalancerFigures.Deployment] = [:]
        for row in rows where row.proxy.hasPrefix(prefix) && row.kind == .backend {
            let name = String(row.proxy.dropFirst(prefix.count))
            deployments[name] = LoadBalancerFigures.Deployment(
                deployment: name, requestsTotal: row.requestsTotal, responses5xxTotal: row.responses5xx, activeConnections: row.currentSessions,
                servers: [])
        }
        for row in rows where row.proxy.hasPrefix(prefix) && row.kind == .server {
            let name = String(row.proxy.dropFirst(prefix.count))
            deployments[name]?.servers.append(
                LoadBalancerFigures.Server(
                    instanceID: row.name, requestsTotal: row.requestsTotal, responses5xxTotal: row.responses5xx,
                    activeConnections: row.currentSessions,
                    status: row.status))
        }
        return LoadBalancerFigures(replica: replica, deployments: deployments.values.sorted { $0.deployment < $1.deployment })
    }
}
