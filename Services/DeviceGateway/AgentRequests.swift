import DeviceProtocol
import FleetContract
import Foundation
import Logging
import MQTT
import ServiceLifecycle
import ServiceRuntime
import Synchronization

/// Questions for agents (an instance's logs): the services ask over MQTT 5 request/response on
/// ``Topic/agentRequests``, shared by the gateway replicas; the replica that takes one asks the
/// agent on its `request` topic and answers with the agent's `response`.
///
/// Every replica subscribes to every agent's `response` topic (not shared): the answer reaches
/// the replica that asked whichever took it, and the others, which wait for no such request id,
/// drop it uncounted. Responses are rare (an operator reading logs), so the copies cost nothing.
struct AgentRequests: Service {
    let mqtt: MQTTClient
    let state: GatewayState
    let validator: AgentMessageValidator
    let logger: Logger
    private let pending = PendingAnswers()

    /// How long an agent has to answer.
    static let timeout = Duration.seconds(5)

    init(mqtt: MQTTClient, state: GatewayState, validator: AgentMessageValidator, logger: Logger) {
        self.mqtt = mqtt
        self.state = state
        self.validator = validator
        self.logger = logger
    }

    /// What a service asks (`docs/mqtt-contract.md`): an instance's last lines.
    struct InstanceLogsQuestion: Codable, Sendable {
        var agentID: String
        var instanceID: String
        var tail: Int

        private enum CodingKeys: String, CodingKey {
            case agentID = "agent_id"
            case instanceID = "instance_id"
            case tail
        }
    }

    struct Answer: Codable, Sendable {
        var lines: [String]
    }

    struct Refusal: Error, CustomStringConvertible {
        var description: String
    }

    func run() async throws {
        let responses = try await mqtt.subscribe(to: Topic.everyAgent(.response).path, qos: .atLeastOnce)
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { for await message in responses { receive(message) } }
                group.addTask {
                    do {
                        try await mqtt.serveRequests(on: Topic.agentRequests.shared(by: AgentRelay.service), maxConcurrentRequests: 64) {
                            try await answer($0)
                        }
                    } catch {
                        logger.error("cannot serve requests for agents", metadata: ["error": "\(error)"])
                    }
                }
            }
        }
    }

    private func answer(_ message: MQTTMessage) async throws -> MQTTReply {
        let question: InstanceLogsQuestion
        let agentID: TopicLevel
        do {
            question = try ContractCoding.decoder.decode(InstanceLogsQuestion.self, from: message.payload)
            agentID = try TopicLevel(question.agentID)
            _ = try TopicLevel(question.instanceID)
            guard (1...1_000).contains(question.tail) else { throw Refusal(description: "tail must be 1 to 1000") }
        } catch {
            GatewayMetrics.requests(.invalid).increment()
            throw Refusal(description: "not a request for an agent: \(error)")
        }
        guard state.withTable({ $0.isOnline(question.agentID) }) else {
            GatewayMetrics.requests(.offline).increment()
            throw Refusal(description: "agent \(question.agentID) is offline")
        }
        let request = AgentMessage.Request(
            agentID: question.agentID, requestID: UUID(), kind: .instanceLogs, instanceID: question.instanceID, tail: question.tail)
        let response = try await pending.wait(for: request.requestID, timeout: Self.timeout) {
            try await mqtt.publish(
                Topic.agent(agentID, .request).path, payload: try Envelope(payload: request).encoded(), qos: .atLeastOnce,
                properties: MQTTProperties(contentType: "application/json"))
        }
        guard let response else {
            GatewayMetrics.requests(.timedOut).increment()
            throw Refusal(description: "agent \(question.agentID) did not answer within \(Self.timeout.components.seconds) s")
        }
        GatewayMetrics.requests(.answered).increment()
        if let error = response.error { throw Refusal(description: "agent \(question.agentID): \(error)") }
        return MQTTReply(payload: try ContractCoding.encoder.encode(Answer(lines: response.lines ?? [])), contentType: "application/json")
    }

    /// An agent's response: checked as any agent message, and handed to the request waiting
    /// for it, if this replica has one.
    private func receive(_ message: MQTTMessage) {
        guard case .success(let route) = AgentMessageValidator.route(topic: message.topic), route.channel == .response else { return }
        switch validator.validate(agentID: route.agentID, channel: .response, payload: message.payload) {
        case .success:
            guard let response = try? Envelope<AgentMessage.Response>.decode(from: message.payload).payload else { return }
            pending.resolve(response)
        case .failure(let failure):
            GatewayMetrics.dropped(failure.rejection).increment()
            logger.warning(
                "dropped an invalid agent response", metadata: ["agent_id": "\(route.agentID)", "reason": "\(failure.rejection.rawValue)"])
        }
    }
}

/// Requests waiting for their agents' responses, by request id. A request is registered before
/// it is sent, so that a response quicker than the sender's return is kept for it.
final class PendingAnswers: Sendable {
    private enum Slot {
        case expected
        case waiting(CheckedContinuation<AgentMessage.Response?, Never>)
        case arrived(AgentMessage.Response?)
    }

    private let slots = Mutex<[UUID: Slot]>([:])

    /// Runs `send`, then waits for the response to `requestID`; nil after `timeout`.
    func wait(for requestID: UUID, timeout: Duration, send: () async throws -> Void) async throws -> AgentMessage.Response? {
        slots.withLock { $0[requestID] = .expected }
        do {
            try await send()
        } catch {
            slots.withLock { $0[requestID] = nil }
            throw error
        }
        let timer = Task {
            try await Task.sleep(for: timeout)
            self.finish(requestID, with: nil)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { continuation in
            let arrived = slots.withLock { slots -> AgentMessage.Response?? in
                if case .arrived(let response) = slots[requestID] {
                    slots[requestID] = nil
                    return .some(response)
                }
                slots[requestID] = .waiting(continuation)
                return .none
            }
            if let arrived { continuation.resume(returning: arrived) }
        }
    }

    func resolve(_ response: AgentMessage.Response) { finish(response.requestID, with: response) }

    /// Hands the waiting request its response (or nil: timed out); one not waiting yet keeps it.
    /// A response nobody expects is dropped.
    private func finish(_ requestID: UUID, with response: AgentMessage.Response?) {
        let continuation = slots.withLock { slots -> CheckedContinuation<AgentMessage.Response?, Never>? in
            switch slots[requestID] {
            case .waiting(let continuation):
                slots[requestID] = nil
                return continuation
            case .expected:
                slots[requestID] = .arrived(response)
                return nil
            case .arrived, nil:
                return nil
            }
        }
        continuation?.resume(returning: response)
    }
}
