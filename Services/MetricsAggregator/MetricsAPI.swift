import FleetContract
import Foundation
import Hummingbird
import ServiceRuntime

/// The aggregator's REST API (openapi.yaml): current figures and series of a deployment, its
/// versions and instances, of a server and a site, and the fleet's top deployments.
struct MetricsAPI: Sendable {
    let aggregator: Aggregator

    typealias Route = APIRoute<MetricsAPI>

    static let routes: [Route] = [
        Route(.get, "/v1/deployments/{deployment}/metrics") { api, request, context in try api.deployment(request, context) },
        Route(.get, "/v1/deployments/{deployment}/metrics/series") { api, request, context in try api.series(request, context) },
        Route(.get, "/v1/servers/{server_id}/metrics") { api, request, context in try api.server(request, context) },
        Route(.get, "/v1/sites/{site_id}/metrics") { api, request, context in try api.site(request, context) },
        Route(.get, "/v1/metrics/top") { api, request, context in try api.top(request, context) },
        Route(.get, "/openapi.json") { _, _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: MetricsAggregatorOpenAPI.text)))
        },
    ]

    func addRoutes(to router: Router<BasicRequestContext>) {
        router.add(Self.routes, for: self)
    }

    // MARK: Bodies

    struct InstanceFigures: Encodable {
        var instanceID: String
        var version: String
        var server: String
        var site: String?
        var ready: Bool
        /// Silent for longer than the stale threshold: its figures are of the seconds it reported.
        var stale: Bool
        var ageSeconds: Double
        var figures: MetricsFigures?

        enum CodingKeys: String, CodingKey {
            case instanceID = "instance_id"
            case version, server, site, ready, stale, figures
            case ageSeconds = "age_seconds"
        }
    }

    struct DeploymentFigures: Encodable {
        var snapshot: DeploymentMetricsSnapshot
        var instanceFigures: [InstanceFigures]

        func encode(to encoder: any Encoder) throws {
            try snapshot.encode(to: encoder)
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(instanceFigures, forKey: .instanceFigures)
        }

        enum Keys: String, CodingKey { case instanceFigures = "instance_figures" }
    }

    struct SeriesPoint: Encodable {
        var at: Date
        var figures: MetricsFigures
    }

    struct Series: Encodable {
        var deployment: String
        var version: String?
        var instanceID: String?
        var rangeSeconds: Int
        var stepSeconds: Int
        var points: [SeriesPoint]

        enum CodingKeys: String, CodingKey {
            case deployment, version, points
            case instanceID = "instance_id"
            case rangeSeconds = "range_seconds"
            case stepSeconds = "step_seconds"
        }
    }

    struct PlaceFigures: Encodable {
        var kind: String
        var id: String
        var at: Date
        var figures: MetricsFigures
    }

    struct TopEntry: Encodable {
        var deployment: String
        var figures: MetricsFigures
    }

    struct Top: Encodable {
        var by: String
        var windowSeconds: Int
        var items: [TopEntry]

        enum CodingKeys: String, CodingKey {
            case by, items
            case windowSeconds = "window_seconds"
        }
    }

    // MARK: Handlers

    func deployment(_ request: Request, _ context: BasicRequestContext) throws -> Response {
        let name = context.parameters.get("deployment") ?? ""
        let window = try Self.duration(request, "window", default: 60, within: 1...MetricsStore.fineSeconds)
        let body = aggregator.read { store, now -> DeploymentFigures? in
            guard let snapshot = store.snapshot(of: name, window: window, now: now) else { return nil }
            let instances = store.instances(of: name).map { id, state in
                InstanceFigures(
                    instanceID: id, version: state.version, server: state.server, site: state.site, ready: state.ready,
                    stale: now - state.lastSeen > MetricsStore.staleAfterSeconds, ageSeconds: max(now - state.lastSeen, 0),
                    figures: store.figures(.instance(id), window: window, now: now))
            }
            return DeploymentFigures(snapshot: snapshot, instanceFigures: instances)
        }
        guard let body else { throw Self.noFigures("deployment", name) }
        return try JSONResponse(body, status: .ok, encoder: ContractCoding.encoder).response(from: request, context: context)
    }

    func series(_ request: Request, _ context: BasicRequestContext) throws -> Response {
        let name = context.parameters.get("deployment") ?? ""
        let range = try Self.duration(request, "range", default: 300, within: 1...(MetricsStore.coarseMinutes * 60))
        let step = try Self.duration(request, "step", default: range > MetricsStore.fineSeconds ? 60 : 10, within: 1...range)
        guard range % step == 0 else { throw APIError.invalid(field: "step", "must divide range (\(range) s) evenly") }
        if range > MetricsStore.fineSeconds, step % 60 != 0 {
            throw APIError.invalid(
                field: "step", "must be whole minutes for a range over \(MetricsStore.fineSeconds / 60) minutes (data that old is kept per minute)")
        }
        guard range / step <= 3_600 else { throw APIError.invalid(field: "step", "would make more than 3600 points") }
        let version = request.uri.queryParameters.get("version")
        let instance = request.uri.queryParameters.get("instance")
        guard version == nil || instance == nil else { throw APIError.invalid(field: "instance", "give version or instance, not both") }
        let key: MetricsKey = instance.map { .instance($0) } ?? version.map { .version(deployment: name, version: $0) } ?? .deployment(name)
        let points = aggregator.read { store, now -> [SeriesPoint]? in
            guard store.seriesByKey[.deployment(name)] != nil else { return nil }
            if case .instance(let id) = key, store.instances[id]?.deployment != name { return [] }
            return store.series(key, range: range, step: step, now: now).map {
                SeriesPoint(at: Date(timeIntervalSince1970: Double($0.end)), figures: $0.figures)
            }
        }
        guard let points else { throw Self.noFigures("deployment", name) }
        if points.isEmpty, let instance {
            throw APIError.notFound("deployment '\(name)' has no instance '\(instance)' with figures in the last hour")
        }
        if points.isEmpty, let version { throw APIError.notFound("deployment '\(name)' has no figures of version '\(version)' in the last hour") }
        let body = Series(deployment: name, version: version, instanceID: instance, rangeSeconds: range, stepSeconds: step, points: points)
        return try JSONResponse(body, status: .ok, encoder: ContractCoding.encoder).response(from: request, context: context)
    }

    func server(_ request: Request, _ context: BasicRequestContext) throws -> Response {
        try place(MetricsKey.server, "server", context.parameters.get("server_id") ?? "", request, context)
    }

    func site(_ request: Request, _ context: BasicRequestContext) throws -> Response {
        try place(MetricsKey.site, "site", context.parameters.get("site_id") ?? "", request, context)
    }

    private func place(
        _ key: (String) -> MetricsKey, _ kind: String, _ id: String, _ request: Request, _ context: BasicRequestContext
    ) throws -> Response {
        let window = try Self.duration(request, "window", default: 60, within: 1...MetricsStore.fineSeconds)
        let body = aggregator.read { store, now in
            store.figures(key(id), window: window, now: now).map {
                PlaceFigures(kind: kind, id: id, at: Date(timeIntervalSince1970: now), figures: $0)
            }
        }
        guard let body else { throw Self.noFigures(kind, id) }
        return try JSONResponse(body, status: .ok, encoder: ContractCoding.encoder).response(from: request, context: context)
    }

    func top(_ request: Request, _ context: BasicRequestContext) throws -> Response {
        let window = try Self.duration(request, "window", default: 60, within: 1...MetricsStore.fineSeconds)
        let by = request.uri.queryParameters.get("by") ?? "rate"
        let orders: [String: (MetricsFigures) -> Double?] = [
            "rate": { $0.requestsPerSecond }, "errors": { $0.errorRatio }, "p99": { $0.latencyMs?.p99 },
        ]
        guard let order = orders[by] else { throw APIError.invalid(field: "by", "must be rate, errors or p99") }
        let limitText = request.uri.queryParameters.get("limit") ?? "10"
        guard let limit = Int(limitText), (1...100).contains(limit) else {
            throw APIError.invalid(field: "limit", "must be a whole number from 1 to 100")
        }
        let items = aggregator.read { store, now in
            store.deployments.compactMap { name in
                store.figures(.deployment(name), window: window, now: now).map { TopEntry(deployment: name, figures: $0) }
            }
        }
        // Deployments without the figure (no requests in the window) come last, by name.
        let ranked = items.sorted { first, second in
            switch (order(first.figures), order(second.figures)) {
            case (let a?, let b?): a != b ? a > b : first.deployment < second.deployment
            case (.some, nil): true
            case (nil, .some): false
            case (nil, nil): first.deployment < second.deployment
            }
        }
        let body = Top(by: by, windowSeconds: window, items: Array(ranked.prefix(limit)))
        return try JSONResponse(body, status: .ok, encoder: ContractCoding.encoder).response(from: request, context: context)
    }

    // MARK: Parameters

    /// A duration parameter: whole seconds, minutes or hours (`10s`, `1m`, `1h`), within `range` seconds.
    static func duration(_ request: Request, _ name: String, default value: Int, within range: ClosedRange<Int>) throws -> Int {
        guard let text = request.uri.queryParameters.get(name) else { return value }
        guard let seconds = parseDuration(text), range.contains(seconds) else {
            throw APIError.invalid(field: name, "must be a duration like 10s, 1m or 1h, from \(range.lowerBound) to \(range.upperBound) seconds")
        }
        return seconds
    }

    static func parseDuration(_ text: String) -> Int? {
        guard let unit = text.last, let number = Int(text.dropLast()), number > 0, number <= 86_400 else { return nil }
        switch unit {
        case "s": return number
        case "m": return number * 60
        case "h": return number * 3_600
        default: return nil
        }
    }

    static func noFigures(_ kind: String, _ id: String) -> APIError {
        APIError.notFound("no figures for \(kind) '\(id)' in the last hour (its instances report every second once they run)")
    }
}
