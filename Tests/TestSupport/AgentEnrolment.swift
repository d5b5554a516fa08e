import FleetContract
package import Foundation
import MQTT
import ServiceRuntime

/// Gives each of `agentIDs` a broker account on the broker at `url` (as the registry's
/// enrolment does, through the dynamic security plugin) and returns a new folder holding each
/// agent's password in a file named by its id: `edge-agent simulate --credentials-dir`.
package func enrollAgents(_ agentIDs: [String], url: String) async throws -> URL {
    let folder = try TestEnvironment.current().makeScratchDirectory("agent-credentials")
    try await withConnectedClient(testMQTTConfiguration("enroller", url: url)) { client in
        let accounts = AgentAccounts(mqtt: client)
        for agentID in agentIDs {
            let password = UUID().uuidString
            try await accounts.enroll(try TopicLevel(agentID), password: password)
            try Data((password + "\n").utf8).write(to: folder.appendingPathComponent(agentID))
        }
    }
    return folder
}

/// The ids `edge-agent simulate --id-prefix prefix --agents count` gives its agents.
package func simulatedAgentIDs(prefix: String, count: Int, first: Int = 0) -> [String] {
    (first..<(first + count)).map { String(format: "%@-%04d", prefix, $0 + 1) }
}
