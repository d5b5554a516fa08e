import Foundation
import TestSupport
import Testing

/// `fleetctl deployments` as an operator runs it, each step checked through the orchestrator's API.
@Suite("fleetctl deployments")
struct FleetctlDeploymentTests {
    @Test("create from the example YAML, list, show, scale and wait, logs, edit, stop, start, events, revisions, and delete only with --yes")
    func lifecycle() async throws {
        try await withFleet { fleet in
            let agents = try await fleet.startAgents(1, devices: 1)
            defer { agents.process.send(SIGKILL) }
            let model = try await fleet.createModel()
            let example = try TestEnvironment.current().repository.appendingPathComponent("docs/examples/deployment.yaml")

            let created = try await fleetctl(["deployments", "create", "--file", example.path, "--model", model, "--replicas", "2"], fleet: fleet)
            #expect(created.status == 0 && created.stdout.contains("Deployment people-api: deploying, revision 1"), "\(created.output)")
            let stored = try await fleet.api.get("/v1/deployments/people-api").json ?? [:]
            #expect(stored["environment"] as? String == "production" && (stored["instances"] as? [Any])?.count == 2, "\(stored)")
            #expect((stored["scaling"] as? [String: Any])?["max_replicas"] as? Int == 6, "the file's maximum, the flag's replicas")

            let listed = try await fleetctl(["deployments"], fleet: fleet)
            #expect(listed.status == 0 && listed.stdout.contains("people-api") && listed.stdout.contains("1 deployment"), "\(listed.output)")
            let json = try await fleetctl(["deployments", "list", "people-api", "--output", "json"], fleet: fleet)
            #expect(json.object["name"] as? String == "people-api", "\(json.output)")

            let scaled = try await fleetctl(["deployments", "scale", "people-api", "--replicas", "3", "--wait"], fleet: fleet)
            #expect(scaled.status == 0 && scaled.stdout.contains("instances: 3 ready of 3 wanted"), "\(scaled.output)")
            #expect(scaled.stderr.contains("people-api: 3/3 placed instance(s) ready"), "the live view: \(scaled.output)")
            let instances = try await fleet.api.get("/v1/deployments/people-api").json?["instances"] as? [[String: Any]]
            let instance = try #require(instances?.first?["id"] as? String)
            let logs = try await fleetctl(["deployments", "logs", "people-api", instance, "--tail", "5"], fleet: fleet)
            #expect(logs.status == 0 && logs.stdout.contains(" listening on 127.0.0.1:") && logs.stdout.contains(" ready"), "\(logs.output)")
            let noInstance = try await fleetctl(["deployments", "logs", "people-api", "people-api-zzzzz"], fleet: fleet)
            #expect(noInstance.status == 2 && noInstance.stderr.contains("has no instance 'people-api-zzzzz'"), "\(noInstance.output)")
            let tooMany = try await fleetctl(["deployments", "scale", "people-api", "--replicas", "9"], fleet: fleet)
            #expect(tooMany.status == 2 && tooMany.stderr.contains("(field: replicas)"), "\(tooMany.output)")
            let edited = try await fleetctl(["deployments", "edit", "people-api", "--description", "at the gates"], fleet: fleet)
            #expect(edited.status == 0 && edited.stdout.contains("at the gates") && !edited.stdout.contains("restart"), "\(edited.output)")

            // Instances that never answer their health check: --wait gives up and says which.
            let slow = try TestEnvironment.current().makeScratchDirectory("fleetctl-deployments").appendingPathComponent("slow.yaml")
            try Data("env:\n  SIM_STARTUP_SECONDS: \"3600\"\n".utf8).write(to: slow)
            let restarted = try await fleetctl(["deployments", "edit", "people-api", "--file", slow.path], fleet: fleet)
            #expect(restarted.status == 0 && restarted.stdout.contains("The instances restart"), "\(restarted.output)")
            let gaveUp = try await fleetctl(["deployments", "list", "people-api", "--wait", "--wait-timeout", "3"], fleet: fleet)
            #expect(gaveUp.status == 1 && gaveUp.stderr.contains("not every instance is ready after 3 s: people-api-"), "\(gaveUp.output)")
            // A new instance starts beside the three old ones (and never gets ready); they wait for it.
            #expect(gaveUp.stderr.contains("3 to replace by revision"), "\(gaveUp.output)")
            #expect(gaveUp.stderr.contains(" assigned") || gaveUp.stderr.contains(" starting"), "\(gaveUp.output)")
            // The roll under way, with its deadline.
            #expect(
                gaveUp.output.contains("rollout: revision ")
                    && gaveUp.output.contains("1 of 4 instance(s) moved (1.0.0: 4), rolled back if none is ready by "),
                "\(gaveUp.output)")

            #expect(try await fleetctl(["deployments", "stop", "people-api"], fleet: fleet).stdout.contains("stopped"))
            #expect(try await fleetctl(["deployments", "start", "people-api"], fleet: fleet).status == 0)
            let events = try await fleetctl(["deployments", "events", "people-api", "--limit", "1000"], fleet: fleet)
            #expect(events.stdout.contains("started") && events.stdout.contains("scaled from 2 to 3"), "\(events.output)")
            let revisions = try await fleetctl(["deployments", "revisions", "people-api"], fleet: fleet)
            #expect(revisions.stdout.contains("edited description") && revisions.stdout.contains("created"), "\(revisions.output)")

            let unconfirmed = try await fleetctl(["deployments", "delete", "people-api"], fleet: fleet)
            #expect(unconfirmed.status == 3 && unconfirmed.stderr.contains("pass --yes"), "\(unconfirmed.output)")
            #expect(try await fleet.api.get("/v1/deployments/people-api").status == 200)
            let deleted = try await fleetctl(["deployments", "delete", "people-api", "--yes"], fleet: fleet)
            #expect(deleted.status == 0 && deleted.stdout.contains("Deleted deployment people-api"), "\(deleted.output)")
            #expect(try await fleet.api.get("/v1/deployments/people-api").status == 404)

            let missing = try await fleetctl(["deployments", "create", "--name", "x"], fleet: fleet)
            #expect(missing.status == 2 && missing.stderr.contains("model_id"), "\(missing.output)")
            let none = try await fleetctl(["deployments", "list", "nothing-here"], fleet: fleet)
            #expect(none.status == 2 && none.stderr.contains("no deployment named 'nothing-here'"), "\(none.output)")
        }
    }
}
