/// A histogram as the non-zero counts of a ``HistogramLayout``, in index order: what one
/// interval of one instance holds (a few dozen entries where the dense array has 23,552), so the
/// aggregator keeps thousands of them and merges them in time proportional to what they hold.
package struct SparseHistogram: Sendable, Equatable {
    /// Counts indexes, ascending, each once.
    package private(set) var indexes: [Int32]
    /// The count at each of ``indexes``, never 0.
    package private(set) var counts: [UInt64]
    package private(set) var totalCount: UInt64

    package init() {
        indexes = []
        counts = []
        totalCount = 0
    }

    /// From entries in ascending index order with non-zero counts (the codec's and
    /// ``DenseHistogram``'s output).
    init(ascendingIndexes indexes: [Int32], counts: [UInt64]) {
        self.indexes = indexes
        self.counts = counts
        totalCount = counts.reduce(0, &+)
    }

    package var isEmpty: Bool { indexes.isEmpty }

    /// The value at `percentile` (0...100) as HdrHistogram reports it: the highest value equivalent
    /// to the recorded value at that rank; nil when empty.
    package func value(atPercentile percentile: Double, in layout: HistogramLayout) -> UInt64? {
        guard totalCount > 0 else { return nil }
        let target = rank(ofPercentile: percentile, totalCount: totalCount)
        var seen: UInt64 = 0
        for (position, count) in counts.enumerated() {
            seen += count
            if seen >= target { return layout.highestEquivalentValue(atIndex: Int(indexes[position])) }
        }
        return layout.highestEquivalentValue(atIndex: Int(indexes[indexes.count - 1]))
    }
}

/// HdrHistogram's rank of a percentile: ceil(p/100 × count), at least 1 (Java's
/// `getValueAtPercentile`, including its step just below `percentile` so that 100 × k / n lands on k).
func rank(ofPercentile percentile: Double, totalCount: UInt64) -> UInt64 {
    let requested = min(max(percentile.nextDown, 0), 100)
    return max(UInt64((requested / 100 * Double(totalCount)).rounded(.up)), 1)
}

/// A histogram as the full counts array of its layout: where values are recorded, and where
/// sparse histograms are merged before their percentiles are read. Resetting clears only the
/// entries that were touched, so one accumulator serves many merges.
package struct DenseHistogram: Sendable {
    package let layout: HistogramLayout
    private var counts: [UInt64]
    package private(set) var totalCount: UInt64 = 0
    /// Values above the layout's highest trackable value, counted but not placed.
    package private(set) var overflowCount: UInt64 = 0
    private var lowestIndex = Int.max
    private var highestIndex = -1

    package init(layout: HistogramLayout = .latencyMicroseconds) {
        self.layout = layout
        counts = Array(repeating: 0, count: layout.countsLength)
    }

    /// Records `value` (0 is kept as 0, the lowest index); false when it is past the highest trackable value.
    @discardableResult
    package mutating func record(_ value: UInt64, count: UInt64 = 1) -> Bool {
        let index = layout.index(of: value)
        guard index < counts.count else {
            overflowCount += count
            return false
        }
        add(count, at: index)
        return true
    }

    /// Adds every count of `sparse` (whose indexes come from the same layout); counts at indexes
    /// this layout cannot hold are counted in ``overflowCount``.
    package mutating func add(_ sparse: SparseHistogram) {
        for (position, index) in sparse.indexes.enumerated() {
            let count = sparse.counts[position]
            if Int(index) < counts.count {
                add(count, at: Int(index))
            } else {
                overflowCount += count
            }
        }
    }

    @inline(__always)
    private mutating func add(_ count: UInt64, at index: Int) {
        counts[index] &+= count
        totalCount &+= count
        if index < lowestIndex { lowestIndex = index }
        if index > highestIndex { highestIndex = index }
    }

    /// The value at each of `percentiles` (0...100, ascending), in one pass; nil when empty.
    package func values(atPercentiles percentiles: [Double]) -> [UInt64]? {
        guard totalCount > 0 else { return nil }
        var results: [UInt64] = []
        results.reserveCapacity(percentiles.count)
        var seen: UInt64 = 0
        var index = lowestIndex
        for percentile in percentiles {
            let target = rank(ofPercentile: percentile, totalCount: totalCount)
            while index <= highestIndex {
                seen += counts[index]
                if seen >= target { break }
                index += 1
            }
            guard index <= highestIndex else {
                results.append(layout.highestEquivalentValue(atIndex: highestIndex))
                continue
            }
            results.append(layout.highestEquivalentValue(atIndex: index))
            // The next percentile starts from this index again: take its count back out.
            seen -= counts[index]
        }
        return results
    }

    /// The mean of the recorded values (each at the middle of its range); nil when empty.
    package var mean: Double? {
        guard totalCount > 0 else { return nil }
        var sum = 0.0
        for index in stride(from: lowestIndex, through: highestIndex, by: 1) where counts[index] > 0 {
            sum += Double(layout.medianEquivalentValue(atIndex: index)) * Double(counts[index])
        }
        return sum / Double(totalCount)
    }

    /// The non-zero counts, in index order.
    package var sparse: SparseHistogram {
        guard highestIndex >= 0 else { return SparseHistogram() }
        var indexes: [Int32] = []
        var values: [UInt64] = []
        for index in lowestIndex...highestIndex where counts[index] > 0 {
            indexes.append(Int32(index))
            values.append(counts[index])
        }
        return SparseHistogram(ascendingIndexes: indexes, counts: values)
    }

    /// Empties the histogram, touching only the range that holds counts.
    package mutating func reset() {
        if highestIndex >= 0 {
            for index in lowestIndex...highestIndex { counts[index] = 0 }
        }
        lowestIndex = .max
        highestIndex = -1
        totalCount = 0
        overflowCount = 0
    }
}
