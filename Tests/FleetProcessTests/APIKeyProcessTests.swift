import Foundation
import ServiceRuntime
import TestSupport
import Testing

/// REST security as issue 24 asks, on the real services: every route of every OpenAPI document
/// refused without a key (401) and to a role that may not (403), served to one that may; revoked,
/// expired and forged keys refused; the rate limit (429 with Retry-After) and the body limit (413);
/// the registry's first admin key and `fleetctl keys`.
@Suite("API keys")
struct APIKeyProcessTests {
    private func call(_ service: ServiceProcess, _ method: String, _ path: String, key: String?, body: Data? = nil) async throws -> HTTPResult {
        try await httpRequest(
            port: service.port, method: method, path: path, body: body, headers: ["Authorization": key.map { "Bearer \($0)" } ?? ""])
    }

    private func header(_ result: HTTPResult, _ name: String) -> String? {
        result.headers.first { $0.key.lowercased() == name.lowercased() }?.value
    }

    private func code(_ result: HTTPResult) -> String? { (result.json?["error"] as? [String: Any])?["code"] as? String }

    /// The role each route needs, as docs/security.md states the policy.
    private func needed(_ service: String, _ method: String, _ path: String) -> APIRole {
        if service == "registry" {
            if path.hasPrefix("/v1/keys") { return .admin }
            if path.hasPrefix("/v1/enrollments") { return method == "GET" ? .viewer : .admin }
            if path.hasPrefix("/v1/models") && (method == "POST" || method == "PATCH") { return .admin }
            if method == "DELETE" { return .admin }
        }
        if service == "orchestrator" && method == "DELETE" && path.hasPrefix("/v1/deployments") { return .admin }
        return method == "GET" ? .viewer : .operator
    }

    @Test("every documented route: 401 without a key or with a forged one, 403 for a role below the route's, served for the right role")
    func everyRoute() async throws {
        try await withPrivateBroker { broker in
            try await withPrivateDatabase { database in
                let environment = ["MODELFLEET_MQTT_URL": broker.url, "MODELFLEET_DATABASE_URL": database.url]
                var services: [ServiceProcess] = []
                defer { for service in services { service.process.send(SIGKILL) } }
                for name in ["registry", "orchestrator", "autoscaler", "metrics-aggregator", "load-balancer"] {
                    var variables = environment
                    if name == "load-balancer" {
                        variables["MODELFLEET_LB_STATE_DIR"] = try TestEnvironment.current().makeScratchDirectory("lb").path
                        variables["MODELFLEET_LB_TRAFFIC_PORT"] = "\(try freePort())"
                        variables["MODELFLEET_LB_ADMIN_PORT"] = "\(try freePort())"
                    }
                    services.append(try await ServiceProcess.ready(name, environment: variables))
                }
                let keys = [
                    APIRole.viewer: try TestAPIKeys.mint(role: .viewer, name: "viewer"),
                    .operator: try TestAPIKeys.mint(role: .operator, name: "operator"),
                    .admin: try TestAPIKeys.mint(role: .admin, name: "admin"),
                ]
                let forged = try #require(keys[.admin]).dropLast(4) + "AAAA"
                var checked = 0
                for service in services {
                    #expect(try await call(service, "GET", "/health", key: nil).status == 200)
                    #expect(try await call(service, "GET", "/ready", key: nil).status == 200)
                    let document = try await call(service, "GET", "/openapi.json", key: keys[.viewer])
                    #expect(document.status == 200, "\(service.name): \(document.body)")
                    let routes = try OpenAPIDocumentCheck.documentedRoutes(Data(document.body.utf8)).sorted()
                    for route in routes {
                        let parts = route.split(separator: " ", maxSplits: 1).map(String.init)
                        let (method, template) = (parts[0], parts[1])
                        // Path parameters filled with a value of no real thing: the handler answers 4xx.
                        let path = template.replacingOccurrences(
                            of: #"\{[^}]+\}"#, with: "00000000-0000-0000-0000-000000000000", options: .regularExpression)
                        let body = method == "GET" || method == "DELETE" ? nil : Data("{}".utf8)

                        let anonymous = try await call(service, method, path, key: nil, body: body)
                        #expect(
                            anonymous.status == 401 && code(anonymous) == "unauthenticated",
                            "\(service.name) \(route) without a key: \(anonymous.status) \(anonymous.body)")
                        #expect(header(anonymous, "WWW-Authenticate") == "Bearer", "\(service.name) \(route)")
                        let bad = try await call(service, method, path, key: String(forged), body: body)
                        #expect(bad.status == 401 && code(bad) == "invalid_api_key", "\(service.name) \(route) forged: \(bad.status) \(bad.body)")

                        let role = needed(service.name, method, template)
                        for (held, key) in keys {
                            let answer = try await call(service, method, path, key: key, body: body)
                            if held >= role {
                                #expect(
                                    answer.status != 401 && answer.status != 403,
                                    "\(service.name) \(route) as \(held): \(answer.status) \(answer.body)")
                            } else {
                                #expect(
                                    answer.status == 403 && code(answer) == "forbidden",
                                    "\(service.name) \(route) as \(held): \(answer.status) \(answer.body)")
                            }
                        }
                        checked += 1
                    }
                }
                #expect(checked > 60, "every service's routes: \(checked)")
                // A read with the right role is served: 2xx.
                #expect(try await call(services[0], "GET", "/v1/sites", key: keys[.viewer]).status == 200)
                #expect(try await call(services[1], "GET", "/v1/deployments", key: keys[.viewer]).status == 200)
            }
        }
    }

    @Test("keys: made and revoked through the registry and fleetctl, a revoked key refused by every service within seconds; expired refused")
    func revocation() async throws {
        try await withFleet { fleet in
            let made = try await fleetctl(["keys", "create", "ops-bob", "--role", "operator", "--output", "json"], fleet: fleet)
            #expect(made.status == 0, "\(made.output)")
            let token = try #require(made.object["token"] as? String, "\(made.stdout)")
            let id = try #require((made.object["key"] as? [String: Any])?["id"] as? String)
            for service in [fleet.registry, fleet.api] {
                #expect(try await call(service, "GET", "/openapi.json", key: token).status == 200)
            }
            let listed = try await fleetctl(["keys", "--output", "json"], fleet: fleet)
            #expect(listed.array.contains { $0["id"] as? String == id && $0["status"] as? String == "active" } && !listed.stdout.contains(token))

            // An operator key may not make keys; an operator changes a deployment and the audit trail names it.
            let refused = try await fleetctl(["keys", "create", "sneaky", "--role", "admin"], fleet: fleet, environment: ["FLEETCTL_API_KEY": token])
            #expect(refused.status == 2 && refused.stderr.contains("needs admin"), "\(refused.output)")

            let revoked = try await fleetctl(["keys", "revoke", id, "--yes"], fleet: fleet)
            #expect(revoked.status == 0 && revoked.stdout.contains("Revoked the API key ops-bob"), "\(revoked.output)")
            for service in [fleet.registry, fleet.api, fleet.gateway] {
                let refusedEverywhere = await eventually(timeout: .seconds(3)) {
                    (try? await call(service, "GET", "/openapi.json", key: token))?.status == 401
                }
                #expect(refusedEverywhere, "\(service.name) still takes the revoked key")
            }
            let answer = try await call(fleet.registry, "GET", "/v1/sites", key: token)
            #expect(answer.body.contains("revoked"), "\(answer.body)")
            // A restarted service learns the revoked keys from the retained list.
            try await fleet.restartOrchestrator(killing: SIGKILL)
            #expect(await eventually(timeout: .seconds(5)) { (try? await call(fleet.api, "GET", "/v1/deployments", key: token))?.status == 401 })

            let expired = try TestAPIKeys.mint(role: .admin, name: "old", expiresAt: Date().addingTimeInterval(-1))
            let late = try await call(fleet.registry, "GET", "/v1/sites", key: expired)
            #expect(late.status == 401 && late.body.contains("expired"), "\(late.body)")
            let bad = try await fleet.registry.send("POST", "/v1/keys", json: ["name": "x", "role": "root"])
            #expect(bad.status == 400 && bad.errorField == "role", "\(bad.body)")
        }
    }

    @Test("limits: 429 with Retry-After past a key's rate, other keys unaffected; 413 past the body size; /metrics with the scrape token")
    func limits() async throws {
        let scratch = try TestEnvironment.current().makeScratchDirectory("scrape")
        let scrapeFile = scratch.appendingPathComponent("token")
        try Data("scrape-secret-token\n".utf8).write(to: scrapeFile)
        let service = try await ServiceProcess.ready(
            "autoscaler", environment: ["MODELFLEET_API_RATE": "0.01", "MODELFLEET_API_BURST": "3", "MODELFLEET_METRICS_TOKEN_FILE": scrapeFile.path])
        defer { service.process.send(SIGKILL) }
        let busy = try TestAPIKeys.mint(role: .viewer, name: "busy")
        var statuses: [Int] = []
        var limited: HTTPResult?
        // A token every 100 s: however slow the machine, the fourth request finds none.
        for _ in 0..<5 {
            let answer = try await call(service, "GET", "/openapi.json", key: busy)
            statuses.append(answer.status)
            if answer.status == 429 { limited = answer }
        }
        #expect(statuses == [200, 200, 200, 429, 429], "\(statuses)")
        let answer = try #require(limited)
        #expect(
            code(answer) == "rate_limited" && (90...100).contains(Int(header(answer, "Retry-After") ?? "") ?? 0), "\(answer.headers) \(answer.body)")
        #expect(try await call(service, "GET", "/openapi.json", key: try TestAPIKeys.mint(role: .viewer, name: "calm")).status == 200)

        #expect(try await call(service, "GET", "/metrics", key: "scrape-secret-token").status == 200)
        #expect(try await call(service, "GET", "/metrics", key: nil).status == 401)
        #expect(try await call(service, "GET", "/openapi.json", key: "scrape-secret-token").status == 401, "the scrape token opens /metrics only")

        let orchestrator = try await ServiceProcess.ready("orchestrator")
        defer { orchestrator.process.send(SIGKILL) }
        let huge = Data(repeating: UInt8(ascii: "a"), count: 2 << 20)
        let tooLarge = try await call(orchestrator, "POST", "/v1/deployments", key: TestAPIKeys.admin, body: huge)
        #expect(tooLarge.status == 413, "\(tooLarge.status) \(tooLarge.body.prefix(200))")
    }

    @Test("the registry writes the first admin key to MODELFLEET_BOOTSTRAP_KEY_FILE (mode 0600) once, and it works")
    func bootstrap() async throws {
        try await withPrivateDatabase { database in
            let file = try TestEnvironment.current().makeScratchDirectory("bootstrap").appendingPathComponent("admin-key")
            let registry = try await ServiceProcess.ready(
                "registry", environment: ["MODELFLEET_DATABASE_URL": database.url, "MODELFLEET_BOOTSTRAP_KEY_FILE": file.path])
            defer { registry.process.send(SIGKILL) }
            #expect(await eventually { FileManager.default.fileExists(atPath: file.path) })
            let mode = try FileManager.default.attributesOfItem(atPath: file.path)[.posixPermissions] as? Int
            #expect(mode == 0o600)
            let key = try String(contentsOf: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            let keys = try await call(registry, "GET", "/v1/keys", key: key)
            #expect(keys.status == 200 && keys.items.contains { $0["name"] as? String == "bootstrap-admin" && $0["role"] as? String == "admin" })
            // Removed and the registry restarted: an admin key is active, so none is made again.
            try FileManager.default.removeItem(at: file)
            registry.process.send(SIGKILL)
            let again = try await ServiceProcess.ready(
                "registry", environment: ["MODELFLEET_DATABASE_URL": database.url, "MODELFLEET_BOOTSTRAP_KEY_FILE": file.path])
            defer { again.process.send(SIGKILL) }
            try await Task.sleep(for: .seconds(1))
            #expect(!FileManager.default.fileExists(atPath: file.path))
        }
    }
}
