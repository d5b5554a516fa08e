package import Foundation

/// The retained presence of one service instance on ``Topic/serviceStatus(service:instance:)``.
///
/// A service publishes `online` on every connect, `offline` with reason `stopped` when it shuts
/// down cleanly, and leaves `offline` with reason `connection_lost` as its MQTT last will, which
/// the broker publishes if the process vanishes (killed, crashed, network cut).
package struct ServiceStatus: ContractPayload, Equatable {
    package static let messageType = "service.status"

    package enum State: String, Codable, Sendable {
        case online
        case offline
    }

    package enum Reason: String, Codable, Sendable {
        case started
        case stopped
        case connectionLost = "connection_lost"
    }

    package var service: String
    package var instance: String
    package var state: State
    package var reason: Reason
    package var version: String
    package var startedAt: Date

    package init(service: String, instance: String, state: State, reason: Reason, version: String, startedAt: Date) {
        self.service = service
        self.instance = instance
        self.state = state
        self.reason = reason
        self.version = version
        self.startedAt = startedAt
    }

    private enum CodingKeys: String, CodingKey {
        case service, instance, state, reason, version
        case startedAt = "started_at"
    }
}
