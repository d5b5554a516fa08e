import DeviceProtocol
import FleetContract
import Foundation
import Logging
import MQTT
import Metrics
import ServiceLifecycle
import ServiceRuntime
import Synchronization

/// The gateway's shared state: the agent table and the replica membership, each behind a lock,
/// read by the relay and by the REST API.
final class GatewayState: Sendable {
    let instance: String
    /// Every subscription of the relay is acknowledged by the broker (for `/ready`: before that,
    /// a hello would be lost).
    let subscribed = SubscriptionFlag()
    private let table: Mutex<AgentTable>
    private let membership: Mutex<ReplicaMembership>

    init(instance: String, limits: AgentTable.Limits) {
        self.instance = instance
        self.table = Mutex(AgentTable(limits: limits))
        self.membership = Mutex(ReplicaMembership(me: instance))
    }

    func withTable<T: Sendable>(_ body: (inout AgentTable) -> T) -> T { table.withLock { body(&$0) } }

    func owns(_ agentID: String) -> Bool { membership.withLock { $0.owns(agentID) } }
    func owner(of agentID: String) -> String { membership.withLock { $0.owner(of: agentID) } }
    var replicas: [String] { membership.withLock { $0.replicas } }
    func updateMembership(instance: String, online: Bool) { membership.withLock { $0.update(instance: instance, online: online) } }
}

/// Moves agent traffic across the gateway: validates and forwards what agents send, announces
/// their presence, and publishes each agent's desired state to it.
///
/// Subscriptions (see `docs/device-protocol.md` and `docs/decisions.md`):
/// - hello, telemetry and report are shared between replicas (`$share/device-gateway/…`): each
///   message is handled by one replica, so it is forwarded once;
/// - presence and heartbeat reach every replica, so each keeps every agent's presence, and the
///   agent's owner (``ReplicaMembership``) alone announces changes;
/// - the orchestrator's desired states reach every replica, and the owner publishes them; the
///   agents' retained desired topics tell every replica the generation already published.
struct AgentRelay: Service {
    static let service = "device-gateway"

    let mqtt: MQTTClient
    let state: GatewayState
    let validator: AgentMessageValidator
    let logger: Logger

    private let dropLog = DropLog()
    private let counters = InboundCounters()
    /// Presence changes to announce, published in order by one task so that handling an agent
    /// message never waits for the broker's acknowledgement of an announcement.
    private let announcements: AsyncStream<AgentPresence>
    private let announcer: AsyncStream<AgentPresence>.Continuation

    init(mqtt: MQTTClient, state: GatewayState, validator: AgentMessageValidator = AgentMessageValidator(), logger: Logger) {
        self.mqtt = mqtt
        self.state = state
        self.validator = validator
        self.logger = logger
        (announcements, announcer) = AsyncStream.makeStream()
    }

    func run() async throws {
        // Peers first: ownership must be known before the first agent event is announced.
        let membership = try await followPeers()
        defer { membership.cancel() }
        logger.info("gateway replicas", metadata: ["replicas": "\(state.replicas.joined(separator: ","))"])

        let shared = { (channel: Topic.AgentChannel) in Topic.everyAgent(channel).shared(by: Self.service) }
        // All at once: one round trip to the broker, not one per filter.
        let all = try await mqtt.subscribe(
            [
                (shared(.hello), .atLeastOnce, nil), (shared(.report), .atLeastOnce, nil), (shared(.telemetry), .atMostOnce, 65_536),
                (Topic.everyAgent(.presence).path, .atLeastOnce, nil), (Topic.everyAgent(.heartbeat).path, .atMostOnce, nil),
                (Topic.everyAgent(.desired).path, .atLeastOnce, nil), (Topic.agentDesiredStateRequests.path, .atLeastOnce, nil),
                (Topic.agentRevocations.path, .atLeastOnce, nil),
            ] + Topic.strayAgentTopics.map { ($0.shared(by: Self.service), .atMostOnce, nil) })
        let (hellos, reports, telemetry, presences, heartbeats, published, desired, revocations) = (
            all[0], all[1], all[2], all[3], all[4], all[5], all[6], all[7]
        )
        let strays = Array(all[8...])
        state.subscribed.set(true)
        defer { state.subscribed.set(false) }

        let announcing = Task { await publishAnnouncements() }
        // The queues presence rests on: the expiry waits while they are behind.
        let watched = [WatchedQueue(presences), WatchedQueue(heartbeats)]
        await consumeUntilShutdown([presences, heartbeats, hellos, reports, telemetry, published, desired, revocations] + strays) { group in
            // Presence and heartbeats in arrival order, one consumer each; hello, report and
            // telemetry by two workers each (the validator is pure, and uses the second core).
            for queue in watched {
                group.addTask { await consume(queue.subscription, upTo: 64, counting: queue.taken) { _ = await accept($0) } }
            }
            for subscription in [hellos, reports] {
                for _ in 0..<2 {
                    group.addTask { await consume(subscription, upTo: 16) { await handleInbound($0) } }
                }
            }
            for _ in 0..<2 { group.addTask { await forwardTelemetry(from: telemetry) } }
            group.addTask { await consume(published, upTo: 64) { $0.forEach(notePublishedDesiredState) } }
            group.addTask { await relayDesiredStates(desired) }
            group.addTask { await consume(revocations, upTo: 16) { await noteRevocations($0) } }
            for subscription in strays {
                group.addTask { await consume(subscription, upTo: 64) { $0.forEach(dropStray) } }
            }
        } background: {
            await expireSilentAgents(watching: watched)
        }
        // The announcements of the last messages handled still go out.
        announcer.finish()
        await announcing.value
    }

    /// Hands `body` the messages of `subscription` in batches of at most `limit`, counting them in
    /// `taken`, and gives the thread back after each batch.
    ///
    /// The yield is what keeps `/health` and the REST API answering under a flood: the HTTP
    /// handlers run on the same cooperative threads (one per core), and a consumer whose queue is
    /// never empty takes every message without suspending (the buffer hands over a queued message
    /// at once), so without it two busy consumers held both threads for as long as a flood lasted.
    private func consume(
        _ subscription: MQTTSubscription, upTo limit: Int, counting taken: TakenCount? = nil, _ body: ([MQTTMessage]) async -> Void
    ) async {
        await subscription.forEachBatch(upTo: limit) { messages in
            await body(messages)
            taken?.add(messages.count)
            await Task.yield()
        }
    }

    // MARK: Inbound agent messages

    /// Handles agent messages: accepts them (``accept(_:)``) and forwards them.
    func handleInbound(_ messages: [MQTTMessage]) async {
        let (accepted, moment) = await accept(messages)
        for validated in accepted {
            switch validated.channel {
            case .hello: await forwardHello(validated, at: moment)
            case .report: await forward(validated, to: Topic.agentReportEvents, qos: .atLeastOnce)
            case .telemetry: await publishTelemetry([validated])
            case .presence, .heartbeat, .desired, .request, .response: break
            }
        }
    }

    /// Telemetry, in batches: whatever is queued when a worker comes back for more (at most
    /// ``TelemetryBatch/maximumMessages``) is accepted together and forwarded as one message.
    /// A worker that found less than ``telemetryLingerBelow`` messages and finds none queued
    /// after forwarding them rests for ``telemetryLinger`` before it looks again, so that the next
    /// batch gathers what arrives meanwhile. A message that finds a worker waiting is handled at
    /// once; one that arrives while both rest waits at most that long. A busy gateway never rests.
    private func forwardTelemetry(from subscription: MQTTSubscription) async {
        await subscription.forEachBatch(upTo: TelemetryBatch.maximumMessages) { messages in
            await publishTelemetry(await accept(messages).accepted)
            if messages.count < Self.telemetryLingerBelow && subscription.waitingCount == 0 {
                try? await Task.sleep(for: Self.telemetryLinger)
            } else {
                await Task.yield()  // as in consume(_:upTo:counting:_:)
            }
        }
    }

    /// How long a telemetry worker rests after a small batch. Without the rest, a stream of a few
    /// thousand messages a second woke a worker and the network thread for nearly every message
    /// and cost the gateway about 100 µs of CPU a message; telemetry comes every few seconds, so
    /// a few milliseconds more on its way cost nothing (docs/decisions.md, decision 51).
    static let telemetryLinger = Duration.milliseconds(5)
    /// Batches at least this large are followed at once by the next: the gateway is busy.
    static let telemetryLingerBelow = 32

    /// Routes and validates agent messages, then rate-limits the valid ones and applies what they
    /// say about their agents' presence, taking the agent table's lock once for the lot rather
    /// than per message. Returns the accepted ones, in order, and when they were received; the
    /// others are dropped (counted per reason, logged).
    ///
    /// Validation comes first so that only valid messages spend an agent's budget or make a table
    /// entry: garbage on an agent's topics (anyone may publish there without the broker's ACLs)
    /// cannot use up its rate limit and so cost it its presence. Garbage costs the validator's
    /// one pass over at most the channel's size limit, stopping at the first fault, and takes no
    /// lock; what arrives faster than the consumers validate waits in the subscription's bounded
    /// buffer and, beyond it, is dropped by the MQTT layer before any work (then the expiry
    /// waits, see ``expireSilentAgents(watching:)``).
    private func accept(_ messages: [MQTTMessage]) async -> (accepted: [ValidatedAgentMessage], moment: Moment) {
        let moment = Moment.now()
        var valid: [ValidatedAgentMessage] = []
        valid.reserveCapacity(messages.count)
        for message in messages {
            switch AgentMessageValidator.route(topic: message.topic) {
            case .success(let found):
                counters.received[found.channel]?.increment()
                switch validator.validate(agentID: found.agentID, channel: found.channel, payload: message.payload) {
                case .success(let validated): valid.append(validated)
                case .failure(let failure): drop(message.topic, bytes: message.payload.count, failure, agentID: found.agentID.value)
                }
            case .failure(let failure):
                drop(message.topic, bytes: message.payload.count, failure, agentID: nil)
            }
        }
        guard !valid.isEmpty else { return ([], moment) }
        let outcomes = state.withTable { table in
            valid.map { message -> (AgentTable.Admission, PresenceChange?) in
                let admission = table.admit(message.agentID.value, at: moment)
                return (admission, admission == .admitted ? Self.presenceChange(saidBy: message, in: &table, at: moment) : nil)
            }
        }
        var accepted: [ValidatedAgentMessage] = []
        accepted.reserveCapacity(valid.count)
        for (message, (admission, change)) in zip(valid, outcomes) {
            switch admission {
            case .admitted:
                accepted.append(message)
                await announce(change, of: message.agentID.value, at: moment)
            case .rateLimited:
                let failure = AgentMessageValidator.Failure(rejection: .rateLimited, detail: "over the agent's rate limit")
                drop(Topic.agent(message.agentID, message.channel).path, bytes: message.payload.count, failure, agentID: message.agentID.value)
            case .refused:
                refuse(message)
            }
        }
        return (accepted, moment)
    }

    /// A message on a topic under `modelfleet/v1/agents/` that no agent publishes on.
    private func dropStray(_ message: MQTTMessage) {
        let failure = AgentMessageValidator.Failure(rejection: .unknownTopic, detail: "not <agent_id>/<kind>")
        drop(message.topic, bytes: message.payload.count, failure, agentID: nil)
    }

    /// What a valid message says about its agent's presence, applied to the table.
    private static func presenceChange(saidBy message: ValidatedAgentMessage, in table: inout AgentTable, at moment: Moment) -> PresenceChange? {
        let agentID = message.agentID.value
        switch message.channel {
        case .presence:
            return message.field("state") == .string("online") ? table.markAlive(agentID, at: moment) : table.markOffline(agentID, at: moment)
        case .heartbeat, .hello:
            let change = table.markAlive(agentID, at: moment)
            if message.channel == .hello { table.noteHello(agentID) }
            if let generation = message.field("applied_generation")?.integer { table.noteApplied(agentID, generation: generation) }
            return change
        case .report, .telemetry:
            // Any message says the agent is there, whichever comes first after a silence.
            return table.markAlive(agentID, at: moment)
        case .response:
            return nil  // handled by AgentRequests, which waits for them
        case .desired, .request:
            return nil  // not inbound; the router refused it
        }
    }

    private func forwardHello(_ message: ValidatedAgentMessage, at moment: Moment) async {
        do {
            let hello = try Envelope<AgentMessage.Hello>.decode(from: message.payload)
            let event = Envelope(payload: hello.payload.forwarded(observedAt: moment.wall), correlationID: hello.correlationID ?? hello.messageID)
            try await mqtt.publish(
                Topic.agentHelloEvents.path, payload: try event.encoded(), qos: .atLeastOnce,
                properties: MQTTProperties(contentType: "application/json"))
            counters.forwarded[.hello]?.increment()
        } catch {
            forwardFailed([message], error)
        }
    }

    private func forward(_ message: ValidatedAgentMessage, to topic: Topic, qos: MQTTQoS) async {
        do {
            try await mqtt.publish(topic.path, payload: message.payload, qos: qos, properties: MQTTProperties(contentType: "application/json"))
            counters.forwarded[message.channel]?.increment()
        } catch {
            forwardFailed([message], error)
        }
    }

    /// Forwards valid telemetry messages as ``TelemetryBatch``es of at most
    /// ``TelemetryBatch/maximumBytes``.
    private func publishTelemetry(_ messages: [ValidatedAgentMessage]) async {
        var start = messages.startIndex
        while start < messages.endIndex {
            var end = start + 1
            var bytes = messages[start].payload.count
            while end < messages.endIndex && bytes + messages[end].payload.count <= TelemetryBatch.maximumBytes {
                bytes += messages[end].payload.count
                end += 1
            }
            let batch = messages[start..<end]
            start = end
            do {
                let properties = MQTTProperties(
                    contentType: "application/json", userProperties: [MQTTUserProperty(TelemetryBatch.countProperty, String(batch.count))])
                try await mqtt.publish(
                    Topic.agentTelemetryEvents.path, payload: TelemetryBatch.encode(batch.map(\.payload)), qos: .atMostOnce, properties: properties)
                counters.forwarded[.telemetry]?.increment(by: batch.count)
                counters.telemetryBatches.increment()
            } catch {
                forwardFailed(batch, error)
            }
        }
    }

    /// Messages (one, or a telemetry batch) the broker did not take: each is counted, one line logged.
    private func forwardFailed(_ messages: some Collection<ValidatedAgentMessage>, _ error: any Error) {
        guard let first = messages.first else { return }
        GatewayMetrics.dropped(.forwardFailed).increment(by: messages.count)
        logger.warning(
            "could not forward agent messages",
            metadata: ["messages": "\(messages.count)", "agent_id": "\(first.agentID)", "channel": "\(first.channel)", "error": "\(error)"])
    }

    /// Revoked agents are offline at once: the broker disconnected them without their wills.
    private func noteRevocations(_ messages: [MQTTMessage]) async {
        for message in messages {
            guard let revocation = try? Envelope<AgentRevocation>.decode(from: message.payload) else {
                GatewayMetrics.dropped(.malformedJSON).increment()
                logger.warning("dropped a revocation that is not one", metadata: ["bytes": "\(message.payload.count)"])
                continue
            }
            let agentID = revocation.payload.agentID
            let moment = Moment.now()
            let change = state.withTable { table in table.knows(agentID) ? table.markOffline(agentID, at: moment) : nil }
            logger.notice("agent revoked", metadata: ["agent_id": "\(agentID)"])
            await announce(change, of: agentID, at: moment)
            if state.owns(agentID) { await publishWill(of: agentID) }
        }
    }

    /// Publishes, retained on a revoked agent's presence topic, what its last will would have said:
    /// the broker dropped it without the will, so its retained presence still said `online`, and a
    /// gateway replica started later took it for online until its heartbeat timeout.
    private func publishWill(of agentID: String) async {
        guard let level = try? TopicLevel(agentID) else { return }
        do {
            let will = AgentMessage.Presence(agentID: agentID, state: .offline, reason: .connectionLost)
            try await mqtt.publish(
                Topic.agent(level, .presence).path, payload: try Envelope(payload: will).encoded(), qos: .atLeastOnce, retain: true,
                properties: MQTTProperties(contentType: "application/json"))
        } catch {
            logger.warning("could not publish a revoked agent's offline presence", metadata: ["agent_id": "\(agentID)", "error": "\(error)"])
        }
    }

    /// Queues a presence change for announcement, when this replica owns the agent.
    private func announce(_ change: PresenceChange?, of agentID: String, at moment: Moment) async {
        guard let change, state.owns(agentID) else { return }
        announcer.yield(AgentPresence(agentID: agentID, state: change == .online ? .online : .offline, observedAt: moment.wall))
    }

    private func publishAnnouncements() async {
        for await event in announcements {
            do {
                try await mqtt.publish(
                    Topic.agentPresenceEvents.path, payload: try Envelope(payload: event).encoded(), qos: .atLeastOnce,
                    properties: MQTTProperties(contentType: "application/json"))
                GatewayMetrics.presenceEvents(event.state).increment()
                logger.info("agent \(event.state.rawValue)", metadata: ["agent_id": "\(event.agentID)"])
            } catch {
                logger.warning("could not announce a presence change", metadata: ["agent_id": "\(event.agentID)", "error": "\(error)"])
            }
        }
    }

    /// Once a second: agents silent past the heartbeat timeout go offline, unless the presence
    /// and heartbeat queues were behind within the timeout (their messages may be the ones not
    /// heard); offline agents past the grace period are forgotten.
    private func expireSilentAgents(watching queues: [WatchedQueue]) async {
        var backlog = InboundBacklog()
        var lastBacklog = -Double.infinity
        let gauges = (online: GatewayMetrics.agentsOnline, known: GatewayMetrics.agentsKnown)
        let forgottenCount = GatewayMetrics.agentsForgotten
        let heldCount = GatewayMetrics.expiryHeld
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            let moment = Moment.now()
            if backlog.isBehind(queues.map(\.reading)) {
                if moment.monotonic - lastBacklog > 10 {
                    logger.warning("the presence and heartbeat queues are behind: no agent is declared silent until they catch up")
                }
                lastBacklog = moment.monotonic
                heldCount.increment()
            }
            let (expired, forgotten, counts) = state.withTable { table in
                (table.expire(at: moment, lastBacklog: lastBacklog), table.forget(at: moment), (table.onlineCount, table.count))
            }
            for agentID in expired {
                await announce(.offline, of: agentID, at: moment)
            }
            forgottenCount.increment(by: forgotten)
            gauges.online.record(counts.0)
            gauges.known.record(counts.1)
        }
    }

    private func drop(_ topic: String, bytes: Int, _ failure: AgentMessageValidator.Failure, agentID: String?) {
        counters.dropped[failure.rejection]?.increment()
        // A flooding agent would flood the log too: one line per agent and reason every 10 s, and
        // few in all, whatever the number of agent ids.
        guard let suppressed = dropLog.shouldLog(key: "\(agentID ?? "")|\(failure.rejection.rawValue)") else { return }
        logger.warning(
            "dropped an agent message",
            metadata: [
                "topic": "\(topic)", "reason": "\(failure.rejection.rawValue)", "detail": "\(failure.detail)", "bytes": "\(bytes)",
                "lines_suppressed": "\(suppressed)",
            ])
    }

    /// A valid message of an agent first heard of while the agent table is full.
    private func refuse(_ message: ValidatedAgentMessage) {
        counters.refused.increment()
        guard let suppressed = dropLog.shouldLog(key: "|agent_table_full") else { return }
        logger.warning(
            "the agent table is full: dropped a message of an agent not in it",
            metadata: [
                "agent_id": "\(message.agentID)", "channel": "\(message.channel)", "capacity": "\(state.withTable { $0.limits.capacity })",
                "lines_suppressed": "\(suppressed)",
            ])
    }

    // MARK: Replicas

    /// Follows the other replicas' statuses from now on, and returns once the retained ones have
    /// been read: its own sync mark, published after subscribing, comes back on the same
    /// subscription after them (or after 10 s, with a warning, if it does not come back).
    private func followPeers() async throws -> Task<Void, Never> {
        let service = try TopicLevel(Self.service)
        let peers = try await mqtt.subscribe(to: Topic.serviceInstanceTopics(of: service).path, qos: .atLeastOnce)
        let mark = Topic.serviceSync(service: service, instance: try TopicLevel(state.instance)).path
        let (synced, sync) = AsyncStream<Void>.makeStream()
        let membership = Task {
            for await message in peers {
                if message.topic == mark {
                    sync.yield()
                } else if message.topic.hasSuffix("/status") {
                    handlePeerStatus(message)
                }
            }
        }
        try await mqtt.publish(mark, payload: Data(), qos: .atLeastOnce)
        let heard = await withTaskGroup(of: Bool.self) { group in
            group.addTask { await synced.first { _ in true } != nil }
            group.addTask {
                try? await Task.sleep(for: .seconds(10))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if !heard { logger.warning("the sync mark did not come back within 10 s; going on with the replicas known so far") }
        return membership
    }

    private func handlePeerStatus(_ message: MQTTMessage) {
        guard let status = try? Envelope<ServiceStatus>.decode(from: message.payload) else {
            GatewayMetrics.dropped(.badPeerStatus).increment()
            return
        }
        state.updateMembership(instance: status.payload.instance, online: status.payload.state == .online)
    }

    // MARK: Desired state

    /// A document on an agent's own desired topic (ours or another replica's, or retained from
    /// before): remember its generation, the floor for the next one.
    private func notePublishedDesiredState(_ message: MQTTMessage) {
        guard let (agentID, _) = Topic.parseAgentTopic(message.topic),
            let payload = try? Self.desiredSchema.validate(json: message.payload, capturingScalarsOf: "payload"),
            let generation = payload.value(named: "generation")?.integer
        else { return }
        _ = state.withTable { $0.noteDesired(agentID.value, generation: generation, at: Moment.now()) }
    }

    /// Desired states are checked in one pass over their bytes, as agents' messages are, instead
    /// of building a tree twice per document (once from the orchestrator, once from its own echo).
    private static let desiredSchema = DeviceProtocolSchemas.shared.schema(for: .desired)

    /// A desired state the orchestrator asked for, checked and owned by this replica.
    private struct DesiredStateRequest: Sendable {
        var agentID: TopicLevel
        var generation: Int
        var payload: Data
    }

    /// Agents whose desired states are published at once. Each publish waits for the broker's
    /// PUBACK (a few milliseconds on a busy broker): one after the other, 1,000 agents took 5 s.
    static let desiredStateLanes = 64

    /// The orchestrator's desired states, in lanes by agent: one agent's documents stay in order
    /// (its lane publishes them one after the other) while the lanes wait for their
    /// acknowledgements side by side.
    private func relayDesiredStates(_ requests: MQTTSubscription) async {
        let lanes = (0..<Self.desiredStateLanes).map { _ in AsyncStream<DesiredStateRequest>.makeStream() }
        await withDiscardingTaskGroup { group in
            for lane in lanes {
                group.addTask { for await request in lane.stream { await publishDesiredState(request) } }
            }
            await consume(requests, upTo: 64) { messages in
                for message in messages {
                    guard let request = acceptDesiredState(message) else { continue }
                    let lane = Int(UInt(bitPattern: request.agentID.value.hashValue) % UInt(lanes.count))
                    lanes[lane].continuation.yield(request)
                }
            }
            // The subscription ended (shutdown): the lanes publish what they hold, then stop.
            for lane in lanes { lane.continuation.finish() }
        }
    }

    /// A desired state from the orchestrator, when it is valid and this replica owns its agent.
    private func acceptDesiredState(_ message: MQTTMessage) -> DesiredStateRequest? {
        let payload: ScalarMembers
        do {
            payload = try Self.desiredSchema.validate(json: message.payload, capturingScalarsOf: "payload")
        } catch {
            GatewayMetrics.desiredStates(.invalid).increment()
            logger.warning("dropped an invalid desired state", metadata: ["error": "\(error)"])
            return nil
        }
        guard case .string(let id)? = payload.value(named: "agent_id"), let agentID = try? TopicLevel(id),
            let generation = payload.value(named: "generation")?.integer
        else {
            GatewayMetrics.desiredStates(.invalid).increment()
            logger.warning("dropped a desired state whose agent_id is not a valid id")
            return nil
        }
        guard state.owns(agentID.value) else {
            GatewayMetrics.desiredStates(.notOwner).increment()
            return nil
        }
        return DesiredStateRequest(agentID: agentID, generation: generation, payload: message.payload)
    }

    /// Publishes a desired state to its agent, retained, unless the agent's topic already has a
    /// newer generation.
    private func publishDesiredState(_ request: DesiredStateRequest) async {
        let (agentID, generation) = (request.agentID, request.generation)
        let last = state.withTable { $0.desiredGeneration(of: agentID.value) }
        if let last, generation < last {
            GatewayMetrics.desiredStates(.stale).increment()
            logger.info(
                "not publishing an older desired state", metadata: ["agent_id": "\(agentID)", "generation": "\(generation)", "published": "\(last)"])
            return
        }
        // The same generation again is the orchestrator asking for the agent's report once more
        // (it lost one): published again, the agent answers with a report and applies nothing.
        let outcome: GatewayMetrics.DesiredStateOutcome = last == generation ? .republished : .published
        do {
            try await mqtt.publish(
                Topic.agent(agentID, .desired).path, payload: request.payload, qos: .atLeastOnce, retain: true,
                properties: MQTTProperties(contentType: "application/json"))
            _ = state.withTable { $0.noteDesired(agentID.value, generation: generation, at: Moment.now()) }
            GatewayMetrics.desiredStates(outcome).increment()
            logger.debug("published a desired state", metadata: ["agent_id": "\(agentID)", "generation": "\(generation)"])
        } catch {
            GatewayMetrics.desiredStates(.publishFailed).increment()
            logger.warning("could not publish a desired state", metadata: ["agent_id": "\(agentID)", "error": "\(error)"])
        }
    }
}

/// The per-message counters, made once: looking a counter up by label and dimensions costs more
/// than the rest of forwarding a telemetry message.
private struct InboundCounters: Sendable {
    let received: [Topic.AgentChannel: Counter]
    let forwarded: [Topic.AgentChannel: Counter]
    let dropped: [AgentMessageRejection: Counter]
    let telemetryBatches = GatewayMetrics.telemetryBatches
    /// Valid messages of agents first heard of while the agent table was full.
    let refused = GatewayMetrics.dropped(.agentTableFull)

    init() {
        let inbound = Topic.AgentChannel.inbound
        received = Dictionary(uniqueKeysWithValues: inbound.map { ($0, GatewayMetrics.received($0)) })
        forwarded = Dictionary(uniqueKeysWithValues: [Topic.AgentChannel.hello, .report, .telemetry].map { ($0, GatewayMetrics.forwarded($0)) })
        dropped = Dictionary(uniqueKeysWithValues: AgentMessageRejection.allCases.map { ($0, GatewayMetrics.dropped($0)) })
    }
}

/// Messages a consumer has taken from a subscription so far.
final class TakenCount: Sendable {
    private let value = Atomic<Int>(0)

    func add(_ count: Int) { value.add(count, ordering: .relaxed) }
    var total: Int { value.load(ordering: .relaxed) }
}

/// A subscription whose backlog the expiry watches, with its consumer's count.
private struct WatchedQueue: Sendable {
    let subscription: MQTTSubscription
    let taken = TakenCount()

    init(_ subscription: MQTTSubscription) { self.subscription = subscription }

    /// Taken before waiting: a message taken in between is then in neither, never in both, so a
    /// queue that keeps up is not mistaken for one behind.
    var reading: InboundBacklog.Reading {
        let taken = taken.total
        return InboundBacklog.Reading(waiting: subscription.waitingCount, taken: taken, dropped: subscription.droppedCount)
    }
}

/// Rate-limits the gateway's log lines about dropped messages: one per key every 10 s, and at most
/// ``linesPerWindow`` in all every 10 s, so that a flood of random agent ids is not a line each.
private final class DropLog: Sendable {
    private struct State {
        var lastLogged: [String: ContinuousClock.Instant] = [:]
        var windowStart = ContinuousClock.now
        var linesInWindow = 0
        var suppressed = 0
    }

    static let window = Duration.seconds(10)
    static let linesPerWindow = 20
    private let state = Mutex(State())

    /// Nil to stay silent; otherwise how many lines were held back since the last one.
    func shouldLog(key: String) -> Int? {
        let now = ContinuousClock.now
        return state.withLock { state in
            if now - state.windowStart >= Self.window {
                state.windowStart = now
                state.linesInWindow = 0
                state.lastLogged.removeAll(keepingCapacity: true)
            }
            guard state.lastLogged[key] == nil, state.linesInWindow < Self.linesPerWindow else {
                state.suppressed += 1
                return nil
            }
            state.lastLogged[key] = now
            state.linesInWindow += 1
            defer { state.suppressed = 0 }
            return state.suppressed
        }
    }
}

extension JSONValue {
    fileprivate var integer: Int? {
        guard case .number(let number) = self, number.rounded() == number, abs(number) < 9e15 else { return nil }
        return Int(number)
    }
}
