import Foundation
import TestSupport
import Testing

/// `fleetctl deployments` as an operator runs it, each step checked through the orchestrator's API.
@Suite("fleetctl deployments")
struct FleetctlDeploymentTests {
    @Test("create from the example YAML, list, show, scale, edit, stop, start, events, revisions, and delete only with --yes")
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

            let scaled = try await fleetctl(["deployments", "scale", "people-api", "--replicas", "3"], fleet: fleet)
            #expect(scaled.status == 0 && scaled.stdout.contains("of 3 wanted"), "\(scaled.output)")
            let tooMany = try await fleetctl(["deployments", "scale", "people-api", "--replicas", "9"], fleet: fleet)
            #expect(tooMany.status == 2 && tooMany.stderr.contains("(field: replicas)"), "\(tooMany.output)")
            let edited = try await fleetctl(["deployments", "edit", "people-api", "--description", "at the gates"], fleet: fleet)
            #expect(edited.status == 0 && edited.stdout.contains("at the gates") && !edited.stdout.contains("restart"), "\(edited.output)")

            #expect(try await fleetctl(["deployments", "stop", "people-api"], fleet: fleet).stdout.contains("stopped"))
            #expect(try await fleetctl(["deployments", "start", "people-api"], fleet: fleet).status == 0)
            let events = try await fleetctl(["deployments", "events", "people-api"], fleet: fleet)
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
