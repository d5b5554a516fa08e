package import FleetContract
package import Foundation

/// An agent message that passed every check of the device protocol.
///
/// It holds no parsed document: telemetry, heartbeats and presence are validated in one pass over
/// their bytes, and what the gateway reads besides forwarding them is a few top-level members of
/// the payload, which ``field(_:)`` gives.
package struct ValidatedAgentMessage: Sendable {
    package var agentID: TopicLevel
    package var channel: Topic.AgentChannel
    /// The bytes as the agent sent them, for forwarding unchanged.
    package var payload: Data
    /// The string, number, boolean and null members of the envelope's `payload`, as validated.
    package var payloadScalars: ScalarMembers

    package init(agentID: TopicLevel, channel: Topic.AgentChannel, payload: Data, payloadScalars: ScalarMembers) {
        self.agentID = agentID
        self.channel = channel
        self.payload = payload
        self.payloadScalars = payloadScalars
    }

    /// A top-level member of the payload (`state`, `applied_generation`) when it is a string,
    /// number, boolean or null; nil when it is absent, an object or an array.
    package func field(_ name: String) -> JSONValue? { payloadScalars.value(named: name) }
}

/// Why an agent message was refused; the raw value is the `reason` label of the gateway's
/// `gateway_messages_dropped_total` counter.
package enum AgentMessageRejection: String, Error, Sendable, CaseIterable {
    /// Larger than the channel's size limit.
    case oversized
    /// Not JSON (RFC 8259), or not UTF-8.
    case malformedJSON = "malformed_json"
    /// Valid JSON that breaks the channel's schema or one of the rules a schema cannot express
    /// (unique device keys in a hello, a reason for every failed pipeline and instance in a report).
    case schema
    /// `payload.agent_id` is not the agent id of the topic it came on.
    case agentIDMismatch = "agent_id_mismatch"
    /// Not `modelfleet/v1/agents/<valid id>/<inbound channel>`.
    case unknownTopic = "unknown_topic"
    /// Over the agent's message rate (the gateway's token bucket).
    case rateLimited = "rate_limited"
}

/// Checks inbound agent messages: topic, size, JSON, schema, the agent id, and the rules the
/// schemas cannot express. Pure and thread-safe; the gateway's hot path.
package struct AgentMessageValidator: Sendable {
    /// What failed, for the gateway's log line.
    package struct Failure: Error, Sendable {
        package var rejection: AgentMessageRejection
        package var detail: String

        package init(rejection: AgentMessageRejection, detail: String) {
            self.rejection = rejection
            self.detail = detail
        }
    }

    /// Size limits per channel, in bytes: a hello carries up to 10,000 devices, a response up to
    /// 1,000 log lines.
    package static func sizeLimit(of channel: Topic.AgentChannel) -> Int {
        switch channel {
        case .hello, .response: 2 * 1024 * 1024
        default: 256 * 1024
        }
    }

    private let schemas: DeviceProtocolSchemas

    package init(schemas: DeviceProtocolSchemas = .shared) {
        self.schemas = schemas
    }

    /// The agent id and channel of an inbound agent topic, or ``AgentMessageRejection/unknownTopic``.
    package static func route(topic: String) -> Result<(agentID: TopicLevel, channel: Topic.AgentChannel), Failure> {
        guard let (agentID, channel) = Topic.parseAgentTopic(topic), Topic.AgentChannel.inbound.contains(channel) else {
            return .failure(Failure(rejection: .unknownTopic, detail: "not an agent's inbound topic"))
        }
        return .success((agentID, channel))
    }

    /// Checks a message that came on `channel` of `agentID`: size, JSON, schema, rules, agent id.
    package func validate(agentID: TopicLevel, channel: Topic.AgentChannel, payload: Data) -> Result<ValidatedAgentMessage, Failure> {
        let limit = Self.sizeLimit(of: channel)
        guard payload.count <= limit else {
            return .failure(Failure(rejection: .oversized, detail: "\(payload.count) bytes, the limit for \(channel) is \(limit)"))
        }
        let scalars: ScalarMembers
        switch channel {
        case .hello, .report, .response:
            // Their rules need the tree (device keys across a hello, two members of a pipeline in a
            // report); they are rare messages, so the tree costs little here.
            let document: JSONValue
            do {
                document = try JSONParser.parse(payload)
            } catch {
                return .failure(Failure(rejection: .malformedJSON, detail: "\(error)"))
            }
            do {
                try schemas.validate(document, as: channel)
                try Self.checkRules(document, channel: channel)
            } catch {
                return .failure(Failure(rejection: .schema, detail: "\(error)"))
            }
            guard case .object(let envelope) = document else { return .failure(Failure(rejection: .schema, detail: "not an object")) }
            scalars = ScalarMembers(scalarsOf: envelope["payload"])
        default:
            // Telemetry, heartbeats and presence, nearly all the traffic: one pass over the bytes.
            do {
                scalars = try schemas.schema(for: channel).validate(json: payload, capturingScalarsOf: "payload")
            } catch {
                switch error {
                case .malformed(let failure): return .failure(Failure(rejection: .malformedJSON, detail: "\(failure)"))
                case .violation(let violation): return .failure(Failure(rejection: .schema, detail: "\(violation)"))
                }
            }
        }
        guard scalars.hasString(agentID.value, named: "agent_id") else {
            return .failure(Failure(rejection: .agentIDMismatch, detail: "payload.agent_id is not '\(agentID)'"))
        }
        return .success(ValidatedAgentMessage(agentID: agentID, channel: channel, payload: payload, payloadScalars: scalars))
    }

    /// ``route(topic:)`` then ``validate(agentID:channel:payload:)``.
    package func validate(topic: String, payload: Data) -> Result<ValidatedAgentMessage, Failure> {
        Self.route(topic: topic).flatMap { validate(agentID: $0.agentID, channel: $0.channel, payload: payload) }
    }

    /// The rules of `docs/device-protocol.md` that JSON Schema cannot state.
    private static func checkRules(_ document: JSONValue, channel: Topic.AgentChannel) throws(ContractError) {
        guard case .object(let envelope) = document, case .object(let body)? = envelope["payload"] else { return }
        switch channel {
        case .hello:
            guard case .array(let devices)? = body["devices"] else { return }
            var seen = Set<String>()
            for (index, device) in devices.enumerated() {
                if case .object(let fields) = device, case .string(let key)? = fields["key"], !seen.insert(key).inserted {
                    throw ContractError(field: "payload.devices[\(index)].key", reason: "'\(key)' is listed twice")
                }
            }
        case .response:
            if (body["lines"] == nil) == (body["error"] == nil) {
                throw ContractError(field: "payload.lines", reason: "a response has either lines or error")
            }
        case .report:
            if case .array(let instances)? = body["instances"] {
                for (index, instance) in instances.enumerated() {
                    if case .object(let report) = instance, report["state"] == .string("failed"), report["reason"] == nil {
                        throw ContractError(field: "payload.instances[\(index)].reason", reason: "is required when failed")
                    }
                }
            }
            guard case .array(let devices)? = body["devices"] else { return }
            for (deviceIndex, device) in devices.enumerated() {
                guard case .object(let fields) = device, case .array(let pipelines)? = fields["pipelines"] else { continue }
                for (index, pipeline) in pipelines.enumerated() {
                    if case .object(let report) = pipeline, report["state"] == .string("failed"), report["reason"] == nil {
                        throw ContractError(field: "payload.devices[\(deviceIndex)].pipelines[\(index)].reason", reason: "is required when failed")
                    }
                }
            }
        default:
            break
        }
    }
}

/// The device protocol's JSON Schemas (`Shared/DeviceProtocol/Schemas/`), compiled into the
/// binary so that the gateway validates with exactly the files device makers read.
package struct DeviceProtocolSchemas: Sendable {
    private let byChannel: [Topic.AgentChannel: JSONSchema]

    /// Compiled once per process. A schema that does not compile is a defect of this build, caught
    /// by the tests, so it stops the process with the reason.
    package static let shared: DeviceProtocolSchemas = {
        do {
            return try DeviceProtocolSchemas()
        } catch {
            fatalError("the device protocol's schemas do not compile: \(error)")
        }
    }()

    package init() throws {
        var byChannel: [Topic.AgentChannel: JSONSchema] = [:]
        for channel in Topic.AgentChannel.allCases {
            byChannel[channel] = try JSONSchema(data: Data(Self.source(of: channel)))
        }
        self.byChannel = byChannel
    }

    /// The schema file's bytes, as SwiftPM embedded them (`Package.swift`: `.embedInCode("Schemas")`).
    package static func source(of channel: Topic.AgentChannel) -> [UInt8] {
        switch channel {
        case .presence: PackageResources.presence_schema_json
        case .hello: PackageResources.hello_schema_json
        case .heartbeat: PackageResources.heartbeat_schema_json
        case .telemetry: PackageResources.telemetry_schema_json
        case .report: PackageResources.report_schema_json
        case .desired: PackageResources.desired_schema_json
        case .request: PackageResources.request_schema_json
        case .response: PackageResources.response_schema_json
        }
    }

    package func validate(_ document: JSONValue, as channel: Topic.AgentChannel) throws(ContractError) {
        try schema(for: channel).validate(document)
    }

    /// The compiled schema of `channel`, for ``JSONSchema/validate(json:capturingScalarsOf:)``.
    package func schema(for channel: Topic.AgentChannel) -> JSONSchema {
        // Every channel has a schema (the initialiser compiled them all).
        byChannel[channel]!
    }
}
