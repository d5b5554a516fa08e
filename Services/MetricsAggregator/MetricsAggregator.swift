import ServiceRuntime

/// The `metrics-aggregator` executable: the instances' requests, latencies and resource use,
/// added up per instance, deployment, version, server and site over rolling windows; REST,
/// per-deployment snapshots every second, and Prometheus gauges (docs/metrics.md).
@main
enum MetricsAggregatorMain {
    static func main() async {
        await ServiceMain.run(.metricsAggregator, setup: buildAggregator)
    }
}

extension ServiceDescriptor {
    static let metricsAggregator = ServiceDescriptor(name: "metrics-aggregator", defaultHTTPPort: 8084)
}

/// Wires the aggregator's parts onto the runtime.
func buildAggregator(_ context: ServiceContext) throws -> ServiceParts {
    let aggregator = Aggregator(
        mqtt: context.mqtt, registry: context.metrics, instance: context.configuration.instanceID, logger: context.logger)
    var parts = ServiceParts()
    parts.services = [aggregator]
    parts.routes = { router in try MetricsAPI(aggregator: aggregator).addRoutes(to: router) }
    return parts
}
