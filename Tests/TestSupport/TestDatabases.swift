package import PostgresNIO
import ServiceRuntime

/// Runs `body` with a client of a new database of the PostgreSQL that `scripts/test` starts,
/// dropped afterwards: a service's schema name is fixed, so a test that migrates needs its own.
package func withNewDatabase<T: Sendable>(_ body: @Sendable (PostgresClient) async throws -> T) async throws -> T {
    let name = uniqueName("test_db")
    let shared = try ServiceConfiguration.parseDatabaseURL(TestEnvironment.current().databaseURL + "?sslmode=disable")
    var own = shared
    own.database = name
    return try await withClients([shared, own]) { clients in
        try await clients[0].query("CREATE DATABASE \(unescaped: name)")
        do {
            let result = try await body(clients[1])
            try await clients[0].query("DROP DATABASE \(unescaped: name) WITH (FORCE)")
            return result
        } catch {
            _ = try? await clients[0].query("DROP DATABASE \(unescaped: name) WITH (FORCE)")
            throw error
        }
    }
}

private func withClients<T: Sendable>(
    _ configurations: [PostgresClient.Configuration], _ body: @Sendable ([PostgresClient]) async throws -> T
) async throws -> T {
    let clients = configurations.map { PostgresClient(configuration: $0, backgroundLogger: testLogger("postgres")) }
    return try await withThrowingTaskGroup(of: T?.self) { group in
        for client in clients {
            group.addTask {
                await client.run()
                return nil
            }
        }
        defer { group.cancelAll() }
        return try await body(clients)
    }
}
