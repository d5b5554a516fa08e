import Crypto
import Foundation
import Logging
import Testing

@testable import DeviceProtocol
@testable import EdgeAgent
@testable import FleetContract

private func scratch(_ name: String) throws -> URL {
    let base =
        ProcessInfo.processInfo.environment["MODELFLEET_TEST_TMPDIR"].map { URL(fileURLWithPath: $0) } ?? FileManager.default.temporaryDirectory
    let url = base.appendingPathComponent("\(name)-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

private func pipeline(
    _ id: String, uri: String = "s3://models/yolo.onnx", sha256: String = String(repeating: "a", count: 64), confidence: Double = 0.5
)
    -> DesiredState.Pipeline
{
    DesiredState.Pipeline(
        id: id, name: id,
        stages: [
            .init(
                modelID: UUID(uuidString: "0E7C2B0A-5D55-4C43-8F39-4B1F1C9B6D10")!, modelName: "yolo", version: "1.0.0", artifactURI: uri,
                sha256: sha256, settings: ["confidence_threshold": .number(confidence)], preProcessors: [.init(name: "resize")],
                postProcessors: [.init(name: "nms")])
        ])
}

@Suite("Reconcile plan")
struct ReconcilePlanTests {
    @Test("keeps what runs unchanged, restarts what changed or failed, starts new, stops removed")
    func plan() {
        let keep = PipelineKey(deviceKey: "cam-1", pipelineID: "keep")
        let change = PipelineKey(deviceKey: "cam-1", pipelineID: "change")
        let retry = PipelineKey(deviceKey: "cam-2", pipelineID: "retry")
        let remove = PipelineKey(deviceKey: "cam-2", pipelineID: "remove")
        let add = PipelineKey(deviceKey: "cam-3", pipelineID: "add")
        let plan = ReconcilePlan(
            current: [
                keep: (pipeline("keep"), .running), change: (pipeline("change"), .running), retry: (pipeline("retry"), .failed(reason: "x")),
                remove: (pipeline("remove"), .running),
            ],
            desired: [keep: pipeline("keep"), change: pipeline("change", confidence: 0.9), retry: pipeline("retry"), add: pipeline("add")])
        #expect(plan.keep == [keep])
        #expect(plan.start == [change, retry, add])
        #expect(plan.stop == [remove])
        let again = ReconcilePlan(current: [keep: (pipeline("keep"), .running)], desired: [keep: pipeline("keep")])
        #expect(again.start.isEmpty && again.stop.isEmpty, "the same document twice changes nothing")
    }
}

@Suite("Agent configuration")
struct AgentConfigurationTests {
    private func load(_ json: String, environment: [String: String] = [:]) throws -> AgentConfiguration {
        let file = try scratch("config").appendingPathComponent("agent.json")
        try Data(json.utf8).write(to: file)
        return try AgentConfiguration.load(path: file.path, environment: environment)
    }

    private let valid = #"""
        {"agent_id": "edge-1", "site": {"id": "plant-a", "name": "Plant A"}, "capacity": {"cpu_cores": 4, "memory_bytes": 8589934592, "gpus": []},
         "devices": [{"key": "cam-1", "name": "Gate", "kind": "camera"}], "runtime": {"kind": "builtin", "fps": 2}}
        """#

    @Test("reads the file, with defaults, and the environment overrides")
    func reads() throws {
        let configuration = try load(valid, environment: ["MODELFLEET_AGENT_ID": "edge-9", "MODELFLEET_MQTT_URL": "mqtt://broker:1884"])
        #expect(configuration.agentID == "edge-9" && configuration.serverName == "edge-9")
        #expect(configuration.runtime == .builtIn(fps: 2) && configuration.heartbeatSeconds == 5)
        #expect(try configuration.mqttConfiguration().port == 1884)
    }

    @Test("a bad file names the field")
    func problems() throws {
        let cases: [(String, String)] = [
            (valid.replacingOccurrences(of: #""agent_id": "edge-1", "#, with: ""), "agent_id"),
            (valid.replacingOccurrences(of: "plant-a", with: "plant/a"), "site.id"),
            (valid.replacingOccurrences(of: #""fps": 2"#, with: #""fps": 0"#), "runtime.fps"),
            (valid.replacingOccurrences(of: #""kind": "builtin""#, with: #""kind": "docker""#), "runtime.kind"),
            (valid.replacingOccurrences(of: #""kind": "builtin", "fps": 2"#, with: #""kind": "process""#), "runtime.command"),
            (valid.replacingOccurrences(of: #""cam-1", "name": "Gate""#, with: #""cam-1", "name": """#), "devices[0].name"),
            (valid.replacingOccurrences(of: #""cpu_cores": 4"#, with: #""cpu_cores": "four""#), "capacity.cpu_cores"),
        ]
        for (json, field) in cases {
            do {
                _ = try load(json)
                Issue.record("accepted a file with a bad \(field)")
            } catch let error as AgentConfiguration.Problem {
                #expect(error.field.hasSuffix(field), "\(error)")
            }
        }
    }
}

@Suite("Built-in runtime")
struct BuiltInRuntimeTests {
    @Test("a higher confidence threshold finds fewer objects")
    func syntheticModel() {
        func detections(_ confidence: Double) -> Int {
            var model = SyntheticModel(stages: [.init(confidence: confidence, pixels: 320 * 320, suppressesOverlaps: false)], seed: 42)
            return (0..<200).reduce(0) { sum, _ in sum + model.inferNextFrame() }
        }
        #expect(detections(0.2) > detections(0.5))
        #expect(detections(0.5) > detections(0.9))
    }

    @Test("checks artifacts by sha256, runs good pipelines, reports bad ones with their reason, and measures")
    func runs() async throws {
        let folder = try scratch("runtime")
        let artifact = folder.appendingPathComponent("model.onnx")
        try Data("weights".utf8).write(to: artifact)
        let digest = SHA256.hash(data: Data("weights".utf8)).map { String(format: "%02x", $0) }.joined()
        let runtime = BuiltInRuntime(fps: 50, devices: ["cam-1", "cam-2"], artifacts: ArtifactStore(directory: folder))
        let good = PipelineKey(deviceKey: "cam-1", pipelineID: "good")
        let badHash = PipelineKey(deviceKey: "cam-1", pipelineID: "bad-hash")
        let missing = PipelineKey(deviceKey: "cam-2", pipelineID: "missing-file")
        let noDevice = PipelineKey(deviceKey: "cam-9", pipelineID: "no-device")
        var unknownProcessor = pipeline("unknown-processor")
        unknownProcessor.stages[0].postProcessors = [.init(name: "sharpen")]
        let statuses = await runtime.apply([
            good: pipeline("good", uri: artifact.absoluteString, sha256: digest),
            badHash: pipeline("bad-hash", uri: artifact.absoluteString, sha256: String(repeating: "0", count: 64)),
            missing: pipeline("missing-file", uri: folder.appendingPathComponent("nope.onnx").absoluteString),
            noDevice: pipeline("no-device"),
            PipelineKey(deviceKey: "cam-2", pipelineID: "unknown-processor"): unknownProcessor,
        ])
        #expect(statuses[good] == .running)
        func reason(_ key: PipelineKey) -> String {
            if case .failed(let reason)? = statuses[key] { return reason }
            return "not failed"
        }
        #expect(reason(badHash).contains("sha256 \(digest), expected 0000"))
        #expect(reason(missing).contains("cannot read artifact"))
        #expect(reason(noDevice).contains("unknown device 'cam-9'"))
        #expect(reason(PipelineKey(deviceKey: "cam-2", pipelineID: "unknown-processor")).contains("unknown post-processor 'sharpen'"))

        try await Task.sleep(for: .milliseconds(500))
        let figures = await runtime.collectFigures()
        #expect((figures[good]?.frames ?? 0) >= 5, "\(figures)")
        #expect(figures[good]?.latencies.count == figures[good]?.frames)
        #expect(figures[badHash] == nil)

        // Every running pipeline takes frames on the runtime's one clock.
        let second = PipelineKey(deviceKey: "cam-2", pipelineID: "second")
        _ = await runtime.apply([good: pipeline("good", uri: artifact.absoluteString, sha256: digest), second: pipeline("second")])
        _ = await runtime.collectFigures()
        try await Task.sleep(for: .milliseconds(300))
        let both = await runtime.collectFigures()
        #expect((both[good]?.frames ?? 0) >= 3 && (both[second]?.frames ?? 0) >= 3, "\(both)")
        #expect(await runtime.ticking)

        // Removing every pipeline stops them: no more frames.
        _ = await runtime.apply([:])
        #expect(await runtime.statuses().isEmpty)
        #expect(await !runtime.ticking)
        await runtime.stopAll()
    }
}

@Suite("Process runtime")
struct ProcessRuntimeTests {
    @Test("starts a process per pipeline, restarts it when it dies, stops it when removed; a command that cannot start fails alone")
    func supervises() async throws {
        let folder = try scratch("process-runtime")
        let key = PipelineKey(deviceKey: "cam-1", pipelineID: "p1")
        // The process writes its pid next to its pipeline file, then sleeps.
        let runtime = ProcessRuntime(
            command: ["/bin/sh", "-c", "echo $$ > {pipeline_file}.pid; exec sleep 60"], devices: ["cam-1"], directory: folder,
            logger: Logger(label: "test"))
        let statuses = await runtime.apply([key: pipeline("p1")])
        #expect(statuses[key] == .running)
        let pidFile = folder.appendingPathComponent("pipelines/cam_1--p1.json.pid")
        func pid() async -> pid_t? {
            for _ in 0..<100 {
                if let text = try? String(contentsOf: pidFile, encoding: .utf8), let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
                {
                    return pid
                }
                try? await Task.sleep(for: .milliseconds(50))
            }
            return nil
        }
        let first = try #require(await pid())
        #expect(kill(first, 0) == 0)
        // The pipeline file holds the pipeline.
        let written = try Data(contentsOf: folder.appendingPathComponent("pipelines/cam_1--p1.json"))
        #expect(try ContractCoding.decoder.decode(DesiredState.Pipeline.self, from: written) == pipeline("p1"))

        try FileManager.default.removeItem(at: pidFile)
        kill(first, SIGKILL)
        var changes = runtime.changes.makeAsyncIterator()
        _ = await changes.next()
        let restarted = try #require(await pid())
        #expect(restarted != first)
        // The supervisor marks it running just after starting it: the new process can write its
        // pid first (a loaded CI machine saw the status read in between), so it is waited for.
        var running = false
        for _ in 0..<100 where !running {
            running = await runtime.statuses()[key] == .running
            if !running { try? await Task.sleep(for: .milliseconds(50)) }
        }
        let after = await runtime.statuses()
        #expect(running, "\(after)")

        _ = await runtime.apply([:])
        #expect(kill(restarted, 0) != 0, "the removed pipeline's process is stopped")

        let broken = ProcessRuntime(command: ["/nonexistent/runner"], devices: ["cam-1"], directory: folder, logger: Logger(label: "test"))
        let failed = await broken.apply([key: pipeline("p1")])
        guard case .failed(let reason)? = failed[key] else {
            Issue.record("a command that does not exist must fail the pipeline: \(failed)")
            return
        }
        #expect(reason.contains("/nonexistent/runner"))
        await runtime.stopAll()
        await broken.stopAll()
    }
}
