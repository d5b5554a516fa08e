import Foundation
import Testing

@testable import FleetContract

@Suite("Contract: topics and envelope")
struct EnvelopeTests {
    @Test("service status topics live under modelfleet/v1")
    func statusTopic() throws {
        let topic = Topic.serviceStatus(service: try TopicLevel("registry"), instance: try TopicLevel("host-1"))
        #expect(topic.path == "modelfleet/v1/services/registry/host-1/status")
        #expect(Topic.repliesPrefix.path == "modelfleet/v1/replies")
    }

    @Test(
        "ids that would add a level or a wildcard are refused",
        arguments: ["", "a/b", "+", "#", "a b", "..", String(repeating: "x", count: 129), "é"])
    func badLevels(_ value: String) {
        #expect(throws: ContractError.self) { try TopicLevel(value) }
    }

    @Test("ids of ASCII letters, digits, '-', '_' and '.' are levels", arguments: ["a", "Z", "cam-01", "site_A.b", "0", "v1.2.3"])
    func goodLevels(_ value: String) throws {
        #expect(try TopicLevel(value).value == value)
    }

    @Test("a telemetry batch written by hand decodes as the envelope it claims to be, with every message unchanged")
    func telemetryBatch() throws {
        let messages = [
            #"{"schema_version":1,"type":"agent.telemetry","payload":{"agent_id":"a-1","host":{"cpu_percent":3.5}}}"#,
            #"{"type":"agent.telemetry","payload":{"agent_id":"a-2","pipelines":[{"frames":10}]},"schema_version":1}"#,
        ].map { Data($0.utf8) }
        let id = UUID()
        let sentAt = Date(timeIntervalSince1970: 1_790_000_000.125)
        let data = TelemetryBatch.encode(messages, messageID: id, sentAt: sentAt)
        let decoded = try Envelope<TelemetryBatch>.decode(from: data)
        #expect(decoded.messageID == id)
        #expect(abs(decoded.sentAt.timeIntervalSince(sentAt)) < 0.001)
        #expect(decoded.payload.messages == messages.map { try! ContractCoding.decoder.decode(JSONValue.self, from: $0) })
        // The same JSON as the encoder writes, field for field.
        let expected = try Envelope(payload: TelemetryBatch(messages: decoded.payload.messages), messageID: id, sentAt: sentAt).encoded()
        #expect(
            try JSONSerialization.jsonObject(with: data) as? NSDictionary == JSONSerialization.jsonObject(with: expected) as? NSDictionary)
        #expect(try Envelope<TelemetryBatch>.decode(from: TelemetryBatch.encode([])).payload.messages.isEmpty)
    }

    @Test("an envelope round-trips with snake_case fields, its type and millisecond UTC timestamps")
    func roundTrip() throws {
        let sentAt = Date(timeIntervalSince1970: 1_790_000_000.125)
        let status = ServiceStatus(service: "registry", instance: "h1", state: .online, reason: .started, version: "0.1.0", startedAt: sentAt)
        let correlation = UUID()
        let data = try Envelope(payload: status, correlationID: correlation, sentAt: sentAt).encoded()
        let json = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(json["schema_version"] as? Int == 1)
        #expect(json["type"] as? String == "service.status")
        #expect(json["sent_at"] as? String == "2026-09-21T14:13:20.125Z")
        #expect((json["payload"] as? [String: Any])?["started_at"] as? String == "2026-09-21T14:13:20.125Z")

        let decoded = try Envelope<ServiceStatus>.decode(from: data)
        #expect(decoded.payload == status)
        #expect(decoded.correlationID == correlation)
        #expect(abs(decoded.sentAt.timeIntervalSince(sentAt)) < 0.001)
    }

    @Test(
        "decoding errors name the field",
        arguments: [
            (
                #"{"schema_version":1,"type":"service.status","message_id":"8A8E2C5E-3B8C-4C69-8B0B-6B4C0C1A9A11","sent_at":"2026-01-01T00:00:00Z"}"#,
                "payload"
            ),
            (#"{"schema_version":2,"type":"service.status"}"#, "schema_version"),
            (#"{"schema_version":1,"type":"other.thing"}"#, "type"),
            (
                #"{"schema_version":1,"type":"service.status","message_id":"8A8E2C5E-3B8C-4C69-8B0B-6B4C0C1A9A11","sent_at":"yesterday","payload":{}}"#,
                "sent_at"
            ),
            (
                #"{"schema_version":1,"type":"service.status","message_id":"8A8E2C5E-3B8C-4C69-8B0B-6B4C0C1A9A11","sent_at":"2026-01-01T00:00:00Z","payload":{"service":"r","instance":"i","state":"sleeping","reason":"started","version":"1","started_at":"2026-01-01T00:00:00Z"}}"#,
                "payload.state"
            ),
            (
                #"{"schema_version":1,"type":"service.status","message_id":"8A8E2C5E-3B8C-4C69-8B0B-6B4C0C1A9A11","sent_at":"2026-01-01T00:00:00Z","payload":{"service":7}}"#,
                "payload.service"
            ),
            ("not json", "(root)"),
        ])
    func decodingErrors(json: String, field: String) {
        #expect {
            _ = try Envelope<ServiceStatus>.decode(from: Data(json.utf8))
        } throws: { error in
            (error as? ContractError)?.field == field
        }
    }
}
