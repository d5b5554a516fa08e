package import Foundation

/// Agents' telemetry messages as the device gateway forwards them: one MQTT message holds the
/// valid messages one gateway worker handled together, each copied byte for byte, in the order
/// they were handled.
///
/// ```json
/// {"schema_version": 1, "type": "agent.telemetry-batch", "message_id": "…", "sent_at": "…",
///  "payload": {"messages": [{"schema_version": 1, "type": "agent.telemetry", …}, …]}}
/// ```
///
/// One forwarded message per telemetry message cost the gateway a socket write and the broker a
/// packet read and a delivery per message; in batches those costs are shared by up to
/// ``maximumMessages`` messages. A batch never waits to fill: the gateway sends what it holds as
/// soon as its queue is empty, so a lone message goes alone and at once; after a small batch the
/// worker rests a few milliseconds, so that in a steady stream the next one gathers what arrived
/// meanwhile (docs/decisions.md, 41 and 51).
/// The MQTT 5 user property ``countProperty`` says how many messages a batch holds, for a reader
/// that only counts.
package struct TelemetryBatch: ContractPayload, Equatable {
    package static let messageType = "agent.telemetry-batch"
    /// The user property with the number of messages in the batch, in decimal.
    package static let countProperty = "messages"
    /// Most messages in one batch.
    package static let maximumMessages = 256
    /// Most bytes of messages in one batch (a single larger message still goes alone).
    package static let maximumBytes = 256 * 1024

    /// The agents' telemetry envelopes, as the agents sent them.
    package var messages: [JSONValue]

    package init(messages: [JSONValue]) {
        self.messages = messages
    }

    /// The envelope around `messages`, each a complete JSON document, written without decoding
    /// them: the same JSON as `Envelope(payload: TelemetryBatch(…)).encoded()` would write.
    package static func encode(_ messages: [Data], messageID: UUID = UUID(), sentAt: Date = Date()) -> Data {
        let head = Envelope<Self>.jsonHead(messageID: messageID, sentAt: sentAt) + #"{"messages":["#
        var data = Data(capacity: head.utf8.count + messages.reduce(0) { $0 + $1.count + 1 } + 3)
        data.append(contentsOf: head.utf8)
        for (index, message) in messages.enumerated() {
            if index > 0 { data.append(UInt8(ascii: ",")) }
            data.append(message)
        }
        data.append(contentsOf: "]}}".utf8)
        return data
    }
}
