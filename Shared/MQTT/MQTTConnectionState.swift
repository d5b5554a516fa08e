/// Where a client's connection stands, for `/ready` and for logs.
package enum MQTTConnectionState: Sendable, Equatable, CustomStringConvertible {
    /// Not connected yet; the first attempt is under way.
    case connecting
    case connected
    /// Lost or refused; the client keeps retrying with backoff. The reason is for people.
    case disconnected(reason: String)
    /// `run()` has returned; nothing more will happen.
    case shutDown

    package var isConnected: Bool { self == .connected }

    package var description: String {
        switch self {
        case .connecting: "connecting"
        case .connected: "connected"
        case .disconnected(let reason): "disconnected: \(reason)"
        case .shutDown: "shut down"
        }
    }
}
