import Crypto
package import Logging
package import PostgresNIO

/// One numbered step of a schema. Once applied somewhere, a migration is never edited: the runner
/// stores a checksum of its statements and refuses to start when they no longer match.
package struct Migration: Sendable {
    package var version: Int
    package var name: String
    /// Run in order, in the runner's transaction. One statement per element: PostgreSQL's extended
    /// protocol runs one statement per query.
    package var statements: [String]

    package init(version: Int, name: String, statements: [String]) {
        self.version = version
        self.name = name
        self.statements = statements
    }

    var checksum: String {
        SHA256.hash(data: Array(statements.joined(separator: "\n;\n").utf8)).map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}

/// The schema one service owns and the migrations that build it.
package struct DatabaseSchema: Sendable {
    package var name: String
    package var migrations: [Migration]

    package init(name: String, migrations: [Migration]) {
        self.name = name
        self.migrations = migrations
    }
}

/// A schema or migration list that cannot be applied; the service stops rather than run on it.
package enum MigrationError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidSchemaName(String)
    case invalidVersions(String)
    case edited(schema: String, version: Int, name: String)
    case unknownVersionApplied(schema: String, version: Int)

    package var description: String {
        switch self {
        case .invalidSchemaName(let name): "'\(name)' is not a valid schema name (lower-case letters, digits and _)"
        case .invalidVersions(let reason): "migration versions: \(reason)"
        case .edited(let schema, let version, let name):
            "migration \(schema) \(version) (\(name)) was edited after it was applied; add a new migration instead"
        case .unknownVersionApplied(let schema, let version):
            "the database has \(schema) migration \(version), which this build does not know: it is older than the database"
        }
    }
}

/// Applies a schema's migrations, each at most once.
///
/// Everything happens in one transaction holding a transaction-level advisory lock keyed by the
/// schema name, so two replicas starting at once take turns: the second finds the work done.
package struct MigrationRunner: Sendable {
    package let schema: DatabaseSchema
    private let logger: Logger

    package init(schema: DatabaseSchema, logger: Logger) throws(MigrationError) {
        guard Self.isValidIdentifier(schema.name) else { throw .invalidSchemaName(schema.name) }
        let versions = schema.migrations.map(\.version)
        guard versions == versions.sorted(), Set(versions).count == versions.count, versions.allSatisfy({ $0 > 0 }) else {
            throw .invalidVersions("\(versions) must be positive, unique and ascending")
        }
        self.schema = schema
        self.logger = logger
    }

    /// Applies what is missing and returns the versions applied now (empty when up to date).
    @discardableResult
    package func migrate(on client: PostgresClient) async throws -> [Int] {
        let schema = self.schema
        let logger = self.logger
        let applied: [Int]
        do {
            applied = try await apply(schema, on: client, logger: logger)
        } catch let error as PostgresTransactionError {
            // The transaction wrapper is noise to callers: what failed is the closure, or else
            // BEGIN / COMMIT / ROLLBACK themselves.
            throw error.closureError ?? error.beginError ?? error.commitError ?? error
        }
        if applied.isEmpty {
            logger.info("database schema is up to date", metadata: ["schema": "\(schema.name)", "migrations": "\(schema.migrations.count)"])
        } else {
            logger.notice("applied database migrations", metadata: ["schema": "\(schema.name)", "versions": "\(applied)"])
        }
        return applied
    }

    private func apply(_ schema: DatabaseSchema, on client: PostgresClient, logger: Logger) async throws -> [Int] {
        try await client.withTransaction(logger: logger) { connection -> [Int] in
            // The name is checked by `isValidIdentifier`; identifiers cannot be bound parameters.
            let name = schema.name
            try await connection.query("SELECT pg_advisory_xact_lock(hashtext(\("modelfleet.migrate." + name)))", logger: logger)
            // Made only when missing: a service's own role owns its schema, made for it beforehand
            // (scripts/postgres-instance), and may not create schemas (CREATE SCHEMA IF NOT EXISTS
            // checks that right even when the schema exists).
            var exists = false
            for try await _ in try await connection.query("SELECT 1 FROM pg_namespace WHERE nspname = \(name)", logger: logger) { exists = true }
            if !exists { try await connection.query("CREATE SCHEMA \(unescaped: name)", logger: logger) }
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS \(unescaped: name).schema_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """,
                logger: logger
            )
            var existing: [Int: String] = [:]
            let rows = try await connection.query("SELECT version, checksum FROM \(unescaped: name).schema_migrations", logger: logger)
            for try await (version, checksum) in rows.decode((Int, String).self) {
                existing[version] = checksum
            }
            let known = Set(schema.migrations.map(\.version))
            if let unknown = existing.keys.sorted().first(where: { !known.contains($0) }) {
                throw MigrationError.unknownVersionApplied(schema: name, version: unknown)
            }
            var appliedNow: [Int] = []
            for migration in schema.migrations {
                if let checksum = existing[migration.version] {
                    guard checksum == migration.checksum else {
                        throw MigrationError.edited(schema: name, version: migration.version, name: migration.name)
                    }
                    continue
                }
                for statement in migration.statements {
                    try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await connection.query(
                    "INSERT INTO \(unescaped: name).schema_migrations (version, name, checksum) VALUES (\(migration.version), \(migration.name), \(migration.checksum))",
                    logger: logger
                )
                appliedNow.append(migration.version)
            }
            return appliedNow
        }
    }

    static func isValidIdentifier(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, name.utf8.count <= 63 else { return false }
        func isLowerOrUnderscore(_ scalar: Unicode.Scalar) -> Bool { ("a"..."z").contains(scalar) || scalar == "_" }
        return isLowerOrUnderscore(first) && name.unicodeScalars.allSatisfy { isLowerOrUnderscore($0) || ("0"..."9").contains($0) }
    }
}
