extension Array where Element == Double {
    /// The `fraction` quantile of the values by nearest rank (an exact value of the set, never an
    /// interpolation); 0 when empty. Agents' telemetry latencies (`latency_ms.p50` …) and the
    /// benchmarks' figures are computed this way.
    package func quantile(_ fraction: Double) -> Double {
        sorted().quantileOfSorted(fraction)
    }

    /// ``quantile(_:)`` of values already sorted ascending, for several quantiles of one set.
    package func quantileOfSorted(_ fraction: Double) -> Double {
        guard !isEmpty else { return 0 }
        let rank = Int((fraction * Double(count)).rounded(.up)) - 1
        return self[Swift.max(0, Swift.min(count - 1, rank))]
    }
}
