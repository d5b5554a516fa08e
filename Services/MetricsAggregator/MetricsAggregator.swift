import ServiceRuntime

/// The `metrics-aggregator` executable. Aggregates fleet telemetry into rolling windows. Its domain work is not built yet (README, Status).
@main
enum MetricsAggregatorMain {
    static func main() async {
        await ServiceMain.run(.metricsAggregator)
    }
}

extension ServiceDescriptor {
    static let metricsAggregator = ServiceDescriptor(name: "metrics-aggregator", defaultHTTPPort: 8084)
}
