package import Foundation
package import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// An MQTT 5 client over libmosquitto, for services.
///
/// Run it as a `Service` (first in the `ServiceGroup`, so it stops last): `run()` connects, keeps
/// reconnecting with capped exponential backoff and jitter, resubscribes everything after each
/// reconnect, and disconnects cleanly on graceful shutdown or cancellation. Publish, subscribe and
/// request may be called before the connection is up: QoS 1 and 2 publishes and subscriptions wait
/// for it; QoS 0 publishes fail with ``MQTTError/notConnected``.
package final class MQTTClient: Service, Sendable {
    package let configuration: MQTTConfiguration
    private let core: Core

    package init(configuration: MQTTConfiguration, logger: Logger) throws(MQTTError) {
        try MQTTTopic.validateName(configuration.responseTopic)
        if let will = configuration.lastWill { try MQTTTopic.validateName(will.topic) }
        for birth in configuration.birth?() ?? [] { try MQTTTopic.validateName(birth.topic) }
        if let farewell = configuration.farewell?() { try MQTTTopic.validateName(farewell.topic) }
        self.configuration = configuration
        var logger = logger
        logger[metadataKey: "mqtt_client"] = "\(configuration.clientID)"
        self.core = try Core(configuration: configuration, logger: logger)
    }

    package func run() async throws {
        try await core.run()
    }

    /// The connection as it is now.
    package var connectionState: MQTTConnectionState { core.connectionState }

    /// Returns once connected; throws ``MQTTError/connectTimedOut(_:)`` after `timeout`.
    package func waitUntilConnected(timeout: Duration? = nil) async throws {
        try await core.waitUntilConnected(timeout: timeout)
    }

    /// Publishes a message. QoS 0 returns once queued; QoS 1 and 2 return once the broker has
    /// acknowledged the message (PUBACK / PUBCOMP), waiting through reconnects.
    package func publish(
        _ topic: String,
        payload: Data,
        qos: MQTTQoS = .atLeastOnce,
        retain: Bool = false,
        properties: MQTTProperties = MQTTProperties()
    ) async throws {
        try await core.publish(topic: topic, payload: payload, qos: qos, retain: retain, properties: properties)
    }

    /// Subscribes and returns once the broker has acknowledged the subscription. Messages arrive in
    /// the returned sequence; ending it (or cancelling the consuming task, or dropping the sequence)
    /// unsubscribes. A consumer more than `bufferCapacity` messages behind loses the newest ones,
    /// counted in ``MQTTSubscription/droppedCount``.
    ///
    /// Several subscriptions to the same filter share one broker subscription; each new one is
    /// sent to the broker again so that it receives the retained messages, which earlier
    /// subscribers of that filter then see a second time (ModelFleet's consumers are idempotent).
    package func subscribe(to filter: String, qos: MQTTQoS = .atLeastOnce, bufferCapacity: Int? = nil) async throws -> MQTTSubscription {
        let subscription = try makeSubscription(to: filter, qos: qos, bufferCapacity: bufferCapacity)
        try await core.waitForSubscriptionAcknowledgement(filter: filter, localID: subscription.localID)
        return subscription
    }

    /// Subscribes to every filter at once and returns once the broker has acknowledged them all:
    /// one round trip for the lot instead of one each. Throws the first refusal.
    package func subscribe(
        _ filters: [(filter: String, qos: MQTTQoS, bufferCapacity: Int?)]
    ) async throws -> [MQTTSubscription] {
        let subscriptions = try filters.map { try makeSubscription(to: $0.filter, qos: $0.qos, bufferCapacity: $0.bufferCapacity) }
        do {
            for subscription in subscriptions {
                try await core.waitForSubscriptionAcknowledgement(filter: subscription.filter, localID: subscription.localID)
            }
        } catch {
            for subscription in subscriptions { subscription.cancel() }
            throw error
        }
        return subscriptions
    }

    /// Registers a subscription at once, without waiting: it is sent to the broker now if
    /// connected, else on connect. Made before `run()`, it is in place before the first message
    /// of a resumed persistent session can arrive.
    package func makeSubscription(to filter: String, qos: MQTTQoS = .atLeastOnce, bufferCapacity: Int? = nil) throws -> MQTTSubscription {
        try core.makeSubscription(filter: filter, qos: qos, bufferCapacity: bufferCapacity ?? configuration.subscriptionBufferCapacity)
    }

    /// MQTT 5 request/response: publishes with this client's response topic and a fresh correlation
    /// id, and returns the matching response. Throws ``MQTTError/requestTimedOut(topic:timeout:)``
    /// when none arrives in time and ``MQTTError/requestFailed(topic:message:)`` when the responder
    /// answered with an error.
    package func request(
        _ topic: String,
        payload: Data,
        timeout: Duration = .seconds(5),
        properties: MQTTProperties = MQTTProperties()
    ) async throws -> MQTTMessage {
        try await core.request(topic: topic, payload: payload, timeout: timeout, properties: properties)
    }

    /// Serves requests arriving on `filter` (use `$share/<group>/…` to share the work between
    /// replicas) until the calling task is cancelled. Each request is answered on its response
    /// topic with its correlation data; a handler that throws answers with an `error` user
    /// property holding the error's description. Messages without a response topic are dropped
    /// and counted.
    package func serveRequests(
        on filter: String,
        qos: MQTTQoS = .atLeastOnce,
        maxConcurrentRequests: Int = 64,
        handler: @escaping @Sendable (MQTTMessage) async throws -> MQTTReply
    ) async throws {
        let subscription = try await subscribe(to: filter, qos: qos)
        await withTaskGroup(of: Void.self) { group in
            var running = 0
            for await request in subscription {
                guard let responseTopic = request.properties.responseTopic else {
                    core.countDrop(reason: "request_without_response_topic")
                    core.logger.warning("dropped a request without a response topic", metadata: ["topic": "\(request.topic)"])
                    continue
                }
                if running >= maxConcurrentRequests {
                    await group.next()
                    running -= 1
                }
                running += 1
                group.addTask { await self.answer(request, on: responseTopic, handler: handler) }
            }
        }
    }

    private func answer(
        _ request: MQTTMessage,
        on responseTopic: String,
        handler: @Sendable (MQTTMessage) async throws -> MQTTReply
    ) async {
        let reply: MQTTReply
        do {
            reply = try await handler(request)
        } catch {
            reply = MQTTReply(payload: Data(), userProperties: [MQTTUserProperty(Core.errorProperty, "\(error)")])
        }
        let properties = MQTTProperties(
            contentType: reply.contentType,
            correlationData: request.properties.correlationData,
            userProperties: reply.userProperties
        )
        do {
            try await publish(responseTopic, payload: reply.payload, qos: .atLeastOnce, properties: properties)
        } catch {
            core.countDrop(reason: "reply_not_sent")
            core.logger.warning("could not send a reply", metadata: ["topic": "\(responseTopic)", "error": "\(error)"])
        }
    }
}

/// The messages of one subscription, in arrival order. See ``MQTTClient/subscribe(to:qos:bufferCapacity:)``.
package final class MQTTSubscription: AsyncSequence, Sendable {
    package typealias Element = MQTTMessage
    package typealias Failure = Never

    package let filter: String
    let localID: Int
    let buffer: MessageBuffer
    fileprivate let core: MQTTClient.Core

    fileprivate init(filter: String, localID: Int, buffer: MessageBuffer, core: MQTTClient.Core) {
        self.filter = filter
        self.localID = localID
        self.buffer = buffer
        self.core = core
    }

    deinit { cancel() }

    /// Messages dropped because this subscription's consumer was `bufferCapacity` messages behind.
    package var droppedCount: Int { buffer.droppedCount }

    /// Unsubscribes and ends the sequence after what is already queued. Idempotent.
    package func cancel() {
        core.removeSubscription(filter: filter, localID: localID)
        buffer.finish()
    }

    package func makeAsyncIterator() -> AsyncIterator { AsyncIterator(subscription: self) }

    /// Messages received and not yet taken by a consumer.
    package var waitingCount: Int { buffer.waitingCount }

    /// For a consumer that handles messages in bulk: the next message, waiting for it, and the
    /// messages already queued behind it, at most `limit` (at least 1) in all. Never waits for a
    /// batch to fill, so a quiet subscription hands over single messages as promptly as `next()`.
    /// Empty when the sequence has ended (and the subscription is cancelled, as by the iterator).
    package func nextBatch(upTo limit: Int) async -> [MQTTMessage] {
        let batch = await buffer.next(upTo: Swift.max(limit, 1))
        if batch.isEmpty { cancel() }
        return batch
    }

    /// Hands `body` each batch of ``nextBatch(upTo:)``, one after the other, until the sequence
    /// ends: the loop of a consumer that settles what is queued in one go (a transaction, one
    /// forwarded message).
    package func forEachBatch(upTo limit: Int, _ body: ([MQTTMessage]) async -> Void) async {
        while true {
            let batch = await nextBatch(upTo: limit)
            if batch.isEmpty { return }
            await body(batch)
        }
    }

    /// Iterators share the subscription's queue: one that is abandoned leaves its messages to
    /// the next. Cancelling the task that waits in `next()` ends the subscription.
    package struct AsyncIterator: AsyncIteratorProtocol {
        fileprivate let subscription: MQTTSubscription

        package mutating func next() async -> MQTTMessage? {
            guard let message = await subscription.buffer.next() else {
                subscription.cancel()
                return nil
            }
            return message
        }
    }
}

// MARK: - The state behind the client

extension MQTTClient {
    /// Owns the libmosquitto handle, the network thread and all shared state. Callbacks from
    /// libmosquitto arrive here on the network thread (``MosquittoEvents``).
    final class Core: MosquittoEvents, Sendable {
        static let errorProperty = "error"
        /// Largest number of received messages held back to be handed over as one batch.
        private static let maximumBatch = 512

        private enum ResponseSlot {
            case pending
            case waiting(CheckedContinuation<MQTTMessage, any Error>)
            case arrived(MQTTMessage)
        }

        /// One broker subscription (one filter) and the local subscribers that share it.
        private struct FilterEntry {
            var id: UInt32
            var qos: MQTTQoS
            var buffers: [Int: MessageBuffer] = [:]
            var acknowledged = false
            /// Callers of `subscribe` waiting for the SUBACK, by token, with the local subscription they wait for.
            var ackWaiters: [Int: (localID: Int, continuation: CheckedContinuation<Void, any Error>)] = [:]
        }

        private struct State {
            var connection = MQTTConnectionState.connecting
            var started = false
            var stopRequested = false
            var nextToken = 0
            var connectWaiters: [Int: CheckedContinuation<Void, any Error>] = [:]
            var publishWaiters: [Int32: (token: Int, continuation: CheckedContinuation<Void, any Error>)] = [:]
            var publishTokens: [Int: Int32] = [:]
            var filters: [String: FilterEntry] = [:]
            var filterByID: [UInt32: String] = [:]
            var nextSubscriptionID: UInt32 = 1
            /// SUBSCRIBE message ids waiting for their SUBACK, and the filter each was for.
            var subackRoutes: [Int32: String] = [:]
            /// Why the broker refused a subscription, by local subscription id, until its
            /// subscriber asks: a SUBACK can come before `subscribe` starts waiting for it.
            var refusedSubscriptions: [Int: MQTTError] = [:]
            var responses: [Data: ResponseSlot] = [:]

            mutating func token() -> Int {
                nextToken += 1
                return nextToken
            }
        }

        /// Touched only on the network thread (inside `networkLoop` and the callbacks it runs); its
        /// lock is never contended (the receive ratio to C stayed 0.99 with it: scripts/bench-mqtt).
        private struct NetworkThreadState {
            var pending: [UInt32: [MQTTMessage]] = [:]
            var pendingCount = 0
            /// Messages handed to subscriptions so far (responses to requests not counted), for
            /// ``Mosquitto/readWaiting(maximumPackets:delivered:)``.
            var delivered = 0
            var connectedSinceLastAttempt = false
            /// Why the broker refused this attempt's CONNECT (bad credentials): the connection's
            /// end that follows is its consequence, and must not hide it from the state and logs.
            var refusal: String?
        }

        let configuration: MQTTConfiguration
        /// ``MQTTConfiguration/responseTopic``, made once: every received message is compared with it.
        let responseTopic: String
        let logger: Logger
        private let mosquitto: Mosquitto
        private let state = Mutex(State())
        private let thread = Mutex(NetworkThreadState())

        private let receivedCounter = MQTTMetrics.received
        private let publishedCounter = MQTTMetrics.published
        private let connectsCounter = MQTTMetrics.connects
        private let connectedGauge = MQTTMetrics.connected

        init(configuration: MQTTConfiguration, logger: Logger) throws(MQTTError) {
            self.configuration = configuration
            self.responseTopic = configuration.responseTopic
            self.logger = logger
            self.mosquitto = try Mosquitto(clientID: configuration.clientID, cleanStart: configuration.cleanStart)
            mosquitto.setEvents(self)
            try mosquitto.setCredentials(username: configuration.username, password: configuration.password)
            if let tls = configuration.tls { try mosquitto.setTLS(tls) }
            if let will = configuration.lastWill { try mosquitto.setWill(will) }
        }

        var connectionState: MQTTConnectionState { state.withLock { $0.connection } }

        func countDrop(reason: String) {
            MQTTMetrics.dropped(reason).increment()
        }

        // MARK: Lifecycle

        func run() async throws {
            let alreadyStarted = state.withLock { state in
                defer { state.started = true }
                return state.started
            }
            guard !alreadyStarted else { throw MQTTError.invalidArgument("run() was called twice on one client") }

            await withGracefulShutdownHandler {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                        let networkThread = Thread { [self] in
                            Mosquitto.nameCurrentThread("mqtt \(configuration.clientID)")
                            networkLoop()
                            done.resume()
                        }
                        networkThread.start()
                    }
                } onCancel: {
                    self.requestStop()
                }
            } onGracefulShutdown: {
                self.requestStop()
            }
            finishAfterShutdown()
        }

        /// The network thread notices within one loop round (200 ms) and disconnects cleanly.
        private func requestStop() {
            state.withLock { $0.stopRequested = true }
        }

        private var stopRequested: Bool { state.withLock { $0.stopRequested } }
        private var pendingCount: Int { thread.withLock { $0.pendingCount } }

        /// Connects, runs the network loop until the connection drops, and starts over with backoff,
        /// until a stop is requested.
        private func networkLoop() {
            var attempt = 0
            while !stopRequested {
                thread.withLock { thread in
                    thread.connectedSinceLastAttempt = false
                    thread.refusal = nil
                }
                do {
                    try mosquitto.connect(
                        host: configuration.host,
                        port: configuration.port,
                        keepAlive: configuration.keepAlive,
                        sessionExpiry: configuration.sessionExpiry
                    )
                    var outcome = Mosquitto.Outcome(code: 0, errno: 0)
                    /// When the DISCONNECT went: the broker closes the connection, which ends the loop.
                    var goodbyeSaid: ContinuousClock.Instant?
                    while outcome.succeeded {
                        outcome = mosquitto.loop(timeout: .milliseconds(200))
                        // After a message, the rest of what already arrived, before the next
                        // `pselect`; writes and keep-alive wait at most one batch's worth of reads.
                        if outcome.succeeded && pendingCount > 0 {
                            outcome = mosquitto.readWaiting(maximumPackets: Core.maximumBatch) { self.thread.withLock { $0.delivered } }
                        }
                        if pendingCount > 0 && mosquitto.bytesWaiting == 0 { flushReceived() }
                        guard outcome.succeeded && stopRequested else { continue }
                        if let goodbyeSaid {
                            // A broker that does not close within two seconds is not waited for.
                            if ContinuousClock.now - goodbyeSaid > .seconds(2) { break }
                        } else {
                            // Here, on the network thread, so nothing else is reading the socket.
                            let connected = state.withLock { $0.connection.isConnected }
                            if !connected || !mosquitto.sayGoodbye(farewell: configuration.farewell?()) { mosquitto.disconnect() }
                            goodbyeSaid = .now
                        }
                    }
                    flushReceived()
                    if !stopRequested {
                        markDisconnected(reason: thread.withLock { $0.refusal } ?? outcome.description)
                    }
                } catch {
                    markDisconnected(reason: "\(error)")
                }
                if thread.withLock({ $0.connectedSinceLastAttempt }) { attempt = 0 }
                guard !stopRequested else { break }
                let delay = configuration.backoff.delay(attempt: attempt, random: Double.random(in: 0...1))
                attempt += 1
                logger.debug("reconnecting", metadata: ["delay": "\(delay)", "attempt": "\(attempt)"])
                sleepUnlessStopped(delay)
            }
        }

        /// Sleeps in short steps so that a stop request is noticed quickly.
        private func sleepUnlessStopped(_ duration: Duration) {
            let deadline = ContinuousClock.now + duration
            while !stopRequested && ContinuousClock.now < deadline {
                Thread.sleep(forTimeInterval: 0.02)
            }
        }

        private func markDisconnected(reason: String) {
            let (wasConnected, changed) = state.withLock { state in
                let wasConnected = state.connection.isConnected
                let next = MQTTConnectionState.disconnected(reason: reason)
                defer { state.connection = next }
                return (wasConnected, state.connection != next)
            }
            connectedGauge.record(0)
            if wasConnected {
                logger.warning("lost the MQTT connection; reconnecting", metadata: ["reason": "\(reason)"])
            } else if changed {
                logger.warning(
                    "cannot reach the MQTT broker; retrying",
                    metadata: ["reason": "\(reason)", "broker": "\(configuration.host):\(configuration.port)"])
            }
        }

        /// After the network thread has ended: nothing will be answered any more.
        private func finishAfterShutdown() {
            let (connectWaiters, publishWaiters, ackWaiters, responses, buffers) = state.withLock { state in
                state.connection = .shutDown
                defer {
                    state.connectWaiters = [:]
                    state.publishWaiters = [:]
                    state.publishTokens = [:]
                    state.responses = [:]
                    for key in state.filters.keys { state.filters[key]?.ackWaiters = [:] }
                }
                return (
                    Array(state.connectWaiters.values),
                    state.publishWaiters.values.map(\.continuation),
                    state.filters.values.flatMap { $0.ackWaiters.values.map(\.continuation) },
                    Array(state.responses.values),
                    state.filters.values.flatMap { $0.buffers.values }
                )
            }
            connectedGauge.record(0)
            for waiter in connectWaiters { waiter.resume(throwing: MQTTError.shutDown) }
            for waiter in publishWaiters { waiter.resume(throwing: MQTTError.shutDown) }
            for waiter in ackWaiters { waiter.resume(throwing: MQTTError.shutDown) }
            for case .waiting(let waiter) in responses { waiter.resume(throwing: MQTTError.shutDown) }
            for buffer in buffers { buffer.finish() }
            logger.info("MQTT client stopped")
        }

        func waitUntilConnected(timeout: Duration?) async throws {
            guard let timeout else { return try await waitForConnection() }
            try await withDeadline(timeout, onTimeout: MQTTError.connectTimedOut(timeout)) {
                try await self.waitForConnection()
            }
        }

        private func waitForConnection() async throws {
            let token = state.withLock { $0.token() }
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    let outcome: Result<Void, any Error>? = state.withLock { state in
                        if state.connection.isConnected { return .success(()) }
                        if state.connection == .shutDown { return .failure(MQTTError.shutDown) }
                        // Checked under the lock the cancel handler takes, so it cannot slip between.
                        if Task.isCancelled { return .failure(CancellationError()) }
                        state.connectWaiters[token] = continuation
                        return nil
                    }
                    if let outcome { continuation.resume(with: outcome) }
                }
            } onCancel: {
                state.withLock { $0.connectWaiters.removeValue(forKey: token) }?.resume(throwing: CancellationError())
            }
        }

        // MARK: Publish

        func publish(topic: String, payload: Data, qos: MQTTQoS, retain: Bool, properties: MQTTProperties) async throws {
            try MQTTTopic.validateName(topic)
            if qos == .atMostOnce {
                _ = try mosquitto.publish(topic: topic, payload: payload, qos: qos, retain: retain, properties: properties)
                publishedCounter.increment()
                return
            }
            let token = state.withLock { $0.token() }
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    // The id is registered under the same lock as the call that obtains it: the
                    // acknowledgement can come back on the network thread before `publish` returns.
                    let failure: (any Error)? = state.withLock { state in
                        if state.connection == .shutDown { return MQTTError.shutDown }
                        if Task.isCancelled { return CancellationError() }
                        do {
                            let messageID = try mosquitto.publish(topic: topic, payload: payload, qos: qos, retain: retain, properties: properties)
                            state.publishWaiters[messageID] = (token, continuation)
                            state.publishTokens[token] = messageID
                            return nil
                        } catch {
                            return error
                        }
                    }
                    if let failure { continuation.resume(throwing: failure) }
                }
            } onCancel: {
                // The message stays queued in libmosquitto; only the wait for its acknowledgement ends.
                let waiter = state.withLock { state -> CheckedContinuation<Void, any Error>? in
                    guard let messageID = state.publishTokens.removeValue(forKey: token) else { return nil }
                    return state.publishWaiters.removeValue(forKey: messageID)?.continuation
                }
                waiter?.resume(throwing: CancellationError())
            }
            publishedCounter.increment()
        }

        func mosquittoDidPublish(messageID: Int32, reasonCode: Int32) {
            let waiter = state.withLock { state -> CheckedContinuation<Void, any Error>? in
                guard let entry = state.publishWaiters.removeValue(forKey: messageID) else { return nil }
                state.publishTokens.removeValue(forKey: entry.token)
                return entry.continuation
            }
            guard let waiter else { return }
            // Reason codes from 0x80 are failures; below (e.g. 0x10, no matching subscribers) are successes.
            if reasonCode >= 0x80 {
                waiter.resume(
                    throwing: MQTTError.refusedByBroker(operation: "publish", reasonCode: reasonCode, reason: Mosquitto.describeReason(reasonCode)))
            } else {
                waiter.resume()
            }
        }

        // MARK: Subscribe

        func makeSubscription(filter: String, qos: MQTTQoS, bufferCapacity: Int) throws -> MQTTSubscription {
            try MQTTTopic.validateFilter(filter)
            guard bufferCapacity > 0 else { throw MQTTError.invalidArgument("bufferCapacity must be at least 1") }
            let buffer = MessageBuffer(capacity: bufferCapacity)
            let localID = try state.withLock { state throws -> Int in
                if state.connection == .shutDown { throw MQTTError.shutDown }
                let localID = state.token()
                var entry: FilterEntry
                if let existing = state.filters[filter] {
                    entry = existing
                } else {
                    entry = FilterEntry(id: state.nextSubscriptionID, qos: qos)
                    state.nextSubscriptionID += 1
                }
                entry.qos = max(entry.qos, qos)
                entry.buffers[localID] = buffer
                entry.acknowledged = false
                state.filters[filter] = entry
                state.filterByID[entry.id] = filter
                if state.connection.isConnected {
                    // Not connected (or the connection just dropped): `mosquittoDidConnect` subscribes.
                    sendSubscribe(filter, entry, in: &state)
                }
                return localID
            }
            return MQTTSubscription(filter: filter, localID: localID, buffer: buffer, core: self)
        }

        /// Sends SUBSCRIBE for `filter` and routes its SUBACK; a failure to send is logged (the
        /// acknowledgement's wait sends it again).
        private func sendSubscribe(_ filter: String, _ entry: FilterEntry, in state: inout State) {
            do {
                let messageID = try mosquitto.subscribe(filter: filter, qos: entry.qos, subscriptionID: entry.id)
                state.subackRoutes[messageID] = filter
            } catch {
                logger.warning("could not send a subscription; it is sent again", metadata: ["filter": "\(filter)", "error": "\(error)"])
            }
        }

        /// Waits for `filter`'s SUBACK; a SUBSCRIBE not acknowledged within 5 s is sent again
        /// (a subscription is idempotent), with a warning: a CI run saw one never answered.
        func waitForSubscriptionAcknowledgement(filter: String, localID: Int) async throws {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await self.awaitSubscriptionAcknowledgement(filter: filter, localID: localID) }
                group.addTask {
                    while true {
                        try await Task.sleep(for: .seconds(5))
                        self.resubscribeUnacknowledged(filter)
                    }
                }
                defer { group.cancelAll() }
                try await group.next()
            }
        }

        private func resubscribeUnacknowledged(_ filter: String) {
            state.withLock { state in
                guard let entry = state.filters[filter], !entry.acknowledged, state.connection.isConnected else { return }
                logger.warning("no SUBACK within 5 s; subscribing again", metadata: ["filter": "\(filter)"])
                sendSubscribe(filter, entry, in: &state)
            }
        }

        private func awaitSubscriptionAcknowledgement(filter: String, localID: Int) async throws {
            let token = state.withLock { $0.token() }
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    let outcome: Result<Void, any Error>? = state.withLock { state in
                        guard let entry = state.filters[filter], entry.buffers[localID] != nil else {
                            if let refusal = state.refusedSubscriptions.removeValue(forKey: localID) { return .failure(refusal) }
                            return .failure(state.connection == .shutDown ? MQTTError.shutDown : CancellationError())
                        }
                        if entry.acknowledged { return .success(()) }
                        if Task.isCancelled { return .failure(CancellationError()) }
                        state.filters[filter]?.ackWaiters[token] = (localID, continuation)
                        return nil
                    }
                    if let outcome { continuation.resume(with: outcome) }
                }
            } onCancel: {
                state.withLock { $0.filters[filter]?.ackWaiters.removeValue(forKey: token) }?.continuation.resume(throwing: CancellationError())
            }
        }

        func mosquittoDidSubscribe(messageID: Int32, grantedQoS: [Int32]) {
            let granted = grantedQoS.first ?? 0x80
            let (waiters, filter) = state.withLock { state -> ([CheckedContinuation<Void, any Error>], String?) in
                guard let filter = state.subackRoutes.removeValue(forKey: messageID), var entry = state.filters[filter] else { return ([], nil) }
                if granted >= 0x80 {
                    let refusal = MQTTError.refusedByBroker(
                        operation: "subscribe to \(filter)", reasonCode: granted, reason: Mosquitto.describeReason(granted))
                    for localID in entry.buffers.keys where !entry.ackWaiters.values.contains(where: { $0.localID == localID }) {
                        state.refusedSubscriptions[localID] = refusal
                    }
                }
                let waiters = entry.ackWaiters.values.map(\.continuation)
                entry.ackWaiters = [:]
                if granted < 0x80 {
                    entry.acknowledged = true
                    state.filters[filter] = entry
                } else {
                    // Refused: the subscribers are told, and the filter is forgotten so that a
                    // reconnect does not ask again for what the broker will not give.
                    state.filters.removeValue(forKey: filter)
                    state.filterByID.removeValue(forKey: entry.id)
                    for buffer in entry.buffers.values { buffer.finish() }
                }
                return (waiters, filter)
            }
            if granted < 0x80 {
                for waiter in waiters { waiter.resume() }
            } else {
                let error = MQTTError.refusedByBroker(
                    operation: "subscribe to \(filter ?? "?")", reasonCode: granted, reason: Mosquitto.describeReason(granted))
                logger.error("subscription refused", metadata: ["filter": "\(filter ?? "?")", "reason": "\(error)"])
                for waiter in waiters { waiter.resume(throwing: error) }
            }
        }

        func removeSubscription(filter: String, localID: Int) {
            let (waiters, unsubscribe) = state.withLock { state -> ([CheckedContinuation<Void, any Error>], Bool) in
                state.refusedSubscriptions.removeValue(forKey: localID)
                guard var entry = state.filters[filter], entry.buffers.removeValue(forKey: localID) != nil else { return ([], false) }
                let tokens = entry.ackWaiters.filter { $0.value.localID == localID }.map(\.key)
                let waiters = tokens.compactMap { entry.ackWaiters.removeValue(forKey: $0)?.continuation }
                if entry.buffers.isEmpty {
                    state.filters.removeValue(forKey: filter)
                    state.filterByID.removeValue(forKey: entry.id)
                    return (waiters, state.connection.isConnected)
                }
                state.filters[filter] = entry
                return (waiters, false)
            }
            for waiter in waiters { waiter.resume(throwing: CancellationError()) }
            if unsubscribe { try? mosquitto.unsubscribe(filter: filter) }
        }

        // MARK: Request / response

        func request(topic: String, payload: Data, timeout: Duration, properties: MQTTProperties) async throws -> MQTTMessage {
            try await ensureResponseSubscription()
            let correlation = withUnsafeBytes(of: UUID().uuid) { Data($0) }
            state.withLock { $0.responses[correlation] = .pending }
            defer { _ = state.withLock { $0.responses.removeValue(forKey: correlation) } }

            var requestProperties = properties
            requestProperties.responseTopic = responseTopic
            requestProperties.correlationData = correlation
            let properties = requestProperties
            let response = try await withDeadline(timeout, onTimeout: MQTTError.requestTimedOut(topic: topic, timeout: timeout)) {
                try await self.publish(topic: topic, payload: payload, qos: .atLeastOnce, retain: false, properties: properties)
                return try await self.waitForResponse(correlation)
            }
            if let failure = response.properties.userProperty(Core.errorProperty) {
                throw MQTTError.requestFailed(topic: topic, message: failure)
            }
            return response
        }

        /// The response subscription is made once, on the first request, and kept for the client's life.
        private func ensureResponseSubscription() async throws {
            let filter = responseTopic
            let existing = state.withLock { $0.filters[filter] != nil }
            if existing {
                try await waitForSubscriptionAcknowledgement(filter: filter, localID: 0)
                return
            }
            let buffer = MessageBuffer(capacity: 1)
            buffer.finish()  // responses are routed by correlation id, never queued
            _ = try state.withLock { state throws in
                if state.connection == .shutDown { throw MQTTError.shutDown }
                guard state.filters[filter] == nil else { return }
                var entry = FilterEntry(id: state.nextSubscriptionID, qos: .atLeastOnce)
                state.nextSubscriptionID += 1
                entry.buffers[0] = buffer
                state.filters[filter] = entry
                state.filterByID[entry.id] = filter
                if state.connection.isConnected, let messageID = try? mosquitto.subscribe(filter: filter, qos: .atLeastOnce, subscriptionID: entry.id)
                {
                    state.subackRoutes[messageID] = filter
                }
            }
            try await waitForSubscriptionAcknowledgement(filter: filter, localID: 0)
        }

        private func waitForResponse(_ correlation: Data) async throws -> MQTTMessage {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<MQTTMessage, any Error>) in
                    let outcome: Result<MQTTMessage, any Error>? = state.withLock { state in
                        switch state.responses[correlation] {
                        case .arrived(let message): return .success(message)
                        case .pending:
                            if Task.isCancelled { return .failure(CancellationError()) }
                            state.responses[correlation] = .waiting(continuation)
                            return nil
                        case .waiting, nil: return .failure(MQTTError.shutDown)
                        }
                    }
                    if let outcome { continuation.resume(with: outcome) }
                }
            } onCancel: {
                let waiter = state.withLock { state -> CheckedContinuation<MQTTMessage, any Error>? in
                    guard case .waiting(let waiter) = state.responses[correlation] else { return nil }
                    state.responses[correlation] = .pending
                    return waiter
                }
                waiter?.resume(throwing: CancellationError())
            }
        }

        private func deliverResponse(_ message: MQTTMessage) {
            guard let correlation = message.properties.correlationData else {
                countDrop(reason: "response_without_correlation")
                return
            }
            let waiter = state.withLock { state -> CheckedContinuation<MQTTMessage, any Error>?? in
                switch state.responses[correlation] {
                case .pending:
                    state.responses[correlation] = .arrived(message)
                    return .some(nil)
                case .waiting(let waiter):
                    state.responses[correlation] = .arrived(message)
                    return .some(waiter)
                case .arrived, nil:
                    return nil
                }
            }
            switch waiter {
            case .some(let waiter?): waiter.resume(returning: message)
            case .some(nil): break
            case nil: countDrop(reason: "late_or_unknown_response")
            }
        }

        /// Pairs each message with the buffers of every filter its topic matches.
        private func routeByFilter(_ messages: [MQTTMessage]) -> [([MQTTMessage], [MessageBuffer])] {
            let filters = state.withLock { state in state.filters.map { ($0.key, Array($0.value.buffers.values)) } }
            return messages.map { message in
                let buffers = filters.filter { filter, _ in
                    Mosquitto.topicMatches(filter: MQTTTopic.matchFilter(of: filter), topic: message.topic)
                }.flatMap(\.1)
                return ([message], buffers)
            }
        }

        // MARK: Callbacks (network thread)

        func mosquittoDidConnect(reasonCode: Int32, sessionPresent: Bool) {
            guard reasonCode == 0 else {
                let refusal = "the broker refused the connection: \(Mosquitto.describeReason(reasonCode))"
                thread.withLock { $0.refusal = refusal }
                markDisconnected(reason: refusal)
                return
            }
            thread.withLock { $0.connectedSinceLastAttempt = true }
            let waiters = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
                state.connection = .connected
                // A clean start forgets subscriptions; a resumed session keeps them, and subscribing
                // again is harmless. Either way every filter is sent again, once per connection.
                state.subackRoutes = [:]
                for (filter, entry) in state.filters {
                    sendSubscribe(filter, entry, in: &state)
                }
                for birth in configuration.birth?() ?? [] {
                    // No one waits for its acknowledgement; `mosquittoDidPublish` ignores unknown ids.
                    _ = try? mosquitto.publish(
                        topic: birth.topic, payload: birth.payload, qos: birth.qos, retain: birth.retain, properties: birth.properties)
                }
                defer { state.connectWaiters = [:] }
                return Array(state.connectWaiters.values)
            }
            connectsCounter.increment()
            connectedGauge.record(1)
            logger.info(
                "connected to the MQTT broker",
                metadata: ["broker": "\(configuration.host):\(configuration.port)", "session_present": "\(sessionPresent)"])
            for waiter in waiters { waiter.resume() }
        }

        func mosquittoDidDisconnect(reasonCode: Int32) {
            if stopRequested {
                state.withLock { $0.connection = .disconnected(reason: "shutting down") }
            } else {
                let refusal = thread.withLock { $0.refusal }
                markDisconnected(reason: refusal ?? (reasonCode == 0 ? "disconnected" : Mosquitto.describe(reasonCode, errno: 0)))
            }
        }

        func mosquittoDidReceive(_ message: MQTTMessage, subscriptionIDs: SubscriptionIDs) {
            receivedCounter.increment()
            if message.topic == responseTopic {
                deliverResponse(message)
                return
            }
            // Id 0 is never handed out: it collects messages without an identifier (a broker that
            // drops them), which `flushReceived` routes by matching filters.
            let full = thread.withLock { thread in
                thread.pending[subscriptionIDs.first ?? 0, default: []].append(message)
                for id in subscriptionIDs.others { thread.pending[id, default: []].append(message) }
                thread.pendingCount += 1
                thread.delivered &+= 1
                return thread.pendingCount >= Core.maximumBatch
            }
            if full { flushReceived() }
        }

        /// Hands the held-back messages to their subscriptions: one lock and one wake-up per
        /// subscription per batch.
        private func flushReceived() {
            let taken = thread.withLock { thread -> [UInt32: [MQTTMessage]]? in
                guard thread.pendingCount > 0 else { return nil }
                defer { (thread.pending, thread.pendingCount) = ([:], 0) }
                return thread.pending
            }
            guard let pending = taken else { return }
            let targets = state.withLock { state in
                pending.map { id, messages in
                    (messages, state.filterByID[id].flatMap { state.filters[$0] }.map { Array($0.buffers.values) } ?? [])
                }
            }
            .flatMap { messages, buffers in
                // An id this client did not hand out: a subscription kept by a resumed persistent
                // session from an earlier process. Route those by matching the filters instead.
                buffers.isEmpty ? routeByFilter(messages) : [(messages, buffers)]
            }
            var dropped = 0
            for (messages, buffers) in targets {
                // A message for a subscription that just ended has nobody to go to.
                if buffers.isEmpty { countDrop(reason: "no_subscriber") }
                for buffer in buffers { dropped += buffer.append(messages) }
            }
            if dropped > 0 {
                MQTTMetrics.dropped("slow_consumer").increment(by: dropped)
            }
        }
    }
}

/// Runs `operation`, throwing `onTimeout` if it has not finished after `timeout`; the operation
/// is cancelled then.
package func withDeadline<T: Sendable>(
    _ timeout: Duration,
    onTimeout: @autoclosure @escaping @Sendable () -> any Error,
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: timeout)
            throw onTimeout()
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

/// The client's metrics, each name spelled once (docs/mqtt-client.md).
enum MQTTMetrics {
    static var received: Counter { Counter(label: "mqtt_messages_received_total") }
    static var published: Counter { Counter(label: "mqtt_messages_published_total") }
    static var connects: Counter { Counter(label: "mqtt_connections_total") }
    static var connected: Gauge { Gauge(label: "mqtt_connected") }
    /// Messages dropped, by reason: `slow_consumer`, `no_subscriber`, ...
    static func dropped(_ reason: String) -> Counter { Counter(label: "mqtt_messages_dropped_total", dimensions: [("reason", reason)]) }
}
