/// Where HdrHistogram puts a value: the bucket and sub-bucket arithmetic of the reference
/// implementations (Java `AbstractHistogram`, C `hdr_histogram.c`), for a lowest discernible
/// value of 1, so that the indexes here are those of every other HdrHistogram library.
///
/// A histogram of `significantDigits` digits keeps every value within `10^-digits` of its true
/// value (3 digits: 0.1 %); the counts array grows by `subBucketHalfCount` entries per doubling of
/// the highest trackable value.
package struct HistogramLayout: Sendable, Equatable {
    package let highestTrackableValue: UInt64
    package let significantDigits: Int
    let subBucketHalfCountMagnitude: Int
    let subBucketHalfCount: Int
    let subBucketCount: Int
    let subBucketMask: UInt64
    let leadingZeroCountBase: Int
    /// The length of the counts array: every index of a value up to the highest trackable is below it.
    package let countsLength: Int

    /// The layout of latencies in microseconds, 3 significant digits, up to one hour: what
    /// agents record and the aggregator merges.
    package static let latencyMicroseconds = HistogramLayout(highestTrackableValue: 3_600_000_000, significantDigits: 3)

    /// A layout for values 1...`highestTrackableValue` (at least 2) with 1 to 5 significant digits.
    package init(highestTrackableValue: UInt64, significantDigits: Int) {
        precondition((1...5).contains(significantDigits) && highestTrackableValue >= 2)
        self.highestTrackableValue = highestTrackableValue
        self.significantDigits = significantDigits
        var largestWithSingleUnitResolution: UInt64 = 2
        for _ in 0..<significantDigits { largestWithSingleUnitResolution *= 10 }
        // ceil(log2(x)) for the sub-bucket count, a power of two.
        let subBucketCountMagnitude = 64 - (largestWithSingleUnitResolution - 1).leadingZeroBitCount
        subBucketHalfCountMagnitude = max(subBucketCountMagnitude, 1) - 1
        subBucketCount = 1 << (subBucketHalfCountMagnitude + 1)
        subBucketHalfCount = subBucketCount / 2
        subBucketMask = UInt64(subBucketCount - 1)
        leadingZeroCountBase = 64 - (subBucketHalfCountMagnitude + 1)
        var smallestUntrackable = UInt64(subBucketCount)
        var buckets = 1
        while smallestUntrackable <= highestTrackableValue {
            if smallestUntrackable > UInt64.max / 2 {
                buckets += 1
                break
            }
            smallestUntrackable <<= 1
            buckets += 1
        }
        countsLength = (buckets + 1) * subBucketHalfCount
    }

    /// The counts index of `value`; may be past ``countsLength`` for a value above the highest trackable.
    @inline(__always)
    package func index(of value: UInt64) -> Int {
        let bucket = leadingZeroCountBase - (value | subBucketMask).leadingZeroBitCount
        let subBucket = Int(truncatingIfNeeded: value >> UInt64(bucket))
        return ((bucket + 1) << subBucketHalfCountMagnitude) + (subBucket - subBucketHalfCount)
    }

    /// The smallest value that lands on `index`.
    package func lowestEquivalentValue(atIndex index: Int) -> UInt64 {
        var bucket = (index >> subBucketHalfCountMagnitude) - 1
        var subBucket = (index & (subBucketHalfCount - 1)) + subBucketHalfCount
        if bucket < 0 {
            subBucket -= subBucketHalfCount
            bucket = 0
        }
        return UInt64(subBucket) << UInt64(bucket)
    }

    /// The largest value that lands on `index`: what HdrHistogram reports as a percentile's value.
    package func highestEquivalentValue(atIndex index: Int) -> UInt64 {
        let lowest = lowestEquivalentValue(atIndex: index)
        let bucket = max((index >> subBucketHalfCountMagnitude) - 1, 0)
        return lowest + (UInt64(1) << UInt64(bucket)) - 1
    }

    /// The midpoint of `index`'s range: the value a mean is computed with.
    package func medianEquivalentValue(atIndex index: Int) -> UInt64 {
        let lowest = lowestEquivalentValue(atIndex: index)
        return lowest + (highestEquivalentValue(atIndex: index) - lowest + 1) / 2
    }
}
