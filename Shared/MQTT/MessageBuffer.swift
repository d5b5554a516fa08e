import Synchronization

/// A bounded queue between libmosquitto's network thread and the consumers of one subscription.
///
/// The network thread appends whole batches and wakes a parked consumer once per batch, not once
/// per message: one wake-up per message halves throughput (see `shared/notes`). A consumer takes
/// messages one at a time under an uncontended lock, so an abandoned iterator leaves nothing
/// behind and a later one goes on where it stopped. When consumers fall `capacity` messages
/// behind, new messages are dropped and counted instead of growing memory. Several tasks may
/// consume one buffer at once (a pool of workers): each parked consumer gets its own message.
final class MessageBuffer: Sendable {
    private struct State {
        /// Messages from `head` on are waiting; those before it are taken and are cleared in bulk.
        var queued: [MQTTMessage] = []
        var head = 0
        /// Parked consumers, first come first served.
        var waiters: [CheckedContinuation<MQTTMessage?, Never>] = []
        var finished = false
        var dropped = 0

        var waitingCount: Int { queued.count - head }

        mutating func popFirst() -> MQTTMessage? {
            guard head < queued.count else { return nil }
            let message = queued[head]
            head += 1
            if head == queued.count {
                queued.removeAll(keepingCapacity: true)
                head = 0
            }
            return message
        }
    }

    let capacity: Int
    private let state = Mutex(State())

    init(capacity: Int) {
        precondition(capacity > 0, "a message buffer needs room for at least one message")
        self.capacity = capacity
    }

    /// Messages dropped so far because the consumer was behind.
    var droppedCount: Int { state.withLock { $0.dropped } }

    /// Messages waiting for a consumer now.
    var waitingCount: Int { state.withLock { $0.waitingCount } }

    /// Appends a batch; returns how many of its messages were dropped for lack of room.
    @discardableResult
    func append(_ batch: [MQTTMessage]) -> Int {
        guard !batch.isEmpty else { return 0 }
        let (handedOver, dropped) = state.withLock { state -> ([(CheckedContinuation<MQTTMessage?, Never>, MQTTMessage)], Int) in
            guard !state.finished else { return ([], 0) }
            var rest = batch[...]
            // Parked consumers have nothing queued: each gets a message directly.
            var handedOver: [(CheckedContinuation<MQTTMessage?, Never>, MQTTMessage)] = []
            while !state.waiters.isEmpty, let message = rest.popFirst() {
                handedOver.append((state.waiters.removeFirst(), message))
            }
            let room = max(capacity - state.waitingCount, 0)
            let taken = rest.prefix(room)
            state.queued.append(contentsOf: taken)
            let dropped = rest.count - taken.count
            state.dropped += dropped
            return (handedOver, dropped)
        }
        for (waiter, message) in handedOver { waiter.resume(returning: message) }
        return dropped
    }

    /// The next message, waiting for one; nil once finished, or when the waiting task is cancelled.
    func next() async -> MQTTMessage? {
        let ready: MQTTMessage?? = state.withLock { state in
            if let message = state.popFirst() { return .some(message) }
            return state.finished ? .some(nil) : .none
        }
        if let ready { return ready }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let resumeNow: MQTTMessage?? = state.withLock { state in
                    if let message = state.popFirst() { return .some(message) }
                    // Checked under the lock `finish` takes, so a cancellation cannot slip between.
                    if state.finished || Task.isCancelled { return .some(nil) }
                    state.waiters.append(continuation)
                    return .none
                }
                if let resumeNow { continuation.resume(returning: resumeNow) }
            }
        } onCancel: {
            finish()
        }
    }

    /// The next message, waiting for one, and with it the messages already queued behind it, at
    /// most `limit` in all; empty once finished, or when the waiting task is cancelled.
    func next(upTo limit: Int) async -> [MQTTMessage] {
        guard let first = await next() else { return [] }
        guard limit > 1 else { return [first] }
        return state.withLock { state in
            var batch = [first]
            batch.reserveCapacity(min(limit, state.waitingCount + 1))
            while batch.count < limit, let message = state.popFirst() { batch.append(message) }
            return batch
        }
    }

    /// The next message if one is waiting, without waiting.
    func poll() -> MQTTMessage? {
        state.withLock { $0.popFirst() }
    }

    /// Ends the stream: consumers get what is queued, then nil. Later appends are ignored.
    func finish() {
        let waiters = state.withLock { state in
            state.finished = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: nil) }
    }
}
