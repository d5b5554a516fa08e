import Foundation
import Testing

@testable import DeviceProtocol
@testable import FleetContract

/// What a validation path made of a document: the streaming validator must make the same of
/// every document as `JSONParser.parse` followed by `JSONSchema.validate`, failure for failure.
private enum Outcome: Equatable, CustomStringConvertible {
    case accepted
    case malformed(JSONParser.Failure)
    case violation(ContractError)

    var description: String {
        switch self {
        case .accepted: "accepted"
        case .malformed(let failure): "malformed: \(failure)"
        case .violation(let error): "violation: \(error)"
        }
    }

    static func tree(_ schema: JSONSchema, _ data: Data) -> Outcome {
        let document: JSONValue
        do {
            document = try JSONParser.parse(data)
        } catch {
            return .malformed(error)
        }
        do {
            try schema.validate(document)
        } catch {
            return .violation(error)
        }
        return .accepted
    }

    static func streaming(_ schema: JSONSchema, _ data: Data) -> Outcome {
        do {
            _ = try schema.validate(json: data, capturingScalarsOf: "payload")
            return .accepted
        } catch {
            switch error {
            case .malformed(let failure): return .malformed(failure)
            case .violation(let violation): return .violation(violation)
            }
        }
    }
}

/// Deterministic pseudo-random numbers (SplitMix64), so that a failing mutation is the same on
/// every run.
private struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var value = state
        value = (value ^ (value >> 30)) &* 0xBF58_476D_1CE4_E5B9
        value = (value ^ (value >> 27)) &* 0x94D0_49BB_1331_11EB
        return value ^ (value >> 31)
    }
}

/// How many documents of each outcome a corpus had, so that a test can show it tried all three.
private struct Tally {
    var accepted = 0
    var malformed = 0
    var violations = 0

    mutating func count(_ outcome: Outcome) {
        switch outcome {
        case .accepted: accepted += 1
        case .malformed: malformed += 1
        case .violation: violations += 1
        }
    }
}

private let schemas = try! DeviceProtocolSchemas()

/// Runs both paths over `data` and records any difference.
@discardableResult
private func expectAgreement(
    _ schema: JSONSchema, _ data: Data, _ label: @autoclosure () -> String, sourceLocation: SourceLocation = #_sourceLocation
) -> Outcome {
    let tree = Outcome.tree(schema, data)
    let streaming = Outcome.streaming(schema, data)
    if tree != streaming {
        let text = String(decoding: data.prefix(600), as: UTF8.self)
        Issue.record("\(label()): tree \(tree), streaming \(streaming), document \(text.debugDescription)", sourceLocation: sourceLocation)
    }
    return tree
}

/// Valid messages of every inbound channel and of the desired state: the documentation's
/// examples, what the Swift types encode, and a telemetry message as large as the benchmark's.
private func validMessages() throws -> [(Topic.AgentChannel, Data)] {
    var messages: [(Topic.AgentChannel, Data)] = []
    for (type, json) in try documentedExamples() { messages.append((channelsByType[type]!, json)) }
    messages.append(
        (.heartbeat, try Envelope(payload: AgentMessage.Heartbeat(agentID: "edge-1", uptimeSeconds: 12.25, appliedGeneration: 3)).encoded()))
    messages.append(
        (.presence, try Envelope(payload: AgentMessage.Presence(agentID: "edge-1", state: .offline, reason: .connectionLost)).encoded()))
    messages.append((.telemetry, try largeTelemetry()))
    messages.append(
        (
            .report,
            try Envelope(
                payload: AgentMessage.Report(
                    agentID: "edge-1", generation: 3,
                    devices: [
                        .init(
                            deviceKey: "cam-1",
                            pipelines: [.init(pipelineID: "p1", state: .failed, reason: "no GPU"), .init(pipelineID: "p0", state: .removed)])
                    ])
            ).encoded()
        ))
    messages.append(
        (
            .hello,
            try Envelope(
                payload: AgentMessage.Hello(
                    agentID: "edge-1", site: .init(id: "plant-a", name: "Plant A"), serverName: "Edge 1", agentVersion: "0.1.0",
                    capacity: .init(cpuCores: 8, memoryBytes: 16 << 30, gpus: [.init(type: "nvidia-t4", count: 1)]), supportsPipelines: true,
                    devices: [.init(key: "cam-1", name: "Gate", kind: "camera"), .init(key: "cam-2", name: "Caméra côté quai", kind: "camera")],
                    appliedGeneration: 0)
            ).encoded()
        ))
    return messages
}

/// A telemetry message of 10 pipelines, about 1.7 KB, as the gateway benchmark sends.
private func largeTelemetry() throws -> Data {
    let telemetry = AgentMessage.Telemetry(
        agentID: "bench-telemetry-0001", intervalSeconds: 5, host: .init(cpuPercent: 41.3, memoryUsedBytes: 7_516_192_768, gpuPercent: 63.8),
        pipelines: (0..<10).map { (index: Int) -> AgentMessage.Telemetry.Pipeline in
            let figure = Double(index)
            let latency = AgentMessage.Telemetry.Latency(p50: 12.5 + figure * 0.37, p95: 20.01 + figure, p99: 28.75 + figure * 1.1)
            return AgentMessage.Telemetry.Pipeline(
                deviceKey: String(format: "cam-%02d", index + 1), pipelineID: "people-count-\(index + 1)", frames: 140 + index,
                detections: 200 + 7 * index, errors: index == 3 ? 1 : 0, latencyMs: latency)
        })
    return try Envelope(payload: telemetry).encoded()
}

// MARK: - Mutations

/// Small changes to a valid document, in bytes (most make it malformed) and in its tree (most
/// make it break the schema), each deterministic for a given generator state.
private struct Mutator {
    var generator: SeededGenerator

    static let interestingBytes: [UInt8] = Array(",\"\\0}]{[: -.e1atnE+".utf8) + [0x00, 0x09, 0x0A, 0x1F, 0x7F, 0x80, 0xBF, 0xC3, 0xED, 0xF4, 0xFF]
    static let numberTexts = [
        "01", "1.", "-", "1e", "1e999", "-1e999", "1e-999", "-0", "0", "-0.0", "1E+2", "1.5e1", "0.1e-5", "9007199254740991", "9007199254740992",
        "9007199254740993", "12345678901234567890", "1e22", "1e23", "123.456", "3.0", "3.5", "-1", "101", "100.0", "1e2", "0.0000001", "2.5e-3", "00",
        ".5", "+1", "1e+", "-.5", "1.0e", "3600", "3600.0000001", "1e400", "4096", "4096.5", "64", "65", "0e999999999999", "1E-7", "100", "100.5",
        "-0.000001", "18446744073709551616", "0.1000000000000000055511151231257827", "9.999999999999999e22", "1.7976931348623157e308",
    ]
    static let stringTexts = [
        #""""#, #""a""#, #""édge""#, "\"" + String(repeating: "x", count: 129) + "\"", #""edge-01\n""#, #""e\u0301""#, #""\u0065dge-lyon-01""#,
        #""online""#, #""offline""#, #""on\u006cine""#, #""agent.heartbeat""#, #""agent.telemetry""#, #""agent.presence""#, #""K""#, #""\u212A""#,
        #""2026-11-23T07:00:05.131Z""#, #""2026-11-23T07:00:05Z""#, #""2026-11-23T07:00:05.1234567890Z""#, #""2026-11-23T07:00:05+01:00""#,
        #""2026-11-23 07:00:05Z""#, #""0A159411-2D5E-4B50-B9DD-12088BD54812""#, #""0a159411-2d5e-4b50-b9dd-12088bd5481""#, #""cam-01""#,
        #""\ud83d\ude00""#, #""failed""#, #""running""#, #""connected""#, #""connection_lost""#, #""\u0000""#, #""a\/b""#, "\"caf\u{E9}\"",
        "\"" + String(repeating: "é", count: 128) + "\"", "\"" + String(repeating: "é", count: 129) + "\"", #""edge..01""#, #"".""#,
    ]
    static let valueTexts = [
        "1", "true", "false", "null", "{}", "[]", #"{"a":1}"#, #"["x"]"#, "[1,2,3]", #"{"p50":1,"p95":2,"p99":3}"#,
        String(repeating: "[", count: 64) + String(repeating: "]", count: 64), String(repeating: "[", count: 65) + String(repeating: "]", count: 65),
        String(repeating: "{\"a\":", count: 63) + "1" + String(repeating: "}", count: 63),
    ]
    static let insideStrings: [[UInt8]] =
        [
            "\\x", "\\u12", "\\ud800", "\\udc00", "\\ud800\\u0041", "\\u00e9", "\\n", "\\\"", "\\/", "\\u0000", "\\uD83D\\uDE00", "é", "\t", "\u{01}",
            "\\uDBFF\\uDFFF", "\\ud83d", "\\ud83dx", "\\u", "\\",
        ].map { Array($0.utf8) } + [
            [0xC0, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xF0, 0x9F, 0x98, 0x80], [0xE2, 0x82], [0x80], [0xFE],
        ]

    mutating func pick<T>(_ values: [T]) -> T { values[Int.random(in: 0..<values.count, using: &generator)] }
    mutating func position(in bytes: [UInt8]) -> Int { Int.random(in: 0...bytes.count, using: &generator) }

    /// The ranges of the string literals of `bytes` (quotes included), and whether each is a key.
    static func strings(in bytes: [UInt8]) -> [(range: Range<Int>, isKey: Bool)] {
        var found: [(Range<Int>, Bool)] = []
        var index = 0
        while index < bytes.count {
            guard bytes[index] == UInt8(ascii: "\"") else {
                index += 1
                continue
            }
            var end = index + 1
            while end < bytes.count, bytes[end] != UInt8(ascii: "\"") { end += bytes[end] == UInt8(ascii: "\\") ? 2 : 1 }
            guard end < bytes.count else { break }
            var next = end + 1
            while next < bytes.count, bytes[next] == 0x20 || bytes[next] == 0x0A { next += 1 }
            found.append((index..<(end + 1), next < bytes.count && bytes[next] == UInt8(ascii: ":")))
            index = end + 1
        }
        return found
    }

    /// The ranges of the numbers outside strings.
    static func numbers(in bytes: [UInt8]) -> [Range<Int>] {
        var found: [Range<Int>] = []
        let strings = Self.strings(in: bytes).map(\.range)
        var index = 0
        while index < bytes.count {
            if let string = strings.first(where: { $0.contains(index) }) {
                index = string.upperBound
                continue
            }
            let isStart = bytes[index] == UInt8(ascii: "-") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index])
            guard isStart else {
                index += 1
                continue
            }
            var end = index + 1
            while end < bytes.count, "0123456789.eE+-".utf8.contains(bytes[end]) { end += 1 }
            found.append(index..<end)
            index = end
        }
        return found
    }

    mutating func mutateBytes(_ original: [UInt8]) -> [UInt8] {
        var bytes = original
        switch Int.random(in: 0..<12, using: &generator) {
        case 0:
            guard !bytes.isEmpty else { break }
            bytes[Int.random(in: 0..<bytes.count, using: &generator)] =
                Bool.random(using: &generator) ? pick(Self.interestingBytes) : UInt8.random(in: 0...255, using: &generator)
        case 1:
            guard !bytes.isEmpty else { break }
            let start = Int.random(in: 0..<bytes.count, using: &generator)
            bytes.removeSubrange(start..<min(bytes.count, start + Int.random(in: 1...4, using: &generator)))
        case 2:
            bytes.insert(pick(Self.interestingBytes), at: position(in: bytes))
        case 3:
            bytes = Array(bytes.prefix(Int.random(in: 0..<max(1, bytes.count), using: &generator)))
        case 4:
            // A key again, before the original: a duplicate when it lands in the same object.
            let keys = Self.strings(in: bytes).filter(\.isKey)
            guard !keys.isEmpty else { break }
            let key = pick(keys).range
            bytes.insert(contentsOf: Array(bytes[key]) + Array(":0,".utf8), at: key.lowerBound)
        case 5:
            let strings = Self.strings(in: bytes)
            guard !strings.isEmpty else { break }
            let string = pick(strings).range
            bytes.insert(contentsOf: pick(Self.insideStrings), at: Int.random(in: (string.lowerBound + 1)..<string.upperBound, using: &generator))
        case 6:
            let numbers = Self.numbers(in: bytes)
            guard !numbers.isEmpty else { break }
            bytes.replaceSubrange(pick(numbers), with: Array(pick(Self.numberTexts).utf8))
        case 7:
            let strings = Self.strings(in: bytes).filter { !$0.isKey }
            guard !strings.isEmpty else { break }
            bytes.replaceSubrange(pick(strings).range, with: Array(pick(Self.stringTexts).utf8))
        case 8:
            let strings = Self.strings(in: bytes).filter { !$0.isKey }
            let numbers = Self.numbers(in: bytes)
            guard let target = (strings.map(\.range) + numbers).randomElement(using: &generator) else { break }
            bytes.replaceSubrange(target, with: Array(pick(Self.valueTexts).utf8))
        case 9:
            // A key renamed (unknown, or an escaped spelling of itself).
            let keys = Self.strings(in: bytes).filter(\.isKey)
            guard !keys.isEmpty else { break }
            let key = pick(keys).range
            let name = Array(bytes[(key.lowerBound + 1)..<(key.upperBound - 1)])
            let escaped = name.isEmpty ? [] : Array("\\u00\(String(name[0], radix: 16))".utf8) + name.dropFirst()
            bytes.replaceSubrange(key, with: Array("\"".utf8) + pick([escaped, name + Array("x".utf8), Array("extra".utf8), []]) + Array("\"".utf8))
        case 10:
            bytes.insert(contentsOf: Array(pick([" ", "\n\t", "\r\n  "]).utf8), at: position(in: bytes))
        default:
            bytes.append(contentsOf: Array(pick([" ", " {}", "x", "\u{0}", ",", "]"]).utf8))
        }
        return bytes
    }

    /// A change to the parsed document, encoded again: missing, extra, mistyped or out-of-range members.
    mutating func mutateTree(_ data: Data) throws -> Data {
        let document = try JSONParser.parse(data)
        var paths: [[PathStep]] = []
        func collect(_ value: JSONValue, _ path: [PathStep]) {
            paths.append(path)
            switch value {
            case .object(let members): for (name, member) in members { collect(member, path + [.member(name)]) }
            case .array(let elements): for (index, element) in elements.enumerated() { collect(element, path + [.element(index)]) }
            default: break
            }
        }
        collect(document, [])
        // Sorted, so that the choice does not depend on the dictionaries' order.
        paths.sort { $0.description < $1.description }
        let path = pick(paths)
        let replacement: JSONValue? =
            switch Int.random(in: 0..<8, using: &generator) {
            case 0: nil
            case 1: .number(pick([-1, 0, 0.5, 3.5, 1e20, 4097, 101, 3601, 9_007_199_254_740_992]))
            case 2: .string(pick(["", "x", "online", "agent.telemetry", String(repeating: "y", count: 200), "a b"]))
            case 3: pick([.bool(true), .null])
            case 4: .object(["extra": .number(1)])
            case 5: .array(Array(repeating: .string("cam"), count: Int.random(in: 0...20, using: &generator)))
            case 6: try? JSONParser.parse(Data(pick(Self.valueTexts).utf8))
            default: .number(1)
            }
        var mutated = document
        if Int.random(in: 0..<6, using: &generator) == 0, case .object = try? Self.value(at: path, in: document) {
            Self.update(
                &mutated, at: path + [.member(pick(["extra", "agent_id", "reason", "gpu_percent", "correlation_id"]))], to: replacement ?? .null)
        } else {
            Self.update(&mutated, at: path, to: replacement)
        }
        return try JSONEncoder().encode(mutated)
    }

    enum PathStep: CustomStringConvertible {
        case member(String)
        case element(Int)

        var description: String {
            switch self {
            case .member(let name): ".\(name)"
            case .element(let index): "[\(String(format: "%05d", index))]"
            }
        }
    }

    static func value(at path: [PathStep], in value: JSONValue) throws -> JSONValue {
        var current = value
        for step in path {
            switch (step, current) {
            case (.member(let name), .object(let members)): current = members[name] ?? .null
            case (.element(let index), .array(let elements)): current = elements[index]
            default: return .null
            }
        }
        return current
    }

    /// Sets (or with nil removes) the value at `path`.
    static func update(_ value: inout JSONValue, at path: [PathStep], to replacement: JSONValue?) {
        guard let step = path.first else {
            value = replacement ?? .null
            return
        }
        switch (step, value) {
        case (.member(let name), .object(var members)):
            if path.count == 1 {
                members[name] = replacement
            } else {
                var member = members[name] ?? .null
                update(&member, at: Array(path.dropFirst()), to: replacement)
                members[name] = member
            }
            value = .object(members)
        case (.element(let index), .array(var elements)):
            if path.count == 1 {
                if let replacement { elements[index] = replacement } else { elements.remove(at: index) }
            } else {
                update(&elements[index], at: Array(path.dropFirst()), to: replacement)
            }
            value = .array(elements)
        default:
            break
        }
    }
}

// MARK: - Tests

@Suite("Streaming validation agrees with the tree")
struct StreamingAgreementTests {
    @Test("every schema of the protocol has a streaming plan")
    func plans() {
        for channel in Topic.AgentChannel.allCases { #expect(schemas.schema(for: channel).plan != nil, "\(channel)") }
    }

    @Test("on the valid messages of every channel, and the documents the other tests use")
    func knownDocuments() throws {
        for (channel, message) in try validMessages() {
            #expect(expectAgreement(schemas.schema(for: channel), message, "\(channel)") == .accepted, "\(channel)")
        }
        let keywordSchema = try JSONSchema(data: Data(keywordSchemaSource.utf8))
        for document in keywordSchemaValidDocuments {
            #expect(expectAgreement(keywordSchema, Data(document.utf8), document) == .accepted)
        }
        for (document, field) in keywordSchemaBrokenDocuments {
            #expect(expectAgreement(keywordSchema, Data(document.utf8), document) != .accepted, "\(field)")
        }
        let everything = try JSONSchema(data: Data("{}".utf8))
        let others = [
            #" {"a": [1, -2.5e3, true, false, null, "x\u00e9\n\ud83d\ude00"], "b": {}, "c": [], "d": 0} "#, "123456789012345678",
            String(repeating: "[", count: 65) + String(repeating: "]", count: 65),
            String(repeating: "[", count: 64) + String(repeating: "]", count: 64),
            #"{"schema_version":1,"type":"agent.heartbeat","message_id":"3B68B05C-9163-42E8-9B8F-245AE6B05EBD","sent_at":"2026-11-23T10:00:00.000Z","payload":{"agent_id":"edge-1","uptime_seconds":5,"applied_generation":0,"extra":1}}"#,
            #"{"schema_version":1,"type":"agent.report","message_id":"3B68B05C-9163-42E8-9B8F-245AE6B05EBD","sent_at":"2026-11-23T10:00:00.000Z","payload":{"agent_id":"edge-1","generation":2,"devices":[{"device_key":"cam","pipelines":[{"pipeline_id":"p1","state":"failed"}]}]}}"#,
            "{\"schema_version\":1,",
        ]
        var documents = (malformedJSONExamples + others).map { Data($0.utf8) }
        documents.append(Data([0x22, 0xFF, 0xFE, 0x22]))
        for document in documents {
            for schema in [everything, keywordSchema] + Topic.AgentChannel.allCases.map(schemas.schema(for:)) {
                expectAgreement(schema, document, String(decoding: document, as: UTF8.self))
            }
        }
        for text in malformedJSONExamples {
            guard case .malformed = Outcome.streaming(everything, Data(text.utf8)) else {
                Issue.record("streaming accepted \(text.debugDescription)")
                continue
            }
        }
    }

    @Test("on array items whose members come in a different order each time")
    func memberOrders() throws {
        // The validator first tries the member that followed the same member in the item before:
        // here that guess is wrong at every turn, and some items break a rule after a right guess.
        let members = [
            #""device_key":"cam-01""#, #""pipeline_id":"people-count""#, #""frames":150"#, #""detections":12"#, #""errors":0"#,
            #""latency_ms":{"p50":12.5,"p95":20.0,"p99":28.75}"#,
        ]
        var generator = SeededGenerator(state: 0x0DE5)
        func telemetry(_ pipelines: [String]) -> Data {
            Data(
                (#"{"schema_version":1,"type":"agent.telemetry","message_id":"3B68B05C-9163-42E8-9B8F-245AE6B05EBD","sent_at":"2026-11-23T10:00:00.000Z","payload":{"agent_id":"edge-1","interval_seconds":5,"host":{"cpu_percent":12.5,"memory_used_bytes":1024},"pipelines":["#
                    + pipelines.joined(separator: ",") + "]}}").utf8)
        }
        let schema = schemas.schema(for: .telemetry)
        for round in 0..<200 {
            var pipelines = (0..<6).map { _ in "{" + members.shuffled(using: &generator).joined(separator: ",") + "}" }
            let broken = Int.random(in: 0..<pipelines.count, using: &generator)
            let expected: Outcome?
            switch round % 4 {
            case 0: expected = .accepted
            case 1:  // a member twice
                pipelines[broken].insert(contentsOf: #""errors":1,"#, at: pipelines[broken].index(after: pipelines[broken].startIndex))
                expected = nil
            case 2:  // a member missing
                pipelines[broken] = "{" + members.dropFirst().shuffled(using: &generator).joined(separator: ",") + "}"
                expected = nil
            default:  // a member the schema does not name
                pipelines[broken].insert(contentsOf: #""colour":"red","#, at: pipelines[broken].index(after: pipelines[broken].startIndex))
                expected = nil
            }
            let outcome = expectAgreement(schema, telemetry(pipelines), "member orders, round \(round)")
            if let expected { #expect(outcome == expected, "round \(round)") } else { #expect(outcome != .accepted, "round \(round)") }
        }
    }

    @Test("on thousands of mutations of valid messages")
    func mutations() throws {
        var mutator = Mutator(generator: SeededGenerator(state: 0x5EED_0F_D1FF))
        var tally = Tally()
        for (channel, message) in try validMessages() {
            let schema = schemas.schema(for: channel)
            let bytes = [UInt8](message)
            for round in 0..<320 {
                let mutated: Data
                if round % 4 == 3 {
                    mutated = try mutator.mutateTree(message)
                } else {
                    var changed = mutator.mutateBytes(bytes)
                    if round % 8 == 5 { changed = mutator.mutateBytes(changed) }
                    mutated = Data(changed)
                }
                tally.count(expectAgreement(schema, mutated, "\(channel) mutation \(round)"))
            }
        }
        // The corpus tried all three outcomes, each many times.
        #expect(tally.accepted > 300 && tally.malformed > 1_000 && tally.violations > 500, "\(tally)")
    }

    @Test("on strings of arbitrary bytes: UTF-8, escapes, lengths and patterns")
    func strings() throws {
        var generator = SeededGenerator(state: 42)
        let schemasToTry = try [
            #"{}"#, #"{"type": "string", "minLength": 2, "maxLength": 3}"#, #"{"type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$"}"#,
            #"{"enum": ["é", "K", "a\u0001", "\ud83d\ude00"]}"#,
            #"{"type": "object", "required": ["K"], "additionalProperties": false, "properties": {"K": {}, "é": {}}}"#,
        ].map { try JSONSchema(data: Data($0.utf8)) }
        let alphabet: [[UInt8]] =
            [
                [0x41], [0x4B], [0x61], [0x2D], [0x5C, 0x6E], [0x5C, 0x75, 0x30, 0x30, 0x45, 0x39], [0x5C, 0x75, 0x32, 0x31, 0x32, 0x41],
                [0x5C, 0x75, 0x44, 0x38, 0x33, 0x44],
            ]
            + [
                [0x5C, 0x75, 0x44, 0x45, 0x30, 0x30], [0xC3, 0xA9], [0xE2, 0x84, 0xAA], [0xF0, 0x9F, 0x98, 0x80], [0x65, 0xCC, 0x81],
                [0x5C, 0x75, 0x30, 0x30, 0x30, 0x30],
            ]
            + (0..<16).map { _ in [UInt8.random(in: 0x80...0xFF, using: &generator)] } + [[0x5C], [0x09], [0x7F]]
        var tally = Tally()
        for _ in 0..<3_000 {
            var content: [UInt8] = []
            for _ in 0..<Int.random(in: 0...4, using: &generator) { content += alphabet[Int.random(in: 0..<alphabet.count, using: &generator)] }
            let string = [0x22] + content + [0x22]
            let asValue = Data(string)
            let asKey = Data(Array("{".utf8) + string + Array(":1,\"K\":2}".utf8))
            for schema in schemasToTry {
                tally.count(expectAgreement(schema, asValue, "value"))
                tally.count(expectAgreement(schema, asKey, "key"))
            }
        }
        #expect(tally.accepted > 1_000 && tally.malformed > 1_000 && tally.violations > 1_000, "\(tally)")
    }

    @Test("where a schema has no streaming plan, or checks a whole value with const or enum")
    func fallbacks() throws {
        // A $ref beside other keywords has no plan: the same answers, by the tree.
        let referenced = try JSONSchema(
            data: Data(##"{"$defs": {"n": {"type": "integer"}}, "properties": {"a": {"$ref": "#/$defs/n", "minimum": 2}}}"##.utf8))
        #expect(referenced.plan == nil)
        let constants = try JSONSchema(
            data: Data(
                #"{"properties": {"a": {"const": {"x": [1, 2]}}, "b": {"enum": [[1], "s", 2, null, true]}, "c": {"type": "array", "enum": [[1, {"k": "v"}]]}}}"#
                    .utf8))
        #expect(constants.plan != nil)
        let documents = [
            #"{"a": 3}"#, #"{"a": 1}"#, #"{"a": 2.5}"#, #"{"a": "x"}"#, #"{"a": {"x": [1, 2]}}"#, #"{"a": {"x": [1, 2.0]}}"#,
            #"{"a": {"x": [2, 1]}}"#,
            #"{"b": [1]}"#, #"{"b": [1.0]}"#, #"{"b": ["s"]}"#, #"{"b": "s"}"#, #"{"b": 2}"#, #"{"b": null}"#, #"{"b": true}"#, #"{"b": false}"#,
            #"{"c": [1, {"k": "v"}]}"#, #"{"c": [1, {"k": "w"}]}"#, #"{"c": {}}"#, #"{"a": {"x": [1, 2], "x": 3}}"#, #"{"b": [1,]}"#, #"{"a": 1"#,
        ]
        for document in documents {
            expectAgreement(referenced, Data(document.utf8), document)
            expectAgreement(constants, Data(document.utf8), document)
        }
    }

    @Test("reads numbers as the same doubles as the parser")
    func numbers() throws {
        let everything = try JSONSchema(data: Data("{}".utf8))
        var generator = SeededGenerator(state: 7)
        var texts =
            Mutator.numberTexts + [
                "0.1", "0.2", "0.3", "1.1", "2.675", "5.002", "37.5", "21474836480", "-2.5e3", "1e-5", "123456789012345", "1234567890123456",
            ]
        for _ in 0..<2_000 {
            let integer = Int.random(in: 0..<1_000_000_000, using: &generator)
            let fraction = String(Int.random(in: 0..<1_000_000, using: &generator))
            let exponent = Bool.random(using: &generator) ? "e\(Int.random(in: -30...30, using: &generator))" : ""
            texts.append("\(Bool.random(using: &generator) ? "-" : "")\(integer).\(fraction)\(exponent)")
        }
        for text in texts {
            let data = Data(#"{"payload": {"n": \#(text)}}"#.utf8)
            guard case .object(let root)? = try? JSONParser.parse(data), case .object(let payload)? = root["payload"],
                case .number(let expected)? = payload["n"]
            else {
                #expect(throws: JSONSchema.StreamingFailure.self, "\(text)") { try everything.validate(json: data, capturingScalarsOf: "payload") }
                continue
            }
            let captured = try everything.validate(json: data, capturingScalarsOf: "payload")
            guard case .number(let number)? = captured.value(named: "n") else {
                Issue.record("no number for \(text)")
                continue
            }
            #expect(number.bitPattern == expected.bitPattern, "\(text): \(number) against \(expected)")
        }
    }
}

@Suite("Byte patterns")
struct BytePatternTests {
    @Test("take the protocol's patterns, and leave to ICU what they might read differently")
    func recognises() {
        for pattern in [
            "^[A-Za-z0-9._-]{1,128}$", "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$", "^[0-9a-f]{64}$",
            #"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"#,
            #"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"#,
        ] {
            #expect(BytePattern(pattern) != nil, "\(pattern)")
        }
        for pattern in [
            #"^[A-Za-z][A-Za-z0-9+.-]*:\S+$"#, "^a.b$", "^[^a]$", "^(?:a)$", "^a|b$", "a+", "^a+", #"^a\$"#, #"^a\\$"#, "^é$", "^[a-z]{3,1}$",
            "^a{2}{3}$", "^a*?$", "^a++$", #"^\d$"#, "^[[a]]$", "^[a&&b]$", "^[:alpha:]$", "^[a b]$", "^(a$", "^a)$", "^[a-c-e]$", "^a{,2}$",
        ] {
            #expect(BytePattern(pattern) == nil, "\(pattern)")
        }
    }

    @Test(
        "match exactly what the tree's pattern (ICU, with ECMA's end anchor) matches",
        arguments: [
            "^[A-Za-z0-9._-]{1,128}$", "^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$",
            #"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"#,
            #"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"#, "^(ab|a)(bc|c)*d?$", "^(a|)+b{2,}$",
            "^x?y+[0-9]{2,3}$", "^((a|b)(c|d)){1,3}$", "^()*a$",
        ])
    func agreesWithICU(_ source: String) throws {
        // The deterministic automaton, and the strategy the pattern would have without it.
        let pattern = try #require(BytePattern(source))
        let other = try #require(BytePattern(source, determinise: false))
        #expect(pattern.deterministic != nil && other.deterministic == nil)
        let reference = try JSONSchema.Pattern(source)
        var samples = [
            "", "a", "ab", "abc", "abcd", "abccd", "acd", "b", "bb", "abb", "aabbb", "ac", "acbd", "bd", "xy12", "y123", "xyy1234", "edge-01",
            "edge 01",
            "edge-01\n", String(repeating: "a", count: 128), String(repeating: "a", count: 129), "0E7C2B0A-5D55-4C43-9A3B-1F2E3D4C5B6A",
            "0E7C2B0A-5D55-4C43-9A3B-1F2E3D4C5B6", "2026-11-23T07:00:05.131Z", "2026-11-23T07:00:05Z", "2026-11-23T07:00:05.1234567891Z",
            "2026-11-23T07:00:05+01:00", "2026-11-23T07:00:05.5-1:00", "2026-11-23T07:00:05.131Z\n", "1.2.0", "01.2.0", "1.2.0-rc.1+build.5",
            "1.2.0-", "1.2.0+", "1.2", "é", "a\u{0}",
        ]
        var generator = SeededGenerator(state: UInt64(source.utf8.count))
        let alphabet = Array("ab cdxy0129-:.TZ+eé".unicodeScalars)
        for _ in 0..<400 {
            samples.append(
                String(
                    String.UnicodeScalarView((0..<Int.random(in: 0...8, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! })))
        }
        for sample in samples {
            let expected = reference.matches(sample)
            #expect(pattern.matches(sample.utf8) == expected, "\(source) on \(sample.debugDescription)")
            #expect(other.matches(sample.utf8) == expected, "\(source) without the deterministic automaton on \(sample.debugDescription)")
        }
    }

    @Test("a pattern whose deterministic automaton would be too large keeps following state sets")
    func largeAutomaton() throws {
        // The 11th character from the end is an 'a': 2^11 states, over the limit of 1,024.
        let source = "^(a|b)*a(a|b){10}$"
        let pattern = try #require(BytePattern(source))
        #expect(pattern.deterministic == nil)
        let reference = try JSONSchema.Pattern(source)
        for sample in [
            "a" + String(repeating: "b", count: 10), "b" + String(repeating: "a", count: 10), "ab" + String(repeating: "b", count: 10), "a",
        ] {
            #expect(pattern.matches(sample.utf8) == reference.matches(sample), "\(sample)")
        }
        let small = try #require(BytePattern("^(a|b)*a(a|b){3}$")?.deterministic)
        #expect(small.stateCount == 16, "2^4 states: the last four characters")
    }
}

@Suite("Payload members captured while validating")
struct ScalarMembersTests {
    let validator = AgentMessageValidator(schemas: try! DeviceProtocolSchemas())

    private func heartbeat(_ payload: String) -> Data {
        Data(
            #"{"schema_version":1,"type":"agent.heartbeat","message_id":"3B68B05C-9163-42E8-9B8F-245AE6B05EBD","sent_at":"2026-11-23T10:00:00.000Z","payload":{\#(payload)}}"#
                .utf8)
    }

    @Test("a heartbeat's members, and nothing for absent ones")
    func heartbeatFields() throws {
        let message = try validator.validate(
            topic: "modelfleet/v1/agents/edge-1/heartbeat", payload: heartbeat(#""agent_id":"edge-1","uptime_seconds":12.25,"applied_generation":3"#)
        ).get()
        #expect(message.field("agent_id") == .string("edge-1"))
        #expect(message.field("uptime_seconds") == .number(12.25))
        #expect(message.field("applied_generation") == .number(3))
        #expect(message.field("missing") == nil)
        #expect(message.field("schema_version") == nil, "a member of the envelope, not of the payload")
    }

    @Test("names and strings with escapes read as the tree reads them")
    func escapes() throws {
        let presence = Data(
            #"{"schema_version":1,"type":"agent.presence","message_id":"3B68B05C-9163-42E8-9B8F-245AE6B05EBD","sent_at":"2026-11-23T10:00:00.000Z","payload":{"agent_\u0069d":"edge\u002d1","\u0073tate":"on\u006cine","reason":"connected"}}"#
                .utf8)
        let message = try validator.validate(topic: "modelfleet/v1/agents/edge-1/presence", payload: presence).get()
        #expect(message.field("state") == .string("online"))
        #expect(message.field("agent_id") == .string("edge-1"))
        #expect(message.field("reason") == .string("connected"))
    }

    @Test("objects and arrays of the payload are not captured, and each kind of scalar is")
    func kinds() throws {
        let schema = try JSONSchema(data: Data("{}".utf8))
        let document = Data(
            #"{"payload": {"s": "x", "n": -1.5e2, "t": true, "f": false, "z": null, "o": {"s": "inner"}, "a": [1], "é": "e\u0301"}, "s": "outer"}"#
                .utf8)
        let members = try schema.validate(json: document, capturingScalarsOf: "payload")
        #expect(members.value(named: "s") == .string("x"))
        #expect(members.value(named: "n") == .number(-150))
        #expect(members.value(named: "t") == .bool(true))
        #expect(members.value(named: "f") == .bool(false))
        #expect(members.value(named: "z") == .null)
        #expect(members.value(named: "o") == nil && members.value(named: "a") == nil)
        #expect(members.value(named: "é") == .string("é"), "canonically equal, as a dictionary of the tree would find it")
        #expect(members.hasString("é", named: "é"))
        #expect(!members.hasString("x2", named: "s") && members.hasString("x", named: "s"))
        let none = try schema.validate(json: document)
        #expect(none.value(named: "s") == nil, "nothing captured when no member is named")
    }

    @Test("the channels checked as a tree offer the same fields")
    func treeChannels() throws {
        let hello = try #require(try documentedExamples()["agent.hello"])
        guard case .object(let envelope) = try JSONParser.parse(hello), case .object(let payload)? = envelope["payload"],
            case .string(let agent)? = payload["agent_id"]
        else { throw JSONParser.Failure(offset: 0, reason: "no agent id in the example") }
        let message = try validator.validate(topic: "modelfleet/v1/agents/\(agent)/hello", payload: hello).get()
        #expect(message.field("applied_generation") == payload["applied_generation"])
        #expect(message.field("agent_id") == .string(agent))
        #expect(message.field("devices") == nil)
    }

    @Test("the agent id is compared as a string, escapes and all")
    func agentID() {
        let topic = "modelfleet/v1/agents/edge-1/heartbeat"
        func rejection(_ payload: String) -> AgentMessageRejection? {
            if case .failure(let failure) = validator.validate(topic: topic, payload: heartbeat(payload)) { return failure.rejection }
            return nil
        }
        #expect(rejection(#""agent_id":"edge\u002d1","uptime_seconds":1,"applied_generation":0"#) == nil)
        #expect(rejection(#""agent_id":"edge-12","uptime_seconds":1,"applied_generation":0"#) == .agentIDMismatch)
        #expect(rejection(#""agent_id":"edge-","uptime_seconds":1,"applied_generation":0"#) == .agentIDMismatch)
        #expect(rejection(#""agent_id":"edge-1","uptime_seconds":1,"applied_generation":0,"uptime_seconds":2"#) == .malformedJSON)
        #expect(rejection(#""agent_id":"edge-1","uptime_seconds":-1,"applied_generation":0"#) == .schema)
        #expect(rejection(#""uptime_seconds":1,"applied_generation":0"#) == .schema)
    }
}
