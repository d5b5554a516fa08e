import Foundation
import TestSupport
import Testing

/// What one run of `fleetctl` printed, and its exit status.
struct FleetctlRun {
    var status: Int32
    var stdout: String
    var stderr: String

    /// Standard output as JSON (`--output json` prints exactly one document there).
    var json: Any? { try? JSONSerialization.jsonObject(with: Data(stdout.utf8), options: [.fragmentsAllowed]) }
    var object: [String: Any] { json as? [String: Any] ?? [:] }
    var array: [[String: Any]] { json as? [[String: Any]] ?? [] }
    var output: String { stdout + stderr }
}

/// Runs `fleetctl` with `arguments`, pointed at the fleet's services through the environment
/// (as an operator's shell would), standard input from /dev/null: no terminal, as in a script.
func fleetctl(_ arguments: [String], fleet: Fleet?, environment extra: [String: String] = [:]) async throws -> FleetctlRun {
    let environment = try TestEnvironment.current()
    let scratch = try environment.makeScratchDirectory("fleetctl")
    let (stdoutFile, stderrFile) = (scratch.appendingPathComponent("stdout"), scratch.appendingPathComponent("stderr"))
    try Data().write(to: stdoutFile)
    try Data().write(to: stderrFile)
    let process = Process()
    process.executableURL = environment.binDirectory.appendingPathComponent("fleetctl")
    process.arguments = arguments
    var variables = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
    if let fleet {
        variables["FLEETCTL_REGISTRY_URL"] = "http://127.0.0.1:\(fleet.registry.port)"
        variables["FLEETCTL_ORCHESTRATOR_URL"] = "http://127.0.0.1:\(fleet.api.port)"
    }
    // The tests' admin key, unless the test gives another (or an empty one: none).
    variables["FLEETCTL_API_KEY"] = TestAPIKeys.admin
    variables["HOME"] = scratch.path  // no operator's ~/.config/modelfleet/api-key
    variables.merge(extra) { $1 }
    process.environment = variables
    process.standardInput = FileHandle.nullDevice
    process.standardOutput = try FileHandle(forWritingTo: stdoutFile)
    process.standardError = try FileHandle(forWritingTo: stderrFile)
    let status = try await withCheckedThrowingContinuation { (done: CheckedContinuation<Int32, any Error>) in
        process.terminationHandler = { done.resume(returning: $0.terminationStatus) }
        do { try process.run() } catch { done.resume(throwing: error) }
    }
    return FleetctlRun(
        status: status, stdout: try String(contentsOf: stdoutFile, encoding: .utf8), stderr: try String(contentsOf: stderrFile, encoding: .utf8))
}

/// `fleetctl` as an operator runs it: the built executable against a real fleet, with no terminal
/// on its standard input (as in a script), its output and exit status as `docs/fleetctl.md`
/// documents them.
@Suite("fleetctl end to end")
struct FleetctlProcessTests {
    /// A pipeline file of `model`'s version 1.0.0, as `--file` takes it.
    private func pipelineFile(_ model: String, name: String = "People") throws -> String {
        let file = try TestEnvironment.current().makeScratchDirectory("pipelines").appendingPathComponent("\(name).json")
        try JSONSerialization.data(withJSONObject: pipeline(model, name: name)).write(to: file)
        return file.path
    }

    @Test("sites, devices and models, as tables and as JSON")
    func inventory() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(2, devices: 2)
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel()

            let sites = try await fleetctl(["sites", "--output", "json"], fleet: fleet)
            #expect(sites.status == 0, "\(sites.output)")
            let site = sites.array.first { $0["id"] as? String == fleet.site }
            #expect(site?["online"] as? Bool == true && site?["device_count"] as? Int == 4, "\(sites.stdout)")

            let devices = try await fleetctl(["devices", "--site", fleet.site], fleet: fleet)
            #expect(devices.status == 0, "\(devices.output)")
            #expect(devices.stdout.contains("4 devices") && devices.stdout.contains("online"), "\(devices.stdout)")
            let listed = try await fleetctl(["devices", "--site", fleet.site, "--output", "json"], fleet: fleet)
            #expect(Set(listed.array.compactMap { $0["id"] as? String }) == Set(try await fleet.devices().compactMap { $0["id"] as? String }))

            let models = try await fleetctl(["models", model], fleet: fleet)
            #expect(models.status == 0 && models.stdout.contains("1.0.0") && models.stdout.contains("s3://models/people.onnx"), "\(models.output)")
        }
    }

    @Test("assign: without --yes and without a terminal nothing is applied (exit 3); with --yes every device applies (exit 0); revert")
    func assignAndRevert() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(2, devices: 2)
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel()
            let file = try pipelineFile(model)

            let unconfirmed = try await fleetctl(["assign", "--site", fleet.site, "--file", file], fleet: fleet)
            #expect(unconfirmed.status == 3, "\(unconfirmed.output)")
            #expect(unconfirmed.output.contains("4 devices would change"), "\(unconfirmed.output)")
            #expect(try await fleet.api.get("/v1/operations").items.isEmpty, "nothing was applied")

            let preview = try await fleetctl(["assign", "--site", fleet.site, "--file", file, "--dry-run", "--output", "json"], fleet: fleet)
            #expect(preview.status == 0 && (preview.object["changes"] as? [Any])?.count == 4, "\(preview.output)")

            let applied = try await fleetctl(["assign", "--site", fleet.site, "--file", file, "--yes", "--output", "json"], fleet: fleet)
            #expect(applied.status == 0, "\(applied.output)")
            #expect(counts(applied.object)["applied"] == 4, "\(applied.stdout)")
            let devices = applied.object["devices"] as? [[String: Any]] ?? []
            #expect(devices.count == 4 && devices.allSatisfy { $0["status"] as? String == "applied" })
            let camera = try #require(devices.first?["device_id"] as? String)
            let running = try await fleetctl(["pipelines", camera, "--output", "json"], fleet: fleet)
            #expect((running.object["pipelines"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["People"], "\(running.output)")

            let operation = try #require((applied.object["operation"] as? [String: Any])?["id"] as? String)
            let reverted = try await fleetctl(["revert", operation, "--yes"], fleet: fleet)
            #expect(reverted.status == 0, "\(reverted.output)")
            #expect(reverted.stdout.contains("(revert): finished") && reverted.stdout.contains("applied"), "\(reverted.stdout)")
            let after = try await fleet.api.get("/v1/devices/\(camera)/pipelines").json?["pipelines"] as? [Any]
            #expect(after?.isEmpty == true, "revert put back what the device had: nothing")
        }
    }

    @Test("failed devices: the summary names the agent's reason and the exit status is 1; retry after the fix exits 0")
    func failedAndRetried() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(1, devices: 1)
            defer { agents.process.send(SIGKILL) }
            let (model, artifact) = try await fleet.createModelWithMissingArtifact()
            let camera = try #require(try await fleet.devices().first?["id"] as? String)

            let failed = try await fleetctl(["assign", "--device", camera, "--file", try pipelineFile(model), "--yes"], fleet: fleet)
            #expect(failed.status == 1, "\(failed.output)")
            #expect(failed.stdout.contains("Failed and timed-out devices") && failed.stdout.contains("people.onnx"), "\(failed.stdout)")
            let operation = try #require(
                failed.stdout.split(separator: "\n").first { $0.hasPrefix("Operation ") }?.split(separator: " ").dropFirst().first.map(String.init),
                "\(failed.stdout)")

            let shown = try await fleetctl(["operation", operation], fleet: fleet)
            #expect(shown.status == 1 && shown.stdout.contains("people.onnx"), "an operation with failed devices: \(shown.output)")

            try artifact.write()
            let retried = try await fleetctl(["retry", operation, "--yes", "--output", "json"], fleet: fleet)
            #expect(retried.status == 0, "\(retried.output)")
            #expect(
                counts(retried.object)["applied"] == 1
                    && ((retried.object["operation"] as? [String: Any])?["retries"] as? String)?.lowercased() == operation.lowercased())
        }
    }

    @Test("bad usage exits 64, refused requests and unreachable services exit 2, each with a message naming the problem")
    func errors() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(1, devices: 1)
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel()
            let file = try pipelineFile(model)
            let camera = try #require(try await fleet.devices().first?["id"] as? String)
            let notJSON = try TestEnvironment.current().makeScratchDirectory("pipelines").appendingPathComponent("broken.json")
            try Data("{ not json".utf8).write(to: notJSON)

            let cases: [([String], Int32, String)] = [
                (["launch"], 64, "launch"),
                (["assign", "--file", file, "--yes"], 64, "--site"),
                (["add-pipeline", "not-a-uuid", "--file", file], 64, "not-a-uuid"),
                (["add-pipeline", camera, "--file", notJSON.path], 2, "broken.json"),
                (["set-settings", camera, "0", "0", "confidence_threshold=0.6"], 2, "has no pipeline 0 (it has 0) (field: pipeline)"),
                (["operation", UUID().uuidString], 2, "no operation"),
                (["sites", "--registry", "http://127.0.0.1:1"], 2, "cannot reach the registry"),
            ]
            for (arguments, status, mention) in cases {
                let run = try await fleetctl(arguments, fleet: fleet)
                #expect(
                    run.status == status && run.stderr.contains(mention), "fleetctl \(arguments.joined(separator: " ")): \(run.status) \(run.output)")
            }
            #expect(try await fleet.api.get("/v1/operations").items.isEmpty, "no bad command changed anything")
        }
    }
}
