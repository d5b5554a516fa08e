package import FleetContract
import Foundation
package import MQTT

/// Agents' broker accounts, kept in Mosquitto's dynamic security plugin and changed live through
/// its control topic (docs/security.md): an enrolled agent connects as its agent id and may
/// publish only its own `presence`, `hello`, `heartbeat`, `telemetry`, `report` and `response`,
/// and subscribe only to its own `desired` and `request`. The client needs the plugin's control
/// topic (`modelfleet:enroller` or `modelfleet:admin`).
package struct AgentAccounts: Sendable {
    package static let controlTopic = "$CONTROL/dynamic-security/v1"
    package static let responseTopic = "$CONTROL/dynamic-security/v1/response"

    private let mqtt: MQTTClient
    private let timeout: Duration

    package init(mqtt: MQTTClient, timeout: Duration = .seconds(5)) {
        self.mqtt = mqtt
        self.timeout = timeout
    }

    /// The role that holds one agent's topics.
    package static func roleName(_ agentID: TopicLevel) -> String { "agent:\(agentID.value)" }

    /// The plugin's ACL entries for `agentID`'s own topics.
    package static func acls(_ agentID: TopicLevel) -> [[String: Any]] {
        let publish = Topic.AgentChannel.inbound.map { channel in
            ["acltype": "publishClientSend", "topic": Topic.agent(agentID, channel).path, "allow": true] as [String: Any]
        }
        let subscribe = [Topic.AgentChannel.desired, .request].map { channel in
            ["acltype": "subscribeLiteral", "topic": Topic.agent(agentID, channel).path, "allow": true] as [String: Any]
        }
        return publish + subscribe
    }

    /// Gives `agentID` an account with `password`, replacing any it had: the old password stops
    /// working and a connected agent is disconnected. Safe to repeat.
    package func enroll(_ agentID: TopicLevel, password: String) async throws(AgentAccountsError) {
        try await run(
            [
                ["command": "deleteClient", "username": agentID.value],
                ["command": "deleteRole", "rolename": Self.roleName(agentID)],
                ["command": "createRole", "rolename": Self.roleName(agentID), "acls": Self.acls(agentID)],
                [
                    "command": "createClient", "username": agentID.value, "password": password, "textname": "edge agent \(agentID.value)",
                    "roles": [["rolename": Self.roleName(agentID)]],
                ],
            ], mayFail: ["deleteClient", "deleteRole"])
    }

    /// Removes `agentID`'s account: the broker disconnects it at once and refuses it from then
    /// on. Safe to repeat.
    package func revoke(_ agentID: TopicLevel) async throws(AgentAccountsError) {
        try await run(
            [
                ["command": "deleteClient", "username": agentID.value],
                ["command": "deleteRole", "rolename": Self.roleName(agentID)],
            ], mayFail: ["deleteClient", "deleteRole"])
    }

    /// Whether the broker has an account for `agentID`.
    package func exists(_ agentID: TopicLevel) async throws(AgentAccountsError) -> Bool {
        let responses = try await run([["command": "getClient", "username": agentID.value]], mayFail: ["getClient"])
        return responses.first?.error == nil
    }

    /// Sends `commands` in one control message and waits for the plugin's answer to each.
    /// Commands named in `mayFail` may answer with an error (a delete of what is not there).
    @discardableResult
    private func run(_ commands: [[String: Any]], mayFail: Set<String>) async throws(AgentAccountsError) -> [ControlResponse] {
        let correlation = UUID().uuidString
        let tagged = commands.enumerated().map { index, command in
            command.merging(["correlationData": "\(correlation)-\(index)"]) { $1 }
        }
        do {
            let payload = try JSONSerialization.data(withJSONObject: ["commands": tagged])
            let subscription = try await mqtt.subscribe(to: Self.responseTopic, qos: .atMostOnce)
            defer { subscription.cancel() }
            try await mqtt.publish(Self.controlTopic, payload: payload, qos: .atLeastOnce)
            let responses = try await withThrowingTaskGroup(of: [ControlResponse]?.self) { group in
                group.addTask {
                    for await message in subscription {
                        guard let object = try? JSONSerialization.jsonObject(with: message.payload) as? [String: Any],
                            let all = object["responses"] as? [[String: Any]]
                        else { continue }
                        let ours = all.filter { ($0["correlationData"] as? String)?.hasPrefix(correlation) == true }
                        guard !ours.isEmpty else { continue }
                        return ours.map { ControlResponse(command: $0["command"] as? String ?? "?", error: $0["error"] as? String) }
                    }
                    return nil
                }
                group.addTask { [timeout] in
                    try await Task.sleep(for: timeout)
                    return nil
                }
                let first = try await group.next() ?? nil
                group.cancelAll()
                return first
            }
            guard let responses else { throw AgentAccountsError.noAnswer(timeout) }
            for response in responses {
                if let error = response.error, !mayFail.contains(response.command) {
                    throw AgentAccountsError.refused(command: response.command, reason: error)
                }
            }
            return responses
        } catch let error as AgentAccountsError {
            throw error
        } catch let error as MQTTError {
            throw AgentAccountsError.broker(error)
        } catch {
            throw AgentAccountsError.broker(.invalidArgument("\(error)"))
        }
    }
}

/// The plugin's answer to one command.
private struct ControlResponse: Sendable {
    var command: String
    var error: String?
}

/// Why the broker's accounts could not be changed.
package enum AgentAccountsError: Error, Sendable, CustomStringConvertible {
    /// The plugin did not answer in time: not loaded, or this client may not use its topic.
    case noAnswer(Duration)
    /// The plugin refused a command.
    case refused(command: String, reason: String)
    /// The broker could not be reached or refused the message.
    case broker(MQTTError)

    package var description: String {
        switch self {
        case .noAnswer(let timeout):
            "the broker's dynamic security plugin did not answer within \(timeout) (is it loaded, and may this service use \(AgentAccounts.controlTopic)?)"
        case .refused(let command, let reason): "the broker refused \(command): \(reason)"
        case .broker(let error): "the broker: \(error)"
        }
    }
}
