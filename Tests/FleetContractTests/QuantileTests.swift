import Testing

@testable import FleetContract

@Suite("Quantiles")
struct QuantileTests {
    @Test("quantiles by nearest rank, in any order; of sorted values without sorting again")
    func quantiles() {
        let values = (1...100).map(Double.init)
        #expect(values.shuffled().quantile(0.5) == 50 && values.quantile(0.95) == 95 && values.quantile(0.99) == 99)
        #expect(values.quantileOfSorted(0.9) == 90 && values.quantileOfSorted(1) == 100 && values.quantileOfSorted(0) == 1)
        #expect([3, 1, 2].quantile(0.5) == 2)
        #expect([Double]().quantile(0.5) == 0)
    }
}
