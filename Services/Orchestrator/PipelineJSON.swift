import DeviceProtocol
import FleetContract
import Foundation
import ServiceRuntime

/// Devices' pipeline lists as JSON, each distinct list encoded or decoded once: a bulk assignment
/// puts the same list on thousands of devices that mostly ran the same list before, and a
/// `JSONEncoder` or `JSONDecoder` run per device was most of planning and committing 10,000
/// devices (scripts/bench-orchestrator). One coder serves one operation; it keeps every distinct
/// list it saw until then.
struct PipelineListCoder {
    private var texts: [[DesiredState.Pipeline]: String] = [:]
    private var lists: [String: [DesiredState.Pipeline]] = [:]

    mutating func json(_ pipelines: [DesiredState.Pipeline]) throws -> String {
        if let text = texts[pipelines] { return text }
        let text = String(decoding: try ContractCoding.encoder.encode(pipelines), as: UTF8.self)
        texts[pipelines] = text
        return text
    }

    mutating func pipelines(_ text: String) throws -> [DesiredState.Pipeline] {
        if let list = lists[text] { return list }
        let list = try ContractCoding.decoder.decode([DesiredState.Pipeline].self, from: Data(text.utf8))
        lists[text] = list
        return list
    }
}

/// Texts numbered from 1 in the order first seen, each once: a statement takes the distinct texts
/// as one array and each row the position of its own (as `WITH ORDINALITY` numbers them).
struct DistinctTexts {
    private(set) var texts: [String] = []
    private var positions: [String: Int32] = [:]

    mutating func position(of text: String) -> Int32 {
        if let known = positions[text] { return known }
        texts.append(text)
        let position = Int32(texts.count)
        positions[text] = position
        return position
    }
}

/// An agent's desired-state document, written around its devices' pipeline lists as JSON text
/// (from a ``PipelineListCoder``, or as PostgreSQL returns them) instead of encoding every list
/// again: the same JSON as `Envelope(payload: DesiredState(…), correlationID:).encoded()` (a test
/// holds the two equal). The deployment instances, few per agent, are encoded; none: no
/// `deployments` member.
enum DesiredStateDocument {
    static func encode(
        agentID: String, generation: Int64, devices: [(key: String, pipelines: String)], instances: [DesiredState.Instance] = [],
        correlationID: UUID?, messageID: UUID = UUID(), sentAt: Date = Date()
    ) throws -> String {
        var json = JSONWriter(capacity: 256 + devices.reduce(0) { $0 + $1.key.utf8.count + $1.pipelines.utf8.count + 32 } + instances.count * 512)
        json.encoded(Envelope<DesiredState>.jsonHead(messageID: messageID, correlationID: correlationID, sentAt: sentAt))
        json.raw(#"{"agent_id":"#)
        json.string(agentID)
        json.raw(#","generation":"#)
        json.integer(generation)
        json.raw(#","devices":["#)
        for (index, device) in devices.enumerated() {
            if index > 0 { json.raw(",") }
            json.raw(#"{"device_key":"#)
            json.string(device.key)
            json.raw(#","pipelines":"#)
            json.encoded(device.pipelines)
            json.raw("}")
        }
        json.raw("]")
        if !instances.isEmpty {
            json.raw(#","deployments":"#)
            json.encoded(String(decoding: try ContractCoding.encoder.encode(instances), as: UTF8.self))
        }
        json.raw("}}")
        return String(decoding: json.bytes, as: UTF8.self)
    }
}
