import FleetContract
import Foundation
import Hummingbird
import MetricsAggregatorContract
import OpenAPIRuntime
import ServiceRuntime

/// The aggregator's REST API, its contract's `APIProtocol` (openapi.yaml, generated into
/// MetricsAggregatorContract): current figures and series of a deployment, its versions and instances,
/// of a server and a site, and the fleet's top deployments. Refusals are thrown as ``APIError``s
/// and answered by APIErrorMiddleware, like every other service's.
struct MetricsAPI: APIProtocol {
    let aggregator: any MetricsSource

    func addRoutes(to router: Router<BasicRequestContext>) throws {
        try router.addContract(document: MetricsAggregatorOpenAPI.text) { try registerHandlers(on: $0, configuration: $1, middlewares: $2) }
    }

    private typealias Schemas = Components.Schemas

    // MARK: Handlers

    func getDeploymentMetrics(_ input: Operations.GetDeploymentMetrics.Input) async throws -> Operations.GetDeploymentMetrics.Output {
        let name = input.path.deployment
        let window = try Self.duration(input.query.window, "window", default: 60, within: 1...MetricsStore.fineSeconds)
        let body = aggregator.read { store, now -> Schemas.DeploymentMetrics? in
            guard let snapshot = store.snapshot(of: name, window: window, now: now) else { return nil }
            let instances = store.instances(of: name).map { id, state in
                Schemas.InstanceMetrics(
                    instanceId: id, version: state.version, server: state.server, site: state.site, ready: state.ready,
                    stale: now - state.lastSeen > MetricsStore.staleAfterSeconds, ageSeconds: max(now - state.lastSeen, 0),
                    figures: store.figures(.instance(id), window: window, now: now))
            }
            return Schemas.DeploymentMetrics(
                deployment: snapshot.deployment, at: snapshot.at, instances: snapshot.instances, readyInstances: snapshot.readyInstances,
                newestDataAgeSeconds: snapshot.newestDataAgeSeconds, staleAfterSeconds: snapshot.staleAfterSeconds, figures: snapshot.figures,
                versions: snapshot.versions.map {
                    Schemas.VersionMetrics(version: $0.version, instances: $0.instances, readyInstances: $0.readyInstances, figures: $0.figures)
                },
                instanceFigures: instances)
        }
        guard let body else { throw Self.noFigures("deployment", name) }
        return .ok(.init(body: .json(body)))
    }

    func getDeploymentMetricSeries(
        _ input: Operations.GetDeploymentMetricSeries.Input
    ) async throws
        -> Operations.GetDeploymentMetricSeries.Output
    {
        let name = input.path.deployment
        let range = try Self.duration(input.query.range, "range", default: 300, within: 1...(MetricsStore.coarseMinutes * 60))
        let step = try Self.duration(input.query.step, "step", default: range > MetricsStore.fineSeconds ? 60 : 10, within: 1...range)
        guard range % step == 0 else { throw APIError.invalid(field: "step", "must divide range (\(range) s) evenly") }
        if range > MetricsStore.fineSeconds, step % 60 != 0 {
            throw APIError.invalid(
                field: "step", "must be whole minutes for a range over \(MetricsStore.fineSeconds / 60) minutes (data that old is kept per minute)")
        }
        guard range / step <= 3_600 else { throw APIError.invalid(field: "step", "would make more than 3600 points") }
        let (version, instance) = (input.query.version, input.query.instance)
        guard version == nil || instance == nil else { throw APIError.invalid(field: "instance", "give version or instance, not both") }
        let key: MetricsKey = instance.map { .instance($0) } ?? version.map { .version(deployment: name, version: $0) } ?? .deployment(name)
        let points = aggregator.read { store, now -> [Schemas.Series.PointsPayloadPayload]? in
            guard store.seriesByKey[.deployment(name)] != nil else { return nil }
            if case .instance(let id) = key, store.instances[id]?.deployment != name { return [] }
            return store.series(key, range: range, step: step, now: now).map {
                .init(at: Date(timeIntervalSince1970: Double($0.end)), figures: $0.figures)
            }
        }
        guard let points else { throw Self.noFigures("deployment", name) }
        if points.isEmpty, let instance {
            throw APIError.notFound("deployment '\(name)' has no instance '\(instance)' with figures in the last hour")
        }
        if points.isEmpty, let version { throw APIError.notFound("deployment '\(name)' has no figures of version '\(version)' in the last hour") }
        let body = Schemas.Series(deployment: name, version: version, instanceId: instance, rangeSeconds: range, stepSeconds: step, points: points)
        return .ok(.init(body: .json(body)))
    }

    func getServerMetrics(_ input: Operations.GetServerMetrics.Input) async throws -> Operations.GetServerMetrics.Output {
        .ok(.init(body: .json(try place(MetricsKey.server, .server, input.path.serverId, window: input.query.window))))
    }

    func getSiteMetrics(_ input: Operations.GetSiteMetrics.Input) async throws -> Operations.GetSiteMetrics.Output {
        .ok(.init(body: .json(try place(MetricsKey.site, .site, input.path.siteId, window: input.query.window))))
    }

    private func place(
        _ key: (String) -> MetricsKey, _ kind: Schemas.PlaceMetrics.KindPayload, _ id: String, window text: String?
    ) throws -> Schemas.PlaceMetrics {
        let window = try Self.duration(text, "window", default: 60, within: 1...MetricsStore.fineSeconds)
        let body = aggregator.read { store, now in
            store.figures(key(id), window: window, now: now).map {
                Schemas.PlaceMetrics(kind: kind, id: id, at: Date(timeIntervalSince1970: now), figures: $0)
            }
        }
        guard let body else { throw Self.noFigures(kind.rawValue, id) }
        return body
    }

    func getTopDeployments(_ input: Operations.GetTopDeployments.Input) async throws -> Operations.GetTopDeployments.Output {
        let window = try Self.duration(input.query.window, "window", default: 60, within: 1...MetricsStore.fineSeconds)
        let by = input.query.by ?? .rate
        let order: (MetricsFigures) -> Double? =
            switch by {
            case .rate: { $0.requestsPerSecond }
            case .errors: { $0.errorRatio }
            case .p99: { $0.latencyMs?.p99 }
            }
        let limit = input.query.limit ?? 10
        guard (1...100).contains(limit) else { throw APIError.invalid(field: "limit", "must be a whole number from 1 to 100") }
        let items = aggregator.read { store, now in
            store.deployments.compactMap { name in
                store.figures(.deployment(name), window: window, now: now).map { Schemas.Top.ItemsPayloadPayload(deployment: name, figures: $0) }
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
        return .ok(.init(body: .json(Schemas.Top(by: by.rawValue, windowSeconds: window, items: Array(ranked.prefix(limit))))))
    }

    // MARK: Parameters

    /// A duration parameter: whole seconds, minutes or hours (`10s`, `1m`, `1h`), within `range` seconds.
    static func duration(_ text: String?, _ name: String, default value: Int, within range: ClosedRange<Int>) throws -> Int {
        guard let text else { return value }
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

/// What the REST API reads figures from: the ``Aggregator``, or a store the handler tests fill.
protocol MetricsSource: Sendable {
    /// Runs `body` on the store under its lock, with the current time in seconds since 1970.
    func read<Result>(_ body: (inout MetricsStore, Double) -> Result) -> Result
}

extension Aggregator: MetricsSource {}
