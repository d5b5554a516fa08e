import Foundation
import Testing

@testable import DeviceProtocol
@testable import FleetContract

private let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The ```json examples of docs/device-protocol.md, by envelope type.
func documentedExamples() throws -> [String: Data] {
    let page = try String(contentsOf: repository.appendingPathComponent("docs/device-protocol.md"), encoding: .utf8)
    var examples: [String: Data] = [:]
    for block in page.components(separatedBy: "```json\n").dropFirst() {
        let json = Data(block.components(separatedBy: "\n```")[0].utf8)
        guard case .object(let envelope) = try JSONParser.parse(json), case .string(let type)? = envelope["type"] else {
            Issue.record("an example without a type")
            continue
        }
        examples[type] = json
    }
    return examples
}

let channelsByType: [String: Topic.AgentChannel] = [
    "agent.presence": .presence, "agent.hello": .hello, "agent.heartbeat": .heartbeat, "agent.telemetry": .telemetry,
    "agent.report": .report, "agent.desired-state": .desired, "agent.request": .request, "agent.response": .response,
]

/// Documents that are not JSON (also run through the streaming validator, which must refuse them alike).
let malformedJSONExamples = [
    "", "{", "[1,]", #"{"a":1,}"#, "01", "1.", ".5", "-", "1e", "tru", "nul", #""abc"#, "\"a\u{01}b\"", #""\x""#, #""\ud800""#,
    #""\udc00x""#, "{} {}", "[1] x", #"{"a":1,"a":2}"#, "// comment\n1", "NaN", "1e999", #"{a:1}"#,
]

/// A schema with every supported keyword, valid documents for it, and broken ones with the field
/// each breaks (also run through the streaming validator).
let keywordSchemaSource = #"""
    {"type": "object", "required": ["id", "n"], "additionalProperties": false,
     "properties": {
       "id": {"type": "string", "pattern": "^[a-z]{1,4}$", "minLength": 1, "maxLength": 4},
       "n": {"type": "integer", "minimum": 1, "maximum": 10},
       "f": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
       "e": {"enum": ["a", "b"]}, "c": {"const": 1},
       "list": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"$ref": "#/$defs/item"}},
       "free": {"type": "object", "additionalProperties": {"type": "boolean"}}
     },
     "$defs": {"item": {"type": ["string", "null"]}}}
    """#
let keywordSchemaValidDocuments = [
    #"{"id": "ab", "n": 3, "f": 0.5, "e": "a", "c": 1, "list": ["x", null], "free": {"k": true}}"#, #"{"id": "ab", "n": 3.0}"#,
]
let keywordSchemaBrokenDocuments: [(String, String)] = [
    (#"{"n": 3}"#, "id"), (#"{"id": "ab", "n": 3, "x": 1}"#, "x"), (#"{"id": "AB", "n": 3}"#, "id"),
    ("{\"id\": \"ab\\n\", \"n\": 3}", "id"), (#"{"id": "ab", "n": 3.5}"#, "n"), (#"{"id": "ab", "n": 11}"#, "n"),
    (#"{"id": "ab", "n": 3, "f": 1}"#, "f"), (#"{"id": "ab", "n": 3, "e": "c"}"#, "e"), (#"{"id": "ab", "n": 3, "c": 2}"#, "c"),
    (#"{"id": "ab", "n": 3, "list": []}"#, "list"), (#"{"id": "ab", "n": 3, "list": ["a", 1]}"#, "list[1]"),
    (#"{"id": "ab", "n": 3, "free": {"k": 1}}"#, "free.k"), (#"[]"#, "(root)"),
]

@Suite("JSON parser")
struct JSONParserTests {
    @Test("parses every kind of value")
    func values() throws {
        let value = try JSONParser.parse(Data(#" {"a": [1, -2.5e3, true, false, null, "x\u00e9\n\ud83d\ude00"], "b": {}, "c": [], "d": 0} "#.utf8))
        #expect(
            value
                == .object([
                    "a": .array([.number(1), .number(-2500), .bool(true), .bool(false), .null, .string("xé\n😀")]), "b": .object([:]),
                    "c": .array([]), "d": .number(0),
                ]))
        #expect(try JSONParser.parse(Data("123456789012345678".utf8)) == .number(Double("123456789012345678")!))
    }

    @Test("refuses what RFC 8259 refuses", arguments: malformedJSONExamples)
    func refuses(_ text: String) {
        #expect(throws: JSONParser.Failure.self, "\(text)") { try JSONParser.parse(Data(text.utf8)) }
    }

    @Test("refuses invalid UTF-8 and deep nesting")
    func hostile() {
        #expect(throws: JSONParser.Failure.self) { try JSONParser.parse(Data([0x22, 0xFF, 0xFE, 0x22])) }
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(throws: JSONParser.Failure.self) { try JSONParser.parse(Data(deep.utf8)) }
        let allowed = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(throws: Never.self) { try JSONParser.parse(Data(allowed.utf8)) }
    }
}

@Suite("JSON Schema subset")
struct JSONSchemaTests {
    private func schema(_ text: String) throws -> JSONSchema { try JSONSchema(data: Data(text.utf8)) }
    private func check(_ schema: JSONSchema, _ json: String) -> ContractError? {
        do {
            try schema.validate(try JSONParser.parse(Data(json.utf8)))
            return nil
        } catch let error as ContractError {
            return error
        } catch {
            return ContractError(field: "(parse)", reason: "\(error)")
        }
    }

    @Test("applies each supported keyword and names the field")
    func keywords() throws {
        let schema = try schema(keywordSchemaSource)
        #expect(check(schema, keywordSchemaValidDocuments[0]) == nil)
        #expect(check(schema, keywordSchemaValidDocuments[1]) == nil, "3.0 is an integer in JSON Schema")
        for (json, field) in keywordSchemaBrokenDocuments {
            #expect(check(schema, json)?.field == field, "\(json)")
        }
    }

    @Test("refuses keywords it does not enforce, and dangling references")
    func refusesUnsupported() {
        #expect(throws: JSONSchema.DefinitionError.self) { try schema(#"{"oneOf": [{"type": "string"}]}"#) }
        #expect(throws: JSONSchema.DefinitionError.self) { try schema(#"{"uniqueItems": true}"#) }
        #expect(throws: JSONSchema.DefinitionError.self) { try schema(##"{"$ref": "#/$defs/missing"}"##) }
        #expect(throws: JSONSchema.DefinitionError.self) { try schema(#"{"$ref": "other.json"}"#) }
        #expect(throws: JSONSchema.DefinitionError.self) { try schema(#"{"pattern": "("}"#) }
    }
}

@Suite("Simple patterns")
struct SimplePatternTests {
    @Test("take anchored runs of classes and literals, and leave the rest to a regular expression engine")
    func recognises() {
        #expect(SimplePattern("^[A-Za-z0-9._-]{1,128}$") != nil)
        #expect(SimplePattern("^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$") != nil)
        for complex in ["^(a|b)$", "^a.b$", "^[^a]$", "^\\S+$", "a+", "^a+", "^[a-z]{3,1}$"] {
            #expect(SimplePattern(complex) == nil, "\(complex)")
        }
    }

    @Test(
        "match exactly what NSRegularExpression matches (with ECMA's end anchor)",
        arguments: [
            "^[A-Za-z0-9._-]{1,128}$", "^[0-9a-f]{64}$", "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}$", "^a[bc]*c$", "^x?y+[0-9]{2,3}$",
            "^\\.[a-]$",
        ])
    func agreesWithICU(_ pattern: String) throws {
        let simple = try #require(SimplePattern(pattern))
        let expression = try NSRegularExpression(pattern: String(pattern.dropLast()) + "\\z")
        let samples = [
            "", "a", "abc", "abcc", "ac", "edge-01", "edge 01", "edge-01\n", "xy12", "y123", "xyy1234", ".a", ".-", "..",
            String(repeating: "a", count: 128),
            String(repeating: "a", count: 129), String(repeating: "f", count: 64), "0E7C2B0A-5D55-4C43", "0E7C2B0A-5D55-4C4", "é", "a\u{0}",
        ]
        for sample in samples {
            let icu = expression.firstMatch(in: sample, range: NSRange(sample.startIndex..., in: sample)) != nil
            #expect(simple.matches(sample) == icu, "\(pattern) on \(sample.debugDescription)")
        }
    }
}

@Suite("Device protocol")
struct DeviceProtocolContractTests {
    @Test("every schema compiles, and every example of docs/device-protocol.md passes it and decodes")
    func documentedExamplesPass() throws {
        let schemas = try DeviceProtocolSchemas()
        let examples = try documentedExamples()
        #expect(Set(examples.keys) == Set(channelsByType.keys))
        for (type, json) in examples {
            let channel = try #require(channelsByType[type])
            try schemas.validate(try JSONParser.parse(json), as: channel)
            switch channel {
            case .presence: _ = try Envelope<AgentMessage.Presence>.decode(from: json)
            case .hello: _ = try Envelope<AgentMessage.Hello>.decode(from: json)
            case .heartbeat: _ = try Envelope<AgentMessage.Heartbeat>.decode(from: json)
            case .telemetry: _ = try Envelope<AgentMessage.Telemetry>.decode(from: json)
            case .report: _ = try Envelope<AgentMessage.Report>.decode(from: json)
            case .desired: _ = try Envelope<DesiredState>.decode(from: json)
            case .request: _ = try Envelope<AgentMessage.Request>.decode(from: json)
            case .response: _ = try Envelope<AgentMessage.Response>.decode(from: json)
            }
        }
    }

    @Test("what the Swift types encode passes the schemas (the agent's messages are valid)")
    func swiftTypesMatchSchemas() throws {
        let schemas = try DeviceProtocolSchemas()
        func check<Payload: ContractPayload>(_ payload: Payload, _ channel: Topic.AgentChannel) throws {
            try schemas.validate(try JSONParser.parse(try Envelope(payload: payload, correlationID: UUID()).encoded()), as: channel)
        }
        try check(AgentMessage.Presence(agentID: "edge-1", state: .offline, reason: .connectionLost), .presence)
        try check(
            AgentMessage.Hello(
                agentID: "edge-1", site: .init(id: "plant-a", name: "Plant A"), serverName: "Edge 1", agentVersion: "0.1.0",
                capacity: .init(cpuCores: 8, memoryBytes: 16 << 30, gpus: [.init(type: "nvidia-t4", count: 1)]), supportsPipelines: true,
                devices: [.init(key: "cam-1", name: "Gate", kind: "camera")], appliedGeneration: 0), .hello)
        try check(AgentMessage.Heartbeat(agentID: "edge-1", uptimeSeconds: 12, appliedGeneration: 3), .heartbeat)
        try check(
            AgentMessage.Telemetry(
                agentID: "edge-1", intervalSeconds: 5, host: .init(cpuPercent: 12.5, memoryUsedBytes: 1 << 30),
                pipelines: [
                    .init(deviceKey: "cam-1", pipelineID: "p1", frames: 25, detections: 40, errors: 0, latencyMs: .init(p50: 4, p95: 6, p99: 9))
                ]),
            .telemetry)
        try check(
            AgentMessage.Report(
                agentID: "edge-1", generation: 3,
                devices: [
                    .init(
                        deviceKey: "cam-1",
                        pipelines: [.init(pipelineID: "p1", state: .failed, reason: "no GPU"), .init(pipelineID: "p0", state: .removed)])
                ]),
            .report)
        try check(
            AgentMessage.Report(agentID: "edge-1", generation: 4, applying: .init(bytesFetched: 1 << 20, bytesTotal: nil), devices: []), .report)
        try check(
            DesiredState(
                agentID: "edge-1", generation: 3,
                devices: [
                    .init(
                        deviceKey: "cam-1",
                        pipelines: [
                            .init(
                                id: "p1", name: "People",
                                stages: [
                                    .init(
                                        modelID: UUID(), modelName: "yolo", version: "1.2.0", artifactURI: "https://models.example/yolo.onnx",
                                        sha256: String(repeating: "0f", count: 32), settings: ["confidence_threshold": .number(0.4)],
                                        preProcessors: [.init(name: "resize", settings: ["width": .number(640)])],
                                        postProcessors: [.init(name: "nms")])
                                ])
                        ])
                ],
                instances: [
                    .init(
                        instanceID: "people-api-0a1b2", deployment: "people-api", revision: 1, specRevision: 2, modelID: UUID(), modelName: "yolo",
                        version: "1.2.0",
                        artifactURI: "s3://models/yolo.onnx", sha256: String(repeating: "0f", count: 32),
                        resources: .init(cpuCores: 0.5, memoryBytes: 1 << 30, gpuCount: 1, gpuType: "t4"), env: ["SIM_LATENCY_MS": "5"],
                        runtime: .init(kind: .process, command: ["python3", "serve.py"]), healthCheckPath: "/healthz")
                ]), .desired)
        try check(
            AgentMessage.Report(
                agentID: "edge-1", generation: 5, devices: [],
                instances: [
                    .init(instanceID: "people-api-0a1b2", state: .ready, address: "10.0.0.7:41234", version: "1.2.0", restarts: 2, specRevision: 2),
                    .init(instanceID: "people-api-0a1b3", state: .failed, reason: "exited with status 3; restarting in 1 s", version: "1.2.0"),
                ]),
            .report)
        try check(
            AgentMessage.Request(agentID: "edge-1", requestID: UUID(), kind: .instanceLogs, instanceID: "people-api-0a1b2", tail: 200), .request)
        try check(AgentMessage.Response(agentID: "edge-1", requestID: UUID(), lines: ["listening", "ready"]), .response)
        try check(AgentMessage.Response(agentID: "edge-1", requestID: UUID(), error: "no instance people-api-0a1b2 runs on this server"), .response)
    }

    @Test("a failed instance without a reason, and a response with both or neither of lines and error, are refused by name")
    func instanceRules() throws {
        let validator = AgentMessageValidator(schemas: try DeviceProtocolSchemas())
        func field(_ channel: Topic.AgentChannel, _ payload: some ContractPayload) throws -> String? {
            let data = try Envelope(payload: payload).encoded()
            guard case .failure(let failure) = validator.validate(topic: "modelfleet/v1/agents/edge-1/\(channel.rawValue)", payload: data) else {
                return nil
            }
            return failure.detail
        }
        let failed = AgentMessage.Report(
            agentID: "edge-1", generation: 5, devices: [], instances: [.init(instanceID: "a-00000", state: .failed, version: "1.0.0")])
        #expect(try field(.report, failed)?.contains("payload.instances[0].reason") == true)
        #expect(try field(.response, AgentMessage.Response(agentID: "edge-1", requestID: UUID()))?.contains("either lines or error") == true)
        #expect(
            try field(.response, AgentMessage.Response(agentID: "edge-1", requestID: UUID(), lines: [], error: "x"))?.contains(
                "either lines or error")
                == true)
        #expect(try field(.response, AgentMessage.Response(agentID: "edge-1", requestID: UUID(), lines: ["ok"])) == nil)
        // The gateway never takes a request from an agent: it is not an inbound channel.
        let request = AgentMessage.Request(agentID: "edge-1", requestID: UUID(), kind: .instanceLogs, instanceID: "a-00000", tail: 1)
        #expect(try field(.request, request)?.contains("inbound") == true)
    }
}

@Suite("Agent message validator")
struct AgentMessageValidatorTests {
    let validator = AgentMessageValidator(schemas: try! DeviceProtocolSchemas())

    private func heartbeat(agent: String, extra: String = "") -> Data {
        Data(
            #"{"schema_version":1,"type":"agent.heartbeat","message_id":"3B68B05C-9163-42E8-9B8F-245AE6B05EBD","sent_at":"2026-11-23T10:00:00.000Z","payload":{"agent_id":"\#(agent)","uptime_seconds":5,"applied_generation":0\#(extra)}}"#
                .utf8)
    }

    private func rejection(_ topic: String, _ payload: Data) -> AgentMessageRejection? {
        if case .failure(let failure) = validator.validate(topic: topic, payload: payload) { return failure.rejection }
        return nil
    }

    @Test("accepts a valid message and hands back its agent and channel")
    func accepts() throws {
        let message = try validator.validate(topic: "modelfleet/v1/agents/edge-1/heartbeat", payload: heartbeat(agent: "edge-1")).get()
        #expect(message.agentID.value == "edge-1" && message.channel == .heartbeat)
    }

    @Test("refuses each kind of bad message with its reason")
    func refuses() throws {
        let topic = "modelfleet/v1/agents/edge-1/heartbeat"
        #expect(rejection("modelfleet/v1/agents/edge-1/desired", heartbeat(agent: "edge-1")) == .unknownTopic)
        #expect(rejection("modelfleet/v1/agents/edge-1/heartbeat/x", heartbeat(agent: "edge-1")) == .unknownTopic)
        #expect(rejection("modelfleet/v1/agents/../heartbeat", heartbeat(agent: "..")) == .unknownTopic)
        #expect(rejection(topic, Data("{\"schema_version\":1,".utf8)) == .malformedJSON)
        #expect(rejection(topic, heartbeat(agent: "edge-2")) == .agentIDMismatch)
        #expect(rejection(topic, heartbeat(agent: "edge-1", extra: #","extra":1"#)) == .schema)
        #expect(rejection(topic, Data(repeating: 0x20, count: 256 * 1024 + 1)) == .oversized)
        let hello = try #require(try documentedExamples()["agent.hello"])
        var document = try JSONParser.parse(hello)
        guard case .object(var envelope) = document, case .object(var payload)? = envelope["payload"] else {
            throw JSONParser.Failure(offset: 0, reason: "")
        }
        let agent = try #require({ if case .string(let id)? = payload["agent_id"] { return id } else { return nil } }())
        payload["devices"] = .array([
            .object(["key": .string("cam"), "name": .string("A"), "kind": .string("camera")]),
            .object(["key": .string("cam"), "name": .string("B"), "kind": .string("camera")]),
        ])
        envelope["payload"] = .object(payload)
        document = .object(envelope)
        let duplicateKeys = try JSONEncoder().encode(document)
        #expect(rejection("modelfleet/v1/agents/\(agent)/hello", duplicateKeys) == .schema)
    }

    @Test("a report whose text holds U+0000 is refused, by the tree parser and the streaming validator alike")
    func reportWithNUL() throws {
        // PostgreSQL refused the whole batch of reports it was in (issue 16).
        let report = Data(
            #"{"schema_version":1,"type":"agent.report","message_id":"3B68B05C-9163-42E8-9B8F-245AE6B05EBD","sent_at":"2026-11-23T10:00:00.000Z","payload":{"agent_id":"edge-1","generation":2,"devices":[{"device_key":"cam","pipelines":[{"pipeline_id":"p1","state":"failed","reason":"disk\u0000full"}]}]}}"#
                .utf8)
        #expect(rejection("modelfleet/v1/agents/edge-1/report", report) == .malformedJSON)
        #expect(throws: JSONParser.Failure.self) { try JSONParser.parse(Data(#"["ok", "a\u0000b"]"#.utf8)) }
        #expect(try JSONParser.parse(Data(#""a\u0001b""#.utf8)) == .string("a\u{1}b"), "other escaped control characters stay valid")
    }

    @Test("'.' and '..' are refused as any id, not only as the agent's: a hello's site, a report's pipeline")
    func dotIDs() throws {
        // They passed the gateway; the registry then dropped the hello with a misleading reason (issue 18).
        let hello = try #require(try documentedExamples()["agent.hello"])
        guard case .object(var envelope) = try JSONParser.parse(hello), case .object(var payload)? = envelope["payload"],
            case .string(let agent)? = payload["agent_id"], case .object(var site)? = payload["site"]
        else { throw JSONParser.Failure(offset: 0, reason: "the documented hello changed shape") }
        for bad in [".", ".."] {
            site["id"] = .string(bad)
            payload["site"] = .object(site)
            envelope["payload"] = .object(payload)
            let document = try JSONEncoder().encode(JSONValue.object(envelope))
            #expect(rejection("modelfleet/v1/agents/\(agent)/hello", document) == .schema, "site id '\(bad)'")
        }
        for (id, refused) in [(".", true), ("..", true), ("...", false), (".a", false), ("a.", false), ("..a", false)] {
            let report = Data(
                #"{"schema_version":1,"type":"agent.report","message_id":"3B68B05C-9163-42E8-9B8F-245AE6B05EBD","sent_at":"2026-11-23T10:00:00.000Z","payload":{"agent_id":"edge-1","generation":2,"devices":[{"device_key":"cam","pipelines":[{"pipeline_id":"\#(id)","state":"running"}]}]}}"#
                    .utf8)
            #expect((rejection("modelfleet/v1/agents/edge-1/report", report) == .schema) == refused, "pipeline id '\(id)'")
        }
    }

    @Test("a sent_at that looks like a date but is none is refused by the schema, not dropped later as forward_failed")
    func impossibleTimestamps() throws {
        // The hello passed the gateway, marked its agent online and failed to decode (issue 18).
        for (sentAt, refused) in [
            ("2026-13-45T25:61:61.000Z", true), ("2026-00-10T10:00:00.000Z", true), ("2026-11-32T10:00:00.000Z", true),
            ("2026-11-23T24:00:00Z", true), ("2026-11-23T10:00:00.000+25:00", true), ("2026-12-31T23:59:60.000Z", false),
            ("2026-11-23T10:00:00.123456Z", false),
        ] {
            let heartbeat = Data(
                #"{"schema_version":1,"type":"agent.heartbeat","message_id":"3B68B05C-9163-42E8-9B8F-245AE6B05EBD","sent_at":"\#(sentAt)","payload":{"agent_id":"edge-1","uptime_seconds":1,"applied_generation":0}}"#
                    .utf8)
            #expect((rejection("modelfleet/v1/agents/edge-1/heartbeat", heartbeat) == .schema) == refused, "sent_at \(sentAt)")
        }
    }

    @Test("what the document calls recommendations is accepted end to end: 42.0 as an integer, any RFC 3339 sent_at")
    func recommendationsAreAccepted() throws {
        // The document said "must" for these and the gateway accepted them (issue 18, gap 7): the
        // document now recommends them, and this holds the gateway and the decoders to accepting.
        let generation = Data(#""applied_generation":0"#.utf8)
        let integral = heartbeat(agent: "edge-1").replacing(generation, with: Data(#""applied_generation":42.0"#.utf8))
        let message = try validator.validate(topic: "modelfleet/v1/agents/edge-1/heartbeat", payload: integral).get()
        #expect(message.field("applied_generation") == .number(42))
        let fractional = heartbeat(agent: "edge-1").replacing(generation, with: Data(#""applied_generation":42.5"#.utf8))
        #expect(rejection("modelfleet/v1/agents/edge-1/heartbeat", fractional) == .schema)

        let hello = try #require(try documentedExamples()["agent.hello"])
        guard case .object(var envelope) = try JSONParser.parse(hello), case .object(let payload)? = envelope["payload"],
            case .string(let agent)? = payload["agent_id"]
        else { throw JSONParser.Failure(offset: 0, reason: "the documented hello changed shape") }
        for (sentAt, utc) in [
            ("2026-11-23T12:00:00.120+02:00", "2026-11-23T10:00:00.120Z"), ("2026-11-23T10:00:00Z", "2026-11-23T10:00:00.000Z"),
            ("2026-11-23T10:00:00.5Z", "2026-11-23T10:00:00.500Z"), ("2026-11-23T04:30:00.250-05:30", "2026-11-23T10:00:00.250Z"),
        ] {
            envelope["sent_at"] = .string(sentAt)
            let document = try JSONEncoder().encode(JSONValue.object(envelope))
            #expect(rejection("modelfleet/v1/agents/\(agent)/hello", document) == nil, "sent_at \(sentAt)")
            let decoded = try Envelope<AgentMessage.Hello>.decode(from: document)
            #expect(ContractCoding.timestamp(decoded.sentAt) == utc, "sent_at \(sentAt)")
        }
    }

    @Test("an in-progress report: bytes fetched required, counts only, nothing else in it")
    func inProgressReport() throws {
        func report(_ applying: String) -> Data {
            Data(
                #"{"schema_version":1,"type":"agent.report","message_id":"3b68b05c-9163-42e8-9b8f-245ae6b05ebd","sent_at":"2026-11-23T10:00:00.000Z","payload":{"agent_id":"edge-1","generation":2,"applying":\#(applying),"devices":[]}}"#
                    .utf8)
        }
        let topic = "modelfleet/v1/agents/edge-1/report"
        #expect(rejection(topic, report(#"{"bytes_fetched":1048576,"bytes_total":52428800}"#)) == nil)
        #expect(rejection(topic, report(#"{"bytes_fetched":0}"#)) == nil)
        for bad in [#"{}"#, #"{"bytes_fetched":-1}"#, #"{"bytes_fetched":1.5}"#, #"{"bytes_fetched":1,"eta":3}"#, #""half""#] {
            #expect(rejection(topic, report(bad)) == .schema, "applying \(bad)")
        }
    }

    @Test("a failed pipeline in a report needs its reason")
    func reportReason() throws {
        let report = Data(
            #"{"schema_version":1,"type":"agent.report","message_id":"3B68B05C-9163-42E8-9B8F-245AE6B05EBD","sent_at":"2026-11-23T10:00:00.000Z","payload":{"agent_id":"edge-1","generation":2,"devices":[{"device_key":"cam","pipelines":[{"pipeline_id":"p1","state":"failed"}]}]}}"#
                .utf8)
        #expect(rejection("modelfleet/v1/agents/edge-1/report", report) == .schema)
    }
}
