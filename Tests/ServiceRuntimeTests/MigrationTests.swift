import Logging
import PostgresNIO
import TestSupport
import Testing

@testable import ServiceRuntime

/// Migrations against the real PostgreSQL that `scripts/test` starts, each test in its own schema.
@Suite("Migrations against PostgreSQL")
struct MigrationTests {
    private func migrations(_ count: Int, table: String = "items") -> [Migration] {
        (1...count).map { version in
            Migration(
                version: version, name: "step \(version)",
                statements: [
                    version == 1
                        ? "CREATE TABLE \(table) (id integer PRIMARY KEY)"
                        : "ALTER TABLE \(table) ADD COLUMN c\(version) text"
                ])
        }
    }

    private func withClient<T: Sendable>(_ body: @Sendable (PostgresClient) async throws -> T) async throws -> T {
        let configuration = try ServiceConfiguration.parseDatabaseURL(TestEnvironment.current().databaseURL + "?sslmode=disable")
        let client = PostgresClient(configuration: configuration, backgroundLogger: testLogger("postgres"))
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                await client.run(); return nil
            }
            defer { group.cancelAll() }
            return try await body(client)
        }
    }

    private func appliedVersions(_ client: PostgresClient, schema: String) async throws -> [Int] {
        var versions: [Int] = []
        for try await version in try await client.query("SELECT version FROM \(unescaped: schema).schema_migrations ORDER BY version").decode(
            Int.self)
        {
            versions.append(version)
        }
        return versions
    }

    @Test("migrations are applied once; running again applies nothing")
    func appliedOnce() async throws {
        let name = uniqueName("mig")
        try await withClient { client in
            let runner = try MigrationRunner(schema: DatabaseSchema(name: name, migrations: qualified(name, migrations(3))), logger: testLogger("m"))
            #expect(try await runner.migrate(on: client) == [1, 2, 3])
            #expect(try await runner.migrate(on: client) == [])
            #expect(try await appliedVersions(client, schema: name) == [1, 2, 3])
            try await client.query("INSERT INTO \(unescaped: name).items (id, c2, c3) VALUES (1, 'a', 'b')")

            let grown = try MigrationRunner(schema: DatabaseSchema(name: name, migrations: qualified(name, migrations(4))), logger: testLogger("m"))
            #expect(try await grown.migrate(on: client) == [4], "a restart with one more migration applies just that one")
            try await client.query("DROP SCHEMA \(unescaped: name) CASCADE")
        }
    }

    @Test("two runners at once do not collide: every migration is applied exactly once")
    func concurrentRunners() async throws {
        let name = uniqueName("race")
        try await withClient { client in
            let schema = DatabaseSchema(name: name, migrations: qualified(name, migrations(5)))
            let results = try await withThrowingTaskGroup(of: [Int].self) { group in
                for _ in 0..<4 {
                    group.addTask { try await MigrationRunner(schema: schema, logger: testLogger("m")).migrate(on: client) }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(results.flatMap { $0 }.sorted() == [1, 2, 3, 4, 5], "each version applied by exactly one runner: \(results)")
            #expect(try await appliedVersions(client, schema: name) == [1, 2, 3, 4, 5])
            try await client.query("DROP SCHEMA \(unescaped: name) CASCADE")
        }
    }

    @Test("an edited migration stops the runner and changes nothing")
    func editedMigration() async throws {
        let name = uniqueName("edit")
        try await withClient { client in
            var list = qualified(name, migrations(2))
            try await MigrationRunner(schema: DatabaseSchema(name: name, migrations: list), logger: testLogger("m")).migrate(on: client)
            list[1].statements = ["ALTER TABLE \(name).items ADD COLUMN other text"]
            list.append(contentsOf: qualified(name, [Migration(version: 3, name: "three", statements: ["ALTER TABLE items ADD COLUMN c3 text"])]))
            await #expect(throws: MigrationError.edited(schema: name, version: 2, name: "step 2")) {
                try await MigrationRunner(schema: DatabaseSchema(name: name, migrations: list), logger: testLogger("m")).migrate(on: client)
            }
            #expect(try await appliedVersions(client, schema: name) == [1, 2], "migration 3 was not applied")
            try await client.query("DROP SCHEMA \(unescaped: name) CASCADE")
        }
    }

    @Test("a failing migration rolls back entirely")
    func failingMigration() async throws {
        let name = uniqueName("fail")
        try await withClient { client in
            let list =
                qualified(name, migrations(1)) + [
                    Migration(version: 2, name: "good", statements: ["ALTER TABLE \(name).items ADD COLUMN c2 text"]),
                    Migration(version: 3, name: "bad", statements: ["ALTER TABLE \(name).nonexistent ADD COLUMN x text"]),
                ]
            await #expect(throws: PSQLError.self) {
                try await MigrationRunner(schema: DatabaseSchema(name: name, migrations: list), logger: testLogger("m")).migrate(on: client)
            }
            let exists = try await client.query("SELECT count(*) FROM information_schema.schemata WHERE schema_name = \(name)").decode(Int.self)
                .reduce(0, +)
            #expect(exists == 0, "not even the schema is left behind")
        }
    }

    @Test("a database newer than the build is refused")
    func unknownVersion() async throws {
        let name = uniqueName("newer")
        try await withClient { client in
            try await MigrationRunner(schema: DatabaseSchema(name: name, migrations: qualified(name, migrations(2))), logger: testLogger("m"))
                .migrate(on: client)
            await #expect(throws: MigrationError.unknownVersionApplied(schema: name, version: 2)) {
                try await MigrationRunner(schema: DatabaseSchema(name: name, migrations: qualified(name, migrations(1))), logger: testLogger("m"))
                    .migrate(on: client)
            }
            try await client.query("DROP SCHEMA \(unescaped: name) CASCADE")
        }
    }

    @Test(
        "bad schema names and version lists are refused before touching the database",
        arguments: ["Registry", "1abc", "a-b", "", String(repeating: "a", count: 64)])
    func badSchemaNames(_ name: String) {
        #expect(throws: MigrationError.self) { try MigrationRunner(schema: DatabaseSchema(name: name, migrations: []), logger: testLogger("m")) }
    }

    @Test("versions must be positive, unique and ascending")
    func badVersions() {
        for versions in [[2, 1], [1, 1], [0, 1]] {
            let list = versions.map { Migration(version: $0, name: "v\($0)", statements: ["SELECT 1"]) }
            #expect(throws: MigrationError.self) {
                try MigrationRunner(schema: DatabaseSchema(name: "ok", migrations: list), logger: testLogger("m"))
            }
        }
    }

    /// Migrations whose statements name their tables with the schema, as real ones do.
    private func qualified(_ schema: String, _ list: [Migration]) -> [Migration] {
        list.map { migration in
            var migration = migration
            migration.statements = migration.statements.map {
                $0.replacingOccurrences(of: "TABLE items", with: "TABLE \(schema).items")
            }
            return migration
        }
    }
}
