package import Foundation

/// What went wrong with a message or a value of the contract, naming the field.
package struct ContractError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The JSON path of the offending field (`payload.generation`), or the name of the argument.
    package var field: String
    package var reason: String

    package init(field: String, reason: String) {
        self.field = field
        self.reason = reason
    }

    package var description: String { "\(field): \(reason)" }
}

/// A payload type of the contract: it names its message type and can be put in an ``Envelope``.
package protocol ContractPayload: Codable, Sendable {
    /// The `type` field of the envelope, e.g. `service.status`.
    static var messageType: String { get }
}

/// The JSON envelope around every payload on the bus:
///
/// ```json
/// {"schema_version": 1, "type": "service.status", "message_id": "…", "correlation_id": "…",
///  "sent_at": "2026-11-23T10:00:00.000Z", "payload": { … }}
/// ```
///
/// `correlation_id` ties together the messages of one operation across services (it is not the
/// MQTT 5 correlation data of a request, which the MQTT layer handles).
package struct Envelope<Payload: ContractPayload>: Sendable {
    /// The version of the envelope and of the payload schemas under `modelfleet/v1`.
    package static var currentSchemaVersion: Int { 1 }

    package var schemaVersion: Int
    package var messageID: UUID
    package var correlationID: UUID?
    package var sentAt: Date
    package var payload: Payload

    package init(payload: Payload, correlationID: UUID? = nil, messageID: UUID = UUID(), sentAt: Date = Date()) {
        self.schemaVersion = Self.currentSchemaVersion
        self.messageID = messageID
        self.correlationID = correlationID
        self.sentAt = sentAt
        self.payload = payload
    }

    /// The JSON bytes of this envelope.
    package func encoded() throws -> Data {
        try ContractCoding.encoder.encode(self)
    }

    /// Decodes an envelope, checking its schema version and message type. Errors name the field.
    package static func decode(from data: Data) throws(ContractError) -> Envelope {
        let envelope: Envelope
        do {
            envelope = try ContractCoding.decoder.decode(Envelope.self, from: data)
        } catch let error as ContractError {
            throw error
        } catch let error as DecodingError {
            throw ContractError(decodingError: error)
        } catch {
            throw ContractError(field: "(payload)", reason: "\(error)")
        }
        return envelope
    }
}

extension Envelope: Codable {
    private enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version"
        case type
        case messageID = "message_id"
        case correlationID = "correlation_id"
        case sentAt = "sent_at"
        case payload
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        schemaVersion = try container.decode(Int.self, forKey: .schemaVersion)
        guard schemaVersion == Self.currentSchemaVersion else {
            throw ContractError(field: "schema_version", reason: "\(schemaVersion) is not supported; this build reads \(Self.currentSchemaVersion)")
        }
        let type = try container.decode(String.self, forKey: .type)
        guard type == Payload.messageType else {
            throw ContractError(field: "type", reason: "expected '\(Payload.messageType)', got '\(type)'")
        }
        messageID = try container.decode(UUID.self, forKey: .messageID)
        correlationID = try container.decodeIfPresent(UUID.self, forKey: .correlationID)
        sentAt = try container.decode(Date.self, forKey: .sentAt)
        payload = try container.decode(Payload.self, forKey: .payload)
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(schemaVersion, forKey: .schemaVersion)
        try container.encode(Payload.messageType, forKey: .type)
        try container.encode(messageID, forKey: .messageID)
        try container.encodeIfPresent(correlationID, forKey: .correlationID)
        try container.encode(sentAt, forKey: .sentAt)
        try container.encode(payload, forKey: .payload)
    }
}

extension Envelope {
    /// The envelope's JSON up to `"payload":`, for a payload written by hand around JSON the
    /// writer already holds (telemetry batches, desired-state documents): append the payload and
    /// a closing `}`. The same fields as `encoded()` writes; none of them needs escaping (UUIDs,
    /// timestamps, the payload's message type).
    package static func jsonHead(messageID: UUID = UUID(), correlationID: UUID? = nil, sentAt: Date = Date()) -> String {
        let correlation = correlationID.map { #","correlation_id":"\#($0.lowercasedString)""# } ?? ""
        return #"{"schema_version":\#(currentSchemaVersion),"type":"\#(Payload.messageType)","message_id":"\#(messageID.lowercasedString)""#
            + correlation + #","sent_at":"\#(ContractCoding.timestamp(sentAt))","payload":"#
    }
}

extension ContractError {
    /// Turns a `DecodingError` into the path of the field and a reason a person can act on.
    package init(decodingError: DecodingError) {
        func path(_ codingPath: [any CodingKey], _ last: (any CodingKey)? = nil) -> String {
            let keys = codingPath + (last.map { [$0] } ?? [])
            let rendered = keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
                .reduce(into: "") { result, key in
                    result += key.hasPrefix("[") || result.isEmpty ? key : ".\(key)"
                }
            return rendered.isEmpty ? "(root)" : rendered
        }
        switch decodingError {
        case .keyNotFound(let key, let context):
            self.init(field: path(context.codingPath, key), reason: "is required")
        case .typeMismatch(let type, let context):
            self.init(field: path(context.codingPath), reason: "expected \(Self.jsonKind(of: type))")
        case .valueNotFound(let type, let context):
            self.init(field: path(context.codingPath), reason: "expected \(Self.jsonKind(of: type)), got null")
        case .dataCorrupted(let context):
            if let underlying = context.underlyingError as? ContractError {
                self = underlying
            } else if context.codingPath.isEmpty {
                self.init(field: "(root)", reason: "is not valid JSON")
            } else {
                self.init(field: path(context.codingPath), reason: context.debugDescription)
            }
        @unknown default:
            self.init(field: "(root)", reason: "\(decodingError)")
        }
    }

    private static func jsonKind(of type: Any.Type) -> String {
        switch type {
        case is String.Type, is UUID.Type, is Date.Type: "a string"
        case is Bool.Type: "a boolean"
        case is any BinaryInteger.Type: "an integer"
        case is any BinaryFloatingPoint.Type: "a number"
        case is [Any].Type: "an array"
        default: "an object"
        }
    }
}

/// The JSON coding rules of the contract: snake_case keys are spelled by each type's CodingKeys,
/// dates are ISO 8601 with milliseconds in UTC, key order is not significant.
package enum ContractCoding {
    package static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var container = encoder.singleValueContainer()
            try container.encode(date.formatted(Self.timestampStyle))
        }
        // No sorted keys: sorting every object's keys was a large share of encoding a page of
        // devices (scripts/bench-registry), and no reader depends on key order.
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return encoder
    }

    package static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let container = try decoder.singleValueContainer()
            let text = try container.decode(String.self)
            if let date = try? Date(text, strategy: Self.timestampStyle) { return date }
            if let date = try? Date(text, strategy: Date.ISO8601FormatStyle()) { return date }
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "'\(text)' is not an ISO 8601 timestamp")
        }
        return decoder
    }

    /// A date as the contract writes it: `2026-11-23T10:00:00.000Z`.
    package static func timestamp(_ date: Date) -> String { date.formatted(timestampStyle) }

    /// `value` read back as `T` through the contract's JSON: a domain value as the type a
    /// contract module generated for its schema, or a generated request body as the domain's own
    /// type. Both are held to the same JSON: a required field that one of them names differently
    /// is a `DecodingError` here.
    package static func recast<T: Decodable>(_ value: some Encodable, as type: T.Type = T.self) throws -> T {
        try decoder.decode(T.self, from: encoder.encode(value))
    }

    private static let timestampStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
}
