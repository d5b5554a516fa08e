import FleetContract
import Foundation
import MQTT
import ServiceRuntime

/// Where an instance's logs come from: its agent, asked through the gateway.
protocol InstanceLogSource: Sendable {
    /// The last `tail` lines of `instanceID`'s output on `agentID`'s server.
    func lines(of instanceID: String, on agentID: String, tail: Int) async throws -> [String]
}

/// Asks the gateway over MQTT 5 request/response (`Topic.agentRequests`, docs/mqtt-contract.md);
/// the gateway asks the agent and answers with what it said, or why it could not.
struct GatewayLogClient: InstanceLogSource {
    let mqtt: MQTTClient
    var timeout: Duration = .seconds(10)

    private struct Question: Encodable {
        var agentID: String
        var instanceID: String
        var tail: Int

        enum CodingKeys: String, CodingKey {
            case agentID = "agent_id"
            case instanceID = "instance_id"
            case tail
        }
    }

    private struct Answer: Decodable {
        var lines: [String]
    }

    func lines(of instanceID: String, on agentID: String, tail: Int) async throws -> [String] {
        let answer: MQTTMessage
        do {
            answer = try await mqtt.request(
                Topic.agentRequests.path, payload: try ContractCoding.encoder.encode(Question(agentID: agentID, instanceID: instanceID, tail: tail)),
                timeout: timeout)
        } catch MQTTError.requestFailed(_, let message) {
            // The gateway's word: the agent is offline, did not answer, or has no such instance.
            throw DomainError.unavailable(code: "agent_unavailable", message)
        } catch {
            throw DomainError.unavailable(code: "gateway_unavailable", "the device gateway did not answer: \(error)")
        }
        return try ContractCoding.decoder.decode(Answer.self, from: answer.payload).lines
    }
}
