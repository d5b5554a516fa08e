/// Whether the gateway's own inbound queues are behind, judged at each look (once a second) from
/// what each queue says: messages waiting, taken by its consumer so far, dropped so far.
///
/// A queue is behind when not all that waited at the previous look has been taken since (so a
/// message has waited longer than the interval), or when it dropped messages since. A queue that
/// keeps up is often non-empty at a look under steady traffic; that alone is not behind.
struct InboundBacklog: Sendable {
    struct Reading: Sendable, Equatable {
        var waiting: Int
        var taken: Int
        var dropped: Int
    }

    private var previous: [Reading] = []

    /// Whether any queue fell behind since the previous look; `readings` in the same order each time.
    mutating func isBehind(_ readings: [Reading]) -> Bool {
        if previous.count != readings.count { previous = Array(repeating: Reading(waiting: 0, taken: 0, dropped: 0), count: readings.count) }
        defer { previous = readings }
        return zip(previous, readings).contains { before, now in
            now.dropped > before.dropped || now.taken - before.taken < before.waiting
        }
    }
}
