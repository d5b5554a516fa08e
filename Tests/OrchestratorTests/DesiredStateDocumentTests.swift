import Foundation
import Testing

@testable import DeviceProtocol
@testable import FleetContract
@testable import Orchestrator

private func pipeline(_ name: String, confidence: Double) -> DesiredState.Pipeline {
    DesiredState.Pipeline(
        id: name.lowercased().filter(\.isLetter), name: name,
        stages: [
            .init(
                modelID: UUID(), modelName: "yolo \"v8\"", version: "1.0.0", artifactURI: "s3://m/y.onnx", sha256: String(repeating: "a", count: 64),
                settings: ["confidence_threshold": .number(confidence), "classes": .array([.string("person"), .string("car")])],
                preProcessors: [.init(name: "resize", settings: ["width": .number(640)])], postProcessors: [.init(name: "nms")])
        ])
}

@Suite("Orchestrator: desired-state documents and pipeline JSON")
struct DesiredStateDocumentTests {
    @Test("the hand-written document is the encoder's, field for field, with deployment instances, and passes the desired-state schema")
    func document() throws {
        let people = [pipeline("People", confidence: 0.4)]
        let both = [pipeline("People", confidence: 0.5), pipeline("Cars\n", confidence: 0.25)]
        var coder = PipelineListCoder()
        // One list as PostgreSQL returns jsonb as text (spaces after ':' and ','), as documents take
        // the stored lists of devices an operation did not change.
        let stored = try #require(
            String(
                data: try JSONSerialization.data(withJSONObject: JSONSerialization.jsonObject(with: Data(try coder.json(both).utf8))), encoding: .utf8
            ))
        let id = UUID()
        let correlation = UUID()
        let sentAt = Date(timeIntervalSince1970: 1_790_000_000.125)
        let spec = try ContractCoding.decoder.decode(
            DeploymentSpec.self,
            from: Data(
                #"""
                {"model_id": "\#(UUID().uuidString)", "model_version": "1.2.0", "env": {"SIM_LATENCY_MS": "5"},
                 "resources": {"gpu_count": 1, "gpu_type": "t4"}, "runtime": {"kind": "process", "command": ["python3", "serve.py"]}}
                """#.utf8))
        let instance = DesiredState.Instance(
            spec: spec,
            artifact: DeploymentArtifact(modelName: "people", artifactURI: "s3://models/people.onnx", sha256: String(repeating: "ab", count: 32)),
            instanceID: "people-api-0a1b2", deployment: "people-api", revision: 3, specRevision: 4, version: "1.2.0")
        let text = try DesiredStateDocument.encode(
            agentID: "edge-7", generation: 12, devices: [("cam-1", try coder.json(people)), ("cam \"2\"", stored), ("cam-3", try coder.json([]))],
            instances: [instance], correlationID: correlation, messageID: id, sentAt: sentAt)

        let state = DesiredState(
            agentID: "edge-7", generation: 12,
            devices: [
                .init(deviceKey: "cam-1", pipelines: people), .init(deviceKey: "cam \"2\"", pipelines: both),
                .init(deviceKey: "cam-3", pipelines: []),
            ],
            instances: [instance]
        )
        let encoded = try Envelope(payload: state, correlationID: correlation, messageID: id, sentAt: sentAt).encoded()
        #expect(
            try JSONSerialization.jsonObject(with: Data(text.utf8)) as? NSDictionary == JSONSerialization.jsonObject(with: encoded) as? NSDictionary)
        #expect(try Envelope<DesiredState>.decode(from: Data(text.utf8)).payload == state)
        try DeviceProtocolSchemas.shared.validate(try JSONParser.parse(Data(text.utf8)), as: .desired)

        #expect(instance.resources.gpuType == "t4" && instance.runtime.command == ["python3", "serve.py"] && instance.healthCheckPath == "/health")

        let withoutCorrelation = try DesiredStateDocument.encode(agentID: "a", generation: 1, devices: [], correlationID: nil)
        #expect(try Envelope<DesiredState>.decode(from: Data(withoutCorrelation.utf8)).correlationID == nil)
        #expect(!withoutCorrelation.contains("deployments"), "no instances: no deployments member")
    }

    @Test("the coder encodes and decodes each distinct list once, and gives back what the encoder and decoder would")
    func coder() throws {
        var coder = PipelineListCoder()
        let list = [pipeline("People", confidence: 0.4)]
        let text = try coder.json(list)
        #expect(try coder.json(list) == text)
        #expect(try coder.json([pipeline("People", confidence: 0.41)]) != text, "another setting is another list")
        #expect(try ContractCoding.decoder.decode([DesiredState.Pipeline].self, from: Data(text.utf8)) == list)
        #expect(try coder.pipelines(text) == list)
        #expect(try coder.pipelines(text) == list)
        #expect(throws: (any Error).self) { try coder.pipelines("[{") }
    }

    @Test("the outbox is published in chunks of whole agents, each agent's documents in order in one chunk")
    func outboxChunks() {
        let agents = (0..<7).map { "agent-\($0)" }
        var entries: [PostgresOperationStore.OutboxEntry] = []
        var seq: Int64 = 0
        for round in 1...3 {
            for agent in agents where round == 1 || agent.hasSuffix("1") || agent.hasSuffix("5") {
                seq += 1
                entries.append(.init(seq: seq, agentID: agent, generation: Int64(round), document: "{}"))
            }
        }
        let chunks = OutboxPublisher.chunks(of: entries, agentsPerChunk: 3)
        #expect(chunks.map { Set($0.map(\.agentID)).count } == [3, 3, 1])
        #expect(chunks.flatMap { $0 }.count == entries.count)
        for agent in agents {
            let holding = chunks.filter { $0.contains { $0.agentID == agent } }
            #expect(holding.count == 1, "\(agent) is in \(holding.count) chunks")
            let generations = holding.first?.filter { $0.agentID == agent }.map(\.generation) ?? []
            #expect(generations == generations.sorted())
        }
        #expect(OutboxPublisher.chunks(of: [], agentsPerChunk: 3).isEmpty)
    }
}
