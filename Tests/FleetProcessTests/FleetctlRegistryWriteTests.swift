import Foundation
import TestSupport
import Testing

/// `fleetctl`'s writes to the registry (the catalogue, devices, sites and groups) as an operator
/// runs them, each checked through the registry's own API afterwards.
@Suite("fleetctl registry writes")
struct FleetctlRegistryWriteTests {
    @Test("a model's life: create, add a version, refuse a duplicate, deprecate, label, and delete only with --yes")
    func catalogue() async throws {
        try await withFleet { fleet in
            let name = uniqueName("detector")
            let created = try await fleetctl(
                [
                    "create-model", "--name", name, "--task", "object_detection", "--format", "onnx", "--description", "finds people",
                    "--label", "outdoor", "--label", "people", "--output", "json",
                ], fleet: fleet)
            #expect(created.status == 0, "\(created.output)")
            let model = try #require(created.object["id"] as? String, "\(created.stdout)")
            let stored = try await fleet.registry.get("/v1/models/\(model)").json ?? [:]
            #expect(stored["name"] as? String == name && stored["description"] as? String == "finds people")
            #expect(stored["labels"] as? [String] == ["outdoor", "people"])

            let settings = try TestEnvironment.current().makeScratchDirectory("settings").appendingPathComponent("defaults.json")
            try Data(#"{"confidence_threshold": 0.3, "input_size": 320}"#.utf8).write(to: settings)
            let sha256 = String(repeating: "c0", count: 32)
            let version = [
                "add-version", model, "--version", "1.0.0", "--artifact", "s3://models/detector.onnx", "--sha256", sha256, "--size", "2048",
                "--settings-file", settings.path, "--setting", "confidence_threshold=0.4", "--setting", "mode=fast",
            ]
            let added = try await fleetctl(version, fleet: fleet)
            #expect(added.status == 0 && added.stdout.contains("Added version 1.0.0") && added.stdout.contains(sha256), "\(added.output)")
            let storedVersion = try await fleet.registry.get("/v1/models/\(model)/versions/1.0.0").json ?? [:]
            #expect(storedVersion["sha256"] as? String == sha256 && storedVersion["size_bytes"] as? Int == 2048)
            let defaults = storedVersion["default_settings"] as? [String: Any] ?? [:]
            #expect(
                defaults["confidence_threshold"] as? Double == 0.4 && defaults["input_size"] as? Int == 320 && defaults["mode"] as? String == "fast",
                "a --setting wins over the file: \(defaults)")

            let duplicate = try await fleetctl(version, fleet: fleet)
            #expect(duplicate.status == 2 && duplicate.stderr.contains("(field: version)"), "\(duplicate.output)")

            let deprecated = try await fleetctl(["deprecate-version", model, "1.0.0"], fleet: fleet)
            #expect(deprecated.status == 0 && deprecated.stdout.contains("deprecated"), "\(deprecated.output)")
            #expect(try await fleet.registry.get("/v1/models/\(model)/versions/1.0.0").json?["status"] as? String == "deprecated")

            let labelled = try await fleetctl(["label-model", model, "--add", "night", "--remove", "outdoor"], fleet: fleet)
            let described = try await fleetctl(["update-model", model, "--description", "finds people at night"], fleet: fleet)
            #expect(labelled.status == 0 && described.status == 0, "\(labelled.output) \(described.output)")
            let changed = try await fleet.registry.get("/v1/models/\(model)").json ?? [:]
            #expect(changed["labels"] as? [String] == ["night", "people"] && changed["description"] as? String == "finds people at night")

            // No terminal and no --yes: nothing is deleted.
            for unconfirmed in [["delete-version", model, "1.0.0"], ["delete-model", model]] {
                let run = try await fleetctl(unconfirmed, fleet: fleet)
                #expect(run.status == 3 && run.stderr.contains("pass --yes"), "\(unconfirmed): \(run.output)")
            }
            #expect(try await fleet.registry.get("/v1/models/\(model)/versions/1.0.0").status == 200, "the version is still there")

            let withVersions = try await fleetctl(["delete-model", model, "--yes"], fleet: fleet)
            #expect(withVersions.status == 2, "the registry refuses a model with versions: \(withVersions.output)")
            let versionDeleted = try await fleetctl(["delete-version", model, "1.0.0", "--yes"], fleet: fleet)
            #expect(versionDeleted.status == 0 && versionDeleted.stdout.contains("Deleted version 1.0.0"), "\(versionDeleted.output)")
            #expect(try await fleet.registry.get("/v1/models/\(model)/versions/1.0.0").status == 404)
            let modelDeleted = try await fleetctl(["delete-model", model, "--yes", "--output", "json"], fleet: fleet)
            #expect(modelDeleted.status == 0 && modelDeleted.object["deleted"] as? Bool == true, "\(modelDeleted.output)")
            #expect(try await fleet.registry.get("/v1/models/\(model)").status == 404)
        }
    }

    @Test("a device renamed, disabled and enabled, grouped and ungrouped, labelled; a group created and deleted only with --yes")
    func inventory() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(1, devices: 1)
            defer { agents.process.send(SIGKILL) }
            let camera = try #require(try await fleet.devices().first?["id"] as? String)
            func device() async throws -> [String: Any] { try await fleet.registry.get("/v1/devices/\(camera)").json ?? [:] }

            let renamed = try await fleetctl(["rename-device", camera, "Door camera"], fleet: fleet)
            #expect(renamed.status == 0 && renamed.stdout.contains("Renamed device Door camera"), "\(renamed.output)")
            #expect(try await device()["name"] as? String == "Door camera")

            let disabled = try await fleetctl(["disable-device", camera], fleet: fleet)
            #expect(disabled.status == 0 && disabled.stdout.contains("disabled"), "\(disabled.output)")
            #expect(try await device()["enabled"] as? Bool == false)
            let enabled = try await fleetctl(["enable-device", camera, "--output", "json"], fleet: fleet)
            #expect(enabled.status == 0 && enabled.object["enabled"] as? Bool == true, "\(enabled.output)")
            #expect(try await device()["enabled"] as? Bool == true)

            let created = try await fleetctl(["create-group", "--site", fleet.site, "--name", "Entrances", "--output", "json"], fleet: fleet)
            #expect(created.status == 0, "\(created.output)")
            let group = try #require(created.object["id"] as? String, "\(created.stdout)")
            let duplicate = try await fleetctl(["create-group", "--site", fleet.site, "--name", "Entrances"], fleet: fleet)
            #expect(duplicate.status == 2 && duplicate.stderr.contains("(field: name)"), "\(duplicate.output)")

            let grouped = try await fleetctl(["group-device", camera, group], fleet: fleet)
            #expect(grouped.status == 0, "\(grouped.output)")
            #expect((try await device()["group_id"] as? String)?.lowercased() == group.lowercased())
            let ungrouped = try await fleetctl(["group-device", camera, "--none"], fleet: fleet)
            #expect(ungrouped.status == 0 && ungrouped.stdout.contains("no group"), "\(ungrouped.output)")
            #expect(try await device()["group_id"] == nil)

            let labelled = try await fleetctl(["label-device", camera, "--add", "entrance", "--add", "outdoor"], fleet: fleet)
            let unlabelled = try await fleetctl(["label-device", camera, "--remove", "outdoor"], fleet: fleet)
            #expect(labelled.status == 0 && unlabelled.status == 0, "\(labelled.output) \(unlabelled.output)")
            #expect(try await device()["labels"] as? [String] == ["entrance"])

            let groups = "/v1/sites/\(fleet.site)/groups"
            let unconfirmed = try await fleetctl(["delete-group", group, "--site", fleet.site], fleet: fleet)
            #expect(unconfirmed.status == 3 && unconfirmed.stderr.contains("pass --yes"), "\(unconfirmed.output)")
            #expect(try await fleet.registry.get(groups).items.count == 1, "nothing was deleted")
            let deleted = try await fleetctl(["delete-group", group, "--site", fleet.site, "--yes"], fleet: fleet)
            #expect(deleted.status == 0 && deleted.stdout.contains("Deleted group Entrances"), "\(deleted.output)")
            #expect(try await fleet.registry.get(groups).items.isEmpty)

            let site = uniqueName("site")
            let newSite = try await fleetctl(["create-site", site, "--name", "Plant B"], fleet: fleet)
            #expect(newSite.status == 0, "\(newSite.output)")
            #expect((try await fleet.registry.get("/v1/sites/\(site)").json?["site"] as? [String: Any])?["name"] as? String == "Plant B")

            let missing = try await fleetctl(["rename-device", UUID().uuidString, "Nobody"], fleet: fleet)
            #expect(missing.status == 2 && missing.stderr.contains("no device"), "\(missing.output)")
        }
    }

    @Test("bad usage of the write commands exits 64 before any request, naming the problem")
    func badUsage() async throws {
        let device = UUID().uuidString
        let artifact = ["--version", "1.0.0", "--artifact", "s3://m", "--sha256", "ab"]
        let cases: [([String], String)] = [
            (["create-model", "--name", "x", "--format", "onnx"], "Missing expected argument '--task"),
            (["add-version", "not-a-uuid"] + artifact + ["--size", "1"], "'not-a-uuid' is invalid"),
            (["add-version", device] + artifact + ["--size", "big"], "'big' is invalid"),
            (["add-version", device] + artifact + ["--size", "1", "--inputs", "{x"], "'{x' is invalid"),
            (["group-device", device], "give either a GROUP_ID or --none"),
            (["group-device", device, UUID().uuidString, "--none"], "give either a GROUP_ID or --none"),
            (["label-device", device], "give --add and/or --remove"),
            (["label-device", device, "--add", "a", "--remove", "a"], "both added and removed"),
            (["delete-version", device], "Missing expected argument '<version>'"),
        ]
        for (arguments, mention) in cases {
            // No service at this address: a request would exit 2 ("cannot reach"), not 64.
            let run = try await fleetctl(arguments + ["--registry", "http://127.0.0.1:1"], fleet: nil)
            #expect(run.status == 64 && run.stderr.contains(mention), "fleetctl \(arguments.joined(separator: " ")): \(run.status) \(run.output)")
        }
    }
}
