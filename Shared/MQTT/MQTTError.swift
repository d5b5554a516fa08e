/// Errors the MQTT client reports to its callers.
package enum MQTTError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The configuration cannot be used (bad URL, bad topic, TLS files that do not load).
    case invalidConfiguration(String)
    /// An argument was rejected before anything was sent (a malformed topic or filter, a bad payload size).
    case invalidArgument(String)
    /// libmosquitto returned an error code for an operation.
    case library(operation: String, code: Int32, message: String)
    /// The operation needs a connection and there is none (QoS 0 publishes are not queued).
    case notConnected
    /// The broker refused a publish or a subscription with an MQTT 5 reason code.
    case refusedByBroker(operation: String, reasonCode: Int32, reason: String)
    /// No connection was made before the deadline.
    case connectTimedOut(Duration)
    /// No response arrived before the deadline.
    case requestTimedOut(topic: String, timeout: Duration)
    /// The responder answered with an error.
    case requestFailed(topic: String, message: String)
    /// The client was shut down while the operation was waiting.
    case shutDown

    package var description: String {
        switch self {
        case .invalidConfiguration(let message): "invalid MQTT configuration: \(message)"
        case .invalidArgument(let message): "invalid MQTT argument: \(message)"
        case .library(let operation, let code, let message): "\(operation) failed: \(message) (libmosquitto error \(code))"
        case .notConnected: "not connected to the MQTT broker"
        case .refusedByBroker(let operation, let code, let reason): "the broker refused \(operation): \(reason) (reason code \(code))"
        case .connectTimedOut(let timeout): "no connection to the MQTT broker within \(timeout)"
        case .requestTimedOut(let topic, let timeout): "no response on \(topic) within \(timeout)"
        case .requestFailed(let topic, let message): "request on \(topic) failed: \(message)"
        case .shutDown: "the MQTT client is shut down"
        }
    }
}
