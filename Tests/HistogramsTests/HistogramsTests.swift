import Foundation
import Testing

@testable import Histograms

/// Latency-like samples: a log-normal body with a heavy tail, from a seeded generator so a
/// failure repeats.
private func samples(_ count: Int, seed: UInt64, medianMicroseconds: Double = 2_000, tail: Double = 0.02) -> [UInt64] {
    var state = seed
    func next() -> Double {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Double(state >> 11) / Double(1 << 53)
    }
    return (0..<count).map { _ in
        // Box-Muller for a normal, then log-normal; a share of the samples 10 to 100 times slower.
        let normal = (-2 * log(max(next(), 1e-12))).squareRoot() * cos(2 * .pi * next())
        var value = medianMicroseconds * exp(0.5 * normal)
        if next() < tail { value *= 10 + 90 * next() }
        return UInt64(max(1, min(value, 3_000_000_000)))
    }
}

private func histogram(_ values: [UInt64]) -> DenseHistogram {
    var histogram = DenseHistogram()
    for value in values { histogram.record(value) }
    return histogram
}

/// The exact value at `percentile` of the sorted samples (the nearest rank, as HdrHistogram counts ranks).
private func exact(_ sorted: [UInt64], _ percentile: Double) -> UInt64 {
    // percentile × count first: 99.9 / 100 × 50,000 is 49,950.000000000004 in binary floating point.
    let rank = max(Int((percentile * Double(sorted.count) / 100).rounded(.up)), 1)
    return sorted[rank - 1]
}

@Suite("HdrHistogram layout and percentiles")
struct HistogramTests {
    @Test("the layout of 3 digits up to an hour is HdrHistogram's: 2048 sub-buckets, 23 half-buckets")
    func layout() {
        let layout = HistogramLayout.latencyMicroseconds
        #expect(layout.subBucketCount == 2_048 && layout.countsLength == 23 * 1_024)
        // Values below 2048 have their own index; above, a range per index that doubles per bucket.
        #expect(layout.index(of: 0) == 0 && layout.index(of: 2_047) == 2_047)
        #expect(layout.index(of: 2_048) == 2_048 && layout.index(of: 2_049) == 2_048 && layout.index(of: 2_050) == 2_049)
        for value: UInt64 in [1, 999, 2_048, 12_345, 1_000_000, 3_599_999_999] {
            let index = layout.index(of: value)
            #expect(layout.lowestEquivalentValue(atIndex: index) <= value && value <= layout.highestEquivalentValue(atIndex: index), "\(value)")
            // 3 significant digits: the range of an index is within 0.1 % of its values.
            let width = layout.highestEquivalentValue(atIndex: index) - layout.lowestEquivalentValue(atIndex: index)
            #expect(Double(width) <= Double(value) / 1_000, "\(value): range \(width)")
        }
        #expect(layout.index(of: 3_600_000_000) < layout.countsLength && layout.index(of: 1 << 33) >= layout.countsLength)
    }

    @Test("p50, p95, p99 and p99.9 of heavy-tailed samples are within 0.1 % of the exact values")
    func percentilesAreExactEnough() throws {
        for seed: UInt64 in [1, 2, 3] {
            let values = samples(50_000, seed: seed)
            let sorted = values.sorted()
            let recorded = histogram(values)
            let percentiles = [50.0, 95, 99, 99.9, 100]
            let found = try #require(recorded.values(atPercentiles: percentiles))
            for (percentile, value) in zip(percentiles, found) {
                let truth = Double(exact(sorted, percentile))
                #expect(abs(Double(value) - truth) / truth <= 0.001, "seed \(seed) p\(percentile): \(value) against \(truth)")
            }
            // The sparse form answers the same.
            #expect(recorded.sparse.value(atPercentile: 99, in: .latencyMicroseconds) == found[2])
            #expect(recorded.totalCount == 50_000)
        }
    }

    @Test("merging sparse histograms equals recording every value into one")
    func merging() {
        let parts = (0..<20).map { samples(500, seed: UInt64($0) + 10, medianMicroseconds: Double(500 + 200 * $0)) }
        var merged = DenseHistogram()
        for part in parts { merged.add(histogram(part).sparse) }
        #expect(merged.sparse == histogram(parts.flatMap { $0 }).sparse)
        // Reset clears it for the next merge.
        merged.reset()
        #expect(merged.totalCount == 0 && merged.sparse.isEmpty && merged.values(atPercentiles: [50]) == nil)
        merged.record(7)
        #expect(merged.values(atPercentiles: [0, 50, 100]) == [7, 7, 7])
    }

    @Test("a value past an hour is counted as overflow, not placed")
    func overflow() {
        var histogram = DenseHistogram()
        let placed = histogram.record(1 << 40)
        #expect(!placed)
        #expect(histogram.overflowCount == 1 && histogram.totalCount == 0)
    }
}

@Suite("HdrHistogram V2 encoding")
struct HdrHistogramV2Tests {
    @Test("encode then decode gives back every count")
    func roundTrip() throws {
        for values in [[1], [0, 0, 5], samples(10_000, seed: 7), samples(3, seed: 8)] {
            let sparse = histogram(values).sparse
            let decoded = try HdrHistogramV2.decode(HdrHistogramV2.encode(sparse))
            #expect(decoded == sparse)
        }
        #expect(try HdrHistogramV2.decode(HdrHistogramV2.encode(SparseHistogram())).isEmpty)
    }

    @Test("the header is V2's: compressed cookie, inner cookie, 3 digits, lowest 1, highest an hour")
    func header() throws {
        let data = HdrHistogramV2.encode(histogram([100, 200]).sparse)
        #expect(Array(data.prefix(4)) == [0x1c, 0x84, 0x93, 0x14])
        #expect(Int(data[4]) << 24 | Int(data[5]) << 16 | Int(data[6]) << 8 | Int(data[7]) == data.count - 8)
    }

    @Test("ZigZag LEB128 numbers as HdrHistogram writes them, up to 9 bytes")
    func zigZag() throws {
        for value: Int64 in [0, 1, -1, 63, -64, 64, 300, -2_048, 1 << 40, Int64.max, Int64.min] {
            var bytes: [UInt8] = []
            HdrHistogramV2.putZigZag(value, into: &bytes)
            var position = 0
            #expect(try HdrHistogramV2.readZigZag(bytes, at: &position) == value)
            #expect(position == bytes.count && bytes.count <= 9)
        }
        var bytes: [UInt8] = []
        HdrHistogramV2.putZigZag(-3, into: &bytes)
        #expect(bytes == [5])
    }

    @Test("malformed encodings are refused with their reason")
    func malformed() throws {
        let good = HdrHistogramV2.encode(histogram([100, 200, 300]).sparse)
        var badCookie = good
        badCookie[0] = 0x00
        var badLength = good
        badLength[7] &+= 1
        var badZlib = good
        badZlib[12] ^= 0xff
        let cases: [(Data, String)] = [
            (Data(), "shorter"), (badCookie, "cookie"), (badLength, "compressed length"), (good.prefix(good.count - 3), "compressed length"),
            (badZlib, "zlib"),
        ]
        for (data, reason) in cases {
            #expect(throws: HdrHistogramV2.DecodingError.self) { try HdrHistogramV2.decode(data) }
            do {
                _ = try HdrHistogramV2.decode(data)
            } catch {
                #expect(error.description.contains(reason), "\(error.description)")
            }
        }
        #expect(throws: HdrHistogramV2.DecodingError.self) { try HdrHistogramV2.decode(base64: "not base64!") }
        // Another precision than the layout's is refused, not misread.
        let twoDigits = HistogramLayout(highestTrackableValue: 3_600_000_000, significantDigits: 2)
        #expect(throws: HdrHistogramV2.DecodingError.self) { try HdrHistogramV2.decode(good, layout: twoDigits) }
    }
}

/// Against the reference: PyPI's `hdrhistogram` (the Python port of HdrHistogram), in the Python
/// scripts/test prepares (MODELFLEET_TEST_PYTHON).
@Suite("HdrHistogram V2 against the Python reference")
struct HdrHistogramReferenceTests {
    struct MissingPython: Error, CustomStringConvertible {
        var description: String { "MODELFLEET_TEST_PYTHON is not set: run the tests with scripts/test, which prepares a Python with hdrhistogram" }
    }

    /// Runs `script` with `input` on stdin; returns its stdout. The process is waited for on a
    /// thread of its own: the tests share one process, whose two cooperative threads (two cores)
    /// would otherwise sit blocked for as long as Python takes, stalling every other test's
    /// tasks (an MQTT request of another suite timed out so, in a fresh-clone run).
    private func python(_ script: String, input: String) async throws -> String {
        guard let python = ProcessInfo.processInfo.environment["MODELFLEET_TEST_PYTHON"], !python.isEmpty else { throw MissingPython() }
        let (output, errors, status) = try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try Self.run(python, script, input: input) })
            }
        }
        #expect(status == 0, "\(String(decoding: errors, as: UTF8.self))")
        return String(decoding: output, as: UTF8.self)
    }

    /// Runs the Python process to its end, blocking: stdout, stderr and the exit status.
    private static func run(_ python: String, _ script: String, input: String) throws -> (Data, Data, Int32) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", script]
        let stdin = Pipe()
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        let output = stdout.fileHandleForReading.readDataToEndOfFile()
        let errors = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (output, errors, process.terminationStatus)
    }

    @Test("the reference decodes what Swift encodes: the same total, counts and percentiles")
    func referenceDecodesSwift() async throws {
        let values = samples(20_000, seed: 42)
        let recorded = histogram(values)
        let encoded = HdrHistogramV2.encodeBase64(recorded.sparse)
        let script = """
            import sys, json
            from hdrh.histogram import HdrHistogram
            h = HdrHistogram.decode(sys.stdin.read().strip())
            print(json.dumps([h.get_total_count()] + [h.get_value_at_percentile(p) for p in (50, 95, 99, 99.9)]
                             + [h.get_count_at_value(v) for v in (2000, 2500, 40000)]))
            """
        let output = try await python(script, input: encoded)
        let answer = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [Int])
        let ours = try #require(recorded.values(atPercentiles: [50, 95, 99, 99.9]))
        let counts = [2_000, 2_500, 40_000].map { value in
            let index = HistogramLayout.latencyMicroseconds.index(of: UInt64(value))
            let sparse = recorded.sparse
            return sparse.indexes.firstIndex(of: Int32(index)).map { Int(sparse.counts[$0]) } ?? 0
        }
        #expect(answer == [Int(recorded.totalCount)] + ours.map { Int($0) } + counts)
    }

    @Test("Swift decodes what the reference encodes: the same percentiles")
    func swiftDecodesReference() async throws {
        let values = samples(20_000, seed: 43)
        let script = """
            import sys, json
            from hdrh.histogram import HdrHistogram
            h = HdrHistogram(1, 3600000000, 3)
            for v in json.load(sys.stdin):
                h.record_value(v)
            print(json.dumps({"encoded": h.encode().decode(), "p": [h.get_value_at_percentile(p) for p in (50, 95, 99, 99.9)],
                              "total": h.get_total_count()}))
            """
        let output = try await python(script, input: String(describing: values))
        let answer = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
        let decoded = try HdrHistogramV2.decode(base64: try #require(answer["encoded"] as? String))
        var merged = DenseHistogram()
        merged.add(decoded)
        #expect(Int(decoded.totalCount) == answer["total"] as? Int)
        #expect(merged.values(atPercentiles: [50, 95, 99, 99.9])?.map { Int($0) } == answer["p"] as? [Int])
        #expect(merged.sparse == histogram(values).sparse, "the same counts at the same indexes")
    }
}
